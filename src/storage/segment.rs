//! One segment of a partition log: `<base offset, 20 digits>.log` with its `.index` and
//! `.timeindex`, the batches it holds, and the scan that recovers it after a crash.
//!
//! A segment is *active* (has an [`Appender`]), *sealing* (rolled, its last writes still with the
//! flusher) or *sealed* (immutable, index files on disk). Index files are written only when a
//! segment is sealed or at clean shutdown, so a segment without them is recovered by scanning.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaFile, OpenOptions};

use super::appender::Appender;
use super::index::{OffsetIndex, TimeIndex};
use super::txn_index::{self, AbortedTxn};
use crate::records::batch::{self, BatchHeader};
use crate::records::control::{read_marker, TxnMarker};

/// Window of a recovery scan read.
const SCAN_WINDOW_BYTES: usize = 4 << 20;
/// Largest batch recovery believes: anything larger is a torn or corrupt length.
pub const MAX_BATCH_BYTES: usize = 1 << 30;

pub fn file_name(base_offset: i64, extension: &str) -> String {
    format!("{base_offset:020}.{extension}")
}

/// Parses `00000000000000000123.log` into 123.
pub fn parse_file_name(name: &str, extension: &str) -> Option<i64> {
    let stem = name.strip_suffix(extension)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// What a scan or an append learned about one batch; enough to rebuild indexes and producer state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchSummary {
    pub position: u64,
    pub header: BatchHeader,
    /// The transaction marker of a control batch (recovery needs COMMIT vs ABORT).
    pub marker: Option<TxnMarker>,
}

pub struct Segment {
    pub base_offset: i64,
    pub path: PathBuf,
    pub file: Rc<DmaFile>,
    /// Logical size: bytes of whole batches (including ones still in the appender).
    pub size: u64,
    /// One past the last offset in this segment (== base_offset when empty).
    pub next_offset: i64,
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: i64,
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
    bytes_since_index_entry: u32,
    /// Wall-clock creation (or reopening) time, for `segment.ms`.
    pub created_ms: i64,
    pub appender: Option<Appender>,
    /// Rolled: no more appends; sealed once the flusher has written everything.
    pub rolled: bool,
    /// End of the bytes written, or being written, to the file (data, padding or zeros ahead).
    pub zeroed_end: u64,
    /// Zeros being written ahead of the appends, off the commit path.
    pub zero_fill: Option<ZeroFill>,
    /// Earliest delete horizon of the tombstones compaction kept here (unknown after a restart).
    pub tombstone_horizon_ms: Option<i64>,
    /// Transactions aborted by markers in this segment, in marker order (`.txnindex`).
    pub aborted: Vec<AbortedTxn>,
}

/// A zero-fill ahead of the appends, running in the background: `[start, zeroed_end)` of the
/// segment is being written with zeros (and fdatasynced). Data that reaches `start`, a seal
/// (truncation) and a close wait for it first, so a late zero write can never land on data.
pub struct ZeroFill {
    pub start: u64,
    pub done: futures::future::Shared<futures::future::LocalBoxFuture<'static, ()>>,
    /// Set when a commit or a seal waits for the fill: its writes then skip the shard's limit on
    /// zero writes in flight.
    pub urgent: Rc<std::cell::Cell<bool>>,
}

impl ZeroFill {
    pub fn is_done(&self) -> bool {
        self.done.peek().is_some()
    }
}

impl Segment {
    pub fn log_path(dir: &Path, base_offset: i64) -> PathBuf {
        dir.join(file_name(base_offset, "log"))
    }

    /// Creates an empty active segment. The caller syncs the directory before acknowledging
    /// anything appended to it.
    pub async fn create(
        dir: &Path,
        base_offset: i64,
        alignment_hint: usize,
        chunk_bytes: usize,
        now_ms: i64,
    ) -> std::io::Result<Segment> {
        let path = Self::log_path(dir, base_offset);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(&path)
            .await
            .map_err(std::io::Error::from)?;
        let alignment = (file.alignment() as usize).max(alignment_hint);
        let appender = Appender::new(alignment, chunk_bytes, 0, Vec::new());
        Ok(Segment::assemble(
            base_offset,
            path,
            Rc::new(file),
            0,
            base_offset,
            Some(appender),
            now_ms,
        ))
    }

