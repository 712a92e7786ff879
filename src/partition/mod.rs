//! A partition replica led by this broker: its log, high watermark, producer state and the rules
//! of Produce, Fetch, ListOffsets and DeleteRecords at partition level.
//!
//! Lives on exactly one shard (the owner) and is reached by other shards only through messages.
//! Appends are serialized by a FIFO append lock (held only while appending, never while waiting
//! for durability), so the order of arrival is the order of the log. The high watermark is what
//! consumers may read: the durable offset (after fdatasync) by default, the written offset with
//! `write.caching=true`.
//!
//! Transactions (KIP-98): transactional produce batches open a transaction per producer,
//! [`Partition::write_txn_marker`] appends the COMMIT/ABORT control batch that closes it (and
//! records aborted ones in the segment's `.txnindex`). The last stable offset (LSO) is the first
//! offset of the oldest transaction still open or whose marker is not yet below the high
//! watermark, capped by the high watermark; read_committed fetches stop there. The LSO only moves
//! when the high watermark does, so `hw_event` wakes read_committed long polls too.

pub mod flusher;
pub mod producer_state;

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use glommio::sync::Semaphore;

use crate::config::TopicConfig;
use crate::event::Event;
use crate::protocol::error::ErrorCode;
use crate::protocol::Uuid;
use crate::records::batch::{self, BatchError, BatchHeader};
use crate::records::builder::{BatchBuilder, EndTransactionMarker};
use crate::records::control::{ControlType, TxnMarker};
use crate::storage::log::{Log, LogOptions, OpenReport, ReadError};
use crate::storage::segment;
use crate::storage::txn_index::AbortedTxn;
use flusher::Flusher;
use producer_state::{
    CompletedTxn, MarkerRefusal, ProducerEntry, ProducerStateTable, SequenceCheck,
};

/// A refusal with Kafka's error code and a message for clients that show one.
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionError {
    pub code: ErrorCode,
    pub message: Option<String>,
}

impl PartitionError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        PartitionError {
            code,
            message: Some(message.into()),
        }
    }
    pub fn code(code: ErrorCode) -> Self {
        PartitionError {
            code,
            message: None,
        }
    }
}

/// Result of an accepted produce batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AppendOutcome {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker's timestamp for LogAppendTime topics, else -1.
    pub log_append_time: i64,
    pub log_start_offset: i64,
    /// The batch was a retry of one already stored.
    pub duplicate: bool,
}

/// What a fetch read: the batches, the partition's offsets, and for read_committed the aborted
/// transactions overlapping the batches as (producer id, first offset).
#[derive(Clone, Debug, PartialEq)]
pub struct ReadOutcome {
    pub records: Bytes,
    pub offsets: PartitionOffsets,
    pub aborted_transactions: Option<Vec<(i64, i64)>>,
}

/// Offsets reported with every fetch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PartitionOffsets {
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

pub struct Partition {
    pub topic: Arc<str>,
    pub index: i32,
    pub topic_id: Uuid,
    leader_epoch: Cell<i32>,
    pub log: RefCell<Log>,
    /// Orders appends: granted in the order the requests reached this shard.
    append_lock: crate::event::OrderedLock,
    flush_lock: Semaphore,
    producers: RefCell<ProducerStateTable>,
    high_watermark: Cell<i64>,
    /// Fired when the high watermark moves or the partition fails or goes away.
    pub hw_event: Event,
    pub(crate) dirty: Cell<bool>,
    /// Why the partition refuses requests (a storage failure, or the broker shutting down).
    unavailable: RefCell<Option<PartitionError>>,
    deleted: Cell<bool>,
}

/// `<data>/<topic>-<partition>`, Kafka's directory name.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

