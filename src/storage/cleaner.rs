//! Log compaction (`cleanup.policy=compact`): keeps the last record of every key in a partition's
//! closed segments, Kafka's `LogCleaner` semantics.
//!
//! Lives on the shard that owns the partition and runs in the shard's cleaner task queue (small
//! static shares), yielding between batches, so produce and fetch keep their latency while it
//! works. One pass over a log:
//!
//! 1. **Plan** (synchronous): the cleanable range is the sealed segments below the active one,
//!    stopping at the first segment younger than `min.compaction.lag.ms`. The part from the
//!    cleaner checkpoint (`cleaner-offset-checkpoint`, Kafka's "first dirty offset") on is dirty;
//!    the pass runs when the dirty share of the bytes reaches `min.cleanable.dirty.ratio`, or the
//!    oldest dirty record is older than `max.compaction.lag.ms`, or a delete horizon of a
//!    tombstone kept by an earlier pass has passed.
//! 2. **Map**: the dirty segments are read and every key's last offset is put in an
//!    [`OffsetMap`] bounded by `log.cleaner.dedupe.buffer.size` (a full map ends the pass early at
//!    a segment boundary; the rest waits for the next pass).
//! 3. **Filter** every segment of the range, batch by batch ([`filter_batch`]): a record stays if
//!    no later record has its key; a tombstone stays until the delete horizon stored in its batch
//!    (KIP-534: set to now + `delete.retention.ms` by the first pass that keeps it) has passed.
//!    Offsets, timestamps, headers, producer fields and the codec of kept records are preserved;
//!    a rewritten batch keeps its original last offset. Control batches are kept untouched. A
//!    batch that loses all its records leaves its bare header when it is its producer's last
//!    batch (the producer's sequence survives) or the last batch of its segment (the segment
//!    still ends where the next begins, which recovery checks).
//! 4. **Swap** a changed segment in (unchanged segments are not rewritten): write
//!    `<base>.log.cleaned`, fsync; rename it `<base>.log.swap` (the commit point); delete the old
//!    `.index`/`.timeindex`; rename the swap over `<base>.log`; write the new indexes. Recovery in
//!    `Log::open` deletes `*.cleaned` and completes a `*.log.swap`; a segment left without
//!    indexes is scanned. `docs/storage-format.md` lists every intermediate state.
//!
//! Transactions (Kafka's `CleanedTransactionMetadata` rules):
//! - the cleanable range ends before the first segment holding an unstable offset (an open
//!   transaction, or one whose marker is not yet below the high watermark), as it ends before the
//!   active segment;
//! - records of aborted transactions (known from the segments' `.txnindex`) are never the latest
//!   value of a key and are dropped from cleaned segments;
//! - a marker (control batch) is kept while data of its transaction remains before it in the log
//!   (seen by the same pass) and until it is older than `delete.retention.ms` (by the marker's
//!   timestamp: Kafka uses a delete horizon stored in the batch, KIP-534; the effect is the same
//!   retention, without rewriting the marker). A dropped ABORT marker takes its `.txnindex`
//!   entry with it; the other entries are carried to the cleaned segment.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use futures::AsyncWriteExt;
use glommio::io::{DmaFile, DmaStreamWriterBuilder, OpenOptions, ReadResult};

use super::log::Log;
use super::segment::{self, blocking, read_checkpoint, write_checkpoint, BatchSummary, Segment};
use super::txn_index::AbortedTxn;
use crate::records::batch::{
    self, BatchError, BatchHeader, BATCH_HEADER_LEN, DELETE_HORIZON_MASK, LOG_OVERHEAD,
    TIMESTAMP_TYPE_MASK,
};
use crate::records::builder::{empty_batch_like, BatchBuilder};
use crate::records::record::records;

/// Per-partition file holding the first dirty offset (Kafka: `cleaner-offset-checkpoint`).
pub const CLEANER_CHECKPOINT: &str = "cleaner-offset-checkpoint";
/// Suffix of a cleaned segment being written (deleted by recovery).
pub const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix of a cleaned segment that is complete and replaces `<base>.log` (completed by recovery).
pub const SWAP_SUFFIX: &str = ".swap";
/// Bytes an [`OffsetMap`] entry costs besides its key (hash table slot, box, offset).
const MAP_ENTRY_OVERHEAD: usize = 48;
/// Largest decompressed batch the cleaner opens.
const MAX_DECOMPRESSED_BYTES: usize = 256 << 20;

