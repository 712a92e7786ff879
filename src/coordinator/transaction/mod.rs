//! The transaction coordinator's state machine (KIP-98), pure: no I/O, no clocks. The shard glue
//! (`shard::txn_coordinator`) persists the transitions this module plans and sends the markers.
//!
//! A transactional id maps to one [`TxnMetadata`]: its producer id and epoch, its timeout, its
//! state and the partitions of the transaction in progress. Every change is a *transition*: the
//! glue marks the entry pending, appends the target metadata to the id's `__transaction_state`
//! partition, and only once that record is durable makes it current ([`TxnStore::complete`]).
//! While a transition is pending every other request for the id gets CONCURRENT_TRANSACTIONS, as
//! in Kafka, so records of one id are written one at a time and in order.
//!
//! States and transitions are Kafka's (`TransactionState`):
//! - Empty → Ongoing (AddPartitionsToTxn / AddOffsetsToTxn),
//! - Ongoing → PrepareCommit | PrepareAbort (EndTxn, or an abort on timeout / fencing with the
//!   epoch bumped),
//! - Prepare* → Complete* once every partition has its marker,
//! - Empty | Complete* → Empty with the epoch bumped (InitProducerId).
//!
//! Replay is [`TxnStore::apply`]: the last record of an id is its state; a tombstone removes it.

pub mod records;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use crate::protocol::error::ErrorCode;

/// The internal topic of the transaction coordinator.
pub const TRANSACTION_TOPIC: &str = "__transaction_state";

/// Kafka's `transaction.max.timeout.ms` default.
pub const DEFAULT_MAX_TIMEOUT_MS: i32 = 900_000;

/// No producer epoch (Kafka's `RecordBatch.NO_PRODUCER_EPOCH`).
pub const NO_EPOCH: i16 = -1;

/// Kafka's states; the ids are the `TransactionStatus` byte of the log value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_id(id: i8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.id() == id)
    }

    /// The name DescribeTransactions and ListTransactions use (Kafka's `TransactionState.name`).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// Markers are being written: the transaction is decided but not finished.
    pub fn is_prepared(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// Partitions of a transaction, by topic.
pub type TxnPartitions = BTreeMap<String, BTreeSet<i32>>;

/// What the coordinator knows of one transactional id.
#[derive(Clone, Debug, PartialEq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The producer id before the last rotation (-1: none).
    pub previous_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump that a producer asked for with its current epoch (KIP-360
    /// retries); not persisted, as in Kafka.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: TxnPartitions,
    /// When the current transaction started (-1: none).
    pub start_ms: i64,
    pub last_update_ms: i64,
}

impl TxnMetadata {
    pub fn partition_count(&self) -> usize {
        self.partitions.values().map(BTreeSet::len).sum()
    }

    fn contains_all(&self, partitions: &TxnPartitions) -> bool {
        partitions.iter().all(|(topic, ids)| {
            self.partitions
                .get(topic)
                .is_some_and(|have| ids.is_subset(have))
        })
    }
}

/// An id's metadata and the transition being persisted, if any.
#[derive(Clone, Debug, PartialEq)]
pub struct TxnEntry {
    pub meta: TxnMetadata,
    pub pending: Option<TxnState>,
}

/// Kafka's `isEpochExhausted`: the epoch cannot be bumped twice more.
pub fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// What InitProducerId should do.
#[derive(Clone, Debug, PartialEq)]
pub enum InitPlan {
    /// Persist `target` (state Empty), then answer with its producer id and epoch.
    Ready(TxnMetadata),
    /// An open transaction is in the way: persist `target` (PrepareAbort with the epoch bumped,
    /// fencing its producer), write its abort markers, and answer CONCURRENT_TRANSACTIONS so the
    /// client retries once the abort is complete.
    AbortOngoing(TxnMetadata),
}

/// What EndTxn should do.
#[derive(Clone, Debug, PartialEq)]
pub enum EndPlan {
    /// Persist `target` (PrepareCommit/PrepareAbort), answer, then write the markers.
    Prepare(TxnMetadata),
    /// The same decision was already made (a retry): answer success.
    AlreadyDone,
}

/// The coordinator's table of transactional ids (those of the partitions one shard owns).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TxnStore {
    pub txns: BTreeMap<String, TxnEntry>,
}

fn fenced_or_mapping(meta: &TxnMetadata, producer_id: i64, epoch: i16) -> Result<(), ErrorCode> {
    if meta.producer_id != producer_id {
        return Err(ErrorCode::InvalidProducerIdMapping);
    }
    if meta.producer_epoch != epoch {
        return Err(ErrorCode::ProducerFenced);
    }
    Ok(())
}

impl TxnStore {
    pub fn get(&self, transactional_id: &str) -> Option<&TxnMetadata> {
        self.txns.get(transactional_id).map(|e| &e.meta)
    }

