//! A partition's log: its segments, offsets, recent-batch cache, read-ahead, roll, retention and
//! crash recovery.
//!
//! Owned by exactly one shard and kept in a `RefCell` by the partition. Every async operation here
//! is written as: borrow and take what the I/O needs (synchronously), await the I/O with no borrow
//! held, borrow again and apply the result. Appends are fully synchronous, so the order in which
//! the partition calls [`Log::append`] is the order of the log.
//!
//! Offsets: `log_start_offset ≤ durable_offset ≤ written_offset ≤ log_end_offset`. Batches below
//! `written_offset` are in the file (O_DIRECT writes completed); below `durable_offset` they were
//! fdatasynced too. Reads never go past the bound the caller passes (the high watermark, which is
//! at most `written_offset`), so a read never sees bytes still in an appender's buffer.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use glommio::io::{DmaFile, ReadResult};

use super::appender::{self, Appender, FlushWork};
use super::segment::{self, blocking, write_file_synced, BatchSummary, Segment};
use crate::config::TopicConfig;
use crate::records::batch::{self, BatchHeader};

const LOG_START_CHECKPOINT: &str = "log-start-offset";

/// Settings of the storage engine that are per shard rather than per topic.
#[derive(Clone, Debug)]
pub struct LogOptions {
    pub write_buffer_bytes: usize,
    pub readahead_bytes: usize,
    pub preallocate_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            write_buffer_bytes: 256 << 10,
            readahead_bytes: 1 << 20,
            preallocate_bytes: 32 << 20,
        }
    }
}

#[derive(Debug)]
pub enum ReadError {
    /// The offset is below the log start or beyond the log end.
    OffsetOutOfRange {
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// A stored batch failed validation on the way out (media corruption).
    Corrupt(String),
    Io(std::io::Error),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// A batch kept in memory for consumers reading the tail. `bytes` is the batch as the producer
/// sent it (a slice of the request frame); `prefix` is its first 16 bytes with the base offset and
/// leader epoch as stored.
struct CachedBatch {
    base_offset: i64,
    last_offset: i64,
    prefix: [u8; 16],
    bytes: Bytes,
}

impl CachedBatch {
    fn copy_into(&self, out: &mut BytesMut) {
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(&self.bytes[16..]);
    }
}

/// The last cold read, kept so a sequential consumer's next fetch needs no I/O.
struct ReadAhead {
    segment_base: i64,
    file_position: u64,
    data: ReadResult,
}

/// Where an appended batch went.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub bytes: usize,
}

pub struct Log {
    pub dir: PathBuf,
    pub config: TopicConfig,
    options: LogOptions,
    segments: BTreeMap<i64, Segment>,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub written_offset: i64,
    pub durable_offset: i64,
    /// Time of the last fdatasync (for write caching's flush.ms).
    pub last_sync_ms: i64,
    cache: VecDeque<CachedBatch>,
    cache_bytes: usize,
    cache_limit: usize,
    readahead: Option<ReadAhead>,
    /// Batches validated by recovery in the last segment(s), for rebuilding producer state.
    pub recovered: Vec<BatchSummary>,
}

/// Statistics of opening a log, for the recovery log line.
#[derive(Debug, Default, Clone)]
pub struct OpenReport {
    pub segments: usize,
    pub scanned_bytes: u64,
    pub truncated_bytes: u64,
    pub notes: Vec<String>,
}

impl Log {
    /// Opens (or creates) the log in `dir`, recovering what a crash left behind when
    /// `clean_shutdown` is false.
    pub async fn open(
        dir: &Path,
        config: TopicConfig,
        options: LogOptions,
        clean_shutdown: bool,
        now_ms: i64,
    ) -> std::io::Result<(Log, OpenReport)> {
        let dir_owned = dir.to_path_buf();
        let bases = blocking(move || prepare_dir(&dir_owned)).await?;
        let mut report = OpenReport {
            segments: bases.len(),
            ..Default::default()
        };
        let checkpoint = read_log_start_checkpoint(dir);
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            options,
            segments: BTreeMap::new(),
            log_start_offset: 0,
            log_end_offset: 0,
            written_offset: 0,
            durable_offset: 0,
            last_sync_ms: now_ms,
            cache: VecDeque::new(),
            cache_bytes: 0,
            cache_limit: 0,
            readahead: None,
            recovered: Vec::new(),
        };
        if bases.is_empty() {
            let base = checkpoint.unwrap_or(0).max(0);
            log.create_first_segment(base, now_ms).await?;
        } else {
            log.recover_segments(&bases, clean_shutdown, now_ms, &mut report)
                .await?;
        }
        let first_base = *log.segments.keys().next().expect("log has a segment");
        log.log_start_offset = checkpoint
            .unwrap_or(first_base)
            .max(first_base)
            .min(log.log_end_offset);
        log.written_offset = log.log_end_offset;
        log.durable_offset = log.log_end_offset;
        Ok((log, report))
    }