    /// Opens an existing segment file for reading (and writing, if it becomes active again).
    pub async fn open_file(path: &Path) -> std::io::Result<DmaFile> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(path)
            .await
            .map_err(std::io::Error::from)
    }

    pub fn assemble(
        base_offset: i64,
        path: PathBuf,
        file: Rc<DmaFile>,
        size: u64,
        next_offset: i64,
        appender: Option<Appender>,
        now_ms: i64,
    ) -> Segment {
        Segment {
            base_offset,
            path,
            file,
            size,
            next_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            index: OffsetIndex::new(base_offset),
            time_index: TimeIndex::new(base_offset),
            bytes_since_index_entry: 0,
            created_ms: now_ms,
            appender,
            rolled: false,
            zeroed_end: size,
            zero_fill: None,
            tombstone_horizon_ms: None,
            aborted: Vec::new(),
        }
    }

    pub fn is_sealed(&self) -> bool {
        self.appender.is_none()
    }

    /// Records a batch appended (or recovered) at `position` in the indexes and counters.
    pub fn track_batch(&mut self, position: u64, header: &BatchHeader, index_interval_bytes: u32) {
        let length = header.total_size() as u64;
        if self.bytes_since_index_entry > index_interval_bytes {
            self.index.append(header.last_offset(), position as u32);
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry = self.bytes_since_index_entry.saturating_add(length as u32);
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.last_offset();
            self.time_index
                .maybe_append(header.max_timestamp, header.last_offset());
        }
        self.size = self.size.max(position + length);
        self.next_offset = header.last_offset() + 1;
    }

    pub fn index_path(&self, extension: &str) -> PathBuf {
        self.path.with_extension(extension)
    }

    /// Writes `.index`, `.timeindex` and `.txnindex` (whole files, fsynced). Runs on a blocking
    /// thread.
    pub async fn write_index_files(&self) -> std::io::Result<()> {
        let files = self.index_files();
        blocking(move || files.write()).await
    }

    /// The index files' contents, to write off the shard's thread.
    pub fn index_files(&self) -> IndexFiles {
        IndexFiles {
            offset: (self.index_path("index"), self.index.to_bytes()),
            time: (self.index_path("timeindex"), self.time_index.to_bytes()),
            txn: (
                self.index_path("txnindex"),
                txn_index::encode(&self.aborted),
            ),
        }
    }

    /// Loads `.txnindex` when present (kept whatever the other indexes' state: recovery rebuilds
    /// only what the replayed batches cover). A corrupt tail is dropped with a warning.
    pub fn load_txn_index(&mut self) {
        let Ok(bytes) = std::fs::read(self.index_path("txnindex")) else {
            return;
        };
        let (entries, whole) = txn_index::decode(&bytes);
        if !whole {
            tracing::warn!(
                "{}: aborted-transaction index has a corrupt tail; kept {} entries",
                self.index_path("txnindex").display(),
                entries.len()
            );
        }
        self.aborted = entries;
    }
    /// Loads index files if both exist and are consistent with the log size.
    pub fn load_index_files(&mut self) -> bool {
        let offset_bytes = std::fs::read(self.index_path("index"));
        let time_bytes = std::fs::read(self.index_path("timeindex"));
        let (Ok(offset_bytes), Ok(time_bytes)) = (offset_bytes, time_bytes) else {
            return false;
        };
        match (
            OffsetIndex::from_bytes(self.base_offset, &offset_bytes, self.size),
            TimeIndex::from_bytes(self.base_offset, &time_bytes),
        ) {
            (Some(index), Some(time_index)) => {
                self.index = index;
                self.time_index = time_index;
                if let Some((timestamp, offset)) = self.time_index.max_timestamp() {
                    self.max_timestamp = timestamp;
                    self.offset_of_max_timestamp = offset;
                }
                true
            }
            _ => false,
        }
    }

    pub fn remove_index_files(&self) {
        let _ = std::fs::remove_file(self.index_path("index"));
        let _ = std::fs::remove_file(self.index_path("timeindex"));
    }
}

/// A segment's index files, encoded: written together at seal, clean shutdown and compaction.
pub struct IndexFiles {
    pub offset: (PathBuf, Vec<u8>),
    pub time: (PathBuf, Vec<u8>),
    pub txn: (PathBuf, Vec<u8>),
}

impl IndexFiles {
    /// Writes the files (blocking). An empty `.txnindex` is not kept: like Kafka, only segments
    /// with aborted transactions have one.
    pub fn write(&self) -> std::io::Result<()> {
        let mut files: Vec<(&Path, &[u8])> = vec![
            (&self.offset.0, &self.offset.1),
            (&self.time.0, &self.time.1),
        ];
        if self.txn.1.is_empty() {
            match std::fs::remove_file(&self.txn.0) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        } else {
            files.push((&self.txn.0, &self.txn.1));
        }
        write_files_synced(&files)
    }
}

/// The outcome of scanning a segment file.
pub struct ScanResult {
    /// End of the last valid batch.
    pub valid_end: u64,
    pub batches: Vec<BatchSummary>,
    /// Why the scan stopped before the end of the file, if it did.
    pub stopped: Option<String>,
}

