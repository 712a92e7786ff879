//! The group coordinator on a shard: the groups of the `__consumer_offsets` partitions this
//! shard owns, their loading at startup, their record appends and their timers.
//!
//! Lives on one shard; handlers on other shards reach it through [`to_coordinator`] /
//! [`dispatch_to_coordinator`] (a message to the owner). The state machine is
//! [`crate::coordinator::group::state`]; this file only moves bytes and time to it:
//! - loading: when the shard opens an offsets partition it replays the partition from the log
//!   start; until done, requests for its groups get COORDINATOR_LOAD_IN_PROGRESS;
//! - persistence: records are appended to the group's partition and the request is answered
//!   once the high watermark passes them (durable), as acks=all produce is; committed offsets
//!   change the state only by the replay of those records ([`GroupStore::apply`]);
//! - timers: a task ticks every group every [`TICK`] (session, rebalance, initial delay) and
//!   expires offsets every `offsets.retention.check.interval.ms`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;

use super::Shard;
use crate::coordinator::group::state::{AfterPersist, Effects, GroupReply, Persist};
use crate::coordinator::group::{
    partition_for, ClassicGroup, GroupConfig, GroupRecord, GroupState, GroupStore, OFFSETS_TOPIC,
};
use crate::metadata::MetadataImage;
use crate::protocol::error::ErrorCode;
use crate::records::builder::BatchBuilder;
use crate::records::compression::Compression;

/// A waiting JoinGroup or SyncGroup.
pub type Waiter = oneshot::Sender<GroupReply>;

/// How often group timers are checked.
pub const TICK: Duration = Duration::from_millis(100);

pub struct ShardGroups {
    pub config: GroupConfig,
    pub store: RefCell<GroupStore<Waiter>>,
    pub consumer_config: crate::coordinator::consumer_group::ConsumerGroupConfig,
    /// Target assignments computed per consumer-protocol group (its rebalances).
    pub consumer_rebalances: RefCell<BTreeMap<String, u64>>,
    pub partitions: super::coordinator_load::CoordinatorPartitions,
}

impl ShardGroups {
    pub fn new(broker: &crate::config::BrokerConfig) -> ShardGroups {
        ShardGroups {
            config: GroupConfig {
                min_session_timeout_ms: broker.group_min_session_timeout_ms(),
                max_session_timeout_ms: broker.group_max_session_timeout_ms(),
                initial_rebalance_delay_ms: broker.group_initial_rebalance_delay_ms(),
                max_size: broker.group_max_size(),
                ..GroupConfig::default()
            },
            store: RefCell::new(GroupStore::default()),
            consumer_config: super::consumer_groups::config(broker),
            consumer_rebalances: RefCell::new(BTreeMap::new()),
            partitions: Default::default(),
        }
    }

    /// Whether this shard coordinates `partition` of the offsets topic and has loaded it.
    pub fn check_partition(&self, partition: i32) -> Result<(), ErrorCode> {
        self.partitions.check(partition)
    }

    /// Whether some offsets partition of this shard is still loading.
    pub fn loading(&self) -> bool {
        self.partitions.loading()
    }

    /// Runs `f` on the group if it exists.
    pub fn with_group<R>(
        &self,
        group: &str,
        f: impl FnOnce(&mut ClassicGroup<Waiter>) -> R,
    ) -> Option<R> {
        self.store.borrow_mut().groups.get_mut(group).map(f)
    }

    /// Runs `f` on the group, creating it (Empty) if missing.
    pub fn with_group_or_new<R>(
        &self,
        group: &str,
        f: impl FnOnce(&mut ClassicGroup<Waiter>) -> R,
    ) -> R {
        let mut store = self.store.borrow_mut();
        let entry = store
            .groups
            .entry(group.to_string())
            .or_insert_with(|| ClassicGroup::new(group.to_string(), crate::event::now_ms()));
        f(entry)
    }

