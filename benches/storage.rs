//! Benchmarks for the write path of a partition log on a real file: `Log::append` (the batch
//! copied into the `Appender`'s aligned buffers, index and cache bookkeeping) alone, with the
//! O_DIRECT writes of every 256 KiB, and with a group commit (write + fdatasync) after 16
//! batches or after every batch. The write and fdatasync cases run twice: on the segment file
//! as Weir creates it today (blocks allocated by each extending write) and with the file
//! preallocated first (`fallocate`, keep size), which is what `weir.preallocate.bytes`
//! describes but the storage engine does not do yet. The commit-per-batch case also runs on a
//! file whose blocks were written with zeros beforehand: then an append is a pure overwrite and
//! fdatasync has no metadata to commit (no ext4 journal commit), only the device cache flush.
//!
//! Runs on a glommio executor on the bench thread (`LocalExecutor::run` per measurement). Every
//! measurement gets a fresh log directory under `target/bench-data` (O_DIRECT needs a real
//! filesystem, not tmpfs), deleted afterwards. Figures with fdatasync depend on the disk and on
//! what else writes to its filesystem: read them next to `weir bench ceilings` (F_p50).

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glommio::{LocalExecutor, LocalExecutorBuilder};
use weir::config::TopicConfig;
use weir::records::batch::{self, BatchHeader};
use weir::records::builder::BatchBuilder;
use weir::records::compression::Compression;
use weir::storage::log::{Log, LogOptions};

const RECORD_BYTES: usize = 1024;
const RECORDS_PER_BATCH: usize = 16;
/// Batches per O_DIRECT write round: 16 × ~16.5 KiB ≈ the 256 KiB write buffer.
const BATCHES_PER_ROUND: u64 = 16;
/// Recent-batch cache of the log, as a 2-shard broker with 12 partitions gives each partition.
const CACHE_BYTES: usize = (256 << 20) / 6;

fn bench_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-data")
}

fn sample_batch() -> (BatchHeader, Bytes) {
    let now = weir::event::now_ms();
    let mut builder = BatchBuilder::new(Compression::None, 0, now);
    let value: Vec<u8> = (0..RECORD_BYTES).map(|i| (i * 131 % 251) as u8).collect();
    for index in 0..RECORDS_PER_BATCH {
        builder.append(now + index as i64, None, Some(&value), &[]);
    }
    let bytes = builder.build().expect("benchmark batch builds");
    let header = batch::validate(&bytes).expect("valid batch");
    (header, bytes)
}

/// How a measurement ends each round of `BATCHES_PER_ROUND` appends.
#[derive(Clone, Copy)]
enum Round {
    /// Hand the buffers to nobody (no I/O): the CPU cost of appending.
    Discard,
    /// O_DIRECT writes, no fdatasync.
    Write,
    /// O_DIRECT writes and fdatasync (a group commit).
    Sync,
}

/// Bytes preallocated in the preallocated cases (more than any measurement writes).
const PREALLOCATE_BYTES: i64 = 8 << 30;

/// Preallocates the first segment of the log in `log_dir` without changing its size.
fn preallocate_first_segment(log_dir: &std::path::Path) {
    use std::os::fd::AsRawFd;
    let path = log_dir.join("00000000000000000000.log");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("opening the segment to preallocate");
    let free = fs_free_bytes(log_dir);
    let length = PREALLOCATE_BYTES.min(free / 4);
    // SAFETY: fallocate on a descriptor we own; no memory is passed.
    let result = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, length) };
    assert_eq!(result, 0, "fallocate: {}", std::io::Error::last_os_error());
}

fn fs_free_bytes(dir: &std::path::Path) -> i64 {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).expect("path without NUL");
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut stat) }, 0);
    (stat.f_bavail as i64).saturating_mul(stat.f_frsize as i64)
}

/// Bytes zero-filled in the pre-zeroed case: more than the commit-per-batch case writes.
const PREZERO_BYTES: usize = 256 << 20;

/// Writes zeros over the first `PREZERO_BYTES` of the log's first segment and syncs them, so the
/// blocks are allocated and written (Weir's recovery stops at the first zero batch length).
fn prezero_first_segment(log_dir: &std::path::Path) {
    use std::io::Write;
    let path = log_dir.join("00000000000000000000.log");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("opening the segment to zero-fill");
    let zeros = vec![0u8; 8 << 20];
    for _ in 0..PREZERO_BYTES / zeros.len() {
        file.write_all(&zeros).expect("zero-filling the segment");
    }
    file.sync_all().expect("syncing the zero-filled segment");
}