/// Settings of one shard's cleaner.
#[derive(Clone, Debug)]
pub struct CleanerOptions {
    /// Bound of the key → offset map of one pass (`log.cleaner.dedupe.buffer.size`).
    pub dedupe_buffer_bytes: usize,
    /// Read size when scanning segments.
    pub read_window_bytes: usize,
    /// Tests: stop the swap of the first rewritten segment after this step, as a crash would.
    pub stop_after: Option<SwapStep>,
    /// `log.cleaner.io.max.bytes.per.second`, shared by the passes of one shard.
    pub throttle: Rc<IoThrottle>,
}

impl Default for CleanerOptions {
    fn default() -> Self {
        CleanerOptions {
            dedupe_buffer_bytes: 128 << 20,
            read_window_bytes: 1 << 20,
            stop_after: None,
            throttle: Rc::new(IoThrottle::new(f64::MAX)),
        }
    }
}

/// Paces the cleaner after each batch it reads or writes:
/// - bounds its I/O rate (Kafka's `log.cleaner.io.max.bytes.per.second`): it sleeps for as long
///   as it is ahead of the rate, measured over windows of about a second (so an idle spell does
///   not bank a burst);
/// - yields its task queue at least every [`IoThrottle::YIELD_EVERY`] of work, so requests wait
///   at most about that long behind a pass. (glommio's own preemption, `yield_if_needed`, comes
///   only every 100 ms by default; a 1 ms preempt timer for the executors made them miss
///   wake-ups at startup under load, so the cleaner yields on its own clock instead.)
#[derive(Debug)]
pub struct IoThrottle {
    bytes_per_second: f64,
    window_start: std::cell::Cell<std::time::Instant>,
    window_bytes: std::cell::Cell<u64>,
    last_yield: std::cell::Cell<std::time::Instant>,
}

impl IoThrottle {
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(1);
    pub const YIELD_EVERY: std::time::Duration = std::time::Duration::from_millis(1);

    pub fn new(bytes_per_second: f64) -> IoThrottle {
        IoThrottle {
            bytes_per_second,
            window_start: std::cell::Cell::new(std::time::Instant::now()),
            window_bytes: std::cell::Cell::new(0),
            last_yield: std::cell::Cell::new(std::time::Instant::now()),
        }
    }

    /// How long to pause after `bytes` more (zero when within the rate).
    fn pause_after(&self, bytes: u64, now: std::time::Instant) -> std::time::Duration {
        if !(self.bytes_per_second.is_finite() && self.bytes_per_second < f64::MAX / 2.0) {
            return std::time::Duration::ZERO;
        }
        let elapsed = now.saturating_duration_since(self.window_start.get());
        if elapsed > Self::WINDOW {
            self.window_start.set(now);
            self.window_bytes.set(bytes);
            return std::time::Duration::ZERO;
        }
        let total = self.window_bytes.get() + bytes;
        self.window_bytes.set(total);
        let due = std::time::Duration::from_secs_f64(total as f64 / self.bytes_per_second);
        due.saturating_sub(elapsed)
    }

    /// Accounts `bytes` of cleaner I/O: sleeps if the cleaner is ahead of its rate, else yields
    /// the task queue when it has run for [`IoThrottle::YIELD_EVERY`] since the last pause.
    pub async fn account(&self, bytes: u64) {
        let now = std::time::Instant::now();
        let pause = self.pause_after(bytes, now);
        if !pause.is_zero() {
            glommio::timer::sleep(pause).await;
            self.last_yield.set(std::time::Instant::now());
        } else if now.duration_since(self.last_yield.get()) >= Self::YIELD_EVERY {
            glommio::executor().yield_task_queue_now().await;
            self.last_yield.set(std::time::Instant::now());
        }
    }
}

/// The steps of swapping a cleaned segment in, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SwapStep {
    /// `<base>.log.cleaned` written and fsynced; the old segment untouched.
    Written,
    /// Renamed to `<base>.log.swap`: the cleaned segment is committed.
    Committed,
    /// The old segment's `.index` and `.timeindex` deleted.
    OldIndexesRemoved,
    /// `<base>.log.swap` renamed over `<base>.log`; the new indexes not yet written.
    Renamed,
}

/// The cleaner's per-log state, kept in [`Log`].
#[derive(Debug, Default)]
pub struct CleanerState {
    /// First offset not yet cleaned; `None` until read from the checkpoint file.
    pub first_dirty: Option<i64>,
    /// Base offset of the segment being rewritten: retention leaves it (and later ones) alone.
    pub cleaning: Option<i64>,
    /// Dirty bytes / cleanable bytes at the last plan.
    pub dirty_ratio: f64,
    /// Counts segments swapped in, so a read spanning awaits notices its positions went stale.
    pub generation: u64,
}

/// What one pass did, for metrics and the log line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CleanStats {
    pub ran: bool,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub segments_cleaned: u64,
    pub records_removed: u64,
    pub dirty_ratio: f64,
}

