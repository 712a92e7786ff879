//! Properties of the partition log on real files (O_DIRECT, glommio): what is appended reads back
//! byte for byte from cache or disk, across segment rolls and reopenings; a crash (a torn or
//! garbage tail) loses only the bytes after the last whole batch; retention deletes closed
//! segments only.

use std::cell::RefCell;

use bytes::Bytes;
use proptest::prelude::*;

use super::log::{Log, LogOptions};
use crate::config::TopicConfig;
use crate::records::batch::{self, BatchHeader};
use crate::records::builder::BatchBuilder;
use crate::records::compression::Compression;
use crate::testing::{data_dir, run_local};

fn small_segments() -> TopicConfig {
    TopicConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes: 4096,
        ..TopicConfig::default()
    }
}

fn options(readahead: usize) -> LogOptions {
    LogOptions {
        write_buffer_bytes: 64 << 10,
        readahead_bytes: readahead,
        preallocate_bytes: 1 << 20,
    }
}

/// A batch of `records` records of `size` bytes each, its values tagged with `tag`.
fn make_batch(tag: u64, records: usize, size: usize, timestamp: i64) -> (BatchHeader, Bytes) {
    let mut builder = BatchBuilder::new(Compression::None, 0, timestamp);
    for i in 0..records {
        let mut value = format!("{tag}:{i}:").into_bytes();
        value.resize(size.max(value.len()), b'a' + (tag % 26) as u8);
        builder.append(
            timestamp,
            Some(format!("k{tag}").as_bytes()),
            Some(&value),
            &[],
        );
    }
    let bytes = builder.build().unwrap();
    (batch::validate(&bytes).unwrap(), bytes)
}

/// Appends and flushes `count` batches; returns the stored bytes of each (as a reader sees them).
async fn fill(log: &RefCell<Log>, count: usize, records: usize, size: usize) -> Vec<(i64, Bytes)> {
    let mut appended = Vec::new();
    for tag in 0..count as u64 {
        let (header, bytes) = make_batch(tag, records, size, 1_000 + tag as i64);
        Log::roll_if_needed(log, bytes.len(), 0).await.unwrap();
        let info = log.borrow_mut().append(&header, &bytes, 3, None);
        let mut stored = bytes.to_vec();
        batch::set_base_offset(&mut stored, info.base_offset).unwrap();
        batch::set_partition_leader_epoch(&mut stored, 3).unwrap();
        appended.push((info.base_offset, Bytes::from(stored)));
        if tag % 7 == 0 {
            Log::flush(log, true, 0).await.unwrap();
        }
    }
    Log::flush(log, true, 0).await.unwrap();
    appended
}

/// Reads the whole log back batch by batch.
async fn read_all(log: &RefCell<Log>, max_bytes: usize) -> Vec<(i64, Bytes)> {
    let end = log.borrow().log_end_offset;
    let mut offset = log.borrow().log_start_offset;
    let mut out = Vec::new();
    while offset < end {
        let chunk = Log::read(log, offset, max_bytes, end, true).await.unwrap();
        assert!(
            !chunk.is_empty(),
            "no data at offset {offset} below the end {end}"
        );
        for item in batch::split(&chunk) {
            let (header, bytes) = item.unwrap();
            batch::validate(&bytes).unwrap();
            offset = header.last_offset() + 1;
            out.push((header.base_offset, bytes));
        }
    }
    out
}