    /// Drops a group that holds nothing (created by a request that failed).
    pub fn forget_if_unused(&self, group: &str) {
        let mut store = self.store.borrow_mut();
        if let Some(g) = store.groups.get(group) {
            if g.is(GroupState::Empty)
                && g.members.is_empty()
                && g.pending_member_count() == 0
                && g.offsets.is_empty()
                && g.generation == 0
            {
                store.groups.remove(group);
            }
        }
    }
}

/// The offsets partition of `group` under `image` (None: the topic does not exist yet).
pub fn coordinator_partition(image: &MetadataImage, group: &str) -> Option<i32> {
    image
        .topic(OFFSETS_TOPIC)
        .map(|topic| partition_for(group, topic.partitions.len() as i32))
}

/// Runs `work` on the shard coordinating `group`, once its partition is loaded.
pub async fn to_coordinator<R, F, Fut>(
    shard: &Rc<Shard>,
    group: &str,
    work: F,
) -> Result<R, ErrorCode>
where
    F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<R, ErrorCode>> + 'static,
    R: Send + 'static,
{
    match dispatch_to_coordinator(shard, group, work).await {
        Ok(receiver) => receiver
            .await
            .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable)),
        Err(error) => Err(error),
    }
}

/// Like [`to_coordinator`], but returns as soon as the work is queued (JoinGroup and SyncGroup
/// wait there for the rebalance without holding up the connection).
pub async fn dispatch_to_coordinator<R, F, Fut>(
    shard: &Rc<Shard>,
    group: &str,
    work: F,
) -> Result<oneshot::Receiver<Result<R, ErrorCode>>, ErrorCode>
where
    F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<R, ErrorCode>> + 'static,
    R: Send + 'static,
{
    let Some(partition) = coordinator_partition(&shard.metadata(), group) else {
        return Err(ErrorCode::NotCoordinator);
    };
    let owner = shard.owner_of(OFFSETS_TOPIC, partition);
    Ok(shard
        .dispatch(owner, move |owner_shard: Rc<Shard>| async move {
            owner_shard.groups.check_partition(partition)?;
            work(owner_shard).await
        })
        .await)
}

/// Hands out replies and writes records an operation produced. Records are appended in order
/// (the partition's append lock is FIFO); their follow-ups run when they are durable.
pub fn apply_effects(shard: &Rc<Shard>, group: &str, effects: Effects<Waiter>) {
    for (waiter, reply) in effects.replies {
        let _ = waiter.send(reply);
    }
    for Persist { value, after } in effects.persist {
        let shard = shard.clone();
        let group = group.to_string();
        let record = GroupRecord::Metadata {
            group: group.clone(),
            value: Some(value),
        };
        glommio::spawn_local(async move {
            let outcome = append_records(&shard, &group, vec![record]).await;
            if let Err(error) = outcome {
                tracing::warn!(
                    "group '{group}': writing its metadata failed: {}",
                    error.name()
                );
            }
            persisted(&shard, &group, after, outcome.err().map(store_error));
        })
        .detach();
    }
}

fn persisted(shard: &Rc<Shard>, group: &str, after: AfterPersist, error: Option<ErrorCode>) {
    let mut fx = Effects::default();
    let config = shard.groups.config.clone();
    let now = crate::event::now_ms();
    shard
        .groups
        .with_group(group, |g| g.persisted(after, error, now, &config, &mut fx));
    apply_effects(shard, group, fx);
}

/// Kafka's mapping of append errors for coordinator writes (group metadata, transaction log).
pub fn store_error(error: ErrorCode) -> ErrorCode {
    match error {
        ErrorCode::UnknownTopicOrPartition
        | ErrorCode::NotEnoughReplicas
        | ErrorCode::NotEnoughReplicasAfterAppend
        | ErrorCode::RequestTimedOut => ErrorCode::CoordinatorNotAvailable,
        ErrorCode::NotLeaderOrFollower | ErrorCode::KafkaStorageError => ErrorCode::NotCoordinator,
        _ => ErrorCode::UnknownServerError,
    }
}

