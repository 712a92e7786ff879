//! The transaction coordinator on a shard: the transactional ids of the `__transaction_state`
//! partitions this shard owns, their loading, their record writes, the markers of decided
//! transactions and the timers (timeouts, expiry).
//!
//! Pure rules live in [`crate::coordinator::transaction`]; this file moves bytes and time:
//! - a transition is begun in the store, its record appended to the id's partition and awaited
//!   until durable (as acks=all), then completed — only then does the client get its answer;
//! - a decided transaction (PrepareCommit/PrepareAbort) gets its markers written to every
//!   partition of it, on whichever shard owns each ([`crate::shard::txn_markers`]), retried until
//!   they are all durable, then CompleteCommit/CompleteAbort is written;
//! - at load the partition is replayed from its log start and every decided transaction found
//!   gets its markers (the broker may have died between the decision and the markers);
//! - a timer aborts transactions open longer than their timeout and removes ids idle past
//!   `transactional.id.expiration.ms`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use super::Shard;
use crate::coordinator::transaction::{
    partition_for, records, EndPlan, InitPlan, TxnMetadata, TxnPartitions, TxnStore,
    TRANSACTION_TOPIC,
};
use crate::metadata::MetadataImage;
use crate::protocol::error::ErrorCode;

/// How long a request for an id whose previous transaction is still being completed (markers
/// being written) waits for it before answering CONCURRENT_TRANSACTIONS. Clients retry that
/// answer after a fixed backoff (librdkafka: 20 ms for AddPartitionsToTxn), which would otherwise
/// be added to every back-to-back transaction that finds its predecessor's markers in flight.
pub const BUSY_WAIT: Duration = Duration::from_millis(1000);

/// Backoff between attempts to write a decided transaction's markers: doubled from the first
/// to the last.
const MARKER_RETRY_FIRST: Duration = Duration::from_millis(10);
const MARKER_RETRY_MAX: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct ShardTxns {
    pub store: RefCell<TxnStore>,
    /// Fired whenever an id's transition ends (requests waiting on a busy id re-plan).
    pub changed: crate::event::Event,
    partitions: super::coordinator_load::CoordinatorPartitions,
    /// Ids whose markers are being written now (one writer per id).
    completing: RefCell<std::collections::BTreeSet<String>>,
}

impl ShardTxns {
    /// Whether this shard coordinates `partition` of the transaction topic and has loaded it.
    pub fn check_partition(&self, partition: i32) -> Result<(), ErrorCode> {
        self.partitions.check(partition)
    }

    /// Ids with a transaction in progress (Ongoing, or decided and being completed).
    pub fn open_count(&self) -> usize {
        self.store
            .borrow()
            .txns
            .values()
            .filter(|e| {
                matches!(
                    e.meta.state,
                    crate::coordinator::transaction::TxnState::Ongoing
                        | crate::coordinator::transaction::TxnState::PrepareCommit
                        | crate::coordinator::transaction::TxnState::PrepareAbort
                )
            })
            .count()
    }
}

/// The transaction-topic partition of `transactional_id` under `image`.
pub fn coordinator_partition(image: &MetadataImage, transactional_id: &str) -> Option<i32> {
    image
        .topic(TRANSACTION_TOPIC)
        .map(|topic| partition_for(transactional_id, topic.partitions.len() as i32))
}

/// Runs `work` on the shard coordinating `transactional_id`, once its partition is loaded.
pub async fn to_coordinator<R, F, Fut>(
    shard: &Rc<Shard>,
    transactional_id: &str,
    work: F,
) -> Result<R, ErrorCode>
where
    F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<R, ErrorCode>> + 'static,
    R: Send + 'static,
{
    let Some(partition) = coordinator_partition(&shard.metadata(), transactional_id) else {
        return Err(ErrorCode::NotCoordinator);
    };
    let owner = shard.owner_of(TRANSACTION_TOPIC, partition);
    shard
        .dispatch(owner, move |owner_shard: Rc<Shard>| async move {
            owner_shard.txns.check_partition(partition)?;
            work(owner_shard).await
        })
        .await
        .await
        .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable))
}