impl Partition {
    /// Opens the partition's log (recovering it if the last shutdown was not clean) and restores
    /// its producer state.
    #[allow(clippy::too_many_arguments)]
    pub async fn open(
        data_dir: &Path,
        topic: Arc<str>,
        index: i32,
        topic_id: Uuid,
        leader_epoch: i32,
        config: TopicConfig,
        options: LogOptions,
        clean_shutdown: bool,
    ) -> std::io::Result<(Rc<Partition>, OpenReport)> {
        let dir = partition_dir(data_dir, &topic, index);
        let now = crate::event::now_ms();
        let (mut log, report) = Log::open(&dir, config, options, clean_shutdown, now).await?;
        let mut producers = restore_producer_state(&dir, &mut log);
        producers.on_high_watermark(log.log_end_offset);
        let end = log.log_end_offset;
        let partition = Rc::new(Partition {
            topic,
            index,
            topic_id,
            leader_epoch: Cell::new(leader_epoch),
            log: RefCell::new(log),
            append_lock: crate::event::OrderedLock::new(),
            flush_lock: Semaphore::new(1),
            producers: RefCell::new(producers),
            high_watermark: Cell::new(end),
            hw_event: Event::default(),
            dirty: Cell::new(false),
            unavailable: RefCell::new(None),
            deleted: Cell::new(false),
        });
        Ok((partition, report))
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.get()
    }

    pub fn set_leader_epoch(&self, epoch: i32) {
        self.leader_epoch.set(epoch);
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.get()
    }

    /// The last stable offset: read_committed consumers read below it (see the module doc).
    pub fn last_stable_offset(&self) -> i64 {
        let high_watermark = self.high_watermark.get();
        let first_unstable = self.producers.borrow().first_unstable_offset();
        let log_start = self.log.borrow().log_start_offset;
        first_unstable
            .map_or(high_watermark, |first| first.min(high_watermark))
            .max(log_start)
    }

    pub fn offsets(&self) -> PartitionOffsets {
        let last_stable_offset = self.last_stable_offset();
        let log = self.log.borrow();
        PartitionOffsets {
            high_watermark: self.high_watermark.get(),
            last_stable_offset,
            log_start_offset: log.log_start_offset,
            log_end_offset: log.log_end_offset,
        }
    }

    pub fn config(&self) -> TopicConfig {
        self.log.borrow().config.clone()
    }

    pub fn set_config(&self, config: TopicConfig) {
        self.log.borrow_mut().config = config;
    }

    fn check_available(&self) -> Result<(), PartitionError> {
        if self.deleted.get() {
            return Err(PartitionError::new(
                ErrorCode::NotLeaderOrFollower,
                "partition was deleted",
            ));
        }
        if let Some(error) = self.unavailable.borrow().as_ref() {
            return Err(error.clone());
        }
        Ok(())
    }

    /// Validates and appends the `records` of one Produce partition. Returns once the batch is in
    /// the log (in memory); durability is awaited separately with [`Partition::wait_for_offset`].
    pub async fn append(
        self: &Rc<Self>,
        records: Option<Bytes>,
        flusher: &Rc<Flusher>,
    ) -> Result<AppendOutcome, PartitionError> {
        self.append_from(records, flusher, false).await
    }

    /// Appends a batch a coordinator wrote for a producer (TxnOffsetCommit offsets in
    /// `__consumer_offsets`): the producer's epoch is checked and its transaction tracked, but
    /// not its sequence (Kafka's `AppendOrigin.COORDINATOR`).
    pub async fn append_from_coordinator(
        self: &Rc<Self>,
        records: Option<Bytes>,
        flusher: &Rc<Flusher>,
    ) -> Result<AppendOutcome, PartitionError> {
        self.append_from(records, flusher, true).await
    }