#[test]
fn batches_read_back_identically_from_cache_disk_and_after_reopening() {
    let dir = data_dir();
    let path = dir.path().join("t-0");
    run_local(async move {
        let (log, _) = Log::open(&path, small_segments(), options(256 << 10), false, 0)
            .await
            .unwrap();
        let log = RefCell::new(log);
        log.borrow_mut().set_cache_limit(256 << 10);
        let appended = fill(&log, 400, 5, 1000).await;
        assert!(log.borrow().segment_count() > 1, "rolled by segment.bytes");
        // Small reads exercise index lookups and read-ahead; big ones whole segments.
        assert_eq!(read_all(&log, 10_000).await, appended);
        assert_eq!(read_all(&log, 4 << 20).await, appended);
        Log::close(&log, 0).await.unwrap();

        let (reopened, report) = Log::open(&path, small_segments(), options(64 << 10), true, 0)
            .await
            .unwrap();
        let reopened = RefCell::new(reopened);
        assert_eq!(report.truncated_bytes, 0);
        assert_eq!(read_all(&reopened, 50_000).await, appended, "clean reopen");
        drop(reopened);

        let (recovered, report) = Log::open(&path, small_segments(), options(64 << 10), false, 0)
            .await
            .unwrap();
        let recovered = RefCell::new(recovered);
        assert_eq!(report.truncated_bytes, 0, "{:?}", report.notes);
        assert_eq!(
            read_all(&recovered, 50_000).await,
            appended,
            "recovery scan"
        );
        // Appends continue at the end after recovery, also inside a partially filled block.
        let more = fill(&recovered, 3, 2, 333).await;
        assert_eq!(
            more[0].0,
            appended
                .last()
                .map(|(o, b)| o
                    + batch::BatchHeader::parse(b).unwrap().last_offset_delta as i64
                    + 1)
                .unwrap()
        );
        let all = read_all(&recovered, 1 << 20).await;
        assert_eq!(all.len(), appended.len() + 3);
    });
}

#[test]
fn oversized_first_batch_is_returned_whole_and_limits_hold_otherwise() {
    let dir = data_dir();
    let path = dir.path().join("t-0");
    run_local(async move {
        let (log, _) = Log::open(&path, small_segments(), options(8 << 10), false, 0)
            .await
            .unwrap();
        let log = RefCell::new(log);
        let appended = fill(&log, 4, 100, 1000).await; // ~100 KB batches
        for cache in [0usize, 1 << 30] {
            log.borrow_mut().set_cache_limit(cache);
            let end = log.borrow().log_end_offset;
            let one = Log::read(&log, 0, 10, end, true).await.unwrap();
            assert_eq!(
                one, appended[0].1,
                "min_one returns the first batch whole (cache {cache})"
            );
            let none = Log::read(&log, 0, 10, end, false).await.unwrap();
            assert!(none.is_empty());
            let two = Log::read(&log, 150, 2 * appended[1].1.len() + 1, end, true)
                .await
                .unwrap();
            assert_eq!(
                two.len(),
                appended[1].1.len() + appended[2].1.len(),
                "starts at the batch holding offset 150"
            );
            let bounded = Log::read(&log, 0, usize::MAX, 200, true).await.unwrap();
            assert_eq!(
                bounded.len(),
                appended[0].1.len() + appended[1].1.len(),
                "never reaches the upper bound"
            );
        }
        let error = Log::read(&log, 10_000, 100, 10_000, true)
            .await
            .unwrap_err();
        assert!(matches!(
            error,
            super::log::ReadError::OffsetOutOfRange { .. }
        ));
    });
}

#[test]
fn retention_deletes_closed_segments_by_size_time_and_log_start() {
    let dir = data_dir();
    let path = dir.path().join("t-0");
    run_local(async move {
        let (log, _) = Log::open(&path, small_segments(), options(64 << 10), false, 0)
            .await
            .unwrap();
        let log = RefCell::new(log);
        fill(&log, 300, 5, 1000).await;
        let segments = log.borrow().segment_count();
        assert!(segments >= 2);
        // Nothing is old or big enough yet.
        assert!(log.borrow_mut().take_expired_segments(2_000).is_empty());
        // By size, as Kafka: a segment goes when the log stays at least retention.bytes without it.
        log.borrow_mut().config.retention_bytes = 100 << 10;
        let deleted = log.borrow_mut().take_expired_segments(2_000);
        assert_eq!(
            deleted.len(),
            segments - 1,
            "all closed segments beyond the size go; the active one stays"
        );
        let start = log.borrow().log_start_offset;
        assert_eq!(start, deleted.last().unwrap().next_offset);
        assert_eq!(read_all(&log, 1 << 20).await.first().unwrap().0, start);
        // The active segment is never deleted, whatever its age.
        log.borrow_mut().config.retention_ms = 1;
        assert!(log
            .borrow_mut()
            .take_expired_segments(i64::MAX / 2)
            .is_empty());
    });
}