/// Key → offset of its last record in the dirty range, bounded in bytes.
#[derive(Debug, Default)]
pub struct OffsetMap {
    entries: HashMap<Box<[u8]>, i64>,
    bytes: usize,
    limit: usize,
}

impl OffsetMap {
    pub fn new(limit: usize) -> OffsetMap {
        OffsetMap {
            entries: HashMap::new(),
            bytes: 0,
            limit,
        }
    }

    /// Records `offset` for `key`; false (and nothing stored) when the map is full.
    pub fn insert(&mut self, key: &[u8], offset: i64) -> bool {
        if let Some(latest) = self.entries.get_mut(key) {
            *latest = (*latest).max(offset);
            return true;
        }
        let cost = key.len() + MAP_ENTRY_OVERHEAD;
        if self.bytes + cost > self.limit {
            return false;
        }
        self.bytes += cost;
        self.entries.insert(key.into(), offset);
        true
    }

    pub fn get(&self, key: &[u8]) -> Option<i64> {
        self.entries.get(key).copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What filtering did to one batch.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchFate {
    /// Kept byte for byte.
    Unchanged,
    /// Replaced by these bytes (some records removed, or a delete horizon set).
    Rewritten(Bytes),
    /// Dropped entirely.
    Removed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filtered {
    pub fate: BatchFate,
    pub records_removed: u64,
    /// Delete horizon of tombstones the batch still holds.
    pub tombstone_horizon_ms: Option<i64>,
}

/// Inputs of [`filter_batch`] besides the batch.
pub struct FilterContext<'a> {
    pub map: &'a OffsetMap,
    pub now_ms: i64,
    pub delete_retention_ms: i64,
    /// (producer id, last offset) of every live producer's last batch.
    pub producer_tails: &'a HashSet<(i64, i64)>,
    /// The batch is the last of its segment.
    pub last_in_segment: bool,
    /// The batch belongs to an aborted transaction: none of its records is kept.
    pub aborted: bool,
}

/// Applies compaction to one stored batch (see the module doc for the rules).
pub fn filter_batch(batch: &Bytes, ctx: &FilterContext) -> Result<Filtered, BatchError> {
    let header = BatchHeader::parse(batch)?;
    let unchanged = |removed| Filtered {
        fate: BatchFate::Unchanged,
        records_removed: removed,
        tombstone_horizon_ms: None,
    };
    if header.is_control() {
        return Ok(unchanged(0));
    }
    let keep_empty = ctx.last_in_segment
        || (header.has_producer_id()
            && ctx
                .producer_tails
                .contains(&(header.producer_id, header.last_offset())));
    if header.records_count == 0 {
        return Ok(if keep_empty {
            unchanged(0)
        } else {
            Filtered {
                fate: BatchFate::Removed,
                records_removed: 0,
                tombstone_horizon_ms: None,
            }
        });
    }
    let horizon = header.delete_horizon_ms();
    let horizon_passed = horizon.is_some_and(|h| h <= ctx.now_ms);
    let mut kept = Vec::new();
    let mut removed = 0u64;
    let mut has_tombstone = false;
    for record in records(batch, MAX_DECOMPRESSED_BYTES)? {
        let record = record?;
        let offset = record.offset(&header);
        let retain = !ctx.aborted
            && match &record.key {
                // Kafka drops records without a key from compacted logs.
                None => false,
                Some(key) => match ctx.map.get(key) {
                    Some(latest) if latest > offset => false,
                    _ => record.value.is_some() || !horizon_passed,
                },
            };
        if retain {
            has_tombstone |= record.value.is_none();
            kept.push(record);
        } else {
            removed += 1;
        }
    }
    let set_horizon = has_tombstone && horizon.is_none();
    let new_horizon = if set_horizon {
        Some(ctx.now_ms.saturating_add(ctx.delete_retention_ms))
    } else {
        horizon
    };
    let tombstone_horizon_ms = has_tombstone.then_some(new_horizon).flatten();
    if removed == 0 && !set_horizon {
        return Ok(Filtered {
            tombstone_horizon_ms,
            ..unchanged(0)
        });
    }
    let fate = if kept.is_empty() {
        if keep_empty {
            BatchFate::Rewritten(empty_batch_like(&header))
        } else {
            BatchFate::Removed
        }
    } else {
        BatchFate::Rewritten(rebuild(&header, &kept, new_horizon)?)
    };
    Ok(Filtered {
        fate,
        records_removed: removed,
        tombstone_horizon_ms,
    })
}

/// Encodes the kept records as one batch with the original's offsets, producer fields, codec,
/// timestamp type and last offset (Kafka's `buildRetainedRecordsInto`), the delete horizon in
/// the base timestamp when there is one; CRC recomputed.
fn rebuild(
    original: &BatchHeader,
    kept: &[crate::records::Record],
    delete_horizon_ms: Option<i64>,
) -> Result<Bytes, BatchError> {
    let base_timestamp = delete_horizon_ms.unwrap_or(original.base_timestamp);
    let mut builder =
        BatchBuilder::new(original.compression(), original.base_offset, base_timestamp)
            .producer(
                original.producer_id,
                original.producer_epoch,
                original.base_sequence,
            )
            .transactional(original.is_transactional())
            .partition_leader_epoch(original.partition_leader_epoch);
    for record in kept {
        let headers: Vec<(&str, Option<&[u8]>)> = record
            .headers
            .iter()
            .map(|h| (h.key.as_str(), h.value.as_deref()))
            .collect();
        builder.append_with_offset_delta(
            record.offset_delta,
            record.timestamp(original),
            record.key.as_deref(),
            record.value.as_deref(),
            &headers,
        )?;
    }
    let mut bytes = builder.build()?.to_vec();
    let mut header = BatchHeader::parse(&bytes)?;
    header.last_offset_delta = original.last_offset_delta;
    if delete_horizon_ms.is_some() {
        header.attributes |= DELETE_HORIZON_MASK;
    }
    if original.attributes & TIMESTAMP_TYPE_MASK != 0 {
        header.attributes |= TIMESTAMP_TYPE_MASK;
        header.max_timestamp = original.max_timestamp;
    }
    bytes[..BATCH_HEADER_LEN].copy_from_slice(&header.encode());
    batch::recompute_crc(&mut bytes)?;
    Ok(Bytes::from(bytes))
}

/// One cleanable segment as the plan saw it.
#[derive(Clone)]
pub struct SegmentRef {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size: u64,
    pub file: Rc<DmaFile>,
    pub created_ms: i64,
    /// The segment's aborted-transaction entries (carried to its cleaned version).
    pub aborted: Vec<AbortedTxn>,
}

/// Aborted transactions of the cleanable range, by producer: (first offset, marker offset).
#[derive(Debug, Default)]
pub struct AbortedRanges(HashMap<i64, Vec<(i64, i64)>>);

impl AbortedRanges {
    pub fn new<'a>(entries: impl IntoIterator<Item = &'a AbortedTxn>) -> AbortedRanges {
        let mut by_producer: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for entry in entries {
            by_producer
                .entry(entry.producer_id)
                .or_default()
                .push((entry.first_offset, entry.last_offset));
        }
        for ranges in by_producer.values_mut() {
            ranges.sort_unstable();
        }
        AbortedRanges(by_producer)
    }

    /// Whether a stored data batch belongs to an aborted transaction.
    pub fn contains(&self, header: &BatchHeader) -> bool {
        if !header.is_transactional() || header.is_control() {
            return false;
        }
        let Some(ranges) = self.0.get(&header.producer_id) else {
            return false;
        };
        let at = ranges.partition_point(|r| r.0 <= header.base_offset);
        at > 0 && ranges[at - 1].1 > header.base_offset
    }
}

/// Per pass: producers with transactional data seen since their last marker (Kafka's
/// `CleanedTransactionMetadata`), deciding whether a marker may go.
#[derive(Debug, Default)]
pub struct MarkerTracker {
    data_seen: HashSet<i64>,
}

impl MarkerTracker {
    /// Notes a data batch read by the pass.
    pub fn on_data(&mut self, header: &BatchHeader) {
        if header.is_transactional() && !header.is_control() && header.records_count > 0 {
            self.data_seen.insert(header.producer_id);
        }
    }