/// Kafka's mapping of append errors for offset commits.
pub fn commit_error(error: ErrorCode) -> ErrorCode {
    match error {
        ErrorCode::MessageTooLarge
        | ErrorCode::RecordListTooLarge
        | ErrorCode::InvalidFetchSize => ErrorCode::InvalidCommitOffsetSize,
        other => store_error(other),
    }
}

/// Appends `records` (all of `group`'s partition) and waits until they are durable.
pub async fn append_records(
    shard: &Rc<Shard>,
    group: &str,
    records: Vec<GroupRecord>,
) -> Result<(), ErrorCode> {
    append_encoded(
        shard,
        group,
        records.iter().map(GroupRecord::encode).collect(),
    )
    .await
}

/// Appends encoded (key, value) records to `group`'s partition and waits until durable.
pub async fn append_encoded(
    shard: &Rc<Shard>,
    group: &str,
    records: Vec<(bytes::Bytes, Option<bytes::Bytes>)>,
) -> Result<(), ErrorCode> {
    let Some(index) = coordinator_partition(&shard.metadata(), group) else {
        return Err(ErrorCode::NotCoordinator);
    };
    append_to_partition(
        shard,
        OFFSETS_TOPIC,
        index,
        records,
        Duration::from_millis(shard.broker.offsets_commit_timeout_ms()),
    )
    .await
}

/// Appends encoded (key, value) records as one batch to a coordinator's partition of this shard
/// and waits until they are durable (at most `timeout`: REQUEST_TIMED_OUT).
pub async fn append_to_partition(
    shard: &Rc<Shard>,
    topic: &str,
    index: i32,
    records: Vec<(bytes::Bytes, Option<bytes::Bytes>)>,
    timeout: Duration,
) -> Result<(), ErrorCode> {
    let now = crate::event::now_ms();
    let mut builder = BatchBuilder::new(Compression::None, 0, now);
    for (key, value) in &records {
        builder.append(now, Some(key), value.as_deref(), &[]);
    }
    let batch = builder.build().map_err(|_| ErrorCode::UnknownServerError)?;
    append_batch(shard, topic, index, batch, timeout).await
}

/// Appends a batch a coordinator built to a partition of this shard and waits until it is
/// durable. Coordinator origin: a producer's batch (TxnOffsetCommit) has its epoch checked and
/// its transaction tracked, but not its sequence, as Kafka's `AppendOrigin.COORDINATOR`.
pub async fn append_batch(
    shard: &Rc<Shard>,
    topic: &str,
    index: i32,
    batch: bytes::Bytes,
    timeout: Duration,
) -> Result<(), ErrorCode> {
    let Some(partition) = shard.partition(topic, index) else {
        return Err(ErrorCode::NotLeaderOrFollower);
    };
    let appended = partition
        .append_from_coordinator(Some(batch), &shard.flusher)
        .await
        .map_err(|e| e.code)?;
    wait_durable(&partition, appended.last_offset, timeout).await
}

/// Waits until `last_offset` is below the high watermark (at most `timeout`).
async fn wait_durable(
    partition: &crate::partition::Partition,
    last_offset: i64,
    timeout: Duration,
) -> Result<(), ErrorCode> {
    use futures::future::{select, Either};
    let wait = partition.wait_for_offset(last_offset);
    let timer = glommio::timer::sleep(timeout);
    futures::pin_mut!(wait);
    futures::pin_mut!(timer);
    match select(wait, timer).await {
        Either::Left((result, _)) => result.map_err(|e| e.code),
        Either::Right(_) => Err(ErrorCode::RequestTimedOut),
    }
}

/// Reads a coordinator partition from its log start to its high watermark, handing every batch
/// (header and bytes) to `visit` in log order.
pub async fn replay(
    partition: &crate::partition::Partition,
    mut visit: impl FnMut(&crate::records::batch::BatchHeader, &bytes::Bytes),
) -> Result<(), crate::partition::PartitionError> {
    let end = partition.high_watermark();
    let mut from = partition.offsets().log_start_offset;
    while from < end {
        let (chunk, _) = partition.read(from, 1 << 20, true).await?;
        if chunk.is_empty() {
            break;
        }
        let before = from;
        for item in crate::records::batch::split(&chunk) {
            let Ok((header, bytes)) = item else { break };
            from = header.last_offset() + 1;
            visit(&header, &bytes);
        }
        if from == before {
            break;
        }
    }
    Ok(())
}