/// Appends `meta`'s record (or a tombstone for `id`) to its partition and waits until durable.
async fn write_record(
    shard: &Rc<Shard>,
    id: &str,
    record: (bytes::Bytes, Option<bytes::Bytes>),
) -> Result<(), ErrorCode> {
    let Some(index) = coordinator_partition(&shard.metadata(), id) else {
        return Err(ErrorCode::NotCoordinator);
    };
    super::group_coordinator::append_to_partition(
        shard,
        TRANSACTION_TOPIC,
        index,
        vec![record],
        Duration::from_millis(shard.broker.offsets_commit_timeout_ms()),
    )
    .await
    .map_err(super::group_coordinator::store_error)
}

/// Persists a planned transition: begun in the store, written, then made current (or dropped
/// when the write fails).
pub async fn transition(shard: &Rc<Shard>, target: TxnMetadata) -> Result<(), ErrorCode> {
    shard.txns.store.borrow_mut().begin(&target);
    let written = write_record(shard, &target.transactional_id, records::encode(&target)).await;
    if let Err(error) = written {
        tracing::warn!(
            "transactional id '{}': writing its {} record failed: {}",
            target.transactional_id,
            target.state.name(),
            error.name()
        );
    }
    shard
        .txns
        .store
        .borrow_mut()
        .complete(target, written.is_ok());
    shard.txns.changed.notify();
    written
}

/// Plans with `plan` against the store; while the id is busy (CONCURRENT_TRANSACTIONS: a
/// transition pending, or the previous transaction's markers in flight), waits for transitions
/// to end and plans again, for at most [`BUSY_WAIT`].
async fn plan_when_idle<T>(
    shard: &Rc<Shard>,
    mut plan: impl FnMut(&TxnStore) -> Result<T, ErrorCode>,
) -> Result<T, ErrorCode> {
    let deadline = std::time::Instant::now() + BUSY_WAIT;
    loop {
        let changed = shard.txns.changed.listen();
        // Planned before matching: the store must not stay borrowed across the wait below.
        let planned = plan(&shard.txns.store.borrow());
        match planned {
            Err(ErrorCode::ConcurrentTransactions) => {
                let now = std::time::Instant::now();
                if now >= deadline || shard.stopping.get() {
                    return Err(ErrorCode::ConcurrentTransactions);
                }
                crate::event::listen_with_timeout(changed, deadline - now).await;
            }
            other => return other,
        }
    }
}

/// The coordinator epoch markers carry: the leader epoch of the id's transaction-log partition.
fn coordinator_epoch(shard: &Rc<Shard>, id: &str) -> i32 {
    coordinator_partition(&shard.metadata(), id)
        .and_then(|index| shard.partition(TRANSACTION_TOPIC, index))
        .map(|p| p.leader_epoch())
        .unwrap_or(0)
}

/// Writes the markers of `id`'s decided transaction and completes it, in the background.
pub fn spawn_completion(shard: &Rc<Shard>, id: String) {
    if !shard.txns.completing.borrow_mut().insert(id.clone()) {
        return;
    }
    let shard = shard.clone();
    glommio::spawn_local(async move {
        complete(&shard, &id).await;
        shard.txns.completing.borrow_mut().remove(&id);
    })
    .detach();
}