    /// Whether the marker just read may be dropped: no data of its transaction was seen before
    /// it and it is older than `delete.retention.ms`. Forgets the transaction either way.
    pub fn marker_removable(
        &mut self,
        header: &BatchHeader,
        now_ms: i64,
        retention_ms: i64,
    ) -> bool {
        let data_before = self.data_seen.remove(&header.producer_id);
        !data_before && now_ms.saturating_sub(header.max_timestamp) > retention_ms
    }
}

pub struct CleanPlan {
    pub segments: Vec<SegmentRef>,
    pub aborted: AbortedRanges,
    pub first_dirty: i64,
    pub log_start_offset: i64,
    pub delete_retention_ms: i64,
    pub index_interval_bytes: u32,
    pub dir: PathBuf,
}

/// Reads the batches of a sealed segment in windows, validating each (length, CRC).
struct BatchReader {
    file: Rc<DmaFile>,
    size: u64,
    position: u64,
    window: usize,
    buffer: Option<(u64, ReadResult)>,
}

impl BatchReader {
    fn new(file: Rc<DmaFile>, size: u64, window: usize) -> BatchReader {
        BatchReader {
            file,
            size,
            position: 0,
            window,
            buffer: None,
        }
    }

    /// Makes the buffer cover `length` bytes from the current position.
    async fn cover(&mut self, length: usize) -> std::io::Result<&[u8]> {
        let covered = self.buffer.as_ref().is_some_and(|(start, data)| {
            *start <= self.position && self.position + length as u64 <= start + data.len() as u64
        });
        if !covered {
            let wanted = (self.window.max(length) as u64).min(self.size - self.position) as usize;
            let data = self
                .file
                .read_at(self.position, wanted)
                .await
                .map_err(std::io::Error::from)?;
            self.buffer = Some((self.position, data));
        }
        let (start, data) = self.buffer.as_ref().expect("buffer filled");
        let from = (self.position - start) as usize;
        Ok(&data[from..(from + length).min(data.len())])
    }