/// Appends `records` and, once durable, applies them to the store (the replay path).
pub async fn write_and_apply(
    shard: &Rc<Shard>,
    group: &str,
    records: Vec<GroupRecord>,
) -> Result<(), ErrorCode> {
    append_records(shard, group, records.clone()).await?;
    let now = crate::event::now_ms();
    let mut store = shard.groups.store.borrow_mut();
    for record in records {
        store.apply(record, now);
    }
    Ok(())
}

/// Starts loading the offsets partitions this shard newly owns. Called after every metadata
/// change.
pub fn on_metadata(shard: &Rc<Shard>, image: &MetadataImage) {
    for index in shard
        .groups
        .partitions
        .claim_new(shard, image, OFFSETS_TOPIC)
    {
        let shard = shard.clone();
        glommio::spawn_local(async move { load_partition(shard, index).await }).detach();
    }
}

/// Replays one offsets partition from its log start into the store. Offsets of transactions
/// (TxnOffsetCommit) wait for their transaction's marker.
async fn load_partition(shard: Rc<Shard>, index: i32) {
    let started = std::time::Instant::now();
    let Some(partition) = shard.partition(OFFSETS_TOPIC, index) else {
        shard.groups.partitions.forget(index);
        return;
    };
    let mut count = 0usize;
    let now = crate::event::now_ms();
    let replayed = replay(&partition, |header, bytes| {
        if header.is_control() {
            if let Some(marker) = crate::records::control::read_marker(bytes) {
                let commit = marker.kind == crate::records::control::ControlType::Commit;
                shard.groups.store.borrow_mut().complete_txn(
                    header.producer_id,
                    index,
                    commit,
                    now,
                );
            }
            return;
        }
        let Ok(records) = crate::records::record::records(bytes, 64 << 20) else {
            return;
        };
        for record in records.flatten() {
            let Some(key) = record.key.as_ref() else {
                continue;
            };
            if let Some(decoded) = GroupRecord::decode(key, record.value.as_ref()) {
                let mut store = shard.groups.store.borrow_mut();
                if header.is_transactional() {
                    store.add_pending_txn(header.producer_id, index, decoded);
                } else {
                    store.apply(decoded, now);
                }
                count += 1;
            } else if super::consumer_groups::apply_loaded(&shard, key, record.value.as_ref(), now)
            {
                count += 1;
            }
        }
    })
    .await;
    if let Err(error) = replayed {
        tracing::error!(
            "loading {OFFSETS_TOPIC}-{index}: {}; its groups stay unavailable",
            error
                .message
                .unwrap_or_else(|| error.code.name().to_string())
        );
        return;
    }
    shard.groups.partitions.loaded(index);
    if count > 0 {
        tracing::info!(
            "loaded {count} record(s) of {OFFSETS_TOPIC}-{index} in {:.2}s",
            started.elapsed().as_secs_f64()
        );
    }
}

/// Ticks every group of the shard and expires offsets; runs until the shard stops.
pub async fn run(shard: Rc<Shard>) {
    let retention_interval = shard.broker.offsets_retention_check_interval_ms() as i64;
    let mut next_retention = crate::event::now_ms() + retention_interval;
    loop {
        let stopped = shard.stop_event.listen();
        if crate::event::listen_with_timeout(stopped, TICK).await || shard.stopping.get() {
            return;
        }
        let now = crate::event::now_ms();
        let config = shard.groups.config.clone();
        let ticked: Vec<(String, Effects<Waiter>)> = {
            let mut store = shard.groups.store.borrow_mut();
            store
                .groups
                .iter_mut()
                .map(|(id, group)| {
                    let mut fx = Effects::default();
                    group.tick(now, &config, &mut fx);
                    (id.clone(), fx)
                })
                .filter(|(_, fx)| !fx.replies.is_empty() || !fx.persist.is_empty())
                .collect()
        };
        for (group, fx) in ticked {
            apply_effects(&shard, &group, fx);
        }
        super::consumer_groups::tick(&shard, now);
        if now >= next_retention {
            next_retention = now + retention_interval;
            // Its writes wait for durability; timers keep ticking meanwhile.
            let shard = shard.clone();
            glommio::spawn_local(async move { expire_offsets(&shard, now).await }).detach();
        }
    }
}