/// Reads a segment from `start` (a batch boundary), validating every batch (length, magic, CRC-32C, increasing
/// offsets), until the end of the file or the first invalid batch (a torn tail, or the zeros of
/// preallocated space).
pub async fn scan(
    file: &DmaFile,
    start: u64,
    base_offset: i64,
    file_size: u64,
) -> std::io::Result<ScanResult> {
    let mut position = start;
    let mut batches = Vec::new();
    let mut expected_offset = base_offset;
    let mut stopped = None;
    'windows: while position < file_size {
        let window = (file_size - position).min(SCAN_WINDOW_BYTES as u64) as usize;
        let data = file
            .read_at(position, window)
            .await
            .map_err(std::io::Error::from)?;
        let mut cursor = 0usize;
        loop {
            let rest = &data[cursor..];
            if rest.len() < batch::LOG_OVERHEAD {
                if position + (cursor as u64) + (rest.len() as u64) >= file_size {
                    if !rest.iter().all(|&b| b == 0) {
                        stopped = Some(format!(
                            "{} trailing bytes at {}",
                            rest.len(),
                            position + cursor as u64
                        ));
                    }
                    break 'windows;
                }
                break;
            }
            let length = i32::from_be_bytes(rest[8..12].try_into().unwrap());
            if length <= 0 {
                if !rest.iter().take(64).all(|&b| b == 0) {
                    stopped = Some(format!(
                        "invalid batch length {length} at {}",
                        position + cursor as u64
                    ));
                }
                break 'windows;
            }
            let total = length as usize + batch::LOG_OVERHEAD;
            if total > MAX_BATCH_BYTES || position + (cursor + total) as u64 > file_size {
                stopped = Some(format!(
                    "batch of {total} bytes at {} runs past the end",
                    position + cursor as u64
                ));
                break 'windows;
            }
            if total > rest.len() {
                if cursor == 0 {
                    // One batch larger than the window: read exactly it.
                    let whole = file
                        .read_at(position, total)
                        .await
                        .map_err(std::io::Error::from)?;
                    match check_batch(&whole, expected_offset) {
                        Ok(header) => {
                            batches.push(BatchSummary {
                                position,
                                header,
                                marker: read_marker(&whole),
                            });
                            expected_offset = header.last_offset() + 1;
                            position += total as u64;
                            continue 'windows;
                        }
                        Err(why) => {
                            stopped = Some(format!("{why} at {position}"));
                            break 'windows;
                        }
                    }
                }
                break;
            }
            match check_batch(&rest[..total], expected_offset) {
                Ok(header) => {
                    let marker = if header.is_control() {
                        read_marker(&rest[..total])
                    } else {
                        None
                    };
                    batches.push(BatchSummary {
                        position: position + cursor as u64,
                        header,
                        marker,
                    });
                    expected_offset = header.last_offset() + 1;
                    cursor += total;
                }
                Err(why) => {
                    stopped = Some(format!("{why} at {}", position + cursor as u64));
                    break 'windows;
                }
            }
        }
        position += cursor as u64;
    }
    let valid_end = batches
        .last()
        .map(|b| b.position + b.header.total_size() as u64)
        .unwrap_or(start);
    Ok(ScanResult {
        valid_end,
        batches,
        stopped,
    })
}

fn check_batch(bytes: &[u8], expected_offset: i64) -> Result<BatchHeader, String> {
    let header = batch::validate(bytes).map_err(|e| e.to_string())?;
    if header.base_offset < expected_offset {
        return Err(format!(
            "batch base offset {} below expected {expected_offset}",
            header.base_offset
        ));
    }
    Ok(header)
}

/// Runs blocking file-system work (small files, fsync of metadata) off the shard's thread.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    glommio::executor().spawn_blocking(work).await
}

/// Reads a checkpoint file: the offset in decimal and its CRC-32 (IEEE) in hex, one per line.
pub fn read_checkpoint(path: &Path) -> Option<i64> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let offset_text = lines.next()?;
    let crc = u32::from_str_radix(lines.next()?, 16).ok()?;
    (crc32fast::hash(offset_text.as_bytes()) == crc)
        .then(|| offset_text.parse().ok())
        .flatten()
}

/// Writes a checkpoint file (see [`read_checkpoint`]) and syncs it.
pub fn write_checkpoint(path: &Path, offset: i64) -> std::io::Result<()> {
    let text = format!(
        "{offset}\n{:08x}\n",
        crc32fast::hash(offset.to_string().as_bytes())
    );
    write_file_synced(path, text.as_bytes())
}

/// Writes a file atomically: temp file, fsync, rename, fsync of the directory.
pub fn write_file_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_files_synced(&[(path, bytes)])
}

/// Writes files of one directory atomically, each through a synced temp file and a rename, with
/// one fsync of the directory for all the renames (a segment's two index files: 3 fsyncs, not 4).
pub fn write_files_synced(files: &[(&Path, &[u8])]) -> std::io::Result<()> {
    use std::io::Write;
    let Some((first, _)) = files.first() else {
        return Ok(());
    };
    for (path, bytes) in files {
        debug_assert_eq!(path.parent(), first.parent(), "one directory");
        let temp = path.with_extension(format!(
            "{}.tmp",
            path.extension()
                .and_then(|e| e.to_str())
                .unwrap_or_default()
        ));
        {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&temp, path)?;
    }
    sync_dir(first.parent().unwrap_or(Path::new(".")))
}

/// fsyncs a directory so entries created or renamed in it survive a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_twenty_digits() {
        assert_eq!(file_name(123, "log"), "00000000000000000123.log");
        assert_eq!(
            parse_file_name("00000000000000000123.log", "log"),
            Some(123)
        );
        assert_eq!(parse_file_name("00000000000000000123.index", "log"), None);
        assert_eq!(parse_file_name("123.log", "log"), None);
        assert_eq!(parse_file_name("0000000000000000012x.log", "log"), None);
    }
}