async fn complete(shard: &Rc<Shard>, id: &str) {
    let mut backoff = MARKER_RETRY_FIRST;
    loop {
        if shard.stopping.get() {
            return;
        }
        let Some(meta) = shard.txns.store.borrow().get(id).cloned() else {
            return;
        };
        if !meta.state.is_prepared() {
            return;
        }
        let commit = meta.state == crate::coordinator::transaction::TxnState::PrepareCommit;
        let epoch = coordinator_epoch(shard, id);
        let writes = meta.partitions.iter().flat_map(|(topic, ids)| {
            ids.iter().map(move |&partition| {
                let shard = shard.clone();
                let topic = topic.clone();
                async move {
                    let outcome = super::txn_markers::write_marker(
                        &shard,
                        &topic,
                        partition,
                        meta.producer_id,
                        meta.producer_epoch,
                        epoch,
                        commit,
                    )
                    .await;
                    (topic, partition, outcome)
                }
            })
        });
        let outcomes = futures::future::join_all(writes).await;
        let mut failed = false;
        for (topic, partition, outcome) in outcomes {
            match outcome {
                Ok(_) => crate::shard::metrics::ShardMetrics::add(&shard.metrics.txn_markers, 1),
                // A deleted partition needs no marker (Kafka drops it from the transaction).
                Err(ErrorCode::UnknownTopicOrPartition) => {}
                Err(error) => {
                    failed = true;
                    tracing::warn!(
                        "transactional id '{id}': {} marker for {topic}-{partition} failed: {}; retrying",
                        if commit { "COMMIT" } else { "ABORT" },
                        error.name()
                    );
                }
            }
        }
        if !failed {
            let target = shard
                .txns
                .store
                .borrow()
                .plan_complete(id, crate::event::now_ms());
            let Some(target) = target else { return };
            if transition(shard, target).await.is_ok() {
                let counter = if commit {
                    &shard.metrics.txn_committed
                } else {
                    &shard.metrics.txn_aborted
                };
                crate::shard::metrics::ShardMetrics::add(counter, 1);
                return;
            }
        }
        glommio::timer::sleep(backoff).await;
        backoff = (backoff * 2).min(MARKER_RETRY_MAX);
    }
}

/// Starts loading the transaction-log partitions this shard newly owns.
pub fn on_metadata(shard: &Rc<Shard>, image: &MetadataImage) {
    for index in shard
        .txns
        .partitions
        .claim_new(shard, image, TRANSACTION_TOPIC)
    {
        let shard = shard.clone();
        glommio::spawn_local(async move { load_partition(shard, index).await }).detach();
    }
}

async fn load_partition(shard: Rc<Shard>, index: i32) {
    let started = std::time::Instant::now();
    let Some(partition) = shard.partition(TRANSACTION_TOPIC, index) else {
        shard.txns.partitions.forget(index);
        return;
    };
    let mut count = 0usize;
    let replayed = super::group_coordinator::replay(&partition, |header, batch| {
        if header.is_control() {
            return;
        }
        let Ok(records) = crate::records::record::records(batch, 64 << 20) else {
            return;
        };
        for record in records.flatten() {
            let Some(key) = record.key.as_ref() else {
                continue;
            };
            if let Some((id, meta)) = records::decode(key, record.value.as_ref()) {
                shard.txns.store.borrow_mut().apply(id, meta);
                count += 1;
            }
        }
    })
    .await;
    if let Err(error) = replayed {
        tracing::error!(
            "loading {TRANSACTION_TOPIC}-{index}: {}; its transactional ids stay unavailable",
            error
                .message
                .unwrap_or_else(|| error.code.name().to_string())
        );
        return;
    }
    shard.txns.partitions.loaded(index);
    let image = shard.metadata();
    let resumed: Vec<String> = shard
        .txns
        .store
        .borrow()
        .prepared()
        .into_iter()
        .filter(|id| coordinator_partition(&image, id) == Some(index))
        .collect();
    for id in &resumed {
        spawn_completion(&shard, id.clone());
    }
    if count > 0 {
        tracing::info!(
            "loaded {count} record(s) of {TRANSACTION_TOPIC}-{index} in {:.2}s ({} decided transaction(s) resumed)",
            started.elapsed().as_secs_f64(),
            resumed.len()
        );
    }
}