#[test]
fn segments_roll_by_age() {
    let dir = data_dir();
    let path = dir.path().join("t-0");
    run_local(async move {
        let config = TopicConfig {
            segment_ms: 1000,
            ..small_segments()
        };
        let (log, _) = Log::open(&path, config, options(64 << 10), false, 0)
            .await
            .unwrap();
        let log = RefCell::new(log);
        let (header, bytes) = make_batch(1, 1, 10, 5);
        assert!(
            !Log::roll_if_needed(&log, bytes.len(), 10_000)
                .await
                .unwrap(),
            "an empty segment never rolls"
        );
        log.borrow_mut().append(&header, &bytes, 0, None);
        assert!(!Log::roll_if_needed(&log, bytes.len(), 500).await.unwrap());
        assert!(Log::roll_if_needed(&log, bytes.len(), 10_000)
            .await
            .unwrap());
        log.borrow_mut().append(&header, &bytes, 0, None);
        Log::flush(&log, true, 10_000).await.unwrap();
        assert_eq!(log.borrow().segment_count(), 2);
        assert!(
            log.borrow().segment_summaries()[0].2,
            "the rolled segment is sealed after the flush"
        );
        assert!(
            path.join("00000000000000000000.index").exists()
                && path.join("00000000000000000000.timeindex").exists()
        );
    });
}

#[test]
fn log_append_time_stamps_the_stored_batch() {
    let dir = data_dir();
    let path = dir.path().join("t-0");
    run_local(async move {
        let (log, _) = Log::open(&path, small_segments(), options(64 << 10), false, 0)
            .await
            .unwrap();
        let log = RefCell::new(log);
        let (header, bytes) = make_batch(9, 3, 20, 5);
        log.borrow_mut().set_cache_limit(0);
        log.borrow_mut().append(&header, &bytes, 0, Some(777_000));
        Log::flush(&log, true, 0).await.unwrap();
        let stored = Log::read(&log, 0, 1 << 20, 3, true).await.unwrap();
        let stamped = batch::validate(&stored).expect("CRC recomputed");
        assert_eq!(stamped.max_timestamp, 777_000);
        assert_eq!(
            stamped.timestamp_type(),
            batch::TimestampType::LogAppendTime
        );
    });
}

/// Appends batches of the given record counts (1 KiB records), flushes them durably and
/// turns the cache off, so every read goes to the disk.
async fn cold_log(path: &std::path::Path, sizes: &[usize]) -> RefCell<Log> {
    let (log, _) = Log::open(
        path,
        TopicConfig::default(),
        LogOptions::default(),
        false,
        0,
    )
    .await
    .unwrap();
    let log = RefCell::new(log);
    for (tag, &records) in sizes.iter().enumerate() {
        let (header, bytes) = make_batch(tag as u64, records, 1024, 1_000);
        log.borrow_mut().append(&header, &bytes, 0, None);
    }
    Log::flush(&log, true, 0).await.unwrap();
    log.borrow_mut().set_cache_limit(0);
    log
}

#[test]
fn cold_reads_return_every_batch_when_read_windows_end_inside_batches() {
    let dir = data_dir();
    let path = dir.path().join("t-0");
    run_local(async move {
        // Batches of 100-900 KiB: windows of the 1 MiB read-ahead end inside batches.
        let sizes: Vec<usize> = (0..40).map(|i| 100 + (i * 263) % 800).collect();
        let log = cold_log(&path, &sizes).await;
        assert_eq!(read_all(&log, 1 << 20).await.len(), sizes.len());
    });
}

