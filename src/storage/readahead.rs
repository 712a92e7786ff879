//! Read-ahead of a partition's segment files for sequential consumers: windows of whole batches
//! kept in memory after a cold read, and at most one background read per partition of the window
//! after the consumer's position, so its next fetch finds the bytes in memory instead of waiting
//! for the disk.
//!
//! Lives in the partition's [`super::log::Log`], on its shard. Invariants:
//! - a window holds only whole batches whose last offset was below the log's written offset when
//!   the read was issued (so it never holds bytes an append had not yet written: the tail of a
//!   window past that point is cut off), and never more than the segment's size at that time;
//! - a window is used only while its segment still has the same file (`Rc::ptr_eq`: compaction
//!   swaps files under the same base) and is dropped when its segment is cleaned or deleted;
//! - a background read that fails, or finishes after its segment changed, is dropped silently:
//!   the foreground read then reads the disk itself and reports any error;
//! - memory is bounded: at most [`WINDOWS_MAX`] windows and one background read per partition,
//!   and at most [`shard_bytes_max`] bytes of windows and reads per shard (a thread-local count,
//!   since a shard is one thread).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use futures::future::{LocalBoxFuture, Shared};
use glommio::io::{DmaFile, ReadResult};

use crate::records::batch::{self, BatchHeader};

/// Windows kept per partition: the one a consumer is reading and the next one.
pub const WINDOWS_MAX: usize = 2;
/// Windows (counting the background read) wanted ahead of a sequential consumer's position,
/// including the one that holds the position.
pub const AHEAD_MAX: usize = 2;
/// Shard-wide floor of the read-ahead memory cap.
const SHARD_BYTES_FLOOR: usize = 64 << 20;

/// Cap of the bytes held in read-ahead windows and background reads by one shard: 64 MiB, or 8
/// windows when `window_bytes` is larger than 8 MiB.
pub fn shard_bytes_max(window_bytes: usize) -> usize {
    SHARD_BYTES_FLOOR.max(window_bytes.saturating_mul(8))
}

/// DMA memory of a shard's executor (glommio's `io_memory`): buffers beyond it are fresh heap
/// allocations whose pages every read faults in and pins again. Room for the read-ahead cap, the
/// foreground reads beside it and the write buffers.
pub fn io_memory_bytes(window_bytes: usize, write_buffer_bytes: usize) -> usize {
    shard_bytes_max(window_bytes)
        .saturating_add(window_bytes.saturating_mul(8))
        .saturating_add(write_buffer_bytes.saturating_mul(16))
}

