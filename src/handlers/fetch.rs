//! Fetch (key 1), versions 4-12: consumers read record batches up to the high watermark, or with
//! isolation level 1 (read_committed) up to the last stable offset, with the aborted transactions
//! overlapping what they read (clients drop those producers' batches up to the ABORT marker).
//!
//! The request's partitions are grouped by owner shard and read there (each group in one
//! message); results are merged in request order and trimmed to `max_bytes` (the first batch is
//! always returned whole, KIP-74). If fewer than `min_bytes` came back, the fetch waits — without
//! blocking the connection's reader, other connections or any shard — until a high watermark of
//! one of its partitions moves or `max_wait_ms` passes, then reads again. Incremental fetch
//! sessions (KIP-227, v7+) are kept per shard; see `shard::fetch_sessions`.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::topics::check_leader_epoch;
use super::{ApiSpec, HandlerError, Reply, Request};
use crate::partition::{PartitionError, PartitionOffsets};
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use crate::protocol::messages::{FetchRequest, FetchResponse};
use crate::protocol::ApiKey;
use crate::shard::fetch_sessions::{FetchContext, SessionKey};
use crate::shard::metrics::ShardMetrics;
use crate::shard::Shard;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::Fetch,
    min_version: 4,
    max_version: 12,
    advertised_min: 4,
    note: "supported (long poll, min/max bytes, partition limits, incremental fetch sessions, read_committed)",
};

/// Longest a fetch waits for data, whatever the client asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(60);

/// One partition a fetch reads.
#[derive(Clone, Debug)]
struct Wanted {
    topic: Arc<str>,
    partition: i32,
    fetch_offset: i64,
    partition_max_bytes: i32,
    current_leader_epoch: i32,
}

/// One partition's outcome, `Send` so it can come back from the owner shard.
struct PartitionResult {
    records: Bytes,
    error: Option<PartitionError>,
    offsets: PartitionOffsets,
    /// read_committed: (producer id, first offset) of aborted transactions in `records`.
    aborted: Option<Vec<(i64, i64)>>,
}

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: FetchRequest = request.decode()?;
    let shard = request.shard.clone();
    let context = if request.version >= 7 {
        shard
            .fetch_sessions
            .borrow_mut()
            .open(body.session_id, body.session_epoch)
    } else {
        FetchContext::Sessionless
    };
    if let FetchContext::Error(code) = context {
        let response = FetchResponse {
            error_code: code.code(),
            session_id: body.session_id,
            ..Default::default()
        };
        return request.respond(&response);
    }
    let requested: Vec<Wanted> = body
        .topics
        .iter()
        .flat_map(|topic| {
            let name: Arc<str> = Arc::from(topic.topic.as_str());
            topic.partitions.iter().map(move |p| Wanted {
                topic: name.clone(),
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
            })
        })
        .collect();
    let (session_id, wanted) = match context {
        FetchContext::Sessionless | FetchContext::Error(_) => (0, requested),
        FetchContext::NewSession(id) | FetchContext::Incremental(id) => {
            let mut sessions = shard.fetch_sessions.borrow_mut();
            let session = sessions.get_mut(id).expect("session opened above");
            let forgotten = body.forgotten_topics_data.iter().flat_map(|t| {
                let name: Arc<str> = Arc::from(t.topic.as_str());
                t.partitions.iter().map(move |&p| (name.clone(), p))
            });
            session.update(
                requested.iter().map(|w| {
                    (
                        (w.topic.clone(), w.partition),
                        w.fetch_offset,
                        w.partition_max_bytes,
                        w.current_leader_epoch,
                    )
                }),
                forgotten,
            );
            let all = session
                .partitions
                .iter()
                .map(|((topic, partition), state)| Wanted {
                    topic: topic.clone(),
                    partition: *partition,
                    fetch_offset: state.fetch_offset,
                    partition_max_bytes: state.partition_max_bytes,
                    current_leader_epoch: state.current_leader_epoch,
                })
                .collect();
            (id, all)
        }
    };
    let incremental = matches!(context, FetchContext::Incremental(_));
    let max_bytes = body.max_bytes.min(shard.broker.fetch_max_bytes()).max(0) as usize;
    let limits = Limits {
        max_wait: Duration::from_millis(body.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP),
        min_bytes: body.min_bytes.max(0) as usize,
        max_bytes,
        read_committed: body.isolation_level == 1,
    };
    let (correlation_id, api_key, version) =
        (request.correlation_id, request.api_key, request.version);
    Ok(Reply::Later(Box::pin(async move {
        let results = fetch_until_ready(&shard, &wanted, &limits).await;
        let response = build_response(
            &shard,
            session_id,
            incremental,
            &wanted,
            results,
            limits.read_committed,
        );
        crate::protocol::frame::encode_response(correlation_id, api_key, version, &response)
            .expect("a fetch response encodes at the request's version")
    })))
}

