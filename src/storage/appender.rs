//! The O_DIRECT write path of an active segment: appends are copied into aligned buffers, and the
//! shard's flusher turns them into sequential DMA writes followed by one fdatasync.
//!
//! Lives on the shard that owns the partition. Appends are synchronous memcpys (no await), so the
//! order of appends is the order of the log. [`Appender::take_flush`] hands the written-out part to
//! the flusher as a [`FlushWork`]; while that runs, new appends continue into a fresh buffer that
//! starts with a copy of the partial last block (≤ one alignment unit), so a block is rewritten
//! with the same prefix plus new bytes — a torn write can never damage acknowledged bytes, because
//! every sector of the rewrite holds either the old or the new content and both agree on the
//! prefix.
//!
//! Invariants: `chunk_file_pos` is aligned; the bytes past the logical end of the file on disk are
//! zeros (padding) or preallocated zeros, so recovery stops at the first zero batch length.

use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile};

/// A buffer covering file bytes `[file_pos, file_pos + fill)`.
struct Chunk {
    buffer: DmaBuffer,
    file_pos: u64,
    fill: usize,
}

/// Writes that make the segment durable up to `end`.
pub struct FlushWork {
    pub writes: Vec<(DmaBuffer, u64)>,
    /// Logical end of the segment covered by this work.
    pub end: u64,
    /// Bytes of log data (not padding) the work writes for the first time.
    pub new_bytes: u64,
}

impl FlushWork {
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

pub struct Appender {
    alignment: usize,
    chunk_bytes: usize,
    chunk: Option<Chunk>,
    /// Full chunks waiting for the flusher.
    full: Vec<Chunk>,
    /// Logical end of the segment (all appended bytes).
    end: u64,
    /// Logical end already handed to the flusher.
    handed_off: u64,
    /// Tail block bytes not yet in a chunk: when `end` is unaligned and no chunk is open.
    tail: Vec<u8>,
}

impl Appender {
    /// Starts appending at `end` (the logical size of the segment). `tail` must hold the file's
    /// bytes from `align_down(end)` to `end` (empty when `end` is aligned).
    pub fn new(alignment: usize, chunk_bytes: usize, end: u64, tail: Vec<u8>) -> Appender {
        assert!(alignment.is_power_of_two());
        assert_eq!(
            tail.len() as u64,
            end % alignment as u64,
            "tail must cover the partial block"
        );
        let chunk_bytes = chunk_bytes.max(alignment).next_multiple_of(alignment);
        Appender {
            alignment,
            chunk_bytes,
            chunk: None,
            full: Vec::new(),
            end,
            handed_off: end,
            tail,
        }
    }

    /// Logical size of the segment including bytes not yet written.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Bytes appended but not yet handed to the flusher.
    pub fn unflushed_bytes(&self) -> u64 {
        self.end - self.handed_off
    }

    fn align_down(&self, value: u64) -> u64 {
        value & !(self.alignment as u64 - 1)
    }

    fn open_chunk(&mut self, at_least: usize) {
        let start = self.align_down(self.end);
        let tail_len = (self.end - start) as usize;
        let size = self
            .chunk_bytes
            .max((tail_len + at_least).next_multiple_of(self.alignment));
        let mut buffer = glommio::allocate_dma_buffer(size);
        buffer.as_bytes_mut()[..tail_len].copy_from_slice(&self.tail);
        self.tail.clear();
        self.chunk = Some(Chunk {
            buffer,
            file_pos: start,
            fill: tail_len,
        });
    }

    /// Appends the concatenation of `parts` to the segment (a patched batch header and the rest of
    /// the batch, typically). Synchronous: the bytes are in memory when this returns.
    pub fn append(&mut self, parts: &[&[u8]]) {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        for part in parts {
            let mut remaining = *part;
            while !remaining.is_empty() {
                if self.chunk.as_ref().is_none_or(|c| c.fill == c.buffer.len()) {
                    self.retire_full_chunk();
                    self.open_chunk(total);
                }
                let chunk = self.chunk.as_mut().expect("chunk opened above");
                let room = chunk.buffer.len() - chunk.fill;
                let take = room.min(remaining.len());
                chunk.buffer.as_bytes_mut()[chunk.fill..chunk.fill + take]
                    .copy_from_slice(&remaining[..take]);
                chunk.fill += take;
                remaining = &remaining[take..];
                self.end += take as u64;
            }
        }
    }

    fn retire_full_chunk(&mut self) {
        if let Some(chunk) = self.chunk.take_if(|c| c.fill == c.buffer.len()) {
            self.full.push(chunk);
        }
    }