    async fn append_from(
        self: &Rc<Self>,
        records: Option<Bytes>,
        flusher: &Rc<Flusher>,
        from_coordinator: bool,
    ) -> Result<AppendOutcome, PartitionError> {
        let (header, batch_bytes) = self.validate_produce(records)?;
        // The lock comes first: taking it is what orders appends; waiting for flusher space
        // happens inside it, so a later request cannot overtake an earlier one.
        let _permit = self
            .append_lock
            .lock()
            .await
            .map_err(|_| PartitionError::code(ErrorCode::NotLeaderOrFollower))?;
        flusher.reserve().await;
        self.check_available()?;
        let now = crate::event::now_ms();
        if header.producer_id >= 0 {
            match self.producers.borrow().check(&header) {
                SequenceCheck::Append => {}
                SequenceCheck::Duplicate(_) | SequenceCheck::OutOfOrder { .. }
                    if from_coordinator => {}
                SequenceCheck::Duplicate(meta) => {
                    return Ok(AppendOutcome {
                        base_offset: meta.first_offset,
                        last_offset: meta.last_offset,
                        log_append_time: -1,
                        log_start_offset: self.log.borrow().log_start_offset,
                        duplicate: true,
                    });
                }
                SequenceCheck::InvalidEpoch { current } => {
                    return Err(PartitionError::new(
                        ErrorCode::InvalidProducerEpoch,
                        format!(
                            "producer {} epoch {} is older than the current epoch {current}",
                            header.producer_id, header.producer_epoch
                        ),
                    ));
                }
                SequenceCheck::OutOfOrder { expected, received } => {
                    return Err(PartitionError::new(
                        ErrorCode::OutOfOrderSequenceNumber,
                        format!(
                            "producer {}: expected sequence {expected}, received {received}",
                            header.producer_id
                        ),
                    ));
                }
            }
            if let Err(first) = self.producers.borrow().check_transactional(&header) {
                return Err(PartitionError::new(
                    ErrorCode::InvalidTxnState,
                    format!(
                        "producer {} has a transaction open since offset {first}: expected a \
                         transactional batch",
                        header.producer_id
                    ),
                ));
            }
        }
        let rolled = Log::roll_if_needed(&self.log, batch_bytes.len(), now)
            .await
            .map_err(|e| self.fail(e))?;
        if rolled {
            self.write_producer_snapshot().await;
        }
        let log_append_time = self.log.borrow().config.log_append_time.then_some(now);
        let info = self.log.borrow_mut().append(
            &header,
            &batch_bytes,
            self.leader_epoch.get(),
            log_append_time,
        );
        let mut stored = header;
        stored.base_offset = info.base_offset;
        stored.max_timestamp = info.max_timestamp;
        self.producers.borrow_mut().record(&stored);
        flusher.mark_dirty(self, info.bytes as u64);
        Ok(AppendOutcome {
            base_offset: info.base_offset,
            last_offset: info.last_offset,
            log_append_time: log_append_time.unwrap_or(-1),
            log_start_offset: self.log.borrow().log_start_offset,
            duplicate: false,
        })
    }

    /// Kafka's produce-time checks on the one batch a v2 Produce partition carries.
    fn validate_produce(
        &self,
        records: Option<Bytes>,
    ) -> Result<(BatchHeader, Bytes), PartitionError> {
        self.check_available()?;
        let records = records.ok_or_else(|| {
            PartitionError::new(
                ErrorCode::InvalidRecord,
                "produce request carries null records",
            )
        })?;
        let header = batch::validate_produce(&records).map_err(batch_error)?;
        let batch_bytes = records;
        let config = self.log.borrow().config.clone();
        if batch_bytes.len() > config.max_message_bytes as usize {
            return Err(PartitionError::new(
                ErrorCode::MessageTooLarge,
                format!(
                    "batch of {} bytes exceeds max.message.bytes {}",
                    batch_bytes.len(),
                    config.max_message_bytes
                ),
            ));
        }
        if config.cleanup_compact {
            self.require_keys(&batch_bytes)?;
        }
        if !config.log_append_time {
            let now = crate::event::now_ms();
            if header.max_timestamp > now.saturating_add(config.timestamp_after_max_ms)
                || header.base_timestamp < now.saturating_sub(config.timestamp_before_max_ms)
            {
                return Err(PartitionError::new(
                    ErrorCode::InvalidTimestamp,
                    format!("timestamp {} is outside message.timestamp.before/after.max.ms of now {now}", header.max_timestamp),
                ));
            }
        }
        Ok((header, batch_bytes))
    }