#[test]
fn cold_small_fetches_of_small_batches_return_every_batch_in_order() {
    let dir = data_dir();
    let path = dir.path().join("t-1");
    run_local(async move {
        // Several batches per index interval; fetches of a few batches from the read-ahead.
        let sizes: Vec<usize> = (0..3000).map(|i| 1 + i % 3).collect();
        let log = cold_log(&path, &sizes).await;
        let read = read_all(&log, 10 << 10).await;
        assert_eq!(read.len(), sizes.len());
        assert!(read.windows(2).all(|w| w[0].0 < w[1].0));
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A crash can leave any prefix of the written bytes, or garbage after them: recovery keeps
    /// exactly the whole batches before the damage.
    #[test]
    fn recovery_keeps_every_whole_batch_before_a_torn_tail(cut_permille in 0u32..1000, garbage in proptest::collection::vec(any::<u8>(), 0..300)) {
        let dir = data_dir();
        let path = dir.path().join("t-0");
        let run_path = path.clone();
        let appended = run_local(async move {
            let (log, _) = Log::open(&run_path, TopicConfig::default(), options(64 << 10), false, 0).await.unwrap();
            let log = RefCell::new(log);
            fill(&log, 40, 3, 200).await
        });
        let segment = path.join("00000000000000000000.log");
        let mut bytes = std::fs::read(&segment).unwrap();
        let logical: usize = appended.iter().map(|(_, b)| b.len()).sum();
        bytes.truncate(logical);
        let cut = logical * cut_permille as usize / 1000;
        bytes.truncate(cut);
        bytes.extend_from_slice(&garbage);
        std::fs::write(&segment, &bytes).unwrap();
        let expected: Vec<(i64, Bytes)> = {
            let mut end = 0;
            appended.iter().take_while(|(_, b)| { end += b.len(); end <= cut }).cloned().collect()
        };
        let recovered = run_local(async move {
            let (log, _) = Log::open(&path, TopicConfig::default(), options(64 << 10), false, 0).await.unwrap();
            let log = RefCell::new(log);
            let all = read_all(&log, 1 << 20).await;
            // The log accepts appends again right after the last whole batch.
            let (header, bytes) = make_batch(99, 1, 10, 1);
            let info = log.borrow_mut().append(&header, &bytes, 0, None);
            Log::flush(&log, true, 0).await.unwrap();
            (all, info.base_offset)
        });
        let next = expected.last().map(|(o, b)| o + batch::BatchHeader::parse(b).unwrap().last_offset_delta as i64 + 1).unwrap_or(0);
        prop_assert_eq!(recovered.0, expected);
        prop_assert_eq!(recovered.1, next);
    }
}

/// A crash between rolling and sealing can leave a middle segment whose data never reached the
/// disk (zeros, no index files) while a later segment has some: the log must end where the
/// readable data ends, not claim the unreadable range (a consumer would wait there forever).
#[test]
fn recovery_ends_the_log_at_a_middle_segment_that_holds_only_zeros() {
    let dir = data_dir();
    let path = dir.path().join("t-0");
    let run_path = path.clone();
    let appended = run_local(async move {
        let (log, _) = Log::open(&run_path, small_segments(), options(64 << 10), true, 0)
            .await
            .unwrap();
        let log = RefCell::new(log);
        fill(&log, 40, 4, 20_000).await
    });
    let mut bases: Vec<i64> = std::fs::read_dir(&path)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".log").map(|b| b.parse().unwrap())
        })
        .collect();
    bases.sort();
    assert!(bases.len() >= 3, "the fill rolls at least twice: {bases:?}");
    // The second segment: rolled, never sealed, its data lost.
    let middle = bases[1];
    let file = path.join(format!("{middle:020}.log"));
    let length = std::fs::metadata(&file).unwrap().len() as usize;
    std::fs::write(&file, vec![0u8; length]).unwrap();
    for extension in ["index", "timeindex"] {
        let _ = std::fs::remove_file(path.join(format!("{middle:020}.{extension}")));
    }
    let expected: Vec<(i64, Bytes)> = appended
        .iter()
        .filter(|(offset, _)| *offset < middle)
        .cloned()
        .collect();
    let (recovered, end, report) = run_local(async move {
        let (log, report) = Log::open(&path, small_segments(), options(64 << 10), false, 0)
            .await
            .unwrap();
        let log = RefCell::new(log);
        let all = read_all(&log, 1 << 20).await;
        let end = log.borrow().log_end_offset;
        (all, end, report)
    });
    assert_eq!(recovered, expected);
    assert_eq!(end, middle);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("later segments deleted")),
        "{:?}",
        report.notes
    );
}