/// Makes the C allocator keep freed memory for reuse instead of returning it to the kernel.
///
/// Every cold fetch copies ~1 MiB per partition into a fresh buffer that is freed once sent (on
/// the connection's shard). With glibc's defaults such buffers are mmapped or trimmed away with
/// `madvise` after each use, so every fetch faults its pages in again (zeroing them): a quarter
/// of the broker's CPU in a cold consume profile. A fixed mmap threshold of 32 MiB (glibc's
/// largest) and a 256 MiB trim threshold keep them in the heap. Call once, before the shards
/// start.
pub fn keep_fetch_buffers_resident() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters (it takes the allocator's own lock).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

thread_local! {
    static SHARD_BYTES: Cell<usize> = const { Cell::new(0) };
}

/// Bytes held by read-ahead on this shard (thread).
pub fn shard_bytes() -> usize {
    SHARD_BYTES.with(Cell::get)
}

/// A share of the shard's read-ahead memory, returned on drop.
#[derive(Debug)]
pub struct Charge {
    bytes: usize,
}

impl Charge {
    /// Takes `bytes` of the shard's read-ahead memory if that stays within `limit`.
    pub fn take(bytes: usize, limit: usize) -> Option<Charge> {
        SHARD_BYTES.with(|used| {
            let total = used.get().checked_add(bytes)?;
            (total <= limit).then(|| {
                used.set(total);
                Charge { bytes }
            })
        })
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        SHARD_BYTES.with(|used| used.set(used.get() - self.bytes));
    }
}

/// Whole batches of one segment file in memory, starting at a batch boundary.
pub struct Window {
    pub segment_base: i64,
    /// The file read: compaction may replace a segment's file under the same base.
    pub file: Rc<DmaFile>,
    pub position: u64,
    pub data: ReadResult,
    _charge: Charge,
}

impl Window {
    pub fn end(&self) -> u64 {
        self.position + self.data.len() as u64
    }

    fn holds(&self, segment_base: i64, file: &Rc<DmaFile>, position: u64) -> bool {
        self.segment_base == segment_base
            && Rc::ptr_eq(&self.file, file)
            && (self.position..self.end()).contains(&position)
    }
}

/// A background read of `[position, position + length)` of a segment file.
pub struct Pending {
    pub segment_base: i64,
    pub file: Rc<DmaFile>,
    pub position: u64,
    pub length: usize,
    /// The log's written offset when the read was issued.
    pub bound: i64,
    /// Filled by the read's task when it succeeds.
    result: Rc<RefCell<Option<ReadResult>>>,
    pub done: Shared<LocalBoxFuture<'static, ()>>,
    charge: Charge,
}

impl Pending {
    fn covers(&self, segment_base: i64, file: &Rc<DmaFile>, position: u64, end: u64) -> bool {
        self.segment_base == segment_base
            && Rc::ptr_eq(&self.file, file)
            && self.position <= position
            && end <= self.position + self.length as u64
    }
}

/// The read-ahead state of one partition log.
#[derive(Default)]
pub struct ReadAheads {
    windows: VecDeque<Window>,
    pending: Option<Pending>,
    /// Where the last read that filled its budget stopped: (the next offset, segment base,
    /// position of the batch holding it). The next fetch of a sequential consumer asks for that
    /// offset and starts there instead of at the (coarser) index position.
    resume: Option<(i64, i64, Rc<DmaFile>, u64)>,
    /// Disk reads issued by consumers' fetches (not by read-ahead): for tests and profiles.
    pub foreground_reads: u64,
    /// Background reads issued.
    pub background_reads: u64,
}

/// Where the bytes at a position of a segment are, if not only on disk.
pub enum InMemory {
    Window(ReadResult),
    /// A background read that will hold them: wait for it, then look again.
    Pending(Shared<LocalBoxFuture<'static, ()>>),
}

impl ReadAheads {
    /// Bytes `[position, position + at_least)` of `file` (and all the window holds after them),
    /// or the background read that is fetching them.
    pub fn find(
        &self,
        segment_base: i64,
        file: &Rc<DmaFile>,
        position: u64,
        at_least: usize,
    ) -> Option<InMemory> {
        let wanted_end = position + at_least as u64;
        for window in &self.windows {
            if window.holds(segment_base, file, position) && wanted_end <= window.end() {
                let from = (position - window.position) as usize;
                let slice = ReadResult::slice(&window.data, from, window.data.len() - from)?;
                return Some(InMemory::Window(slice));
            }
        }
        self.pending
            .as_ref()
            .filter(|p| p.covers(segment_base, file, position, wanted_end.max(position + 1)))
            .map(|p| InMemory::Pending(p.done.clone()))
    }

    /// Keeps the whole batches of `data` (read at `position` of the segment, before which the log's
    /// written offset was `bound`) as a window, if the shard's memory allows, replacing the oldest
    /// windows beyond [`WINDOWS_MAX`] (and this partition's windows if the shard is full).
    pub fn keep(
        &mut self,
        segment_base: i64,
        file: Rc<DmaFile>,
        position: u64,
        data: &ReadResult,
        bound: i64,
        limit: usize,
    ) {
        self.keep_charged(segment_base, file, position, data, bound, limit, None);
    }

    #[allow(clippy::too_many_arguments)]
    fn keep_charged(
        &mut self,
        segment_base: i64,
        file: Rc<DmaFile>,
        position: u64,
        data: &ReadResult,
        bound: i64,
        limit: usize,
        charge: Option<Charge>,
    ) {
        // The slice shares the whole read buffer: that is the memory held.
        let held = data.len();
        let length = whole_batches_len(data, bound);
        let Some(data) = (length > 0)
            .then(|| ReadResult::slice(data, 0, length))
            .flatten()
        else {
            return;
        };
        let charge = match charge {
            Some(charge) => charge,
            None => match Charge::take(held, limit) {
                Some(charge) => charge,
                None => {
                    self.windows.clear();
                    let Some(charge) = Charge::take(held, limit) else {
                        return;
                    };
                    charge
                }
            },
        };
        while self.windows.len() >= WINDOWS_MAX {
            self.windows.pop_front();
        }
        self.windows.push_back(Window {
            segment_base,
            file,
            position,
            data,
            _charge: charge,
        });
    }

    /// Turns a finished background read into a window if its segment still has the same file.
    /// `segment` gives the current file and size of a segment by base.
    pub fn settle(&mut self, segment: impl Fn(i64) -> Option<(Rc<DmaFile>, u64)>, limit: usize) {
        if self
            .pending
            .as_ref()
            .is_none_or(|p| p.done.peek().is_none())
        {
            return;
        }
        let pending = self.pending.take().expect("checked");
        let Some(data) = pending.result.borrow_mut().take() else {
            return;
        };
        let Some((file, size)) = segment(pending.segment_base) else {
            return;
        };
        if !Rc::ptr_eq(&file, &pending.file) || pending.position + data.len() as u64 > size {
            return;
        }
        let Pending {
            segment_base,
            position,
            bound,
            charge,
            ..
        } = pending;
        self.keep_charged(
            segment_base,
            file,
            position,
            &data,
            bound,
            limit,
            Some(charge),
        );
    }

    /// Drops the windows and the background read of one segment (its file was replaced).
    pub fn forget_segment(&mut self, segment_base: i64) {
        self.resume = None;
        self.windows.retain(|w| w.segment_base != segment_base);
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.segment_base == segment_base)
        {
            self.pending = None;
        }
    }

    /// Keeps only the windows and the background read of segments `keep` accepts.
    pub fn retain_segments(&mut self, keep: impl Fn(i64) -> bool) {
        if self
            .resume
            .as_ref()
            .is_some_and(|(_, base, _, _)| !keep(*base))
        {
            self.resume = None;
        }
        self.windows.retain(|w| keep(w.segment_base));
        if self.pending.as_ref().is_some_and(|p| !keep(p.segment_base)) {
            self.pending = None;
        }
    }

    /// Remembers where the batch holding `offset` starts (see `resume`).
    pub fn set_resume(&mut self, offset: i64, segment_base: i64, file: Rc<DmaFile>, position: u64) {
        self.resume = Some((offset, segment_base, file, position));
    }

    /// The (segment base, position) of the batch holding `offset`, if the last read stopped there
    /// and `file` is still the segment's file.
    pub fn resume_at(
        &self,
        offset: i64,
        file_of: impl Fn(i64) -> Option<Rc<DmaFile>>,
    ) -> Option<(i64, u64)> {
        let (next, base, file, position) = self.resume.as_ref()?;
        let current = file_of(*base)?;
        (*next == offset && Rc::ptr_eq(file, &current)).then_some((*base, *position))
    }

    /// Drops windows wholly before `(segment_base, position)`: a sequential consumer is past them.
    pub fn drop_behind(&mut self, segment_base: i64, position: u64) {
        self.windows.retain(|w| {
            w.segment_base > segment_base || w.segment_base == segment_base && w.end() > position
        });
    }

    /// The first position at or after `(segment_base, position)` of `file` that neither a window
    /// nor the background read holds, and how many of them hold the bytes before it. `None` when
    /// a background read is running elsewhere (one per partition).
    pub fn frontier(
        &self,
        segment_base: i64,
        file: &Rc<DmaFile>,
        mut position: u64,
    ) -> Option<(u64, usize)> {
        let mut ahead = 0;
        while let Some(window) = self
            .windows
            .iter()
            .find(|w| w.holds(segment_base, file, position))
        {
            position = window.end();
            ahead += 1;
        }
        match &self.pending {
            None => Some((position, ahead)),
            Some(p) if p.covers(segment_base, file, position, position + 1) => {
                Some((p.position + p.length as u64, ahead + 1))
            }
            Some(_) => None,
        }
    }

    /// Starts a background read of `[position, position + length)` of `file`, if the shard's
    /// memory allows and none is running.
    pub fn start(
        &mut self,
        segment_base: i64,
        file: Rc<DmaFile>,
        position: u64,
        length: usize,
        bound: i64,
        limit: usize,
    ) {
        if self.pending.is_some() || length == 0 {
            return;
        }
        let Some(charge) = Charge::take(length, limit) else {
            return;
        };
        let result = Rc::new(RefCell::new(None));
        let task = {
            let (file, result) = (file.clone(), result.clone());
            glommio::spawn_local(async move {
                // A failure is dropped: the consumer's own read reports it.
                if let Ok(data) = file.read_at(position, length).await {
                    *result.borrow_mut() = Some(data);
                }
            })
        };
        use futures::FutureExt;
        self.background_reads += 1;
        self.pending = Some(Pending {
            segment_base,
            file,
            position,
            length,
            bound,
            result,
            done: task.boxed_local().shared(),
            charge,
        });
    }

    /// Windows held (for tests).
    pub fn window_count(&self) -> usize {
        self.windows.len()
    }

    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }
}

/// Length of the prefix of `data` (which starts at a batch boundary) made of whole batches whose
/// last offset is below `bound`.
pub fn whole_batches_len(data: &[u8], bound: i64) -> usize {
    let mut cursor = 0usize;
    loop {
        let rest = &data[cursor..];
        if rest.len() < batch::BATCH_HEADER_LEN {
            return cursor;
        }
        let Ok(header) = BatchHeader::parse(rest) else {
            return cursor;
        };
        if header.batch_length <= 0 || header.last_offset() >= bound {
            return cursor;
        }
        let total = header.total_size();
        if total > rest.len() {
            return cursor;
        }
        cursor += total;
    }
}