    /// Kafka's rule for compacted topics: every record has a key (compaction keeps the last
    /// record per key). The only produce check that opens the records, so only compacted topics
    /// pay for decompressing them.
    fn require_keys(&self, batch: &Bytes) -> Result<(), PartitionError> {
        let records = crate::records::record::records(batch, 64 << 20).map_err(batch_error)?;
        for record in records {
            if record.map_err(batch_error)?.key.is_none() {
                return Err(PartitionError::new(
                    ErrorCode::InvalidRecord,
                    format!(
                        "Compacted topic cannot accept message without key in topic partition {}-{}.",
                        self.topic, self.index
                    ),
                ));
            }
        }
        Ok(())
    }

    fn fail(&self, error: std::io::Error) -> PartitionError {
        let why = format!("storage error on {}-{}: {error}", self.topic, self.index);
        tracing::error!("{why}");
        let error = PartitionError::new(ErrorCode::KafkaStorageError, why);
        *self.unavailable.borrow_mut() = Some(error.clone());
        self.hw_event.notify();
        error
    }

    /// Waits until the high watermark passes `last_offset` (acks=all).
    pub async fn wait_for_offset(&self, last_offset: i64) -> Result<(), PartitionError> {
        loop {
            let listener = self.hw_event.listen();
            if self.high_watermark.get() > last_offset {
                return Ok(());
            }
            self.check_available()?;
            listener.await;
        }
    }

    /// Flushes appended data; called by the shard's flusher (and at shutdown). Returns the bytes
    /// newly handed to the disk and whether the partition still has work.
    pub async fn flush(&self, now_ms: i64, force_sync: bool) -> (u64, bool) {
        let Ok(_permit) = self.flush_lock.acquire_permit(1).await else {
            return (0, false);
        };
        let (sync, caching) = {
            let log = self.log.borrow();
            let caching = log.config.write_caching;
            (
                force_sync || !caching || now_ms - log.last_sync_ms >= log.config.flush_ms,
                caching,
            )
        };
        match Log::flush(&self.log, sync, now_ms).await {
            Ok(outcome) => {
                let visible = if caching {
                    outcome.written_offset
                } else {
                    outcome.durable_offset
                };
                if visible > self.high_watermark.get() {
                    self.high_watermark.set(visible);
                    self.producers.borrow_mut().on_high_watermark(visible);
                    self.hw_event.notify();
                }
                let log = self.log.borrow();
                let more = log.unflushed_bytes() > 0 || log.durable_offset < log.written_offset;
                (outcome.new_bytes, more)
            }
            Err(error) => {
                self.fail(error);
                (0, false)
            }
        }
    }

    /// Reads for a consumer from `offset`, up to the high watermark (read_uncommitted).
    pub async fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<(Bytes, PartitionOffsets), PartitionError> {
        let outcome = self
            .read_isolated(offset, max_bytes, min_one, false)
            .await?;
        Ok((outcome.records, outcome.offsets))
    }