/// How the segment file is prepared before a measurement.
#[derive(Clone, Copy, PartialEq)]
enum Prepare {
    /// As Weir creates it.
    AsIs,
    /// `fallocate` (unwritten extents), size kept.
    Preallocate,
    /// Blocks written with zeros (written extents).
    Prezero,
}

/// Appends `iterations` batches to a fresh log, ending a round every `per_round` batches as
/// `round` says; returns the time of the appends and rounds (not of opening the log).
fn measure(
    executor: &LocalExecutor,
    batch: &(BatchHeader, Bytes),
    iterations: u64,
    per_round: u64,
    round: Round,
    prepare: Prepare,
) -> Duration {
    std::fs::create_dir_all(bench_root()).expect("creating target/bench-data");
    let dir = tempfile::Builder::new()
        .prefix("segment-append-")
        .tempdir_in(bench_root())
        .expect("bench log directory");
    let log_dir = dir.path().join("bench-0");
    let elapsed = executor.run(async {
        let (log, _) = Log::open(
            &log_dir,
            TopicConfig::default(),
            LogOptions::default(),
            true,
            weir::event::now_ms(),
        )
        .await
        .expect("opening the bench log");
        match prepare {
            Prepare::AsIs => {}
            Prepare::Preallocate => preallocate_first_segment(&log_dir),
            Prepare::Prezero => prezero_first_segment(&log_dir),
        }
        let log = RefCell::new(log);
        log.borrow_mut().set_cache_limit(CACHE_BYTES);
        let (header, bytes) = batch;
        let started = Instant::now();
        for index in 1..=iterations {
            log.borrow_mut().append(header, bytes, 0, None);
            if index % per_round == 0 || index == iterations {
                end_round(&log, round).await;
            }
        }
        started.elapsed()
    });
    drop(dir);
    elapsed
}

async fn end_round(log: &RefCell<Log>, round: Round) {
    let now = weir::event::now_ms();
    match round {
        Round::Discard => drop(log.borrow_mut().take_flush_work()),
        Round::Write => {
            Log::flush(log, false, now).await.expect("O_DIRECT write");
        }
        Round::Sync => {
            Log::flush(log, true, now)
                .await
                .expect("O_DIRECT write + fdatasync");
        }
    }
}

fn segment_append(criterion: &mut Criterion) {
    let executor = LocalExecutorBuilder::default()
        .make()
        .expect("a glommio executor on the bench thread");
    let batch = sample_batch();
    let batch_bytes = batch.1.len() as u64;
    let mut group = criterion.benchmark_group("segment_append");
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(20);
    let cases = [
        (
            "append_only",
            BATCHES_PER_ROUND,
            Round::Discard,
            Prepare::AsIs,
        ),
        (
            "append_write",
            BATCHES_PER_ROUND,
            Round::Write,
            Prepare::AsIs,
        ),
        (
            "append_write_prealloc",
            BATCHES_PER_ROUND,
            Round::Write,
            Prepare::Preallocate,
        ),
        (
            "append_sync_every_16",
            BATCHES_PER_ROUND,
            Round::Sync,
            Prepare::AsIs,
        ),
        (
            "append_sync_every_16_prealloc",
            BATCHES_PER_ROUND,
            Round::Sync,
            Prepare::Preallocate,
        ),
        ("append_sync_every_1", 1, Round::Sync, Prepare::AsIs),
        (
            "append_sync_every_1_prealloc",
            1,
            Round::Sync,
            Prepare::Preallocate,
        ),
        (
            "append_sync_every_1_prezeroed",
            1,
            Round::Sync,
            Prepare::Prezero,
        ),
    ];
    for (name, per_round, round, prepare) in cases {
        group.throughput(Throughput::Bytes(batch_bytes));
        group.bench_function(
            BenchmarkId::new(name, format!("{}KiB_batch", batch_bytes / 1024)),
            |b| {
                b.iter_custom(|iterations| {
                    measure(&executor, &batch, iterations, per_round, round, prepare)
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, segment_append);
criterion_main!(benches);