struct Limits {
    max_wait: Duration,
    min_bytes: usize,
    max_bytes: usize,
    read_committed: bool,
}

async fn fetch_until_ready(
    shard: &Rc<Shard>,
    wanted: &[Wanted],
    limits: &Limits,
) -> Vec<PartitionResult> {
    let deadline = Instant::now() + limits.max_wait;
    loop {
        let results = read_all(shard, wanted, limits.max_bytes, limits.read_committed).await;
        let bytes: usize = results.iter().map(|r| r.records.len()).sum();
        let any_error = results.iter().any(|r| r.error.is_some());
        if bytes >= limits.min_bytes.max(1)
            || any_error
            || Instant::now() >= deadline
            || shard.stopping.get()
            || wanted.is_empty()
        {
            return results;
        }
        let seen: Vec<Watched> = wanted
            .iter()
            .zip(&results)
            .map(|(w, r)| {
                (
                    w.topic.clone(),
                    w.partition,
                    (r.offsets.high_watermark, r.offsets.last_stable_offset),
                )
            })
            .collect();
        wait_for_news(shard, seen, deadline).await;
    }
}

/// Reads every wanted partition on its owner shard and merges the results in request order,
/// keeping the response within `max_bytes` (but always the first non-empty partition).
async fn read_all(
    shard: &Rc<Shard>,
    wanted: &[Wanted],
    max_bytes: usize,
    read_committed: bool,
) -> Vec<PartitionResult> {
    let mut groups: Vec<Vec<(usize, Wanted)>> = vec![Vec::new(); shard.count];
    for (position, w) in wanted.iter().enumerate() {
        groups[shard.owner_of(&w.topic, w.partition)].push((position, w.clone()));
    }
    let mut receivers = Vec::new();
    for (owner, group) in groups
        .into_iter()
        .enumerate()
        .filter(|(_, g)| !g.is_empty())
    {
        let receiver = shard
            .dispatch(owner, move |owner_shard| {
                read_group(owner_shard, group, max_bytes, read_committed)
            })
            .await;
        receivers.push(receiver);
    }
    let mut slots: Vec<Option<PartitionResult>> = (0..wanted.len()).map(|_| None).collect();
    for receiver in receivers {
        for (position, result) in receiver.await.unwrap_or_default() {
            slots[position] = Some(result);
        }
    }
    let mut used = 0usize;
    slots
        .into_iter()
        .map(|slot| {
            let mut result = slot.unwrap_or_else(|| {
                error_result(PartitionError::code(ErrorCode::NotLeaderOrFollower))
            });
            if !result.records.is_empty() {
                if used > 0 && used + result.records.len() > max_bytes {
                    result.records = Bytes::new();
                    result.aborted = result.aborted.map(|_| Vec::new());
                } else {
                    used += result.records.len();
                }
            }
            result
        })
        .collect()
}

fn error_result(error: PartitionError) -> PartitionResult {
    PartitionResult {
        records: Bytes::new(),
        error: Some(error),
        offsets: PartitionOffsets {
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            log_end_offset: -1,
        },
        aborted: None,
    }
}