    /// Reads for a consumer from `offset`: up to the high watermark, or with `read_committed`
    /// up to the last stable offset, listing the aborted transactions that overlap the batches
    /// returned (Kafka's fetch upper bound: the offset after the last batch).
    pub async fn read_isolated(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        read_committed: bool,
    ) -> Result<ReadOutcome, PartitionError> {
        self.check_available()?;
        let offsets = self.offsets();
        let upper_bound = if read_committed {
            offsets.last_stable_offset
        } else {
            offsets.high_watermark
        };
        match Log::read(&self.log, offset, max_bytes, upper_bound, min_one).await {
            Ok(records) => {
                let aborted_transactions = read_committed.then(|| match last_batch_end(&records) {
                    Some(end) => self.log.borrow().aborted_transactions(offset, end),
                    None => Vec::new(),
                });
                Ok(ReadOutcome {
                    records,
                    offsets: self.offsets(),
                    aborted_transactions,
                })
            }
            Err(ReadError::OffsetOutOfRange {
                log_start_offset,
                log_end_offset,
            }) => Err(PartitionError::new(
                ErrorCode::OffsetOutOfRange,
                format!("offset {offset} is outside [{log_start_offset}, {log_end_offset}]"),
            )),
            Err(ReadError::Corrupt(why)) => {
                Err(PartitionError::new(ErrorCode::CorruptMessage, why))
            }
            Err(ReadError::Io(error)) => Err(self.fail(error)),
        }
    }

    /// ListOffsets: the offset (and timestamp) for a timestamp or one of Kafka's special values
    /// (-1 latest, -2 earliest, -3 max timestamp, -4 earliest local).
    /// With `read_committed` (isolation level 1), LATEST is the last stable offset.
    pub async fn list_offset(
        &self,
        timestamp: i64,
        read_committed: bool,
    ) -> Result<(i64, i64), PartitionError> {
        self.check_available()?;
        let offsets = self.offsets();
        // Kafka's last fetchable offset: a timestamp lookup answers only below it.
        let fetchable = |found: Option<(i64, i64)>| match found {
            Some((offset, _)) if read_committed && offset >= self.last_stable_offset() => (-1, -1),
            Some(found) => found,
            None => (-1, -1),
        };
        match timestamp {
            -1 if read_committed => Ok((offsets.last_stable_offset, -1)),
            -1 => Ok((offsets.high_watermark, -1)),
            -2 | -4 => Ok((offsets.log_start_offset, -1)),
            -3 => {
                let max = self.log.borrow().max_timestamp();
                match max {
                    Some((max_timestamp, _)) => {
                        Ok(fetchable(self.search_timestamp(max_timestamp).await?))
                    }
                    None => Ok((-1, -1)),
                }
            }
            t if t >= 0 => Ok(fetchable(self.search_timestamp(t).await?)),
            other => Err(PartitionError::new(
                ErrorCode::InvalidRequest,
                format!("unsupported timestamp {other}"),
            )),
        }
    }

    /// The first record at or after the log start with timestamp ≥ `target`, below the high
    /// watermark: (offset, timestamp).
    async fn search_timestamp(&self, target: i64) -> Result<Option<(i64, i64)>, PartitionError> {
        let high_watermark = self.high_watermark.get();
        let log_start = self.log.borrow().log_start_offset;
        let mut from = log_start;
        loop {
            let chunk = self.read(from, 1 << 20, true).await?.0;
            if chunk.is_empty() {
                return Ok(None);
            }
            for item in batch::split(&chunk) {
                let Ok((header, bytes)) = item else { break };
                from = header.last_offset() + 1;
                if header.last_offset() >= high_watermark || header.max_timestamp < target {
                    continue;
                }
                if let Some(found) = first_record_at_or_after(&header, &bytes, target, log_start)? {
                    return Ok(Some(found));
                }
            }
            if from >= high_watermark {
                return Ok(None);
            }
        }
    }

    /// DeleteRecords: moves the log start offset to `offset` (-1: the high watermark).
    pub async fn delete_records(&self, offset: i64) -> Result<i64, PartitionError> {
        self.check_available()?;
        let high_watermark = self.high_watermark.get();
        let target = if offset == -1 { high_watermark } else { offset };
        if target < 0 || target > high_watermark {
            return Err(PartitionError::new(
                ErrorCode::OffsetOutOfRange,
                format!(
                    "cannot delete records up to {target}: the high watermark is {high_watermark}"
                ),
            ));
        }
        let start = self.log.borrow_mut().advance_log_start(target);
        Log::checkpoint_log_start(&self.log)
            .await
            .map_err(|e| self.fail(e))?;
        self.apply_retention(crate::event::now_ms()).await;
        Ok(start)
    }