/// Writes tombstones for expired offsets, and for groups left with nothing.
pub async fn expire_offsets(shard: &Rc<Shard>, now: i64) {
    let retention = shard.broker.offsets_retention_ms();
    // (group, expired partitions, whether the group is left with nothing)
    type Expired = (String, Vec<(String, i32)>, bool);
    let expired: Vec<Expired> = {
        let store = shard.groups.store.borrow();
        store
            .groups
            .iter()
            .filter_map(|(id, group)| {
                let mut offsets = group.expired_offsets(now, retention);
                // A consumer-protocol group keeps the offsets of topics its members subscribe
                // to (Kafka's rule); the others expire from their commit time, as here.
                let consumer = store.consumer.get(id);
                if let Some(consumer) = consumer {
                    let subscribed = consumer.subscribed_topics();
                    offsets.retain(|(topic, _)| !subscribed.contains(topic));
                }
                if offsets.is_empty() {
                    return None;
                }
                let all_gone = consumer.is_none()
                    && offsets.len() == group.offsets.len()
                    && group.is(GroupState::Empty)
                    && group.members.is_empty();
                Some((id.clone(), offsets, all_gone))
            })
            .collect()
    };
    for (group, offsets, all_gone) in expired {
        let count = offsets.len();
        let mut records: Vec<GroupRecord> = offsets
            .into_iter()
            .map(|(topic, partition)| GroupRecord::Offset {
                group: group.clone(),
                topic,
                partition,
                value: None,
            })
            .collect();
        if all_gone {
            records.push(GroupRecord::Metadata {
                group: group.clone(),
                value: None,
            });
        }
        match write_and_apply(shard, &group, records).await {
            Ok(()) => tracing::info!("group '{group}': expired {count} committed offset(s)"),
            Err(error) => tracing::warn!("group '{group}': expiring offsets: {}", error.name()),
        }
    }
}

