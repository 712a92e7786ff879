//! Idempotent-producer state of one partition: per producer id, its epoch and the last five
//! batches' sequence ranges, so a retried batch is recognised as a duplicate and a gap is refused.
//!
//! Semantics follow Kafka's ProducerStateManager: a batch whose (epoch, first sequence, last
//! sequence) matches one of the last five is a duplicate and is answered with its original
//! offsets; an older epoch is INVALID_PRODUCER_EPOCH; a new epoch must start at sequence 0 (unless
//! the producer had no state); otherwise the first sequence must follow the last one (wrapping at
//! i32::MAX). A producer the partition knows nothing about may start at any sequence, as in Kafka
//! since KIP-360.
//!
//! Transactions (KIP-98): the first transactional batch of a producer with no open transaction
//! opens one at its base offset; a marker (COMMIT/ABORT control batch) closes it. The table keeps
//! the open transactions ordered by first offset, and the completed ones whose marker is not yet
//! below the high watermark, which together bound the last stable offset (LSO).
//!
//! Snapshots use Kafka's `.snapshot` format (version 1, CRC-32C), written at segment roll and
//! clean shutdown; after a crash the partition loads the newest snapshot and replays the batch
//! headers recovery saw after it.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::records::batch::BatchHeader;
use crate::records::control::{ControlType, TxnMarker};

pub const TRACKED_BATCHES: usize = 5;
const SNAPSHOT_VERSION: i16 = 1;
const SNAPSHOT_ENTRY_LEN: usize = 8 + 2 + 4 + 8 + 4 + 8 + 4 + 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub timestamp: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ProducerEntry {
    pub producer_id: i64,
    pub epoch: i16,
    pub batches: VecDeque<BatchMeta>,
    pub last_timestamp: i64,
    pub coordinator_epoch: i32,
    pub current_txn_first_offset: Option<i64>,
}

impl ProducerEntry {
    fn last_sequence(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_sequence)
    }
}

/// What to do with an incoming producer batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// New data: append it.
    Append,
    /// Already stored: answer with the original offsets, store nothing.
    Duplicate(BatchMeta),
    /// Refuse: the producer is fenced by a newer epoch.
    InvalidEpoch { current: i16 },
    /// Refuse: the sequence does not follow the last one.
    OutOfOrder { expected: i32, received: i32 },
}

/// The last sequence number of a batch, wrapping as Kafka's `DefaultRecordBatch.incrementSequence`.
pub fn last_sequence(header: &BatchHeader) -> i32 {
    increment_sequence(header.base_sequence, header.last_offset_delta)
}

fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

fn decrement_sequence(sequence: i32, decrement: i32) -> i32 {
    if sequence < decrement {
        i32::MAX - (decrement - sequence) + 1
    } else {
        sequence - decrement
    }
}

/// A transaction closed by a marker (Kafka's `CompletedTxn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The marker's offset.
    pub last_offset: i64,
    /// The LSO once this transaction completed: the first offset of the oldest transaction still
    /// open, else one past the marker (what Kafka stores in the aborted-transaction index).
    pub last_stable_offset: i64,
    pub aborted: bool,
}

/// Why a marker is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerRefusal {
    /// The marker's producer epoch is older than the producer's current epoch.
    InvalidEpoch { current: i16 },
    /// The marker comes from an older transaction coordinator than the last one seen.
    CoordinatorFenced { current: i32 },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProducerStateTable {
    entries: HashMap<i64, ProducerEntry>,
    /// Open transactions: first offset → producer id.
    ongoing: BTreeMap<i64, i64>,
    /// Completed transactions whose marker is not yet below the high watermark: first offset →
    /// marker offset. Consumers reading committed data must not pass them yet.
    unreplicated: BTreeMap<i64, i64>,
}