#[test]
fn a_read_after_opening_an_empty_file_first_succeeds_on_a_fresh_thread() {
    // glommio decides per thread and device whether reads use the polled ring, on the first file
    // opened: `run_local` (like every shard) runs `probe_direct_io` first, so an empty first
    // segment no longer fools it into EOPNOTSUPP on devices without poll queues.
    let dir = data_dir();
    let path = dir.path().to_path_buf();
    let bytes = std::thread::spawn(move || {
        run_local(async move {
            let file = glommio::io::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .dma_open(path.join("empty.log"))
                .await?;
            let alignment = file.alignment() as usize;
            let mut buffer = file.alloc_dma_buffer(alignment);
            buffer.as_bytes_mut().fill(7);
            file.write_at(buffer, 0).await?;
            file.fdatasync().await?;
            let read = file.read_at(0, alignment).await?;
            Ok::<_, std::io::Error>(read.to_vec())
        })
    })
    .join()
    .expect("test thread")
    .expect("O_DIRECT read back (EOPNOTSUPP: the polled-I/O probe was fooled)");
    assert!(!bytes.is_empty() && bytes.iter().all(|&b| b == 7));
}

/// Reads `[from, end)` in fetches of `max_bytes`, pausing `pause` between fetches (a client's
/// turnaround): every batch as (base offset, bytes).
async fn read_range(
    log: &RefCell<Log>,
    from: i64,
    end: i64,
    max_bytes: usize,
    pause: std::time::Duration,
) -> Vec<(i64, Bytes)> {
    let mut offset = from;
    let mut read = Vec::new();
    while offset < end {
        let chunk = Log::read(log, offset, max_bytes, end, true).await.unwrap();
        assert!(!chunk.is_empty(), "no data at {offset} below {end}");
        for item in batch::split(&chunk) {
            let (header, bytes) = item.unwrap();
            offset = header.last_offset() + 1;
            read.push((header.base_offset, bytes));
        }
        if !pause.is_zero() {
            glommio::timer::sleep(pause).await;
        }
    }
    read
}

/// Reads the whole log sequentially (see [`read_range`]), checking every batch against
/// `appended`.
async fn read_sequentially(
    log: &RefCell<Log>,
    max_bytes: usize,
    pause: std::time::Duration,
    appended: &[(i64, Bytes)],
) {
    let (start, end) = {
        let log = log.borrow();
        (log.log_start_offset, log.log_end_offset)
    };
    let read = read_range(log, start, end, max_bytes, pause).await;
    assert_eq!(read, appended);
}

#[test]
fn sequential_cold_reads_are_served_by_background_read_ahead() {
    let dir = data_dir();
    let path = dir.path().join("t-0");
    run_local(async move {
        let (log, _) = Log::open(&path, small_segments(), options(64 << 10), false, 0)
            .await
            .unwrap();
        let log = RefCell::new(log);
        // ~3 MB in batches of ~10 KB: several segments, many windows.
        let appended = fill(&log, 300, 10, 1000).await;
        assert!(log.borrow().segment_summaries().len() >= 2);
        log.borrow_mut().set_cache_limit(0);
        let pause = std::time::Duration::from_millis(1);
        read_sequentially(&log, 64 << 10, pause, &appended).await;
        let (foreground, background, windows, _) = log.borrow().read_ahead_stats();
        // ~3 MB / 64 KiB ≈ 46 windows: all but the first of each segment come from read-ahead.
        assert!(background >= 40, "background reads {background}");
        assert!(
            foreground <= log.borrow().segment_summaries().len() as u64 + 1,
            "fetches read the disk {foreground} times"
        );
        assert!(windows <= super::readahead::WINDOWS_MAX);
        // Without pauses the fetches wait for the background reads instead of reading again.
        read_sequentially(&log, 64 << 10, std::time::Duration::ZERO, &appended).await;
        let (again, _, _, _) = log.borrow().read_ahead_stats();
        assert!(
            again - foreground <= 5,
            "{} more disk reads",
            again - foreground
        );
        drop(log);
        glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(super::readahead::shard_bytes(), 0, "memory returned");
    });
}