    async fn create_first_segment(&mut self, base: i64, now_ms: i64) -> std::io::Result<()> {
        let segment =
            Segment::create(&self.dir, base, 0, self.options.write_buffer_bytes, now_ms).await?;
        let dir = self.dir.clone();
        blocking(move || segment::sync_dir(&dir)).await?;
        self.log_end_offset = base;
        self.segments.insert(base, segment);
        Ok(())
    }

    async fn recover_segments(
        &mut self,
        bases: &[i64],
        clean_shutdown: bool,
        now_ms: i64,
        report: &mut OpenReport,
    ) -> std::io::Result<()> {
        let last_index = bases.len() - 1;
        for (position, &base) in bases.iter().enumerate() {
            let path = Segment::log_path(&self.dir, base);
            let file = Rc::new(Segment::open_file(&path).await?);
            let file_size = file.file_size().await.map_err(std::io::Error::from)?;
            let next_base = bases.get(position + 1).copied();
            let mut segment = Segment::assemble(
                base,
                path,
                file,
                file_size,
                next_base.unwrap_or(base),
                None,
                now_ms,
            );
            let is_last = position == last_index;
            let trusted = (clean_shutdown || !is_last) && segment.load_index_files();
            let (valid_end, summaries) = if trusted {
                // Indexes are good: only the bytes after the last index entry need reading, to
                // learn the segment's last offset.
                let (_, start_position) = segment.index.lookup(i64::MAX);
                let tail =
                    segment::scan(&segment.file, start_position as u64, base, file_size).await?;
                report.scanned_bytes += file_size - start_position as u64;
                (tail.valid_end, tail.batches)
            } else {
                let result = segment::scan(&segment.file, 0, base, file_size).await?;
                report.scanned_bytes += file_size;
                if let Some(why) = &result.stopped {
                    report.notes.push(format!("segment {base}: {why}"));
                }
                segment.index = super::index::OffsetIndex::new(base);
                segment.time_index = super::index::TimeIndex::new(base);
                (result.valid_end, result.batches)
            };
            if !trusted {
                segment.size = 0;
                for summary in &summaries {
                    segment.track_batch(
                        summary.position,
                        &summary.header,
                        self.config.index_interval_bytes,
                    );
                }
            } else if let Some(last) = summaries.last() {
                segment.next_offset = last.header.last_offset() + 1;
            } else if segment.index.is_empty() && valid_end == 0 {
                segment.next_offset = base;
            }
            segment.size = valid_end;
            let truncated = file_size.saturating_sub(valid_end);
            if is_last || !trusted {
                self.recovered.extend(
                    summaries
                        .iter()
                        .filter(|s| s.header.producer_id >= 0)
                        .copied(),
                );
            }
            if truncated > 0 {
                segment
                    .file
                    .truncate(valid_end)
                    .await
                    .map_err(std::io::Error::from)?;
                report.truncated_bytes += truncated;
                if !trusted && !is_last {
                    // Kafka's rule: everything after a truncated segment is dropped.
                    report.notes.push(format!(
                        "segment {base} truncated at {valid_end}; later segments deleted"
                    ));
                    self.insert_recovered(segment, now_ms).await?;
                    for &later in &bases[position + 1..] {
                        remove_segment_files(&Segment::log_path(&self.dir, later));
                    }
                    return Ok(());
                }
            }
            if !trusted && !is_last {
                // Sealed but without index files (crash while rolling): seal it now.
                segment.write_index_files().await?;
            }
            if is_last {
                self.insert_recovered(segment, now_ms).await?;
            } else {
                self.log_end_offset = segment.next_offset;
                self.segments.insert(base, segment);
            }
        }
        Ok(())
    }