    /// Deletes closed segments past retention (time, size, or below the log start offset).
    pub async fn apply_retention(&self, now_ms: i64) -> usize {
        let victims = self.log.borrow_mut().take_expired_segments(now_ms);
        let count = victims.len();
        for segment in victims {
            tracing::info!(
                "{}-{}: deleting segment {} ({} bytes) by retention",
                self.topic,
                self.index,
                segment.base_offset,
                segment.size
            );
            let path = segment.path.clone();
            drop(segment);
            let _ = segment::blocking(move || {
                crate::storage::log::remove_segment_files(&path);
                Ok(())
            })
            .await;
        }
        if count > 0 {
            let _ = Log::checkpoint_log_start(&self.log).await;
        }
        count
    }

    /// Runs one compaction pass on this partition's log if it needs one (see
    /// `storage::cleaner`). The last batch of every known producer keeps its header.
    pub async fn clean(
        &self,
        now_ms: i64,
        options: &crate::storage::cleaner::CleanerOptions,
    ) -> std::io::Result<crate::storage::cleaner::CleanStats> {
        let tails: std::collections::HashSet<(i64, i64)> = self
            .producers
            .borrow()
            .entries()
            .filter_map(|e| e.batches.back().map(|b| (e.producer_id, b.last_offset)))
            .collect();
        let first_unstable = self.producers.borrow().first_unstable_offset();
        Log::clean(&self.log, now_ms, options, &tails, first_unstable).await
    }

    /// Appends a transaction marker (COMMIT or ABORT control batch) for `producer_id` and
    /// completes its open transaction; an ABORT is recorded in the aborted-transaction index.
    /// Kafka's checks: an older producer epoch is INVALID_PRODUCER_EPOCH, an older coordinator
    /// epoch TRANSACTION_COORDINATOR_FENCED. A marker for a producer with no open transaction is
    /// written all the same (a retry, or an epoch bump fencing the producer). Returns the
    /// marker's offset once appended; wait for durability with [`Partition::wait_for_offset`].
    pub async fn write_txn_marker(
        self: &Rc<Self>,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        flusher: &Rc<Flusher>,
    ) -> Result<i64, PartitionError> {
        self.check_available()?;
        if producer_id < 0 || producer_epoch < 0 {
            return Err(PartitionError::new(
                ErrorCode::InvalidRequest,
                format!("a transaction marker needs a producer id and epoch, got {producer_id}/{producer_epoch}"),
            ));
        }
        let _permit = self
            .append_lock
            .lock()
            .await
            .map_err(|_| PartitionError::code(ErrorCode::NotLeaderOrFollower))?;
        flusher.reserve().await;
        self.check_available()?;
        let checked =
            self.producers
                .borrow()
                .check_marker(producer_id, producer_epoch, coordinator_epoch);
        match checked {
            Ok(()) => {}
            Err(MarkerRefusal::InvalidEpoch { current }) => {
                return Err(PartitionError::new(
                    ErrorCode::InvalidProducerEpoch,
                    format!("marker for producer {producer_id} has epoch {producer_epoch}, older than its current epoch {current}"),
                ));
            }
            Err(MarkerRefusal::CoordinatorFenced { current }) => {
                return Err(PartitionError::new(
                    ErrorCode::TransactionCoordinatorFenced,
                    format!("marker for producer {producer_id} comes from coordinator epoch {coordinator_epoch}, older than {current}"),
                ));
            }
        }
        let kind = if commit {
            ControlType::Commit
        } else {
            ControlType::Abort
        };
        let now = crate::event::now_ms();
        let marker = EndTransactionMarker {
            kind,
            coordinator_epoch,
            producer_id,
            producer_epoch,
        };
        let bytes = BatchBuilder::end_transaction_marker(&marker, 0, now)
            .build()
            .map_err(|e| PartitionError::new(ErrorCode::UnknownServerError, e.to_string()))?;
        let header = BatchHeader::parse(&bytes).map_err(batch_error)?;
        let rolled = Log::roll_if_needed(&self.log, bytes.len(), now)
            .await
            .map_err(|e| self.fail(e))?;
        if rolled {
            self.write_producer_snapshot().await;
        }
        let log_append_time = self.log.borrow().config.log_append_time.then_some(now);
        let info =
            self.log
                .borrow_mut()
                .append(&header, &bytes, self.leader_epoch.get(), log_append_time);
        let completed = self.producers.borrow_mut().complete(
            producer_id,
            producer_epoch,
            TxnMarker {
                kind,
                coordinator_epoch,
            },
            info.base_offset,
            info.max_timestamp,
        );
        if let Some(txn) = completed.filter(|t| t.aborted) {
            self.log.borrow_mut().append_aborted(aborted_entry(&txn));
        }
        flusher.mark_dirty(self, info.bytes as u64);
        Ok(info.base_offset)
    }

