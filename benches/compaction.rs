//! Throughput of the log cleaner: one compaction pass (`Log::clean`) over a log of N keys × M
//! versions in 256 KiB or 8 MiB segments, uncompressed and LZ4-compressed batches of 10 records of 100-byte
//! values. Throughput is the size of the log before the pass (the bytes the cleaner reads twice:
//! once for the key map, once to filter). Building the log is not timed.
//!
//! Runs on a glommio executor on the bench thread; every measurement gets a fresh log directory
//! under `target/bench-data` (O_DIRECT needs a real filesystem), deleted afterwards. Figures
//! include the fdatasync of every rewritten segment: read them next to `weir bench ceilings`.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glommio::{LocalExecutor, LocalExecutorBuilder};
use weir::config::TopicConfig;
use weir::records::batch;
use weir::records::builder::BatchBuilder;
use weir::records::compression::Compression;
use weir::storage::cleaner::CleanerOptions;
use weir::storage::log::{Log, LogOptions};

const VALUE_BYTES: usize = 100;
const RECORDS_PER_BATCH: usize = 10;

fn bench_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-data")
}

fn config(segment_bytes: u64) -> TopicConfig {
    TopicConfig {
        cleanup_compact: true,
        cleanup_delete: false,
        segment_bytes: segment_bytes as _,
        min_cleanable_dirty_ratio: 0.0,
        ..TopicConfig::default()
    }
}

/// Appends `keys` × `versions` records, version-major (every key once, then again), and seals
/// every segment but the active one. Returns the log's size in bytes.
async fn fill(log: &RefCell<Log>, keys: usize, versions: usize, codec: Compression) -> u64 {
    let records = keys * versions;
    // Pseudo-random values, so compressed batches still fill several segments.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut value = vec![0u8; VALUE_BYTES];
    for first in (0..records).step_by(RECORDS_PER_BATCH) {
        let mut builder = BatchBuilder::new(codec, 0, 1_000);
        for record in first..(first + RECORDS_PER_BATCH).min(records) {
            let key = format!("key-{:08}", record % keys);
            for byte in value.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *byte = state as u8;
            }
            builder.append(1_000, Some(key.as_bytes()), Some(&value), &[]);
        }
        let bytes = builder.build().expect("bench batch builds");
        let header = batch::validate(&bytes).expect("valid batch");
        Log::roll_if_needed(log, bytes.len(), 0)
            .await
            .expect("roll");
        log.borrow_mut().append(&header, &bytes, 0, None);
        if first % (RECORDS_PER_BATCH * 256) == 0 {
            Log::flush(log, false, 0).await.expect("flush");
        }
    }
    Log::flush(log, true, 0).await.expect("flush");
    log.borrow().size_bytes()
}

/// Builds a fresh log and times one cleaning pass over it: (elapsed, log bytes).
fn measure(
    executor: &LocalExecutor,
    keys: usize,
    versions: usize,
    segment_bytes: u64,
    codec: Compression,
) -> (Duration, u64) {
    std::fs::create_dir_all(bench_root()).expect("creating target/bench-data");
    let dir = tempfile::Builder::new()
        .prefix("compaction-")
        .tempdir_in(bench_root())
        .expect("bench log directory");
    let log_dir = dir.path().join("bench-0");
    executor.run(async {
        let (log, _) = Log::open(
            &log_dir,
            config(segment_bytes),
            LogOptions::default(),
            false,
            0,
        )
        .await
        .expect("opening the bench log");
        let log = RefCell::new(log);
        let bytes = fill(&log, keys, versions, codec).await;
        let start = Instant::now();
        let stats = Log::clean(
            &log,
            10_000,
            &CleanerOptions::default(),
            &HashSet::new(),
            None,
        )
        .await
        .expect("cleaning");
        let elapsed = start.elapsed();
        assert!(stats.segments_cleaned > 0, "the pass rewrote segments");
        (elapsed, bytes)
    })
}

fn cleaner(c: &mut Criterion) {
    let executor = LocalExecutorBuilder::default()
        .make()
        .expect("glommio executor");
    executor.run(async {
        weir::storage::probe_direct_io(&bench_root(), 0)
            .await
            .expect("direct I/O probe")
    });
    let mut group = c.benchmark_group("cleaner");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    // Small segments: every rewritten segment costs its fdatasync and the swap's renames, so
    // these measure the file work; 8 MiB segments measure the filtering itself.
    for (keys, versions, segment_bytes) in [
        (10_000usize, 5usize, 256u64 << 10),
        (1_000, 50, 256 << 10),
        (100_000, 5, 8 << 20),
    ] {
        for codec in [Compression::None, Compression::Lz4] {
            let (_, bytes) = measure(&executor, keys, versions, segment_bytes, codec);
            group.throughput(Throughput::Bytes(bytes));
            let id = BenchmarkId::new(
                format!("{keys}x{versions}/{}KiB", segment_bytes >> 10),
                codec.name(),
            );
            group.bench_function(id, |b| {
                b.iter_custom(|iterations| {
                    (0..iterations)
                        .map(|_| measure(&executor, keys, versions, segment_bytes, codec).0)
                        .sum()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, cleaner);
criterion_main!(benches);