/// One group's series for /metrics.
#[derive(Clone, Debug)]
pub struct GroupSample {
    pub group: String,
    pub state: GroupState,
    pub members: usize,
    pub rebalances_total: u64,
    pub rebalance_duration_ms_total: i64,
    pub last_rebalance_duration_ms: i64,
    /// (topic, partition, committed offset)
    pub offsets: Vec<(String, i32, i64)>,
    /// A consumer-protocol group (KIP-848): its state name and group epoch.
    pub consumer: Option<(&'static str, i32)>,
}

impl ShardGroups {
    pub fn samples(&self) -> Vec<GroupSample> {
        let store = self.store.borrow();
        let rebalances = self.consumer_rebalances.borrow();
        let consumer = store.consumer.values().map(|g| GroupSample {
            group: g.id.clone(),
            state: GroupState::Empty,
            members: g.members.len(),
            rebalances_total: rebalances.get(&g.id).copied().unwrap_or(0),
            rebalance_duration_ms_total: 0,
            last_rebalance_duration_ms: 0,
            offsets: store
                .groups
                .get(&g.id)
                .map(|c| {
                    c.offsets
                        .iter()
                        .map(|((t, p), o)| (t.clone(), *p, o.offset))
                        .collect()
                })
                .unwrap_or_default(),
            consumer: Some((super::consumer_groups::state_name(g), g.group_epoch)),
        });
        store
            .groups
            .values()
            .filter(|g| !store.consumer.contains_key(&g.id))
            .map(|g| GroupSample {
                group: g.id.clone(),
                state: g.state,
                members: g.members.len(),
                rebalances_total: g.stats.rebalances_total,
                rebalance_duration_ms_total: g.stats.duration_ms_total,
                last_rebalance_duration_ms: g.stats.last_duration_ms,
                offsets: g
                    .offsets
                    .iter()
                    .map(|((t, p), o)| (t.clone(), *p, o.offset))
                    .collect(),
                consumer: None,
            })
            .chain(consumer)
            .collect()
    }
}

/// Renders group series. Lag is computed at scrape time: log end offset (from the partition
/// samples of every shard in the same scrape) minus the committed offset.
pub fn render(out: &mut String, snapshots: &[super::metrics::MetricsSnapshot]) {
    use std::fmt::Write;
    let escape = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
    let mut log_end: std::collections::HashMap<(&str, i32), i64> = Default::default();
    for s in snapshots {
        for p in &s.partitions {
            log_end.insert((p.topic.as_str(), p.partition), p.log_end_offset);
        }
    }
    let groups: Vec<&GroupSample> = snapshots.iter().flat_map(|s| s.groups.iter()).collect();
    type Series = (
        &'static str,
        &'static str,
        &'static str,
        fn(&GroupSample) -> f64,
    );
    let simple: [Series; 4] = [
        ("weir_group_members", "gauge", "Members of the group", |g| {
            g.members as f64
        }),
        (
            "weir_group_rebalances_total",
            "counter",
            "Completed rebalances",
            |g| g.rebalances_total as f64,
        ),
        (
            "weir_group_rebalance_duration_seconds_total",
            "counter",
            "Time spent rebalancing (PreparingRebalance until the join completes)",
            |g| g.rebalance_duration_ms_total as f64 / 1e3,
        ),
        (
            "weir_group_last_rebalance_duration_seconds",
            "gauge",
            "Duration of the last completed rebalance",
            |g| g.last_rebalance_duration_ms as f64 / 1e3,
        ),
    ];
    for (name, kind, help, value) in simple {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for g in &groups {
            let _ = writeln!(out, "{name}{{group=\"{}\"}} {}", escape(&g.group), value(g));
        }
    }
    let _ = writeln!(
        out,
        "# HELP weir_group_state 1 for the group's current state\n# TYPE weir_group_state gauge"
    );
    for g in &groups {
        if let Some((state, _)) = g.consumer {
            for name in super::consumer_groups::STATES {
                let _ = writeln!(
                    out,
                    "weir_group_state{{group=\"{}\",state=\"{name}\"}} {}",
                    escape(&g.group),
                    (name == state) as u8
                );
            }
            continue;
        }
        for state in GroupState::ALL {
            let _ = writeln!(
                out,
                "weir_group_state{{group=\"{}\",state=\"{}\"}} {}",
                escape(&g.group),
                state.name(),
                (g.state == state) as u8
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP weir_group_epoch Group epoch of a consumer-protocol (KIP-848) group\n# TYPE weir_group_epoch gauge"
    );
    for g in &groups {
        if let Some((_, epoch)) = g.consumer {
            let _ = writeln!(
                out,
                "weir_group_epoch{{group=\"{}\"}} {epoch}",
                escape(&g.group)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP weir_group_committed_offset Committed offset\n# TYPE weir_group_committed_offset gauge"
    );
    for g in &groups {
        for (topic, partition, offset) in &g.offsets {
            let _ = writeln!(
                out,
                "weir_group_committed_offset{{group=\"{}\",topic=\"{}\",partition=\"{partition}\"}} {offset}",
                escape(&g.group),
                escape(topic)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP weir_group_lag Log end offset minus committed offset (computed at scrape time)\n# TYPE weir_group_lag gauge"
    );
    for g in &groups {
        for (topic, partition, offset) in &g.offsets {
            if let Some(end) = log_end.get(&(topic.as_str(), *partition)) {
                let _ = writeln!(
                    out,
                    "weir_group_lag{{group=\"{}\",topic=\"{}\",partition=\"{partition}\"}} {}",
                    escape(&g.group),
                    escape(topic),
                    (end - offset).max(0)
                );
            }
        }
    }
}