    /// The next batch and whether it is the segment's last; `None` at the end.
    async fn next(&mut self) -> std::io::Result<Option<(Bytes, bool)>> {
        if self.position >= self.size {
            return Ok(None);
        }
        let corrupt = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
        let at = self.position;
        let head = self.cover(LOG_OVERHEAD).await?;
        if head.len() < LOG_OVERHEAD {
            return Err(corrupt(format!("truncated batch header at {at}")));
        }
        let length = i32::from_be_bytes(head[8..12].try_into().expect("4 bytes"));
        let total = usize::try_from(length).unwrap_or(0) + LOG_OVERHEAD;
        if length <= 0 || total > segment::MAX_BATCH_BYTES || at + total as u64 > self.size {
            return Err(corrupt(format!("invalid batch length {length} at {at}")));
        }
        let bytes = Bytes::copy_from_slice(self.cover(total).await?);
        batch::validate(&bytes).map_err(|e| corrupt(format!("batch at {at}: {e}")))?;
        self.position += total as u64;
        Ok(Some((bytes, self.position >= self.size)))
    }
}

impl Log {
    /// Decides whether this log needs a cleaning pass now; `None` when not. Nothing at or past
    /// `first_unstable_offset` (an undecided transaction) is cleanable.
    fn plan_cleaning(
        &mut self,
        now_ms: i64,
        first_unstable_offset: Option<i64>,
    ) -> Option<CleanPlan> {
        if !self.config.cleanup_compact {
            return None;
        }
        if self.cleaner.first_dirty.is_none() {
            let checkpoint = read_checkpoint(&self.dir.join(CLEANER_CHECKPOINT));
            self.cleaner.first_dirty = Some(checkpoint.unwrap_or(0));
        }
        let first_dirty = self
            .cleaner
            .first_dirty
            .unwrap_or(0)
            .max(self.log_start_offset);
        let last_base = self.segment_bases().last().copied()?;
        let min_lag = self.config.min_compaction_lag_ms;
        let mut segments = Vec::new();
        let (mut clean_bytes, mut dirty_bytes) = (0u64, 0u64);
        let mut oldest_dirty_timestamp = None;
        let mut horizon_due = false;
        for segment in self.segments_iter() {
            if segment.base_offset == last_base || !segment.is_sealed() {
                break;
            }
            if first_unstable_offset.is_some_and(|unstable| segment.next_offset > unstable) {
                break;
            }
            if min_lag > 0 && segment.max_timestamp >= 0 && now_ms - segment.max_timestamp < min_lag
            {
                break;
            }
            if segment.next_offset <= self.log_start_offset {
                continue;
            }
            if segment.next_offset <= first_dirty {
                clean_bytes += segment.size;
                horizon_due |= segment.tombstone_horizon_ms.is_some_and(|h| h <= now_ms);
            } else {
                dirty_bytes += segment.size;
                oldest_dirty_timestamp.get_or_insert(
                    segment
                        .time_index
                        .first_timestamp()
                        .unwrap_or(segment.max_timestamp),
                );
            }
            segments.push(SegmentRef {
                base_offset: segment.base_offset,
                next_offset: segment.next_offset,
                size: segment.size,
                file: segment.file.clone(),
                created_ms: segment.created_ms,
                aborted: segment.aborted.clone(),
            });
        }
        let total = clean_bytes + dirty_bytes;
        let ratio = if total == 0 {
            0.0
        } else {
            dirty_bytes as f64 / total as f64
        };
        self.cleaner.dirty_ratio = ratio;
        let max_lag = self.config.max_compaction_lag_ms;
        let overdue = oldest_dirty_timestamp
            .is_some_and(|t| t >= 0 && max_lag < i64::MAX && now_ms.saturating_sub(t) > max_lag);
        let due = (dirty_bytes > 0 && (ratio >= self.config.min_cleanable_dirty_ratio || overdue))
            || horizon_due;
        due.then(|| CleanPlan {
            aborted: AbortedRanges::new(segments.iter().flat_map(|s| s.aborted.iter())),
            segments,
            first_dirty,
            log_start_offset: self.log_start_offset,
            delete_retention_ms: self.config.delete_retention_ms,
            index_interval_bytes: self.config.index_interval_bytes,
            dir: self.dir.clone(),
        })
    }