/// Aborts timed-out transactions and expires idle ids; runs until the shard stops.
pub async fn run(shard: Rc<Shard>) {
    let interval = Duration::from_millis(
        shard
            .broker
            .transaction_abort_timed_out_transaction_cleanup_interval_ms(),
    );
    let expiry_interval = shard
        .broker
        .transaction_remove_expired_transaction_cleanup_interval_ms();
    let mut next_expiry = crate::event::now_ms() + expiry_interval;
    loop {
        let stopped = shard.stop_event.listen();
        if crate::event::listen_with_timeout(stopped, interval).await || shard.stopping.get() {
            return;
        }
        let now = crate::event::now_ms();
        let timed_out = shard.txns.store.borrow().timed_out(now);
        for id in timed_out {
            let target = shard.txns.store.borrow().plan_timeout_abort(&id, now);
            let Some(target) = target else { continue };
            tracing::info!(
                "transactional id '{id}': transaction open longer than {} ms, aborting it (producer epoch bumped to {})",
                target.timeout_ms,
                target.producer_epoch
            );
            let shard2 = shard.clone();
            glommio::spawn_local(async move {
                if transition(&shard2, target).await.is_ok() {
                    crate::shard::metrics::ShardMetrics::add(&shard2.metrics.txn_timed_out, 1);
                    spawn_completion(&shard2, id);
                }
            })
            .detach();
        }
        // Decided transactions whose markers failed to be written and are not being retried.
        for id in shard.txns.store.borrow().prepared() {
            spawn_completion(&shard, id);
        }
        if now >= next_expiry {
            next_expiry = now + expiry_interval;
            let expiration = shard.broker.transactional_id_expiration_ms();
            let expired = shard.txns.store.borrow().expired(now, expiration);
            for id in expired {
                let shard = shard.clone();
                glommio::spawn_local(async move {
                    expire(&shard, &id, expiration).await;
                })
                .detach();
            }
        }
    }
}

async fn expire(shard: &Rc<Shard>, id: &str, expiration_ms: i64) {
    // Still expired (no request came since the scan) and not changing?
    let now = crate::event::now_ms();
    if !shard
        .txns
        .store
        .borrow()
        .expired(now, expiration_ms)
        .iter()
        .any(|e| e == id)
    {
        return;
    }
    let Some(meta) = shard.txns.store.borrow().get(id).cloned() else {
        return;
    };
    // A tombstone; the id is gone once it is durable (the metadata stays until then so a request
    // meanwhile sees a consistent id).
    shard.txns.store.borrow_mut().begin(&meta);
    let written = write_record(shard, id, (records::encode_key(id), None)).await;
    let mut store = shard.txns.store.borrow_mut();
    store.complete(meta, true);
    shard.txns.changed.notify();
    if written.is_ok() {
        store.apply(id.to_string(), None);
        tracing::info!("transactional id '{id}' expired after {expiration_ms} ms idle");
    }
}

/// InitProducerId for `transactional_id`: its producer id and (bumped) epoch. An open
/// transaction is aborted first (CONCURRENT_TRANSACTIONS: the client retries).
pub async fn init_producer_id(
    shard: &Rc<Shard>,
    transactional_id: String,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
) -> Result<(i64, i16), ErrorCode> {
    let id = transactional_id.clone();
    to_coordinator(shard, &id, move |shard| async move {
        let needs = shard
            .txns
            .store
            .borrow()
            .needs_producer_id(&transactional_id, expected);
        let new_producer_id = if needs {
            let allocated = shard
                .with_controller(|_, controller| async move {
                    controller.allocate_producer_id().await.map_err(|e| e.code)
                })
                .await
                .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable))?;
            Some(allocated)
        } else {
            None
        };
        // An open transaction is aborted first; the request then waits for that abort to
        // complete (as a retry would) and answers with the epoch bumped once more.
        let mut aborted = false;
        loop {
            let plan = plan_when_idle(&shard, |store| {
                store.plan_init(
                    &transactional_id,
                    timeout_ms,
                    expected,
                    new_producer_id,
                    crate::event::now_ms(),
                )
            })
            .await?;
            match plan {
                InitPlan::Ready(target) => {
                    let answer = (target.producer_id, target.producer_epoch);
                    transition(&shard, target).await?;
                    return Ok(answer);
                }
                InitPlan::AbortOngoing(_) if aborted => {
                    return Err(ErrorCode::ConcurrentTransactions)
                }
                InitPlan::AbortOngoing(target) => {
                    tracing::info!(
                        "transactional id '{transactional_id}': a new producer fences epoch {}, aborting its open transaction",
                        target.producer_epoch - 1
                    );
                    transition(&shard, target).await?;
                    spawn_completion(&shard, transactional_id.clone());
                    aborted = true;
                }
            }
        }
    })
    .await
}