    /// Whether InitProducerId needs a fresh producer id from the controller before planning:
    /// a new transactional id, or an exhausted epoch that will be rotated.
    pub fn needs_producer_id(&self, transactional_id: &str, expected: Option<(i64, i16)>) -> bool {
        match self.txns.get(transactional_id) {
            None => true,
            Some(entry) => {
                let meta = &entry.meta;
                matches!(
                    meta.state,
                    TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                ) && epoch_exhausted(meta.producer_epoch)
                    && expected.is_none_or(|(_, e)| e == meta.producer_epoch)
            }
        }
    }

    /// Kafka's InitProducerId rules for a transactional id. `new_producer_id` is required when
    /// [`TxnStore::needs_producer_id`] said so.
    pub fn plan_init(
        &self,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        new_producer_id: Option<i64>,
        now_ms: i64,
    ) -> Result<InitPlan, ErrorCode> {
        let Some(entry) = self.txns.get(transactional_id) else {
            let producer_id = new_producer_id.ok_or(ErrorCode::CoordinatorNotAvailable)?;
            return Ok(InitPlan::Ready(TxnMetadata {
                transactional_id: transactional_id.to_string(),
                producer_id,
                previous_producer_id: -1,
                producer_epoch: 0,
                last_producer_epoch: NO_EPOCH,
                timeout_ms,
                state: TxnState::Empty,
                partitions: TxnPartitions::new(),
                start_ms: -1,
                last_update_ms: now_ms,
            }));
        };
        if entry.pending.is_some() {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        let meta = &entry.meta;
        if let Some((producer_id, epoch)) = expected {
            // The producer asks to continue with the id it has (KIP-360): allowed for the
            // current producer id, or the previous one when its epoch ran out.
            let valid = producer_id == meta.producer_id
                || (producer_id == meta.previous_producer_id && epoch_exhausted(epoch));
            if !valid {
                return Err(ErrorCode::ProducerFenced);
            }
        }
        match meta.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(ErrorCode::ConcurrentTransactions)
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let mut target = meta.clone();
                target.timeout_ms = timeout_ms;
                target.state = TxnState::Empty;
                target.partitions.clear();
                target.start_ms = -1;
                target.last_update_ms = now_ms;
                if epoch_exhausted(meta.producer_epoch)
                    && expected.is_none_or(|(_, e)| e == meta.producer_epoch)
                {
                    target.previous_producer_id = meta.producer_id;
                    target.producer_id =
                        new_producer_id.ok_or(ErrorCode::CoordinatorNotAvailable)?;
                    target.producer_epoch = 0;
                    target.last_producer_epoch = NO_EPOCH;
                    return Ok(InitPlan::Ready(target));
                }
                match expected {
                    None => {
                        target.producer_epoch = meta.producer_epoch + 1;
                        target.last_producer_epoch = NO_EPOCH;
                    }
                    Some((_, epoch)) if epoch == meta.producer_epoch => {
                        target.producer_epoch = meta.producer_epoch + 1;
                        target.last_producer_epoch = meta.producer_epoch;
                    }
                    // A retry of a bump whose answer was lost: the same epoch again.
                    Some((_, epoch)) if epoch == meta.last_producer_epoch => {}
                    Some(_) => return Err(ErrorCode::ProducerFenced),
                }
                Ok(InitPlan::Ready(target))
            }
            TxnState::Ongoing => Ok(InitPlan::AbortOngoing(fence_and_abort(meta, now_ms))),
            TxnState::Dead | TxnState::PrepareEpochFence => Err(ErrorCode::ConcurrentTransactions),
        }
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: `None` if every partition is already in the
    /// ongoing transaction (nothing to write), else the Ongoing target to persist.
    pub fn plan_add_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &TxnPartitions,
        now_ms: i64,
    ) -> Result<Option<TxnMetadata>, ErrorCode> {
        let entry = self
            .txns
            .get(transactional_id)
            .ok_or(ErrorCode::InvalidProducerIdMapping)?;
        let meta = &entry.meta;
        fenced_or_mapping(meta, producer_id, epoch)?;
        if entry.pending.is_some() || meta.state.is_prepared() {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        if meta.state == TxnState::Ongoing && meta.contains_all(partitions) {
            return Ok(None);
        }
        if matches!(meta.state, TxnState::Dead | TxnState::PrepareEpochFence) {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        let mut target = meta.clone();
        if meta.state != TxnState::Ongoing {
            target.partitions.clear();
            target.start_ms = now_ms;
        }
        target.state = TxnState::Ongoing;
        for (topic, ids) in partitions {
            target
                .partitions
                .entry(topic.clone())
                .or_default()
                .extend(ids.iter().copied());
        }
        target.last_update_ms = now_ms;
        Ok(Some(target))
    }

    /// EndTxn from the client.
    pub fn plan_end(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<EndPlan, ErrorCode> {
        let entry = self
            .txns
            .get(transactional_id)
            .ok_or(ErrorCode::InvalidProducerIdMapping)?;
        let meta = &entry.meta;
        fenced_or_mapping(meta, producer_id, epoch)?;
        if entry.pending.is_some() {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        match (meta.state, commit) {
            (TxnState::Ongoing, _) => {
                let mut target = meta.clone();
                target.state = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                target.last_update_ms = now_ms;
                Ok(EndPlan::Prepare(target))
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                Ok(EndPlan::AlreadyDone)
            }
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(ErrorCode::ConcurrentTransactions)
            }
            _ => Err(ErrorCode::InvalidTxnState),
        }
    }

    /// Ongoing transactions past their timeout, not already changing.
    pub fn timed_out(&self, now_ms: i64) -> Vec<String> {
        self.txns
            .iter()
            .filter(|(_, e)| {
                e.pending.is_none()
                    && e.meta.state == TxnState::Ongoing
                    && e.meta.start_ms.saturating_add(e.meta.timeout_ms as i64) < now_ms
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The abort of a timed-out transaction: its producer is fenced (epoch bumped).
    pub fn plan_timeout_abort(&self, transactional_id: &str, now_ms: i64) -> Option<TxnMetadata> {
        let entry = self.txns.get(transactional_id)?;
        (entry.pending.is_none() && entry.meta.state == TxnState::Ongoing)
            .then(|| fence_and_abort(&entry.meta, now_ms))
    }

    /// The Complete* target once every marker of a prepared transaction is written.
    pub fn plan_complete(&self, transactional_id: &str, now_ms: i64) -> Option<TxnMetadata> {
        let entry = self.txns.get(transactional_id)?;
        if entry.pending.is_some() {
            return None;
        }
        let state = match entry.meta.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            _ => return None,
        };
        let mut target = entry.meta.clone();
        target.state = state;
        target.partitions.clear();
        target.last_update_ms = now_ms;
        Some(target)
    }

    /// Marks `transactional_id` as changing to `target` (its record is being written). A new id
    /// gets a placeholder entry so concurrent requests see the transition.
    pub fn begin(&mut self, target: &TxnMetadata) {
        match self.txns.get_mut(&target.transactional_id) {
            Some(entry) => entry.pending = Some(target.state),
            None => {
                self.txns.insert(
                    target.transactional_id.clone(),
                    TxnEntry {
                        meta: TxnMetadata {
                            producer_epoch: NO_EPOCH,
                            ..target.clone()
                        },
                        pending: Some(target.state),
                    },
                );
            }
        }
    }

    /// Ends a transition: on success `target` becomes current; on failure the old metadata stays
    /// (a placeholder of a new id is removed).
    pub fn complete(&mut self, target: TxnMetadata, persisted: bool) {
        let id = target.transactional_id.clone();
        let Some(entry) = self.txns.get_mut(&id) else {
            if persisted {
                self.txns.insert(
                    id,
                    TxnEntry {
                        meta: target,
                        pending: None,
                    },
                );
            }
            return;
        };
        entry.pending = None;
        if persisted {
            entry.meta = target;
        } else if entry.meta.producer_epoch == NO_EPOCH {
            self.txns.remove(&id);
        }
    }

    /// Replays one record of the log (`None`: a tombstone).
    pub fn apply(&mut self, transactional_id: String, value: Option<TxnMetadata>) {
        match value {
            Some(meta) => {
                self.txns.insert(
                    transactional_id,
                    TxnEntry {
                        meta,
                        pending: None,
                    },
                );
            }
            None => {
                self.txns.remove(&transactional_id);
            }
        }
    }

    /// Ids whose markers still have to be written (after a replay, or a failed attempt).
    pub fn prepared(&self) -> Vec<String> {
        self.txns
            .iter()
            .filter(|(_, e)| e.pending.is_none() && e.meta.state.is_prepared())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Idle ids past `transactional.id.expiration.ms` (no transaction in progress).
    pub fn expired(&self, now_ms: i64, expiration_ms: i64) -> Vec<String> {
        self.txns
            .iter()
            .filter(|(_, e)| {
                e.pending.is_none()
                    && matches!(
                        e.meta.state,
                        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                    )
                    && now_ms.saturating_sub(e.meta.last_update_ms) > expiration_ms
            })
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// PrepareAbort with the producer fenced: Kafka's `prepareFenceProducerEpoch` followed by the
/// abort (the epoch stays when it cannot be bumped).
fn fence_and_abort(meta: &TxnMetadata, now_ms: i64) -> TxnMetadata {
    let mut target = meta.clone();
    if !epoch_exhausted(meta.producer_epoch) {
        target.producer_epoch = meta.producer_epoch + 1;
    }
    target.last_producer_epoch = NO_EPOCH;
    target.state = TxnState::PrepareAbort;
    target.last_update_ms = now_ms;
    target
}

/// The `__transaction_state` partition of `transactional_id`: `abs(hashCode) % partitions`.
pub fn partition_for(transactional_id: &str, partitions: i32) -> i32 {
    crate::coordinator::group::partition_for(transactional_id, partitions)
}