    /// Runs one cleaning pass if the log needs one. `producer_tails` holds (producer id, last
    /// offset) of every producer's last batch, whose header survives compaction;
    /// `first_unstable_offset` the first offset of the oldest undecided transaction.
    pub async fn clean(
        cell: &RefCell<Log>,
        now_ms: i64,
        options: &CleanerOptions,
        producer_tails: &HashSet<(i64, i64)>,
        first_unstable_offset: Option<i64>,
    ) -> std::io::Result<CleanStats> {
        let plan = cell
            .borrow_mut()
            .plan_cleaning(now_ms, first_unstable_offset);
        let mut stats = CleanStats {
            dirty_ratio: cell.borrow().cleaner.dirty_ratio,
            ..Default::default()
        };
        let Some(plan) = plan else {
            return Ok(stats);
        };
        stats.ran = true;
        let (map, map_end) = build_offset_map(&plan, options, &mut stats).await?;
        let mut markers = MarkerTracker::default();
        for segment in plan.segments.iter().filter(|s| s.base_offset < map_end) {
            let ctx = SegmentContext {
                plan: &plan,
                map: &map,
                now_ms,
                producer_tails,
                options,
            };
            if !cell.borrow_mut().start_cleaning(segment) {
                continue; // removed by retention since the plan
            }
            let result = clean_segment(cell, segment, &ctx, &mut markers, &mut stats).await;
            cell.borrow_mut().cleaner.cleaning = None;
            if result? {
                // A simulated crash (tests): stop where a crash would have.
                return Ok(stats);
            }
        }
        if map_end > plan.first_dirty {
            let path = plan.dir.join(CLEANER_CHECKPOINT);
            blocking(move || write_checkpoint(&path, map_end)).await?;
            cell.borrow_mut().cleaner.first_dirty = Some(map_end);
        }
        Ok(stats)
    }
}

/// Reads the dirty segments into a key → last offset map. Returns the map and the offset it
/// covers up to (a segment boundary).
async fn build_offset_map(
    plan: &CleanPlan,
    options: &CleanerOptions,
    stats: &mut CleanStats,
) -> std::io::Result<(OffsetMap, i64)> {
    let mut map = OffsetMap::new(options.dedupe_buffer_bytes);
    let mut map_end = plan.first_dirty;
    let dirty = plan
        .segments
        .iter()
        .filter(|s| s.next_offset > plan.first_dirty);
    'segments: for segment in dirty {
        let mut reader = BatchReader::new(
            segment.file.clone(),
            segment.size,
            options.read_window_bytes,
        );
        while let Some((bytes, _)) = reader.next().await? {
            stats.bytes_read += bytes.len() as u64;
            options.throttle.account(bytes.len() as u64).await;
            let header = BatchHeader::parse(&bytes).map_err(invalid_data)?;
            if header.is_control() || header.records_count == 0 || plan.aborted.contains(&header) {
                continue;
            }
            for record in records(&bytes, MAX_DECOMPRESSED_BYTES).map_err(invalid_data)? {
                let record = record.map_err(invalid_data)?;
                let Some(key) = &record.key else { continue };
                if !map.insert(key, record.offset(&header)) {
                    if map_end == plan.first_dirty {
                        tracing::warn!(
                            "{}: log.cleaner.dedupe.buffer.size ({} bytes) cannot hold the keys \
                             of one segment; raise it to compact this log",
                            plan.dir.display(),
                            options.dedupe_buffer_bytes
                        );
                    }
                    break 'segments;
                }
            }
            glommio::yield_if_needed().await;
        }
        map_end = segment.next_offset;
    }
    Ok((map, map_end))
}

struct SegmentContext<'a> {
    plan: &'a CleanPlan,
    map: &'a OffsetMap,
    now_ms: i64,
    producer_tails: &'a HashSet<(i64, i64)>,
    options: &'a CleanerOptions,
}