/// AddPartitionsToTxn / AddOffsetsToTxn: the partitions join the producer's transaction.
pub async fn add_partitions(
    shard: &Rc<Shard>,
    transactional_id: String,
    producer_id: i64,
    epoch: i16,
    partitions: TxnPartitions,
) -> Result<(), ErrorCode> {
    let id = transactional_id.clone();
    to_coordinator(shard, &id, move |shard| async move {
        let plan = plan_when_idle(&shard, |store| {
            store.plan_add_partitions(
                &transactional_id,
                producer_id,
                epoch,
                &partitions,
                crate::event::now_ms(),
            )
        })
        .await?;
        match plan {
            None => Ok(()),
            Some(target) => transition(&shard, target).await,
        }
    })
    .await
}

/// Whether the producer's ongoing transaction holds every partition (AddPartitionsToTxn v4's
/// verify_only).
pub async fn verify_partitions(
    shard: &Rc<Shard>,
    transactional_id: String,
    producer_id: i64,
    epoch: i16,
    partitions: TxnPartitions,
) -> Result<TxnPartitions, ErrorCode> {
    let id = transactional_id.clone();
    to_coordinator(shard, &id, move |shard| async move {
        let store = shard.txns.store.borrow();
        let meta = store
            .get(&transactional_id)
            .ok_or(ErrorCode::InvalidProducerIdMapping)?;
        if meta.producer_id != producer_id {
            return Err(ErrorCode::InvalidProducerIdMapping);
        }
        if meta.producer_epoch != epoch {
            return Err(ErrorCode::ProducerFenced);
        }
        let mut missing = TxnPartitions::new();
        for (topic, ids) in partitions {
            for p in ids {
                let present = meta.state == crate::coordinator::transaction::TxnState::Ongoing
                    && meta.partitions.get(&topic).is_some_and(|s| s.contains(&p));
                if !present {
                    missing.entry(topic.clone()).or_default().insert(p);
                }
            }
        }
        Ok(missing)
    })
    .await
}

/// EndTxn: the decision is durable when this returns; the markers follow in the background.
pub async fn end_txn(
    shard: &Rc<Shard>,
    transactional_id: String,
    producer_id: i64,
    epoch: i16,
    commit: bool,
) -> Result<(), ErrorCode> {
    let id = transactional_id.clone();
    to_coordinator(shard, &id, move |shard| async move {
        let plan = plan_when_idle(&shard, |store| {
            store.plan_end(
                &transactional_id,
                producer_id,
                epoch,
                commit,
                crate::event::now_ms(),
            )
        })
        .await?;
        match plan {
            EndPlan::AlreadyDone => Ok(()),
            EndPlan::Prepare(target) => {
                transition(&shard, target).await?;
                spawn_completion(&shard, transactional_id);
                Ok(())
            }
        }
    })
    .await
}

/// Kafka answers PRODUCER_FENCED as INVALID_PRODUCER_EPOCH to clients of the versions before it
/// existed.
pub fn fenced_for_version(error: ErrorCode, version: i16, first_fenced_version: i16) -> ErrorCode {
    if error == ErrorCode::ProducerFenced && version < first_fenced_version {
        ErrorCode::InvalidProducerEpoch
    } else {
        error
    }
}