/// Runs on the owner shard: reads its partitions within the byte budget. When every partition
/// can have its whole `partition_max_bytes` (the usual case: librdkafka asks for 50 MB over
/// 1 MiB partitions) the reads run concurrently, so cold reads overlap on the disk instead of
/// queueing one after another; the result is what the sequential loop would return.
async fn read_group(
    shard: Rc<Shard>,
    group: Vec<(usize, Wanted)>,
    max_bytes: usize,
    read_committed: bool,
) -> Vec<(usize, PartitionResult)> {
    let wanted_total: usize = group
        .iter()
        .map(|(_, w)| w.partition_max_bytes.max(0) as usize)
        .sum();
    if wanted_total <= max_bytes {
        return read_group_concurrently(&shard, group, read_committed).await;
    }
    let mut out = Vec::with_capacity(group.len());
    let mut used = 0usize;
    for (position, wanted) in group {
        let budget =
            (wanted.partition_max_bytes.max(0) as usize).min(max_bytes.saturating_sub(used));
        let result = read_one(&shard, &wanted, budget, used == 0, read_committed).await;
        used += result.records.len();
        ShardMetrics::add(&shard.metrics.fetch_bytes, result.records.len() as u64);
        out.push((position, result));
    }
    out
}

/// All reads at once with `min_one`, then, in request order, drops what the sequential loop
/// would not have returned: a batch larger than its partition's budget (taken only because of
/// `min_one`) after some partition already returned data. With the budgets fitting in
/// `max_bytes`, that is the only difference (KIP-74: only the first non-empty partition may
/// exceed its limit).
async fn read_group_concurrently(
    shard: &Rc<Shard>,
    group: Vec<(usize, Wanted)>,
    read_committed: bool,
) -> Vec<(usize, PartitionResult)> {
    let reads = group.iter().map(|(_, wanted)| {
        read_one(
            shard,
            wanted,
            wanted.partition_max_bytes.max(0) as usize,
            true,
            read_committed,
        )
    });
    let results = futures::future::join_all(reads).await;
    let mut used = 0usize;
    group
        .into_iter()
        .zip(results)
        .map(|((position, wanted), mut result)| {
            let length = result.records.len();
            if used > 0 && length > wanted.partition_max_bytes.max(0) as usize {
                result.records = Bytes::new();
                result.aborted = result.aborted.map(|_| Vec::new());
            }
            used += result.records.len();
            ShardMetrics::add(&shard.metrics.fetch_bytes, result.records.len() as u64);
            (position, result)
        })
        .collect()
}

/// Reads one partition this shard owns from the fetch offset, up to `budget` bytes.
async fn read_one(
    shard: &Rc<Shard>,
    wanted: &Wanted,
    budget: usize,
    min_one: bool,
    read_committed: bool,
) -> PartitionResult {
    let Some(partition) = shard.partition(&wanted.topic, wanted.partition) else {
        let exists = shard
            .metadata()
            .topic(&wanted.topic)
            .is_some_and(|t| (wanted.partition as usize) < t.partitions.len());
        let code = if exists {
            ErrorCode::NotLeaderOrFollower
        } else {
            ErrorCode::UnknownTopicOrPartition
        };
        return error_result(PartitionError::code(code));
    };
    if let Err(error) = check_leader_epoch(wanted.current_leader_epoch, partition.leader_epoch()) {
        return error_result(error);
    }
    match partition
        .read_isolated(wanted.fetch_offset, budget, min_one, read_committed)
        .await
    {
        Ok(outcome) => PartitionResult {
            records: outcome.records,
            error: None,
            offsets: outcome.offsets,
            aborted: outcome.aborted_transactions,
        },
        Err(error) => error_result(error),
    }
}

/// A partition a long poll watches, with the (high watermark, last stable offset) last read.
type Watched = (Arc<str>, i32, (i64, i64));