    /// The producers this partition tracks (DescribeProducers), by producer id.
    pub fn producers(&self) -> Vec<ProducerEntry> {
        let mut all: Vec<ProducerEntry> = self.producers.borrow().entries().cloned().collect();
        all.sort_by_key(|e| e.producer_id);
        all
    }

    /// Open transactions as (first offset, producer id), oldest first.
    pub fn ongoing_transactions(&self) -> Vec<(i64, i64)> {
        self.producers.borrow().ongoing().collect()
    }

    /// Forgets idle producers.
    pub fn expire_producers(&self, now_ms: i64, expiration_ms: i64) -> usize {
        self.producers.borrow_mut().expire(now_ms, expiration_ms)
    }

    pub fn producer_count(&self) -> usize {
        self.producers.borrow().len()
    }

    async fn write_producer_snapshot(&self) {
        let (dir, offset) = {
            let log = self.log.borrow();
            (log.dir.clone(), log.log_end_offset)
        };
        let bytes = self.producers.borrow().to_snapshot();
        let result = segment::blocking(move || {
            segment::write_file_synced(&dir.join(segment::file_name(offset, "snapshot")), &bytes)?;
            prune_snapshots(&dir, 2);
            Ok(())
        })
        .await;
        if let Err(error) = result {
            tracing::warn!(
                "{}-{}: producer snapshot not written: {error}",
                self.topic,
                self.index
            );
        }
    }

    /// Clean shutdown: flush, seal the active segment's indexes, snapshot producer state.
    pub async fn close(&self) -> std::io::Result<()> {
        let _append = self.append_lock.lock().await;
        let _flush = self.flush_lock.acquire_permit(1).await;
        let closed = Log::close(&self.log, crate::event::now_ms()).await;
        if closed.is_ok() {
            self.write_producer_snapshot().await;
        }
        // Nothing appends after the final flush: later produce requests are refused (clients
        // retry against the restarted broker) instead of being acknowledged and lost.
        *self.unavailable.borrow_mut() = Some(PartitionError::new(
            ErrorCode::NotLeaderOrFollower,
            "the broker is shutting down",
        ));
        self.hw_event.notify();
        closed
    }

    /// Marks the partition deleted (topic deletion): waiters fail, new requests are refused.
    pub fn mark_deleted(&self) {
        self.deleted.set(true);
        self.append_lock.close();
        self.hw_event.notify();
    }
}

fn aborted_entry(txn: &CompletedTxn) -> AbortedTxn {
    AbortedTxn {
        producer_id: txn.producer_id,
        first_offset: txn.first_offset,
        last_offset: txn.last_offset,
        last_stable_offset: txn.last_stable_offset,
    }
}