    /// Makes a recovered segment the active one.
    async fn insert_recovered(&mut self, mut segment: Segment, now_ms: i64) -> std::io::Result<()> {
        let alignment = segment.file.alignment() as usize;
        let end = segment.size;
        let aligned = end & !(alignment as u64 - 1);
        let tail = if aligned < end {
            let block = segment
                .file
                .read_at(aligned, (end - aligned) as usize)
                .await
                .map_err(std::io::Error::from)?;
            block[..(end - aligned) as usize].to_vec()
        } else {
            Vec::new()
        };
        segment.remove_index_files();
        segment.appender = Some(Appender::new(
            alignment,
            self.options.write_buffer_bytes,
            end,
            tail,
        ));
        segment.created_ms = now_ms;
        self.log_end_offset = segment.next_offset;
        self.segments.insert(segment.base_offset, segment);
        Ok(())
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size).sum()
    }

    /// Base offsets and sizes of the segments, oldest first.
    pub fn segment_summaries(&self) -> Vec<(i64, u64, bool)> {
        self.segments
            .values()
            .map(|s| (s.base_offset, s.size, s.is_sealed()))
            .collect()
    }

    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("log has a segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("log has a segment")
    }

    /// Bytes appended but not yet handed to the flusher.
    pub fn unflushed_bytes(&self) -> u64 {
        self.segments
            .values()
            .filter_map(|s| s.appender.as_ref())
            .map(|a| a.unflushed_bytes())
            .sum()
    }

    pub fn set_cache_limit(&mut self, bytes: usize) {
        self.cache_limit = bytes;
        self.evict_cache();
    }

    /// Whether appending `incoming` bytes now needs a new segment first (Kafka's shouldRoll).
    pub fn needs_roll(&self, incoming: usize, now_ms: i64) -> bool {
        let active = self.active();
        if active.rolled {
            return true;
        }
        if active.size == 0 {
            return false;
        }
        let too_big = active.size + incoming as u64 > self.config.segment_bytes;
        let too_old =
            now_ms - active.created_ms > self.config.segment_ms - self.config.segment_jitter_ms;
        let index_full = active.index.size_bytes() + super::index::OFFSET_ENTRY_LEN
            > self.config.segment_index_bytes as usize
            || active.time_index.len() * super::index::TIME_ENTRY_LEN
                + super::index::TIME_ENTRY_LEN
                > self.config.segment_index_bytes as usize;
        let offsets_overflow =
            self.log_end_offset - active.base_offset > i32::MAX as i64 - 1_000_000;
        too_big || too_old || index_full || offsets_overflow
    }

    /// Appends one validated batch, assigning offsets from the log end. `log_append_time` stamps
    /// the batch (attributes, max timestamp, CRC) as Kafka does for LogAppendTime topics.
    pub fn append(
        &mut self,
        header: &BatchHeader,
        batch_bytes: &Bytes,
        leader_epoch: i32,
        log_append_time: Option<i64>,
    ) -> AppendInfo {
        let base_offset = self.log_end_offset;
        let stamped = log_append_time.map(|timestamp| {
            let mut copy = batch_bytes.to_vec();
            batch::set_log_append_time(&mut copy, timestamp)
                .expect("a validated batch can be stamped");
            Bytes::from(copy)
        });
        let stored = stamped.as_ref().unwrap_or(batch_bytes);
        let mut prefix = [0u8; 16];
        prefix.copy_from_slice(&stored[..16]);
        batch::set_base_offset(&mut prefix, base_offset)
            .expect("16-byte prefix holds the base offset");
        batch::set_partition_leader_epoch(&mut prefix, leader_epoch)
            .expect("16-byte prefix holds the leader epoch");
        let mut stored_header = *header;
        stored_header.base_offset = base_offset;
        stored_header.partition_leader_epoch = leader_epoch;
        if let Some(timestamp) = log_append_time {
            stored_header.max_timestamp = timestamp;
            stored_header.attributes |= 0x08;
        }
        let interval = self.config.index_interval_bytes;
        let active = self.active_mut();
        let appender = active
            .appender
            .as_mut()
            .expect("active segment has an appender");
        let position = appender.end();
        appender.append(&[&prefix, &stored[16..]]);
        active.track_batch(position, &stored_header, interval);
        let last_offset = stored_header.last_offset();
        self.log_end_offset = last_offset + 1;
        self.push_cache(CachedBatch {
            base_offset,
            last_offset,
            prefix,
            bytes: stored.clone(),
        });
        AppendInfo {
            base_offset,
            last_offset,
            max_timestamp: stored_header.max_timestamp,
            bytes: stored.len(),
        }
    }

    fn push_cache(&mut self, entry: CachedBatch) {
        self.cache_bytes += entry.bytes.len();
        self.cache.push_back(entry);
        self.evict_cache();
    }

    fn evict_cache(&mut self) {
        while self.cache_bytes > self.cache_limit {
            let Some(evicted) = self.cache.pop_front() else {
                break;
            };
            self.cache_bytes -= evicted.bytes.len();
        }
    }

    /// Bytes held by the recent-batch cache.
    pub fn cache_bytes(&self) -> usize {
        self.cache_bytes
    }

    /// Serves a read from the cache when it holds `offset`.
    fn read_cached(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_bound: i64,
        min_one: bool,
    ) -> Option<Bytes> {
        let front = self.cache.front()?;
        if offset < front.base_offset {
            return None;
        }
        let start = self.cache.partition_point(|b| b.last_offset < offset);
        let mut out = BytesMut::new();
        for entry in self.cache.range(start..) {
            if entry.last_offset >= upper_bound {
                break;
            }
            let fits = out.len() + entry.bytes.len() <= max_bytes;
            if !(fits || out.is_empty() && min_one) {
                break;
            }
            if out.is_empty() {
                out.reserve(entry.bytes.len().max(max_bytes.min(1 << 20)));
            }
            entry.copy_into(&mut out);
            if !fits {
                break;
            }
        }
        Some(out.freeze())
    }

    /// Reads batches starting with the one that holds `offset`, up to `max_bytes` (at least one
    /// whole batch when `min_one`), never including a batch that reaches `upper_bound`.
    pub async fn read(
        cell: &RefCell<Log>,
        offset: i64,
        max_bytes: usize,
        upper_bound: i64,
        min_one: bool,
    ) -> Result<Bytes, ReadError> {
        let mut next_segment_from: Option<i64> = None;
        loop {
            let plan = {
                let log = cell.borrow();
                if offset < log.log_start_offset || offset > log.log_end_offset {
                    return Err(ReadError::OffsetOutOfRange {
                        log_start_offset: log.log_start_offset,
                        log_end_offset: log.log_end_offset,
                    });
                }
                if offset >= upper_bound {
                    return Ok(Bytes::new());
                }
                if next_segment_from.is_none() {
                    if let Some(bytes) = log.read_cached(offset, max_bytes, upper_bound, min_one) {
                        return Ok(bytes);
                    }
                    if let Some(bytes) =
                        log.read_from_readahead(offset, max_bytes, upper_bound, min_one)?
                    {
                        return Ok(bytes);
                    }
                }
                match log.plan_disk_read(offset, max_bytes, next_segment_from) {
                    Some(plan) => plan,
                    None => return Ok(Bytes::new()),
                }
            };
            let data = plan
                .file
                .read_at(plan.position, plan.length)
                .await
                .map_err(std::io::Error::from)?;
            let mut log = cell.borrow_mut();
            let (bytes, complete) =
                collect_batches(&data, offset, max_bytes, upper_bound, min_one, true)?;
            if !bytes.is_empty() {
                log.readahead = Some(ReadAhead {
                    segment_base: plan.segment_base,
                    file_position: plan.position,
                    data,
                });
                return Ok(bytes);
            }
            match complete {
                // The first batch to return ends past the read: read exactly that batch.
                Needs::LargerRead { skip } if plan.length < segment::MAX_BATCH_BYTES => {
                    drop(log);
                    let position = plan.position + skip as u64;
                    let bigger =
                        read_exact_batch(&plan, position, offset, max_bytes, upper_bound, min_one)
                            .await?;
                    return Ok(bigger);
                }
                _ => next_segment_from = Some(plan.segment_base),
            }
        }
    }

    fn read_from_readahead(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_bound: i64,
        min_one: bool,
    ) -> Result<Option<Bytes>, ReadError> {
        let Some(readahead) = &self.readahead else {
            return Ok(None);
        };
        let Some(segment) = self.segments.get(&readahead.segment_base) else {
            return Ok(None);
        };
        if offset < segment.base_offset || offset >= segment.next_offset {
            return Ok(None);
        }
        let position = segment.index.lookup(offset).1 as u64;
        let start = readahead.file_position;
        let end = start + readahead.data.len() as u64;
        let skip = if (start..end).contains(&position) {
            (position - start) as usize
        } else if position < start && first_base_offset(&readahead.data) <= offset {
            0
        } else {
            return Ok(None);
        };
        let (bytes, _) = collect_batches(
            &readahead.data[skip..],
            offset,
            max_bytes,
            upper_bound,
            min_one,
            true,
        )?;
        Ok((!bytes.is_empty()).then_some(bytes))
    }

    fn plan_disk_read(
        &self,
        offset: i64,
        max_bytes: usize,
        after_segment: Option<i64>,
    ) -> Option<DiskRead> {
        let segment = match after_segment {
            Some(previous) => self.segments.range(previous + 1..).next().map(|(_, s)| s)?,
            None => self
                .segments
                .range(..=offset)
                .next_back()
                .map(|(_, s)| s)
                .or_else(|| self.segments.values().next())?,
        };
        let position = if after_segment.is_some() {
            0
        } else {
            segment.index.lookup(offset).1 as u64
        };
        if position >= segment.size {
            return if segment.base_offset >= self.active().base_offset {
                None
            } else {
                self.plan_disk_read(offset, max_bytes, Some(segment.base_offset))
            };
        }
        let wanted = self.options.readahead_bytes.max(max_bytes.min(64 << 20)) as u64;
        let length = wanted.min(segment.size - position) as usize;
        Some(DiskRead {
            file: segment.file.clone(),
            segment_base: segment.base_offset,
            position,
            length,
        })
    }

    /// Takes the flush work of every segment with unwritten appends.
    pub fn take_flush_work(&mut self) -> FlushPlan {
        let mut jobs = Vec::new();
        for segment in self.segments.values_mut() {
            if let Some(appender) = segment.appender.as_mut() {
                let work = appender.take_flush();
                let seal = segment.rolled.then(|| SealJob {
                    base_offset: segment.base_offset,
                    size: segment.size,
                    offset_index: segment.index.to_bytes(),
                    time_index: segment.time_index.to_bytes(),
                    index_path: segment.index_path("index"),
                    time_index_path: segment.index_path("timeindex"),
                });
                if !work.is_empty() || seal.is_some() {
                    jobs.push(FlushJob {
                        file: segment.file.clone(),
                        work,
                        seal,
                    });
                }
            }
        }
        FlushPlan {
            jobs,
            target_offset: self.log_end_offset,
        }
    }

    /// Writes (and, with `sync`, fdatasyncs) everything appended so far; seals rolled segments.
    pub async fn flush(
        cell: &RefCell<Log>,
        sync: bool,
        now_ms: i64,
    ) -> std::io::Result<FlushOutcome> {
        let plan = cell.borrow_mut().take_flush_work();
        let mut new_bytes = 0;
        let jobs = plan.jobs.into_iter().map(|job| {
            new_bytes += job.work.new_bytes;
            async move {
                let sync_this = sync || job.seal.is_some();
                appender::execute(&job.file, job.work, sync_this).await?;
                if let Some(seal) = &job.seal {
                    job.file
                        .truncate(seal.size)
                        .await
                        .map_err(std::io::Error::from)?;
                    let (index_path, index) = (seal.index_path.clone(), seal.offset_index.clone());
                    let (time_path, time) = (seal.time_index_path.clone(), seal.time_index.clone());
                    blocking(move || {
                        write_file_synced(&index_path, &index)?;
                        write_file_synced(&time_path, &time)
                    })
                    .await?;
                }
                Ok::<_, std::io::Error>(job.seal.map(|s| s.base_offset))
            }
        });
        let results = futures::future::join_all(jobs).await;
        let mut log = cell.borrow_mut();
        let mut first_error = None;
        for result in results {
            match result {
                Ok(Some(sealed_base)) => {
                    if let Some(segment) = log.segments.get_mut(&sealed_base) {
                        segment.appender = None;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
        log.written_offset = log.written_offset.max(plan.target_offset);
        if sync {
            log.durable_offset = log.durable_offset.max(plan.target_offset);
            log.last_sync_ms = now_ms;
        }
        Ok(FlushOutcome {
            written_offset: log.written_offset,
            durable_offset: log.durable_offset,
            new_bytes,
        })
    }

    /// Rolls to a new active segment if needed before appending `incoming` bytes. The caller holds
    /// the partition's append lock, so nothing appends in between.
    pub async fn roll_if_needed(
        cell: &RefCell<Log>,
        incoming: usize,
        now_ms: i64,
    ) -> std::io::Result<bool> {
        let (dir, base, chunk) = {
            let log = cell.borrow();
            if !log.needs_roll(incoming, now_ms) {
                return Ok(false);
            }
            (
                log.dir.clone(),
                log.log_end_offset,
                log.options.write_buffer_bytes,
            )
        };
        let segment = Segment::create(&dir, base, 0, chunk, now_ms).await?;
        let dir_for_sync = dir.clone();
        blocking(move || segment::sync_dir(&dir_for_sync)).await?;
        let mut log = cell.borrow_mut();
        let active = log.active_mut();
        if active.size == 0 && active.base_offset == base {
            // The old active segment is empty and has the same base: keep using it.
            return Ok(false);
        }
        active.rolled = true;
        log.segments.insert(base, segment);
        Ok(true)
    }

    /// Removes segments retention says to delete (closed segments only) and returns them; the
    /// caller deletes their files. Also advances the log start offset past them.
    pub fn take_expired_segments(&mut self, now_ms: i64) -> Vec<Segment> {
        let mut victims = Vec::new();
        let mut total: u64 = self.size_bytes();
        while let Some((&base, oldest)) = self.segments.iter().next() {
            if !oldest.is_sealed() || self.segments.len() == 1 {
                break;
            }
            let below_start = oldest.next_offset <= self.log_start_offset;
            let by_time = self.config.cleanup_delete
                && self.config.retention_ms >= 0
                && oldest.max_timestamp >= 0
                && now_ms - oldest.max_timestamp > self.config.retention_ms;
            let by_size = self.config.cleanup_delete
                && self.config.retention_bytes >= 0
                && total.saturating_sub(oldest.size) >= self.config.retention_bytes as u64;
            if !(below_start || by_time || by_size) {
                break;
            }
            total -= oldest.size;
            let segment = self.segments.remove(&base).expect("present");
            victims.push(segment);
        }
        if let Some(first) = self.segments.keys().next() {
            self.log_start_offset = self.log_start_offset.max(*first);
        }
        if !victims.is_empty() {
            self.drop_cache_below(self.log_start_offset);
            if self
                .readahead
                .as_ref()
                .is_some_and(|r| !self.segments.contains_key(&r.segment_base))
            {
                self.readahead = None;
            }
        }
        victims
    }

    fn drop_cache_below(&mut self, offset: i64) {
        while self.cache.front().is_some_and(|b| b.last_offset < offset) {
            let evicted = self.cache.pop_front().expect("front exists");
            self.cache_bytes -= evicted.bytes.len();
        }
    }

    /// Moves the log start offset forward (DeleteRecords). Returns the new start.
    pub fn advance_log_start(&mut self, offset: i64) -> i64 {
        let target = offset.min(self.log_end_offset);
        if target > self.log_start_offset {
            self.log_start_offset = target;
            self.drop_cache_below(target);
        }
        self.log_start_offset
    }

    /// Persists the log start offset so a restart keeps it.
    pub async fn checkpoint_log_start(cell: &RefCell<Log>) -> std::io::Result<()> {
        let (path, offset) = {
            let log = cell.borrow();
            (log.dir.join(LOG_START_CHECKPOINT), log.log_start_offset)
        };
        let text = format!(
            "{offset}\n{:08x}\n",
            crc32fast::hash(offset.to_string().as_bytes())
        );
        blocking(move || write_file_synced(&path, text.as_bytes())).await
    }

    /// Clean shutdown: everything flushed, the active segment trimmed and its indexes written, so
    /// the next start needs no scan.
    pub async fn close(cell: &RefCell<Log>, now_ms: i64) -> std::io::Result<()> {
        Log::flush(cell, true, now_ms).await?;
        let (file, size, index_path, index, time_path, time) = {
            let log = cell.borrow();
            let active = log.active();
            (
                active.file.clone(),
                active.size,
                active.index_path("index"),
                active.index.to_bytes(),
                active.index_path("timeindex"),
                active.time_index.to_bytes(),
            )
        };
        file.truncate(size).await.map_err(std::io::Error::from)?;
        file.fdatasync().await.map_err(std::io::Error::from)?;
        blocking(move || {
            write_file_synced(&index_path, &index)?;
            write_file_synced(&time_path, &time)
        })
        .await?;
        Log::checkpoint_log_start(cell).await
    }

    /// Timestamp lookup (ListOffsets): where to start scanning for the first record with
    /// timestamp ≥ `target`, as (segment base, file position, upper bound of the segment).
    pub fn timestamp_search_start(&self, target: i64) -> Option<(Rc<DmaFile>, u64, u64)> {
        let segment = self
            .segments
            .values()
            .find(|s| s.max_timestamp >= target && s.size > 0)?;
        let offset = segment.time_index.lookup(target).max(self.log_start_offset);
        let position = segment.index.lookup(offset).1 as u64;
        Some((segment.file.clone(), position, segment.size))
    }

    /// The record with the largest timestamp (ListOffsets MAX_TIMESTAMP): (timestamp, offset).
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        self.segments
            .values()
            .filter(|s| s.max_timestamp >= 0)
            .max_by_key(|s| s.max_timestamp)
            .map(|s| (s.max_timestamp, s.offset_of_max_timestamp))
    }

    /// Deletes every file of this log (topic deletion).
    pub fn remove_all_files(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One segment's part of a flush.
pub struct FlushJob {
    file: Rc<DmaFile>,
    work: FlushWork,
    seal: Option<SealJob>,
}

struct SealJob {
    base_offset: i64,
    size: u64,
    offset_index: Vec<u8>,
    time_index: Vec<u8>,
    index_path: PathBuf,
    time_index_path: PathBuf,
}

pub struct FlushPlan {
    jobs: Vec<FlushJob>,
    target_offset: i64,
}

#[derive(Debug, Clone, Copy)]
pub struct FlushOutcome {
    pub written_offset: i64,
    pub durable_offset: i64,
    pub new_bytes: u64,
}

struct DiskRead {
    file: Rc<DmaFile>,
    segment_base: i64,
    position: u64,
    length: usize,
}

enum Needs {
    /// The buffer ended inside the first batch to return, which starts `skip` bytes into the
    /// buffer (after batches below the offset): a read of that batch is needed.
    LargerRead {
        skip: usize,
    },
    Done,
}

/// Copies whole batches out of `data` (which starts at a batch boundary): skips batches before
/// `offset`, stops at `upper_bound`, `max_bytes` (but takes one whole batch first when
/// `min_one`), or the end of the buffer. Verifies CRCs of what it returns when `verify`.
fn collect_batches(
    data: &[u8],
    offset: i64,
    max_bytes: usize,
    upper_bound: i64,
    min_one: bool,
    verify: bool,
) -> Result<(Bytes, Needs), ReadError> {
    let mut cursor = 0usize;
    let mut start = None;
    let mut end = 0usize;
    while data.len() - cursor >= batch::BATCH_HEADER_LEN {
        let Ok(header) = BatchHeader::parse(&data[cursor..]) else {
            break;
        };
        if header.batch_length <= 0 {
            break;
        }
        let total = header.total_size();
        if header.last_offset() >= upper_bound {
            break;
        }
        if cursor + total > data.len() {
            if start.is_none() && header.last_offset() >= offset {
                return Ok((Bytes::new(), Needs::LargerRead { skip: cursor }));
            }
            break;
        }
        if header.last_offset() >= offset {
            let taken = start.map_or(0, |start| end - start);
            if taken + total > max_bytes && !(start.is_none() && min_one) {
                break;
            }
            if verify {
                batch::validate(&data[cursor..cursor + total]).map_err(|e| {
                    ReadError::Corrupt(format!("batch at offset {}: {e}", header.base_offset))
                })?;
            }
            start.get_or_insert(cursor);
            end = cursor + total;
            if taken + total > max_bytes {
                break;
            }
        }
        cursor += total;
    }
    match start {
        Some(start) => Ok((Bytes::copy_from_slice(&data[start..end]), Needs::Done)),
        None => Ok((Bytes::new(), Needs::Done)),
    }
}

/// Reads the one batch that starts at file `position` of the plan's segment.
async fn read_exact_batch(
    plan: &DiskRead,
    position: u64,
    offset: i64,
    max_bytes: usize,
    upper_bound: i64,
    min_one: bool,
) -> Result<Bytes, ReadError> {
    let header_bytes = plan
        .file
        .read_at(position, batch::BATCH_HEADER_LEN)
        .await
        .map_err(std::io::Error::from)?;
    let header =
        BatchHeader::parse(&header_bytes).map_err(|e| ReadError::Corrupt(e.to_string()))?;
    let length = header.total_size().min(segment::MAX_BATCH_BYTES);
    let data = plan
        .file
        .read_at(position, length)
        .await
        .map_err(std::io::Error::from)?;
    let (bytes, _) = collect_batches(&data, offset, max_bytes, upper_bound, min_one, true)?;
    Ok(bytes)
}

fn first_base_offset(data: &[u8]) -> i64 {
    BatchHeader::parse(data)
        .map(|h| h.base_offset)
        .unwrap_or(i64::MAX)
}

/// Lists segment base offsets in `dir` (creating it if missing) and removes leftovers of
/// interrupted operations (temp files, index files without a log).
fn prepare_dir(dir: &Path) -> std::io::Result<Vec<i64>> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        segment::sync_dir(dir.parent().unwrap_or(Path::new(".")))?;
    }
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") || name.ends_with(".deleted") {
            let _ = std::fs::remove_file(entry.path());
        } else if let Some(base) = segment::parse_file_name(name, "log") {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

fn read_log_start_checkpoint(dir: &Path) -> Option<i64> {
    let text = std::fs::read_to_string(dir.join(LOG_START_CHECKPOINT)).ok()?;
    let mut lines = text.lines();
    let offset_text = lines.next()?;
    let crc = u32::from_str_radix(lines.next()?, 16).ok()?;
    (crc32fast::hash(offset_text.as_bytes()) == crc)
        .then(|| offset_text.parse().ok())
        .flatten()
}

/// Deletes a segment's files.
pub fn remove_segment_files(log_path: &Path) {
    let _ = std::fs::remove_file(log_path);
    let _ = std::fs::remove_file(log_path.with_extension("index"));
    let _ = std::fs::remove_file(log_path.with_extension("timeindex"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::builder::BatchBuilder;
    use crate::records::compression::Compression;
    use crate::testing::run_local;

    /// A batch of `records` 1 KiB records.
    fn batch_of(records: usize) -> (BatchHeader, Bytes) {
        let now = crate::event::now_ms();
        let mut builder = BatchBuilder::new(Compression::None, 0, now);
        let value = vec![0xabu8; 1024];
        for index in 0..records {
            builder.append(now + index as i64, None, Some(&value), &[]);
        }
        let bytes = builder.build().unwrap();
        (batch::validate(&bytes).unwrap(), bytes)
    }

    /// Appends batches of the given record counts, flushes them durably, and empties the cache,
    /// so every read goes to the disk.
    async fn cold_log(dir: &Path, sizes: &[usize]) -> RefCell<Log> {
        std::fs::create_dir_all(dir).unwrap();
        segment::probe_direct_io_device(dir, 0).await.unwrap();
        let (log, _) = Log::open(
            dir,
            TopicConfig::default(),
            LogOptions::default(),
            true,
            crate::event::now_ms(),
        )
        .await
        .unwrap();
        let log = RefCell::new(log);
        for &records in sizes {
            let (header, bytes) = batch_of(records);
            log.borrow_mut().append(&header, &bytes, 0, None);
        }
        Log::flush(&log, true, crate::event::now_ms())
            .await
            .unwrap();
        log.borrow_mut().set_cache_limit(0);
        log
    }

    /// Reads like a consumer: from `offset`, the next fetch starts after the last batch read.
    async fn read_all(log: &RefCell<Log>, max_bytes: usize) -> Vec<i64> {
        let end = log.borrow().log_end_offset;
        let mut offset = 0;
        let mut bases = Vec::new();
        while offset < end {
            let bytes = Log::read(log, offset, max_bytes, end, true).await.unwrap();
            assert!(!bytes.is_empty(), "empty read at offset {offset} of {end}");
            for item in batch::split(&bytes) {
                let (header, _) = item.unwrap();
                bases.push(header.base_offset);
                offset = header.last_offset() + 1;
            }
        }
        bases
    }

    #[test]
    fn given_a_cold_log_when_reading_sequentially_should_return_every_batch() {
        let dir = crate::testing::data_dir();
        let path = dir.path().join("t-0");
        run_local(async move {
            // Batches of 100-900 KiB: windows of the 1 MiB read-ahead end inside batches.
            let sizes: Vec<usize> = (0..40).map(|i| 100 + (i * 263) % 800).collect();
            let log = cold_log(&path, &sizes).await;
            let bases = read_all(&log, 1 << 20).await;
            assert_eq!(bases.len(), sizes.len());
        });
    }

    #[test]
    fn given_small_batches_and_small_fetches_when_reading_cold_should_return_every_batch() {
        let dir = crate::testing::data_dir();
        let path = dir.path().join("t-1");
        run_local(async move {
            // Several batches per index interval; fetches of a few batches from the read-ahead.
            let sizes: Vec<usize> = (0..3000).map(|i| 1 + i % 3).collect();
            let log = cold_log(&path, &sizes).await;
            let bases = read_all(&log, 10 << 10).await;
            assert_eq!(bases.len(), sizes.len());
            assert!(bases.windows(2).all(|w| w[0] < w[1]));
        });
    }
}