impl ProducerStateTable {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.entries.get(&producer_id)
    }

    pub fn entries(&self) -> impl Iterator<Item = &ProducerEntry> {
        self.entries.values()
    }

    /// Checks an idempotent batch (producer_id ≥ 0) against the producer's state.
    pub fn check(&self, header: &BatchHeader) -> SequenceCheck {
        let Some(entry) = self.entries.get(&header.producer_id) else {
            return SequenceCheck::Append;
        };
        let first = header.base_sequence;
        let last = last_sequence(header);
        if header.producer_epoch == entry.epoch {
            if let Some(meta) = entry
                .batches
                .iter()
                .find(|b| b.first_sequence == first && b.last_sequence == last)
            {
                return SequenceCheck::Duplicate(*meta);
            }
        }
        if header.producer_epoch < entry.epoch {
            return SequenceCheck::InvalidEpoch {
                current: entry.epoch,
            };
        }
        if header.producer_epoch > entry.epoch {
            return if first == 0 || entry.batches.is_empty() {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder {
                    expected: 0,
                    received: first,
                }
            };
        }
        match entry.last_sequence() {
            None => SequenceCheck::Append,
            Some(previous) => {
                let in_sequence =
                    first == previous.wrapping_add(1) || (first == 0 && previous == i32::MAX);
                if in_sequence {
                    SequenceCheck::Append
                } else {
                    SequenceCheck::OutOfOrder {
                        expected: increment_sequence(previous, 1),
                        received: first,
                    }
                }
            }
        }
    }

    /// Kafka's rule for a producer with an open transaction: every batch it sends until the
    /// marker must be transactional. `Err(first offset of the open transaction)` otherwise.
    pub fn check_transactional(&self, header: &BatchHeader) -> Result<(), i64> {
        if header.is_transactional() {
            return Ok(());
        }
        match self
            .entries
            .get(&header.producer_id)
            .and_then(|e| e.current_txn_first_offset)
        {
            Some(first) => Err(first),
            None => Ok(()),
        }
    }

    /// Checks a marker against the producer's state (Kafka's `appendEndTxnMarker` checks).
    pub fn check_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<(), MarkerRefusal> {
        let Some(entry) = self.entries.get(&producer_id) else {
            return Ok(());
        };
        if producer_epoch < entry.epoch {
            return Err(MarkerRefusal::InvalidEpoch {
                current: entry.epoch,
            });
        }
        if coordinator_epoch < entry.coordinator_epoch {
            return Err(MarkerRefusal::CoordinatorFenced {
                current: entry.coordinator_epoch,
            });
        }
        Ok(())
    }

    /// Applies a stored marker at `offset`: the producer's open transaction (if any) completes.
    /// A marker for a producer without one changes only its epoch and coordinator epoch (how an
    /// epoch bump fences) and completes nothing, as in Kafka.
    pub fn complete(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        marker: TxnMarker,
        offset: i64,
        timestamp: i64,
    ) -> Option<CompletedTxn> {
        let entry = self
            .entries
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry {
                producer_id,
                epoch: producer_epoch,
                batches: VecDeque::new(),
                last_timestamp: -1,
                coordinator_epoch: -1,
                current_txn_first_offset: None,
            });
        if producer_epoch != entry.epoch {
            entry.epoch = producer_epoch;
            entry.batches.clear();
        }
        entry.coordinator_epoch = marker.coordinator_epoch;
        entry.last_timestamp = timestamp;
        let first_offset = entry.current_txn_first_offset.take()?;
        self.ongoing.remove(&first_offset);
        self.unreplicated.insert(first_offset, offset);
        let last_stable_offset = self
            .ongoing
            .keys()
            .next()
            .copied()
            .unwrap_or(offset + 1)
            .min(offset + 1);
        Some(CompletedTxn {
            producer_id,
            first_offset,
            last_offset: offset,
            last_stable_offset,
            aborted: marker.kind == ControlType::Abort,
        })
    }

    /// Replays one stored batch (recovery): data batches as [`Self::record`], markers as
    /// [`Self::complete`]. Returns the transaction a marker completed.
    pub fn replay(
        &mut self,
        header: &BatchHeader,
        marker: Option<TxnMarker>,
    ) -> Option<CompletedTxn> {
        if header.producer_id < 0 {
            return None;
        }
        if header.is_control() {
            let marker = marker?;
            return self.complete(
                header.producer_id,
                header.producer_epoch,
                marker,
                header.base_offset,
                header.max_timestamp,
            );
        }
        self.record(header);
        None
    }

    /// The high watermark moved: completed transactions whose marker is below it are stable.
    pub fn on_high_watermark(&mut self, high_watermark: i64) {
        self.unreplicated
            .retain(|_, marker| *marker >= high_watermark);
    }

    /// Kafka's first unstable offset: the first offset of the oldest transaction that is open,
    /// or complete with its marker not yet below the high watermark.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        let ongoing = self.ongoing.keys().next().copied();
        let unreplicated = self.unreplicated.keys().next().copied();
        match (ongoing, unreplicated) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Open transactions as (first offset, producer id), oldest first.
    pub fn ongoing(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ongoing.iter().map(|(first, pid)| (*first, *pid))
    }

    /// Records a stored batch (header carries the assigned offsets). A transactional batch of a
    /// producer without an open transaction opens one.
    pub fn record(&mut self, header: &BatchHeader) {
        if header.producer_id < 0 || header.is_control() {
            return;
        }
        let entry = self
            .entries
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                producer_id: header.producer_id,
                epoch: header.producer_epoch,
                batches: VecDeque::new(),
                last_timestamp: -1,
                coordinator_epoch: -1,
                current_txn_first_offset: None,
            });
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == TRACKED_BATCHES {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMeta {
            first_sequence: header.base_sequence,
            last_sequence: last_sequence(header),
            first_offset: header.base_offset,
            last_offset: header.last_offset(),
            timestamp: header.max_timestamp,
        });
        entry.last_timestamp = header.max_timestamp;
        if header.is_transactional() && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(header.base_offset);
            self.ongoing.insert(header.base_offset, header.producer_id);
        }
    }

    /// Forgets producers idle for longer than `expiration_ms` (Kafka's producer.id.expiration.ms).
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| {
            e.current_txn_first_offset.is_some() || now_ms - e.last_timestamp < expiration_ms
        });
        before - self.entries.len()
    }

    /// Kafka's snapshot file, version 1.
    pub fn to_snapshot(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(4 + self.entries.len() * SNAPSHOT_ENTRY_LEN);
        let mut ids: Vec<&i64> = self.entries.keys().collect();
        ids.sort_unstable();
        body.extend_from_slice(&(ids.len() as i32).to_be_bytes());
        for id in ids {
            let entry = &self.entries[id];
            let last = entry.batches.back().copied().unwrap_or(BatchMeta {
                first_sequence: -1,
                last_sequence: -1,
                first_offset: -1,
                last_offset: -1,
                timestamp: entry.last_timestamp,
            });
            body.extend_from_slice(&entry.producer_id.to_be_bytes());
            body.extend_from_slice(&entry.epoch.to_be_bytes());
            body.extend_from_slice(&last.last_sequence.to_be_bytes());
            body.extend_from_slice(&last.last_offset.to_be_bytes());
            body.extend_from_slice(&((last.last_offset - last.first_offset) as i32).to_be_bytes());
            body.extend_from_slice(&entry.last_timestamp.to_be_bytes());
            body.extend_from_slice(&entry.coordinator_epoch.to_be_bytes());
            body.extend_from_slice(&entry.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
        }
        let mut out = Vec::with_capacity(6 + body.len());
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Parses a snapshot; `None` if it is truncated, of another version, or fails its CRC.
    pub fn from_snapshot(bytes: &[u8]) -> Option<ProducerStateTable> {
        if bytes.len() < 10 || i16::from_be_bytes([bytes[0], bytes[1]]) != SNAPSHOT_VERSION {
            return None;
        }
        let crc = u32::from_be_bytes(bytes[2..6].try_into().ok()?);
        let body = &bytes[6..];
        if crc32c::crc32c(body) != crc {
            return None;
        }
        let count = i32::from_be_bytes(body[0..4].try_into().ok()?);
        let entries_bytes = &body[4..];
        if count < 0 || entries_bytes.len() != count as usize * SNAPSHOT_ENTRY_LEN {
            return None;
        }
        let mut table = ProducerStateTable::default();
        for raw in entries_bytes.chunks_exact(SNAPSHOT_ENTRY_LEN) {
            let producer_id = i64::from_be_bytes(raw[0..8].try_into().ok()?);
            let epoch = i16::from_be_bytes(raw[8..10].try_into().ok()?);
            let last_sequence = i32::from_be_bytes(raw[10..14].try_into().ok()?);
            let last_offset = i64::from_be_bytes(raw[14..22].try_into().ok()?);
            let offset_delta = i32::from_be_bytes(raw[22..26].try_into().ok()?);
            let timestamp = i64::from_be_bytes(raw[26..34].try_into().ok()?);
            let coordinator_epoch = i32::from_be_bytes(raw[34..38].try_into().ok()?);
            let txn_first = i64::from_be_bytes(raw[38..46].try_into().ok()?);
            let mut batches = VecDeque::new();
            if last_offset >= 0 {
                batches.push_back(BatchMeta {
                    first_sequence: decrement_sequence(last_sequence, offset_delta),
                    last_sequence,
                    first_offset: last_offset - offset_delta as i64,
                    last_offset,
                    timestamp,
                });
            }
            table.entries.insert(
                producer_id,
                ProducerEntry {
                    producer_id,
                    epoch,
                    batches,
                    last_timestamp: timestamp,
                    coordinator_epoch,
                    current_txn_first_offset: (txn_first >= 0).then_some(txn_first),
                },
            );
            if txn_first >= 0 {
                table.ongoing.insert(txn_first, producer_id);
            }
        }
        Some(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(
        producer_id: i64,
        epoch: i16,
        base_sequence: i32,
        count: i32,
        base_offset: i64,
    ) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 1000,
            max_timestamp: 1000,
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            records_count: count,
        }
    }

    #[test]
    fn given_retried_batch_when_checked_should_be_duplicate_with_original_offsets() {
        let mut table = ProducerStateTable::default();
        let first = batch(7, 0, 0, 5, 100);
        assert_eq!(table.check(&first), SequenceCheck::Append);
        table.record(&first);
        match table.check(&batch(7, 0, 0, 5, 0)) {
            SequenceCheck::Duplicate(meta) => {
                assert_eq!((meta.first_offset, meta.last_offset), (100, 104))
            }
            other => panic!("expected duplicate, got {other:?}"),
        }
    }

    #[test]
    fn given_gap_should_be_out_of_order_and_old_epoch_fenced() {
        let mut table = ProducerStateTable::default();
        table.record(&batch(7, 1, 0, 5, 0));
        assert_eq!(table.check(&batch(7, 1, 5, 1, 0)), SequenceCheck::Append);
        assert_eq!(
            table.check(&batch(7, 1, 6, 1, 0)),
            SequenceCheck::OutOfOrder {
                expected: 5,
                received: 6
            }
        );
        assert_eq!(
            table.check(&batch(7, 0, 5, 1, 0)),
            SequenceCheck::InvalidEpoch { current: 1 }
        );
        assert_eq!(table.check(&batch(7, 2, 0, 1, 0)), SequenceCheck::Append);
        assert_eq!(
            table.check(&batch(7, 2, 3, 1, 0)),
            SequenceCheck::OutOfOrder {
                expected: 0,
                received: 3
            }
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut table = ProducerStateTable::default();
        for i in 0..7 {
            table.record(&batch(1, 0, i, 1, i as i64));
        }
        assert!(matches!(
            table.check(&batch(1, 0, 6, 1, 0)),
            SequenceCheck::Duplicate(_)
        ));
        assert!(matches!(
            table.check(&batch(1, 0, 2, 1, 0)),
            SequenceCheck::Duplicate(_)
        ));
        assert!(matches!(
            table.check(&batch(1, 0, 1, 1, 0)),
            SequenceCheck::OutOfOrder { .. }
        ));
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut table = ProducerStateTable::default();
        table.record(&batch(1, 0, i32::MAX - 1, 2, 0));
        assert_eq!(table.check(&batch(1, 0, 0, 1, 0)), SequenceCheck::Append);
        assert_eq!(last_sequence(&batch(1, 0, i32::MAX, 3, 0)), 1);
    }

    #[test]
    fn snapshot_round_trips_and_detects_corruption() {
        let mut table = ProducerStateTable::default();
        table.record(&batch(7, 3, 10, 5, 100));
        table.record(&batch(9, 0, 0, 1, 105));
        let bytes = table.to_snapshot();
        let restored = ProducerStateTable::from_snapshot(&bytes).unwrap();
        assert!(matches!(
            restored.check(&batch(7, 3, 10, 5, 0)),
            SequenceCheck::Duplicate(_)
        ));
        assert_eq!(
            restored.check(&batch(7, 3, 15, 1, 0)),
            SequenceCheck::Append
        );
        let mut corrupt = bytes.clone();
        *corrupt.last_mut().unwrap() ^= 1;
        assert!(ProducerStateTable::from_snapshot(&corrupt).is_none());
        assert!(ProducerStateTable::from_snapshot(&bytes[..bytes.len() - 1]).is_none());
    }

    #[derive(Clone, Debug)]
    enum Op {
        Data { producer: i64, transactional: bool },
        Marker { producer: i64, abort: bool },
        HighWatermark { behind: i64 },
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0i64..4, any::<bool>()).prop_map(|(producer, transactional)| Op::Data {
                producer,
                transactional
            }),
            (0i64..4, any::<bool>()).prop_map(|(producer, abort)| Op::Marker { producer, abort }),
            (0i64..4).prop_map(|behind| Op::HighWatermark { behind }),
        ]
    }

    proptest::proptest! {
        /// Against a model of Kafka's rule: LSO = min(first offset of every open transaction and
        /// of every completed one whose marker is not below the high watermark, HW); a
        /// non-transactional batch of a producer with an open transaction is refused; a
        /// completed transaction's LSO is the oldest other open first offset, else marker + 1.
        #[test]
        fn the_last_stable_offset_follows_kafkas_rule(ops in proptest::collection::vec(op(), 1..60)) {
            let mut table = ProducerStateTable::default();
            let mut open: HashMap<i64, i64> = HashMap::new();
            let mut completed: Vec<(i64, i64)> = Vec::new();
            let mut sequences: HashMap<i64, i32> = HashMap::new();
            let (mut end, mut high_watermark) = (0i64, 0i64);
            for op in ops {
                match op {
                    Op::Data { producer, transactional } => {
                        let sequence = *sequences.get(&producer).unwrap_or(&0);
                        let mut header = batch(producer, 0, sequence, 1, end);
                        if transactional {
                            header.attributes |= crate::records::batch::TRANSACTIONAL_MASK;
                        }
                        let refused = table.check_transactional(&header).is_err();
                        proptest::prop_assert_eq!(refused, !transactional && open.contains_key(&producer));
                        if refused {
                            continue;
                        }
                        proptest::prop_assert_eq!(table.check(&header), SequenceCheck::Append);
                        table.record(&header);
                        sequences.insert(producer, sequence + 1);
                        if transactional {
                            open.entry(producer).or_insert(end);
                        }
                        end += 1;
                    }
                    Op::Marker { producer, abort } => {
                        let kind = if abort { ControlType::Abort } else { ControlType::Commit };
                        let marker = TxnMarker { kind, coordinator_epoch: 0 };
                        let done = table.complete(producer, 0, marker, end, 0);
                        match open.remove(&producer) {
                            Some(first) => {
                                let others = open.values().copied().min();
                                let expected_lso = others.unwrap_or(end + 1).min(end + 1);
                                proptest::prop_assert_eq!(done, Some(CompletedTxn {
                                    producer_id: producer,
                                    first_offset: first,
                                    last_offset: end,
                                    last_stable_offset: expected_lso,
                                    aborted: abort,
                                }));
                                completed.push((first, end));
                            }
                            None => proptest::prop_assert_eq!(done, None),
                        }
                        end += 1;
                    }
                    Op::HighWatermark { behind } => {
                        high_watermark = high_watermark.max(end - behind);
                        table.on_high_watermark(high_watermark);
                    }
                }
                let model = open
                    .values()
                    .copied()
                    .chain(completed.iter().filter(|c| c.1 >= high_watermark).map(|c| c.0))
                    .min()
                    .map_or(high_watermark, |first| first.min(high_watermark));
                let lso = table
                    .first_unstable_offset()
                    .map_or(high_watermark, |first| first.min(high_watermark));
                proptest::prop_assert_eq!(lso, model);
                let mut ongoing: Vec<(i64, i64)> = open.iter().map(|(p, f)| (*f, *p)).collect();
                ongoing.sort_unstable();
                proptest::prop_assert_eq!(table.ongoing().collect::<Vec<_>>(), ongoing);
            }
            // The snapshot keeps the open transactions.
            let restored = ProducerStateTable::from_snapshot(&table.to_snapshot()).unwrap();
            proptest::prop_assert_eq!(
                restored.ongoing().collect::<Vec<_>>(),
                table.ongoing().collect::<Vec<_>>()
            );
        }
    }
}