/// Path of `<base>.log` with a suffix appended (`.cleaned`, `.swap`).
pub fn suffixed(log_path: &Path, suffix: &str) -> PathBuf {
    let mut name = log_path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Filters one segment into `<base>.log.cleaned` and swaps it in if anything changed. Returns
/// true when `stop_after` ended the swap early.
async fn clean_segment(
    cell: &RefCell<Log>,
    source: &SegmentRef,
    ctx: &SegmentContext<'_>,
    markers: &mut MarkerTracker,
    stats: &mut CleanStats,
) -> std::io::Result<bool> {
    let log_path = Segment::log_path(&ctx.plan.dir, source.base_offset);
    let cleaned_path = suffixed(&log_path, CLEANED_SUFFIX);
    let out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(&cleaned_path)
        .await
        .map_err(std::io::Error::from)?;
    let mut writer = DmaStreamWriterBuilder::new(out)
        .with_buffer_size(128 << 10)
        .with_write_behind(2)
        .with_sync_on_close_disabled(true)
        .build();
    let mut reader = BatchReader::new(
        source.file.clone(),
        source.size,
        ctx.options.read_window_bytes,
    );
    let mut kept: Vec<BatchSummary> = Vec::new();
    let mut position = 0u64;
    let mut changed = false;
    let mut horizon: Option<i64> = None;
    let mut removed = 0;
    let mut bytes_read = 0;
    let mut dropped_markers: HashSet<i64> = HashSet::new();
    while let Some((bytes, last_in_segment)) = reader.next().await? {
        bytes_read += bytes.len() as u64;
        let source_header = BatchHeader::parse(&bytes).map_err(invalid_data)?;
        markers.on_data(&source_header);
        let filter = FilterContext {
            map: ctx.map,
            now_ms: ctx.now_ms,
            delete_retention_ms: ctx.plan.delete_retention_ms,
            producer_tails: ctx.producer_tails,
            last_in_segment,
            aborted: ctx.plan.aborted.contains(&source_header),
        };
        let bytes_len = bytes.len();
        let removable_marker = source_header.is_control()
            && markers.marker_removable(&source_header, ctx.now_ms, ctx.plan.delete_retention_ms)
            && !last_in_segment;
        let filtered = if removable_marker {
            dropped_markers.insert(source_header.base_offset);
            Filtered {
                fate: BatchFate::Removed,
                records_removed: source_header.records_count.max(0) as u64,
                tombstone_horizon_ms: None,
            }
        } else {
            filter_batch(&bytes, &filter).map_err(invalid_data)?
        };
        removed += filtered.records_removed;
        if let Some(h) = filtered.tombstone_horizon_ms {
            horizon = Some(horizon.map_or(h, |old: i64| old.min(h)));
        }
        let output = match filtered.fate {
            BatchFate::Unchanged => bytes,
            BatchFate::Rewritten(rewritten) => {
                changed = true;
                rewritten
            }
            BatchFate::Removed => {
                changed = true;
                ctx.options.throttle.account(bytes_len as u64).await;
                continue;
            }
        };
        let header = BatchHeader::parse(&output).map_err(invalid_data)?;
        writer.write_all(&output).await?;
        ctx.options
            .throttle
            .account((bytes_len + output.len()) as u64)
            .await;
        kept.push(BatchSummary {
            position,
            header,
            marker: None,
        });
        position += output.len() as u64;
        glommio::yield_if_needed().await;
    }
    stats.bytes_read += bytes_read;
    writer.close().await?;
    if !changed {
        let _ = std::fs::remove_file(&cleaned_path);
        set_tombstone_horizon(cell, source, horizon);
        return Ok(false);
    }
    let file = Segment::open_file(&cleaned_path).await?;
    // The stream writer truncated the padding after its last fdatasync: sync the size too.
    file.fdatasync().await.map_err(std::io::Error::from)?;
    let mut cleaned = Segment::assemble(
        source.base_offset,
        log_path.clone(),
        Rc::new(file),
        0,
        source.base_offset,
        None,
        source.created_ms,
    );
    for summary in &kept {
        cleaned.track_batch(
            summary.position,
            &summary.header,
            ctx.plan.index_interval_bytes,
        );
    }
    cleaned.next_offset = source.next_offset;
    cleaned.tombstone_horizon_ms = horizon;
    cleaned.aborted = source
        .aborted
        .iter()
        .filter(|e| !dropped_markers.contains(&e.last_offset))
        .copied()
        .collect();
    if swap_in(&cleaned, &log_path, &cleaned_path, ctx.options.stop_after).await? {
        return Ok(true);
    }
    stats.bytes_written += position;
    stats.segments_cleaned += 1;
    stats.records_removed += removed;
    tracing::info!(
        "{}: cleaned segment {} ({} → {} bytes, {removed} records removed)",
        ctx.plan.dir.display(),
        source.base_offset,
        source.size,
        position
    );
    cell.borrow_mut().install_cleaned(cleaned, source);
    Ok(false)
}

/// The swap protocol (see the module doc); true when stopped early by `stop_after`.
async fn swap_in(
    cleaned: &Segment,
    log_path: &Path,
    cleaned_path: &Path,
    stop_after: Option<SwapStep>,
) -> std::io::Result<bool> {
    let stop = |step: SwapStep| stop_after == Some(step);
    let dir = log_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let swap_path = suffixed(log_path, SWAP_SUFFIX);
    // Directory fsyncs: only the commit (the rename to `.swap`) and the final rename are synced.
    // The `.cleaned` name needs none of its own (the commit's sync persists the renamed entry;
    // before it, recovery deletes a `.cleaned` anyway), nor do the old indexes' removals (while
    // the `.swap` is on disk recovery removes them again; the final sync persists both).
    if stop(SwapStep::Written) {
        return Ok(true);
    }
    let (from, to, sync) = (cleaned_path.to_path_buf(), swap_path.clone(), dir.clone());
    blocking(move || {
        std::fs::rename(&from, &to)?;
        segment::sync_dir(&sync)
    })
    .await?;
    if stop(SwapStep::Committed) {
        return Ok(true);
    }
    let (index, time_index) = (cleaned.index_path("index"), cleaned.index_path("timeindex"));
    blocking(move || {
        remove_if_present(&index)?;
        remove_if_present(&time_index)
    })
    .await?;
    if stop(SwapStep::OldIndexesRemoved) {
        return Ok(true);
    }
    let (from, to, sync) = (swap_path, log_path.to_path_buf(), dir);
    blocking(move || {
        std::fs::rename(&from, &to)?;
        segment::sync_dir(&sync)
    })
    .await?;
    if stop(SwapStep::Renamed) {
        return Ok(true);
    }
    cleaned.write_index_files().await?;
    Ok(false)
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn set_tombstone_horizon(cell: &RefCell<Log>, source: &SegmentRef, horizon: Option<i64>) {
    let mut log = cell.borrow_mut();
    if let Some(segment) = log.segment_mut(source.base_offset) {
        if Rc::ptr_eq(&segment.file, &source.file) {
            segment.tombstone_horizon_ms = horizon;
        }
    }
}

/// Startup, before the segments are listed: deletes `*.cleaned` files (a pass that had not
/// committed) and completes every `<base>.log.swap` (committed): the old indexes are deleted and
/// the swap renamed over `<base>.log`, whose indexes are then rebuilt by scanning. Returns notes
/// for the recovery report.
pub fn recover_cleaning(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut notes = Vec::new();
    let mut swaps = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(CLEANED_SUFFIX) {
            std::fs::remove_file(entry.path())?;
            notes.push(format!("{name}: unfinished cleaning discarded"));
        } else if let Some(log_name) = name.strip_suffix(SWAP_SUFFIX) {
            if segment::parse_file_name(log_name, "log").is_some() {
                swaps.push(dir.join(log_name));
            }
        }
    }
    for log_path in swaps {
        remove_if_present(&log_path.with_extension("index"))?;
        remove_if_present(&log_path.with_extension("timeindex"))?;
        segment::sync_dir(dir)?;
        std::fs::rename(suffixed(&log_path, SWAP_SUFFIX), &log_path)?;
        segment::sync_dir(dir)?;
        notes.push(format!(
            "{}: cleaned segment swapped in",
            log_path.file_name().unwrap_or_default().to_string_lossy()
        ));
    }
    Ok(notes)
}

fn invalid_data(error: BatchError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, error.to_string())
}

#[cfg(test)]
mod throttle_tests {
    use super::IoThrottle;
    use std::time::{Duration, Instant};

    #[test]
    fn the_throttle_pauses_for_what_is_ahead_of_the_rate_and_forgets_idle_time() {
        let start = Instant::now();
        let throttle = IoThrottle::new(1_000_000.0);
        throttle.window_start.set(start);
        // 500 KB in the first 100 ms: 400 ms ahead of 1 MB/s.
        let pause = throttle.pause_after(500_000, start + Duration::from_millis(100));
        assert_eq!(pause, Duration::from_millis(400));
        // Within the rate: no pause.
        let pause = throttle.pause_after(100_000, start + Duration::from_millis(900));
        assert_eq!(pause, Duration::ZERO);
        // After an idle spell a new window starts: no banked burst, no pause for the first batch.
        let later = start + Duration::from_secs(5);
        assert_eq!(throttle.pause_after(900_000, later), Duration::ZERO);
        assert_eq!(
            throttle.pause_after(600_000, later + Duration::from_millis(500)),
            Duration::from_millis(1000)
        );
        let unlimited = IoThrottle::new(f64::MAX);
        assert_eq!(unlimited.pause_after(u64::MAX / 2, start), Duration::ZERO);
    }
}