#[test]
fn a_window_read_while_appends_were_unwritten_never_hides_them() {
    let dir = data_dir();
    let path = dir.path().join("t-0");
    run_local(async move {
        let (log, _) = Log::open(&path, small_segments(), options(256 << 10), false, 0)
            .await
            .unwrap();
        let log = RefCell::new(log);
        log.borrow_mut().set_cache_limit(0);
        let mut appended = fill(&log, 10, 5, 200).await;
        // Appended but not written: in the segment's size, not in the file.
        for tag in 100..110u64 {
            let (header, bytes) = make_batch(tag, 5, 200, 2_000);
            let info = log.borrow_mut().append(&header, &bytes, 3, None);
            let mut stored = bytes.to_vec();
            batch::set_base_offset(&mut stored, info.base_offset).unwrap();
            batch::set_partition_leader_epoch(&mut stored, 3).unwrap();
            appended.push((info.base_offset, Bytes::from(stored)));
        }
        let written = log.borrow().written_offset;
        assert!(written < log.borrow().log_end_offset);
        // Fetches up to the written offset, filling their budget: windows and background reads
        // cover the unwritten tail's positions.
        let mut offset = 0;
        while offset < written {
            let chunk = Log::read(&log, offset, 2000, written, true).await.unwrap();
            let last = batch::split(&chunk).last().unwrap().unwrap().0;
            offset = last.last_offset() + 1;
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        Log::flush(&log, true, 0).await.unwrap();
        let end = log.borrow().log_end_offset;
        assert_eq!(log.borrow().written_offset, end);
        let read = read_range(&log, written, end, 2000, std::time::Duration::ZERO).await;
        let tail: Vec<_> = appended
            .iter()
            .filter(|(o, _)| *o >= written)
            .cloned()
            .collect();
        assert_eq!(read, tail);
    });
}

#[test]
fn retention_drops_the_read_ahead_of_deleted_segments() {
    let dir = data_dir();
    let path = dir.path().join("t-0");
    run_local(async move {
        let config = TopicConfig {
            segment_bytes: 256 << 10,
            index_interval_bytes: 4096,
            ..TopicConfig::default()
        };
        let (log, _) = Log::open(&path, config, options(32 << 10), false, 0)
            .await
            .unwrap();
        let log = RefCell::new(log);
        log.borrow_mut().set_cache_limit(0);
        let appended = fill(&log, 100, 10, 1000).await;
        let segments = log.borrow().segment_summaries();
        assert!(segments.len() >= 3);
        // A fetch in the first segment leaves windows and a background read there.
        let end = log.borrow().log_end_offset;
        Log::read(&log, 0, 20 << 10, end, true).await.unwrap();
        let (_, background, windows, _) = log.borrow().read_ahead_stats();
        assert!(background >= 1 && windows >= 1);
        assert!(super::readahead::shard_bytes() > 0);
        // DeleteRecords past the first two segments, then retention removes them.
        let start = segments[2].0;
        log.borrow_mut().advance_log_start(start);
        let victims = log.borrow_mut().take_expired_segments(0);
        assert_eq!(victims.len(), 2);
        drop(victims);
        let (_, _, windows, pending) = log.borrow().read_ahead_stats();
        assert_eq!((windows, pending), (0, false));
        glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(super::readahead::shard_bytes(), 0);
        let rest: Vec<_> = appended
            .iter()
            .filter(|(o, _)| *o >= start)
            .cloned()
            .collect();
        read_sequentially(&log, 20 << 10, std::time::Duration::ZERO, &rest).await;
    });
}