    /// Takes everything appended since the last call as writes. The open chunk is written padded
    /// with zeros to the alignment; its partial last block stays in memory for the next append.
    pub fn take_flush(&mut self) -> FlushWork {
        let new_bytes = self.end - self.handed_off;
        let mut writes: Vec<(DmaBuffer, u64)> = self
            .full
            .drain(..)
            .map(|c| (c.buffer, c.file_pos))
            .collect();
        if let Some(mut chunk) = self.chunk.take() {
            let chunk_end = chunk.file_pos + chunk.fill as u64;
            let written_len = chunk.fill.next_multiple_of(self.alignment);
            let tail_start = self.align_down(chunk_end);
            if tail_start < chunk_end {
                let offset = (tail_start - chunk.file_pos) as usize;
                self.tail.clear();
                self.tail
                    .extend_from_slice(&chunk.buffer.as_bytes()[offset..chunk.fill]);
            }
            chunk.buffer.as_bytes_mut()[chunk.fill..written_len].fill(0);
            chunk.buffer.trim_to_size(written_len);
            if written_len > 0 {
                writes.push((chunk.buffer, chunk.file_pos));
            }
        }
        self.handed_off = self.end;
        FlushWork {
            writes,
            end: self.end,
            new_bytes,
        }
    }

    /// Bytes of the partial last block (for reopening an appender elsewhere).
    pub fn tail(&self) -> &[u8] {
        &self.tail
    }
}

/// Runs the writes of a [`FlushWork`] concurrently, then fdatasyncs if `sync`.
pub async fn execute(file: &Rc<DmaFile>, work: FlushWork, sync: bool) -> std::io::Result<()> {
    let writes = work.writes.into_iter().map(|(buffer, position)| {
        let file = file.clone();
        async move {
            let length = buffer.len();
            let written = file
                .write_at(buffer, position)
                .await
                .map_err(std::io::Error::from)?;
            if written != length {
                return Err(std::io::Error::other(format!(
                    "short O_DIRECT write: {written} of {length} bytes at {position}"
                )));
            }
            Ok(())
        }
    });
    for result in futures::future::join_all(writes).await {
        result?;
    }
    if sync {
        file.fdatasync().await.map_err(std::io::Error::from)?;
    }
    Ok(())
}

/// Size of one zero write, and of the zero buffer each shard shares for them.
///
/// Zero-fills are bulk background I/O on the same device queue as the group commit's writes and
/// fdatasyncs, and a commit queued behind them waits for them: eight concurrent 1 MiB zero
/// writes held acks=all commits for 4-8 ms, and the first fills of 12 new partitions (96 MiB at
/// once) for 40-80 ms. So a shard has at most [`ZERO_WRITES_IN_FLIGHT_MAX`] chunk in flight, and
/// a commit waits behind at most one per shard (~0.1-0.2 ms on the dev VM) — unless a commit
/// waits for the fill itself (the appends caught up with it): then its writes go at once.
pub const ZERO_CHUNK_BYTES: usize = 256 << 10;
/// Zero writes a shard keeps in flight (urgent fills aside).
pub const ZERO_WRITES_IN_FLIGHT_MAX: u64 = 1;

thread_local! {
    static ZEROS: std::cell::OnceCell<Rc<DmaBuffer>> = const { std::cell::OnceCell::new() };
    /// Permits for the zero writes in flight on this shard (fills of different segments interleave
    /// chunk by chunk).
    static ZERO_WRITES: Rc<glommio::sync::Semaphore> =
        Rc::new(glommio::sync::Semaphore::new(ZERO_WRITES_IN_FLIGHT_MAX));
    /// Zero writes in flight on this shard now, and the most seen (tests check the bound).
    static ZERO_WRITES_IN_FLIGHT: std::cell::Cell<(u32, u32)> = const { std::cell::Cell::new((0, 0)) };
}

/// The most zero writes this thread ever had in flight at once.
#[cfg(test)]
pub fn max_zero_writes_in_flight() -> u32 {
    ZERO_WRITES_IN_FLIGHT.with(|c| c.get().1)
}

fn count_zero_write(delta: i32) {
    ZERO_WRITES_IN_FLIGHT.with(|c| {
        let (now, max) = c.get();
        let now = now.saturating_add_signed(delta);
        c.set((now, max.max(now)));
    });
}

/// Writes `length` zero bytes at `position` (both aligned to 4096) in [`ZERO_CHUNK_BYTES`]
/// writes, from one shared buffer; a fill keeps one write in flight, a shard at most
/// [`ZERO_WRITES_IN_FLIGHT_MAX`] but for fills that are `urgent` (something waits for them).
pub async fn write_zeros(
    file: &Rc<DmaFile>,
    position: u64,
    length: u64,
    urgent: &std::cell::Cell<bool>,
) -> std::io::Result<()> {
    let zeros = ZEROS.with(|cell| {
        cell.get_or_init(|| {
            // Global memory, not the executor's registered pool: it outlives any one executor.
            let mut buffer = glommio::allocate_dma_buffer_global(ZERO_CHUNK_BYTES);
            buffer.as_bytes_mut().fill(0);
            Rc::new(buffer)
        })
        .clone()
    });
    let turns = ZERO_WRITES.with(Rc::clone);
    let mut at = position;
    while at < position + length {
        let chunk = (position + length - at).min(ZERO_CHUNK_BYTES as u64);
        let _turn = if urgent.get() {
            None
        } else {
            Some(
                turns
                    .acquire_permit(1)
                    .await
                    .map_err(|_| std::io::Error::other("zero writes stopped"))?,
            )
        };
        count_zero_write(1);
        let written = if chunk == ZERO_CHUNK_BYTES as u64 {
            file.write_rc_at(zeros.clone(), at).await
        } else {
            let mut partial = glommio::allocate_dma_buffer(chunk as usize);
            partial.as_bytes_mut().fill(0);
            file.write_at(partial, at).await
        };
        count_zero_write(-1);
        let written = written.map_err(std::io::Error::from)?;
        if written as u64 != chunk {
            return Err(std::io::Error::other(format!(
                "short zero write: {written} of {chunk} bytes at {at}"
            )));
        }
        at += chunk;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::run_local as run;

    async fn read_file(path: &std::path::Path) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    #[test]
    fn appends_across_chunks_and_partial_flushes_land_on_disk_in_order() {
        let dir = crate::testing::data_dir();
        let path = dir.path().join("00000000000000000000.log");
        run(async move {
            let file = Rc::new(DmaFile::create(&path).await.unwrap());
            let alignment = file.alignment() as usize;
            let mut appender = Appender::new(alignment, 4096, 0, Vec::new());
            let mut expected = Vec::new();
            for round in 0..20u32 {
                let record: Vec<u8> = (0..(round * 377 % 5000 + 1))
                    .map(|i| (i + round) as u8)
                    .collect();
                appender.append(&[
                    &record[..3.min(record.len())],
                    &record[3.min(record.len())..],
                ]);
                expected.extend_from_slice(&record);
                if round % 3 == 0 {
                    let work = appender.take_flush();
                    execute(&file, work, true).await.unwrap();
                }
            }
            let work = appender.take_flush();
            execute(&file, work, true).await.unwrap();
            file.truncate(appender.end()).await.unwrap();
            assert_eq!(read_file(&path).await, expected);
        });
    }

    #[test]
    fn a_shard_bounds_its_zero_writes_in_flight_but_for_urgent_fills() {
        let dir = crate::testing::data_dir();
        let paths: Vec<_> = (0..4)
            .map(|i| dir.path().join(format!("{i}.log")))
            .collect();
        let urgent_path = dir.path().join("urgent.log");
        run(async move {
            let mut fills = Vec::new();
            for path in &paths {
                let file = Rc::new(DmaFile::create(path).await.unwrap());
                // Three whole chunks and a partial one, from 4 KiB in.
                let length = 3 * ZERO_CHUNK_BYTES as u64 + 8192;
                fills.push(async move {
                    write_zeros(&file, 4096, length, &Default::default())
                        .await
                        .unwrap();
                    file.close_rc().await.unwrap();
                });
            }
            futures::future::join_all(fills).await;
            assert_eq!(
                max_zero_writes_in_flight() as u64,
                ZERO_WRITES_IN_FLIGHT_MAX
            );
            // A fill something waits for goes past the limit.
            let file = Rc::new(DmaFile::create(&urgent_path).await.unwrap());
            let urgent = std::cell::Cell::new(true);
            let length = 4 * ZERO_CHUNK_BYTES as u64;
            futures::future::join(
                write_zeros(&file, 0, length, &Default::default()),
                write_zeros(&file, length, length, &urgent),
            )
            .await
            .0
            .unwrap();
            assert_eq!(
                max_zero_writes_in_flight() as u64,
                ZERO_WRITES_IN_FLIGHT_MAX + 1
            );
            file.close_rc().await.unwrap();
            for path in &paths {
                let bytes = read_file(path).await;
                assert_eq!(bytes.len(), 4096 + 3 * ZERO_CHUNK_BYTES + 8192);
                assert!(bytes.iter().all(|&b| b == 0));
            }
        });
    }

    #[test]
    fn reopening_with_tail_continues_the_last_block() {
        let dir = crate::testing::data_dir();
        let path = dir.path().join("x.log");
        run(async move {
            let file = Rc::new(DmaFile::create(&path).await.unwrap());
            let alignment = file.alignment() as usize;
            let mut first = Appender::new(alignment, 8192, 0, Vec::new());
            first.append(&[&[1u8; 700]]);
            execute(&file, first.take_flush(), true).await.unwrap();
            let tail = first.tail().to_vec();
            let mut second = Appender::new(alignment, 8192, 700, tail);
            second.append(&[&[2u8; 100]]);
            execute(&file, second.take_flush(), true).await.unwrap();
            file.truncate(second.end()).await.unwrap();
            let bytes = read_file(&path).await;
            assert_eq!(bytes.len(), 800);
            assert!(bytes[..700].iter().all(|&b| b == 1) && bytes[700..].iter().all(|&b| b == 2));
        });
    }
}