/// Waits until the high watermark or last stable offset of any partition moves from what the
/// last read saw, or the deadline. Each owner shard watches its own partitions; the first to see
/// news wins.
async fn wait_for_news(shard: &Rc<Shard>, seen: Vec<Watched>, deadline: Instant) {
    let mut groups: Vec<Vec<Watched>> = vec![Vec::new(); shard.count];
    for entry in seen {
        groups[shard.owner_of(&entry.0, entry.1)].push(entry);
    }
    let mut receivers = Vec::new();
    for (owner, group) in groups
        .into_iter()
        .enumerate()
        .filter(|(_, g)| !g.is_empty())
    {
        receivers.push(
            shard
                .dispatch(owner, move |owner_shard| {
                    watch_partitions(owner_shard, group, deadline)
                })
                .await,
        );
    }
    if receivers.is_empty() {
        return;
    }
    let remaining = deadline.saturating_duration_since(Instant::now());
    let any_news = futures::future::select_all(receivers);
    let timer = glommio::timer::sleep(remaining);
    futures::pin_mut!(timer);
    futures::future::select(any_news, timer).await;
}

/// Runs on the owner shard: returns when a watched high watermark or last stable offset moves,
/// or at the deadline (the LSO moves only with the high watermark, so `hw_event` covers both).
async fn watch_partitions(shard: Rc<Shard>, watched: Vec<Watched>, deadline: Instant) {
    let partitions: Vec<_> = watched
        .iter()
        .filter_map(|(t, p, hw)| shard.partition(t, *p).map(|found| (found, *hw)))
        .collect();
    if partitions.len() < watched.len() {
        return; // a partition went away: let the fetch re-read and report it
    }
    loop {
        let listeners: Vec<_> = partitions
            .iter()
            .map(|(p, _)| Box::pin(p.hw_event.listen()))
            .collect();
        let stopped = shard.stop_event.listen();
        if partitions
            .iter()
            .any(|(p, seen)| (p.high_watermark(), p.last_stable_offset()) != *seen)
            || shard.stopping.get()
        {
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        let timer = glommio::timer::sleep(deadline - now);
        futures::pin_mut!(timer);
        futures::pin_mut!(stopped);
        let events = futures::future::select(futures::future::select_all(listeners), stopped);
        futures::future::select(events, timer).await;
    }
}

fn aborted_list(aborted: Option<Vec<(i64, i64)>>) -> Vec<AbortedTransaction> {
    aborted
        .unwrap_or_default()
        .into_iter()
        .map(|(producer_id, first_offset)| AbortedTransaction {
            producer_id,
            first_offset,
            ..Default::default()
        })
        .collect()
}

fn build_response(
    shard: &Rc<Shard>,
    session_id: i32,
    incremental: bool,
    wanted: &[Wanted],
    results: Vec<PartitionResult>,
    read_committed: bool,
) -> FetchResponse {
    let mut sessions = shard.fetch_sessions.borrow_mut();
    let mut session = if session_id != 0 {
        sessions.get_mut(session_id)
    } else {
        None
    };
    let mut responses: Vec<FetchableTopicResponse> = Vec::new();
    for (w, result) in wanted.iter().zip(results) {
        let offsets = &result.offsets;
        if let Some(session) = session.as_deref_mut() {
            let key: SessionKey = (w.topic.clone(), w.partition);
            let news = session.note_result(
                &key,
                !result.records.is_empty(),
                result.error.is_some(),
                (
                    offsets.high_watermark,
                    offsets.last_stable_offset,
                    offsets.log_start_offset,
                ),
            );
            if incremental && !news {
                continue;
            }
        }
        let data = PartitionData {
            partition_index: w.partition,
            error_code: result
                .error
                .as_ref()
                .map(|e| e.code)
                .unwrap_or(ErrorCode::None)
                .code(),
            high_watermark: offsets.high_watermark,
            last_stable_offset: offsets.last_stable_offset,
            log_start_offset: offsets.log_start_offset,
            aborted_transactions: read_committed.then(|| aborted_list(result.aborted)),
            preferred_read_replica: -1,
            records: Some(result.records),
            ..Default::default()
        };
        match responses.last_mut() {
            Some(last) if last.topic == *w.topic => last.partitions.push(data),
            _ => responses.push(FetchableTopicResponse {
                topic: w.topic.to_string(),
                partitions: vec![data],
                ..Default::default()
            }),
        }
    }
    if incremental {
        if let Some(session) = session {
            session.advance_epoch();
        }
    }
    FetchResponse {
        error_code: ErrorCode::None.code(),
        session_id,
        responses,
        ..Default::default()
    }
}