/// One past the last offset of the last whole batch in `records`.
fn last_batch_end(records: &Bytes) -> Option<i64> {
    batch::split_slice(records)
        .filter_map(|item| item.ok())
        .last()
        .map(|(header, _)| header.last_offset() + 1)
}

fn batch_error(error: BatchError) -> PartitionError {
    let code = match &error {
        BatchError::UnsupportedMagic(_) => ErrorCode::UnsupportedForMessageFormat,
        BatchError::Truncated { .. }
        | BatchError::LengthMismatch { .. }
        | BatchError::InvalidBatchLength(_)
        | BatchError::CrcMismatch { .. }
        | BatchError::UnknownCompression(_)
        | BatchError::Compression(_) => ErrorCode::CorruptMessage,
        _ => ErrorCode::InvalidRecord,
    };
    let hint = if code == ErrorCode::UnsupportedForMessageFormat {
        "; Weir stores record batches of magic 2 (clients of Kafka 0.11 and later)"
    } else {
        ""
    };
    PartitionError::new(code, format!("record batch refused: {error}{hint}"))
}

/// Finds the first record with timestamp ≥ `target` inside one batch.
fn first_record_at_or_after(
    header: &BatchHeader,
    bytes: &Bytes,
    target: i64,
    log_start: i64,
) -> Result<Option<(i64, i64)>, PartitionError> {
    if header.timestamp_type() == crate::records::batch::TimestampType::LogAppendTime {
        let offset = header.base_offset.max(log_start);
        return Ok(Some((offset, header.max_timestamp)));
    }
    let records = crate::records::record::records(bytes, 64 << 20).map_err(batch_error)?;
    for record in records {
        let record = record.map_err(batch_error)?;
        let offset = header.base_offset + record.offset_delta as i64;
        let timestamp = header.base_timestamp + record.timestamp_delta;
        if offset >= log_start && timestamp >= target {
            return Ok(Some((offset, timestamp)));
        }
    }
    Ok(None)
}

/// Loads the newest producer snapshot at or below the log end and replays the producer batches
/// recovery saw after it. After a crash that left a rolled segment unsealed (scanned whole), the
/// snapshot taken when that segment was created is preferred: replaying from there re-creates
/// the segment's open transactions and aborted-transaction entries too.
fn restore_producer_state(dir: &Path, log: &mut Log) -> ProducerStateTable {
    let end = log.log_end_offset;
    let mut snapshots: Vec<i64> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| segment::parse_file_name(n, "snapshot"))
                })
                .collect()
        })
        .unwrap_or_default();
    snapshots.sort_unstable();
    if let Some(scanned) = log.first_scanned_base {
        if snapshots.contains(&scanned) {
            snapshots.retain(|&offset| offset <= scanned);
        }
    }
    let mut table = ProducerStateTable::default();
    let mut from = 0;
    while let Some(offset) = snapshots.pop() {
        if offset > end {
            let _ = std::fs::remove_file(dir.join(segment::file_name(offset, "snapshot")));
            continue;
        }
        if let Some(loaded) = std::fs::read(dir.join(segment::file_name(offset, "snapshot")))
            .ok()
            .and_then(|bytes| ProducerStateTable::from_snapshot(&bytes))
        {
            table = loaded;
            from = offset;
            break;
        }
    }
    for summary in std::mem::take(&mut log.recovered) {
        if summary.header.base_offset >= from {
            let completed = table.replay(&summary.header, summary.marker);
            if let Some(txn) = completed.filter(|t| t.aborted) {
                log.restore_aborted(aborted_entry(&txn));
            }
        }
    }
    table
}

fn prune_snapshots(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut offsets: Vec<i64> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| segment::parse_file_name(n, "snapshot"))
        })
        .collect();
    offsets.sort_unstable();
    let excess = offsets.len().saturating_sub(keep);
    for offset in &offsets[..excess] {
        let _ = std::fs::remove_file(dir.join(segment::file_name(*offset, "snapshot")));
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod txn_tests;
