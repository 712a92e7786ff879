//! Compaction on real files: after a pass the log holds the latest record per key in its closed
//! segments (every kept record at its original offset, byte-identical in key, value, timestamp
//! and headers), tombstones leave after their delete horizon, the active segment is untouched,
//! and a crash at any step of the swap recovers to a log with nothing lost and nothing twice.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use bytes::Bytes;
use proptest::prelude::*;

use super::cleaner::{
    filter_batch, BatchFate, CleanerOptions, FilterContext, OffsetMap, SwapStep, CLEANED_SUFFIX,
    SWAP_SUFFIX,
};
use super::log::{Log, LogOptions};
use crate::config::TopicConfig;
use crate::records::batch::{self, BatchHeader};
use crate::records::builder::BatchBuilder;
use crate::records::compression::Compression;
use crate::records::record::records;
use crate::testing::{data_dir, run_local};

const RETENTION_MS: i64 = 1_000;

fn compacted(segment_bytes: u64) -> TopicConfig {
    TopicConfig {
        cleanup_compact: true,
        cleanup_delete: false,
        segment_bytes,
        index_interval_bytes: 256,
        delete_retention_ms: RETENTION_MS,
        min_cleanable_dirty_ratio: 0.0,
        ..TopicConfig::default()
    }
}

fn options() -> LogOptions {
    LogOptions {
        write_buffer_bytes: 16 << 10,
        readahead_bytes: 8 << 10,
        preallocate_bytes: 64 << 10,
    }
}

/// One record as a reader sees it.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    offset: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
    timestamp: i64,
    headers: Vec<(String, Option<Bytes>)>,
}

/// A produced batch: (key, value) records, its codec.
#[derive(Clone, Debug)]
struct Input {
    records: Vec<(u16, Option<u16>)>,
    codec: Compression,
}

fn build_batch(input: &Input, timestamp: i64) -> (BatchHeader, Bytes) {
    let mut builder = BatchBuilder::new(input.codec, 0, timestamp);
    for (i, (key, value)) in input.records.iter().enumerate() {
        let key = format!("key-{key}");
        let value = value.map(|v| format!("value-{v}-{}", "x".repeat(v as usize % 50)));
        let header_value = format!("h{i}");
        builder.append(
            timestamp + i as i64,
            Some(key.as_bytes()),
            value.as_ref().map(|v| v.as_bytes()),
            &[("trace", Some(header_value.as_bytes()))],
        );
    }
    let bytes = builder.build().unwrap();
    (batch::validate(&bytes).unwrap(), bytes)
}

fn decode(chunk: &Bytes) -> Vec<(BatchHeader, Vec<Seen>)> {
    batch::split(chunk)
        .map(|item| {
            let (header, bytes) = item.unwrap();
            batch::validate(&bytes).unwrap();
            let seen = records(&bytes, 64 << 20)
                .unwrap()
                .map(|r| {
                    let r = r.unwrap();
                    Seen {
                        offset: r.offset(&header),
                        timestamp: r.timestamp(&header),
                        headers: r
                            .headers
                            .iter()
                            .map(|h| (h.key.clone(), h.value.clone()))
                            .collect(),
                        key: r.key,
                        value: r.value,
                    }
                })
                .collect();
            (header, seen)
        })
        .collect()
}

/// Appends every input batch (rolling by `segment.bytes`), flushed and sealed; returns every
/// record as appended.
async fn append_all(log: &RefCell<Log>, inputs: &[Input]) -> Vec<Seen> {
    let mut appended = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let (header, bytes) = build_batch(input, 10_000 + i as i64 * 100);
        Log::roll_if_needed(log, bytes.len(), 0).await.unwrap();
        let info = log.borrow_mut().append(&header, &bytes, 1, None);
        let mut stored = bytes.to_vec();
        batch::set_base_offset(&mut stored, info.base_offset).unwrap();
        for (_, seen) in decode(&Bytes::from(stored)) {
            appended.extend(seen);
        }
        Log::flush(log, true, 0).await.unwrap();
    }
    appended
}

/// Every batch of the log, from the start, as (header, records).
async fn read_all(log: &RefCell<Log>) -> Vec<(BatchHeader, Vec<Seen>)> {
    read_all_by(log, 3000).await
}

async fn read_all_by(log: &RefCell<Log>, max_bytes: usize) -> Vec<(BatchHeader, Vec<Seen>)> {
    let end = log.borrow().log_end_offset;
    let mut offset = log.borrow().log_start_offset;
    let mut out = Vec::new();
    while offset < end {
        let chunk = Log::read(log, offset, max_bytes, end, true).await.unwrap();
        assert!(!chunk.is_empty(), "no data at offset {offset} below {end}");
        for (header, seen) in decode(&chunk) {
            assert!(header.last_offset() >= offset);
            offset = header.last_offset() + 1;
            out.push((header, seen));
        }
    }
    out
}

/// Key → value after applying records in order, a tombstone deleting its key.
fn latest(records: &[Seen]) -> BTreeMap<Bytes, Bytes> {
    let mut map = BTreeMap::new();
    for record in records {
        let key = record.key.clone().unwrap();
        match &record.value {
            Some(value) => map.insert(key, value.clone()),
            None => map.remove(&key),
        };
    }
    map
}

/// Checks the invariants of a compacted read-back against what was appended; returns its records.
fn check_against(batches: &[(BatchHeader, Vec<Seen>)], appended: &[Seen]) -> Vec<Seen> {
    let by_offset: BTreeMap<i64, &Seen> = appended.iter().map(|s| (s.offset, s)).collect();
    let mut previous = -1;
    let mut kept = Vec::new();
    for (header, seen) in batches {
        assert!(header.base_offset > previous, "batches in offset order");
        for record in seen {
            assert!(record.offset > previous, "offsets strictly increase");
            previous = record.offset;
            assert_eq!(
                Some(&record),
                by_offset.get(&record.offset),
                "a kept record is the appended one at its offset"
            );
            kept.push(record.clone());
        }
        previous = previous.max(header.last_offset());
    }
    assert_eq!(latest(&kept), latest(appended), "same latest value per key");
    kept
}

/// Records of the closed segments: offsets below the active segment's base.
fn closed(log: &RefCell<Log>, records: &[Seen]) -> Vec<Seen> {
    let active_base = log.borrow().segment_summaries().last().unwrap().0;
    records
        .iter()
        .filter(|r| r.offset < active_base)
        .cloned()
        .collect()
}

fn flatten(batches: &[(BatchHeader, Vec<Seen>)]) -> Vec<Seen> {
    batches.iter().flat_map(|(_, s)| s.clone()).collect()
}

async fn clean(log: &RefCell<Log>, now_ms: i64) -> super::cleaner::CleanStats {
    Log::clean(
        log,
        now_ms,
        &CleanerOptions::default(),
        &HashSet::new(),
        None,
    )
    .await
    .unwrap()
}

fn codec() -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::None),
        Just(Compression::Gzip),
        Just(Compression::Snappy),
        Just(Compression::Lz4),
        Just(Compression::Zstd),
    ]
}

fn inputs() -> impl Strategy<Value = Vec<Input>> {
    let record = (0u16..12, prop::option::weighted(0.8, any::<u16>()));
    let input = (prop::collection::vec(record, 1..8), codec())
        .prop_map(|(records, codec)| Input { records, codec });
    prop::collection::vec(input, 1..60)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn compaction_keeps_the_latest_value_per_key_at_its_offset(inputs in inputs()) {
        let dir = data_dir();
        let path = dir.path().join("t-0");
        run_local(async move {
            let (log, _) = Log::open(&path, compacted(1500), options(), false, 0).await.unwrap();
            let log = RefCell::new(log);
            let appended = append_all(&log, &inputs).await;
            let end_before = log.borrow().log_end_offset;
            let segments_before = log.borrow().segment_summaries();
            clean(&log, 5_000).await;
            let batches = read_all(&log).await;
            let kept = check_against(&batches, &appended);
            assert_eq!(log.borrow().log_end_offset, end_before);
            let bases = |s: &[(i64, u64, bool)]| s.iter().map(|x| x.0).collect::<Vec<_>>();
            assert_eq!(bases(&log.borrow().segment_summaries()), bases(&segments_before));
            // Closed segments hold at most one record per key; the active one is untouched.
            let closed_kept = closed(&log, &kept);
            let keys: HashSet<_> = closed_kept.iter().map(|r| r.key.clone()).collect();
            assert_eq!(keys.len(), closed_kept.len(), "one record per key in closed segments");
            let active_base = segments_before.last().unwrap().0;
            let active = |r: &&Seen| r.offset >= active_base;
            assert_eq!(
                kept.iter().filter(active).collect::<Vec<_>>(),
                appended.iter().filter(active).collect::<Vec<_>>()
            );

            // Past the delete horizon a second pass drops the tombstones of closed segments.
            clean(&log, 5_000 + RETENTION_MS + 1).await;
            let batches = read_all(&log).await;
            let kept = check_against(&batches, &appended);
            assert!(closed(&log, &kept).iter().all(|r| r.value.is_some()), "tombstones expired");
            let after_second = flatten(&batches);

            // The result survives a clean restart and a recovery scan.
            Log::close(&log, 0).await.unwrap();
            drop(log);
            for clean_shutdown in [true, false] {
                let (log, _) = Log::open(&path, compacted(1500), options(), clean_shutdown, 0)
                    .await
                    .unwrap();
                let log = RefCell::new(log);
                assert_eq!(log.borrow().log_end_offset, end_before);
                assert_eq!(flatten(&read_all(&log).await), after_second);
            }
        });
    }
}

/// Appends 40 batches over 10 keys (values and tombstones) in small segments.
fn workload() -> Vec<Input> {
    (0..40u16)
        .map(|i| Input {
            records: (0..4u16)
                .map(|j| {
                    let key = (i * 4 + j) % 10;
                    let value = if (i + j) % 7 == 3 {
                        None
                    } else {
                        Some(i * 4 + j)
                    };
                    (key, value)
                })
                .collect(),
            codec: if i % 2 == 0 {
                Compression::None
            } else {
                Compression::Lz4
            },
        })
        .collect()
}

fn files_with_suffix(dir: &Path, suffix: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(suffix)
        })
        .count()
}

#[test]
fn a_crash_at_any_step_of_the_swap_loses_nothing_and_duplicates_nothing() {
    for step in [
        SwapStep::Written,
        SwapStep::Committed,
        SwapStep::OldIndexesRemoved,
        SwapStep::Renamed,
    ] {
        let dir = data_dir();
        let path = dir.path().join("t-0");
        run_local(async move {
            let (log, _) = Log::open(&path, compacted(1500), options(), false, 0)
                .await
                .unwrap();
            let log = RefCell::new(log);
            let appended = append_all(&log, &workload()).await;
            let end = log.borrow().log_end_offset;
            let crash = CleanerOptions {
                stop_after: Some(step),
                ..CleanerOptions::default()
            };
            Log::clean(&log, 5_000, &crash, &HashSet::new(), None)
                .await
                .unwrap();
            let expected_leftover = match step {
                SwapStep::Written => (1, 0),
                SwapStep::Committed | SwapStep::OldIndexesRemoved => (0, 1),
                SwapStep::Renamed => (0, 0),
            };
            assert_eq!(
                (
                    files_with_suffix(&path, CLEANED_SUFFIX),
                    files_with_suffix(&path, SWAP_SUFFIX)
                ),
                expected_leftover,
                "{step:?}"
            );
            drop(log); // the crash: nothing closed

            let (log, report) = Log::open(&path, compacted(1500), options(), false, 0)
                .await
                .unwrap();
            let log = RefCell::new(log);
            assert_eq!(report.truncated_bytes, 0, "{step:?}: {:?}", report.notes);
            assert_eq!(log.borrow().log_end_offset, end, "{step:?}");
            assert_eq!(files_with_suffix(&path, CLEANED_SUFFIX), 0);
            assert_eq!(files_with_suffix(&path, SWAP_SUFFIX), 0);
            let recovered = read_all(&log).await;
            check_against(&recovered, &appended);
            if step > SwapStep::Written {
                // The committed swap was completed: the first segment is the cleaned one.
                let first_segment_end = log.borrow().segment_summaries()[1].0;
                let first: Vec<_> = flatten(&recovered)
                    .into_iter()
                    .filter(|r| r.offset < first_segment_end)
                    .collect();
                let in_first = appended.iter().filter(|r| r.offset < first_segment_end);
                assert!(first.len() < in_first.count(), "{step:?}: cleaned version");
            }

            // A later pass finishes the job.
            clean(&log, 5_000).await;
            let batches = read_all(&log).await;
            let kept = check_against(&batches, &appended);
            let closed_kept = closed(&log, &kept);
            let keys: HashSet<_> = closed_kept.iter().map(|r| r.key.clone()).collect();
            assert_eq!(keys.len(), closed_kept.len(), "{step:?}");
        });
    }
}

#[test]
fn dirty_ratio_and_compaction_lag_decide_when_a_pass_runs() {
    let dir = data_dir();
    let path = dir.path().join("t-0");
    run_local(async move {
        let config = TopicConfig {
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 60_000,
            ..compacted(1500)
        };
        let (log, _) = Log::open(&path, config, options(), false, 0).await.unwrap();
        let log = RefCell::new(log);
        append_all(&log, &workload()).await;
        // Records are stamped at ~10 s: too young for a 60 s minimum lag at 30 s.
        let stats = clean(&log, 30_000).await;
        assert!(!stats.ran);
        assert_eq!(stats.dirty_ratio, 0.0, "nothing cleanable yet");
        let stats = clean(&log, 100_000).await;
        assert!(stats.ran && stats.segments_cleaned > 0, "{stats:?}");
        assert!(stats.dirty_ratio > 0.99, "all dirty before the first pass");
        // Everything is clean now: no pass until enough new dirty data.
        let stats = clean(&log, 100_000).await;
        assert!(!stats.ran);
        assert_eq!(stats.dirty_ratio, 0.0);
        // The checkpoint survives a restart.
        Log::close(&log, 0).await.unwrap();
        drop(log);
        let (log, _) = Log::open(&path, config_for_restart(), options(), true, 0)
            .await
            .unwrap();
        let log = RefCell::new(log);
        assert!(!clean(&log, 100_000).await.ran);
    });
}

fn config_for_restart() -> TopicConfig {
    TopicConfig {
        min_cleanable_dirty_ratio: 0.5,
        ..compacted(1500)
    }
}

#[test]
fn a_log_with_only_its_active_segment_is_not_cleaned() {
    let dir = data_dir();
    let path = dir.path().join("t-0");
    run_local(async move {
        let (log, _) = Log::open(&path, compacted(1 << 30), options(), false, 0)
            .await
            .unwrap();
        let log = RefCell::new(log);
        let appended = append_all(&log, &workload()).await;
        assert_eq!(log.borrow().segment_count(), 1);
        let stats = clean(&log, 5_000).await;
        assert!(!stats.ran, "only an active segment: nothing to clean");
        assert_eq!(flatten(&read_all(&log).await), appended);
    });
}

fn ctx<'a>(map: &'a OffsetMap, tails: &'a HashSet<(i64, i64)>, last: bool) -> FilterContext<'a> {
    FilterContext {
        map,
        now_ms: 1_000,
        delete_retention_ms: 500,
        producer_tails: tails,
        last_in_segment: last,
        aborted: false,
    }
}

fn stored(builder: BatchBuilder, base_offset: i64) -> Bytes {
    let mut bytes = builder.build().unwrap().to_vec();
    batch::set_base_offset(&mut bytes, base_offset).unwrap();
    Bytes::from(bytes)
}

#[test]
fn a_rewritten_batch_keeps_codec_offsets_producer_and_last_offset_and_sets_the_horizon() {
    let mut builder = BatchBuilder::new(Compression::Zstd, 0, 700).producer(42, 3, 100);
    builder.append(700, Some(b"a"), Some(b"old"), &[("h", Some(b"1"))]);
    builder.append(701, Some(b"b"), None, &[]);
    builder.append(702, Some(b"c"), Some(b"keep"), &[("h", None)]);
    builder.append(703, Some(b"a"), Some(b"superseded-later"), &[]);
    let original = stored(builder, 50);
    let mut map = OffsetMap::new(1 << 20);
    map.insert(b"a", 90);
    let tails = HashSet::new();
    let filtered = filter_batch(&original, &ctx(&map, &tails, false)).unwrap();
    assert_eq!(filtered.records_removed, 2);
    assert_eq!(filtered.tombstone_horizon_ms, Some(1_500));
    let BatchFate::Rewritten(bytes) = filtered.fate else {
        panic!("expected a rewrite, got {:?}", filtered.fate)
    };
    let header = batch::validate(&bytes).unwrap();
    let before = BatchHeader::parse(&original).unwrap();
    assert_eq!(header.compression(), Compression::Zstd);
    assert_eq!(header.base_offset, 50);
    assert_eq!(header.last_offset(), before.last_offset());
    assert_eq!(
        (
            header.producer_id,
            header.producer_epoch,
            header.base_sequence
        ),
        (42, 3, 100)
    );
    assert_eq!(header.delete_horizon_ms(), Some(1_500));
    assert_eq!(header.records_count, 2);
    let seen = decode(&bytes).remove(0).1;
    assert_eq!(seen[0].offset, 51);
    assert_eq!(seen[0].timestamp, 701);
    assert_eq!(seen[0].value, None);
    assert_eq!(seen[1].offset, 52);
    assert_eq!(seen[1].timestamp, 702);
    assert_eq!(seen[1].headers, vec![("h".to_string(), None)]);
    assert_eq!(header.max_timestamp, 702);

    // Past the horizon the tombstone goes; the rest of the batch is unchanged in content.
    let later = FilterContext {
        now_ms: 2_000,
        ..ctx(&map, &tails, false)
    };
    let filtered = filter_batch(&bytes, &later).unwrap();
    let BatchFate::Rewritten(again) = filtered.fate else {
        panic!("tombstone expected to be removed")
    };
    let seen = decode(&again).remove(0).1;
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].offset, seen[0].timestamp), (52, 702));
    assert_eq!(filtered.tombstone_horizon_ms, None);
}

#[test]
fn emptied_batches_keep_a_header_for_the_producer_tail_and_the_segment_end_only() {
    let mut builder = BatchBuilder::new(Compression::None, 0, 5).producer(7, 0, 10);
    builder.append(5, Some(b"k"), Some(b"v"), &[]);
    builder.append(6, Some(b"k"), Some(b"w"), &[]);
    let original = stored(builder, 20);
    let mut map = OffsetMap::new(1 << 20);
    map.insert(b"k", 99);
    let none = HashSet::new();
    let filtered = filter_batch(&original, &ctx(&map, &none, false)).unwrap();
    assert_eq!(filtered.fate, BatchFate::Removed);
    let tail: HashSet<(i64, i64)> = [(7, 21)].into();
    for (tails, last) in [(&tail, false), (&none, true)] {
        let filtered = filter_batch(&original, &ctx(&map, tails, last)).unwrap();
        let BatchFate::Rewritten(bytes) = filtered.fate else {
            panic!("expected an empty batch")
        };
        let header = batch::validate(&bytes).unwrap();
        assert_eq!(header.records_count, 0);
        assert_eq!((header.base_offset, header.last_offset()), (20, 21));
        assert_eq!(
            header.last_sequence(),
            11,
            "the producer's sequence survives"
        );
    }
}

#[test]
fn control_batches_and_log_append_time_survive_compaction() {
    use crate::records::builder::{ControlType, EndTransactionMarker};
    let marker = EndTransactionMarker {
        kind: ControlType::Commit,
        producer_id: 9,
        producer_epoch: 1,
        coordinator_epoch: 0,
    };
    let control = stored(BatchBuilder::end_transaction_marker(&marker, 0, 77), 30);
    let map = OffsetMap::new(1 << 20);
    let none = HashSet::new();
    let filtered = filter_batch(&control, &ctx(&map, &none, false)).unwrap();
    assert_eq!(filtered.fate, BatchFate::Unchanged);

    let mut builder = BatchBuilder::new(Compression::Snappy, 0, 5);
    builder.append(5, Some(b"x"), Some(b"1"), &[]);
    builder.append(6, Some(b"y"), Some(b"2"), &[]);
    let mut bytes = builder.build().unwrap().to_vec();
    batch::set_log_append_time(&mut bytes, 4_242).unwrap();
    batch::set_base_offset(&mut bytes, 0).unwrap();
    let bytes = Bytes::from(bytes);
    let mut map = OffsetMap::new(1 << 20);
    map.insert(b"x", 5);
    let filtered = filter_batch(&bytes, &ctx(&map, &none, false)).unwrap();
    let BatchFate::Rewritten(rewritten) = filtered.fate else {
        panic!("x is superseded")
    };
    let header = batch::validate(&rewritten).unwrap();
    assert_eq!(header.timestamp_type(), batch::TimestampType::LogAppendTime);
    assert_eq!(header.max_timestamp, 4_242);
    assert_eq!(header.compression(), Compression::Snappy);
    let seen = decode(&rewritten).remove(0).1;
    assert_eq!((seen.len(), seen[0].timestamp), (1, 4_242));
}

#[test]
fn the_offset_map_is_bounded() {
    let mut map = OffsetMap::new(2 * (3 + 48));
    assert!(map.insert(b"abc", 1));
    assert!(map.insert(b"def", 2));
    assert!(
        map.insert(b"abc", 5),
        "updating a present key needs no room"
    );
    assert!(!map.insert(b"ghi", 6), "full");
    assert_eq!(
        (map.get(b"abc"), map.get(b"ghi"), map.len()),
        (Some(5), None, 2)
    );
}

#[test]
fn reads_running_while_segments_are_swapped_in_return_valid_batches() {
    let dir = data_dir();
    let path = dir.path().join("t-0");
    run_local(async move {
        let small_reads = LogOptions {
            readahead_bytes: 512,
            ..options()
        };
        let (log, _) = Log::open(&path, compacted(16 << 10), small_reads, false, 0)
            .await
            .unwrap();
        let log = RefCell::new(log);
        let inputs: Vec<Input> = (0..20).flat_map(|_| workload()).collect();
        let appended = append_all(&log, &inputs).await;
        log.borrow_mut().set_cache_limit(0);
        let done = std::cell::Cell::new(false);
        let reads = async {
            let mut complete_reads = 0;
            while !done.get() {
                let max_bytes = [700, 5000, 40_000][complete_reads % 3];
                check_against(&read_all_by(&log, max_bytes).await, &appended);
                complete_reads += 1;
            }
            complete_reads
        };
        let cleaning = async {
            let stats = clean(&log, 5_000).await;
            done.set(true);
            stats
        };
        let (complete_reads, stats) = futures::join!(reads, cleaning);
        assert!(complete_reads > 0);
        assert!(stats.segments_cleaned >= 3, "{stats:?}");
        check_against(&read_all(&log).await, &appended);
    });
}

/// The records one pass keeps (first pass: tombstones stay): in closed segments (below
/// `active_base`) the last record of each key among the closed segments, all of the active one.
fn model_after_one_pass(appended: &[Seen], active_base: i64) -> Vec<Seen> {
    let mut last_of_key = BTreeMap::new();
    for record in appended.iter().filter(|r| r.offset < active_base) {
        last_of_key.insert(record.key.clone(), record.offset);
    }
    appended
        .iter()
        .filter(|r| r.offset >= active_base || last_of_key.get(&r.key) == Some(&r.offset))
        .cloned()
        .collect()
}

#[test]
fn reads_suspended_across_a_swap_return_valid_batches_and_leave_no_stale_read_ahead() {
    let dir = data_dir();
    let path = dir.path().join("t-0");
    run_local(async move {
        let small_reads = LogOptions {
            readahead_bytes: 512,
            ..options()
        };
        let (log, _) = Log::open(&path, compacted(16 << 10), small_reads, false, 0)
            .await
            .unwrap();
        let log = RefCell::new(log);
        // Distinct keys but for a fifth of the records, all on one key: every cleaned segment
        // shrinks a little, so old positions land inside other batches of the new files.
        let inputs: Vec<Input> = (0..300u16)
            .map(|i| Input {
                records: (0..4u16)
                    .map(|j| (if (i + j) % 5 == 0 { 0 } else { i * 4 + j + 1 }, Some(i)))
                    .collect(),
                codec: Compression::None,
            })
            .collect();
        let appended = append_all(&log, &inputs).await;
        let by_offset: BTreeMap<i64, Seen> =
            appended.iter().map(|s| (s.offset, s.clone())).collect();
        let active_base = log.borrow().segment_summaries().last().unwrap().0;
        let model = model_after_one_pass(&appended, active_base);
        log.borrow_mut().set_cache_limit(0);
        let end = log.borrow().log_end_offset;
        // Reads suspended inside their first disk read, at the old files' positions.
        let starts: Vec<i64> = (0..active_base).step_by(97).collect();
        let mut reads: Vec<_> = starts
            .iter()
            .map(|&offset| Box::pin(Log::read(&log, offset, 3000, end, true)))
            .collect();
        for read in &mut reads {
            assert!(futures::poll!(read).is_pending());
        }
        let stats = clean(&log, 5_000).await;
        assert!(stats.segments_cleaned >= 3, "{stats:?}");
        for (read, start) in reads.into_iter().zip(&starts) {
            // From before or after the swap, but valid batches of this log, in order.
            let chunk = read.await.unwrap();
            assert!(!chunk.is_empty(), "read at {start}");
            let mut previous = -1;
            for (header, seen) in decode(&chunk) {
                assert!(header.last_offset() >= *start);
                for record in seen {
                    assert!(record.offset > previous);
                    previous = record.offset;
                    assert_eq!(Some(&record), by_offset.get(&record.offset));
                }
            }
            // A read after the swap sees the cleaned log only.
            let chunk = Log::read(&log, *start, 3000, end, true).await.unwrap();
            let after: Vec<Seen> = decode(&chunk).into_iter().flat_map(|(_, s)| s).collect();
            let first = after.first().map_or(end, |r| r.offset).min(*start);
            let expected: Vec<Seen> = model
                .iter()
                .filter(|r| r.offset >= first)
                .take(after.len())
                .cloned()
                .collect();
            assert!(!after.is_empty());
            assert_eq!(after, expected, "read at {start} after the swap");
        }
    });
}

#[test]
fn read_ahead_from_before_a_swap_is_never_served_after_it() {
    let dir = data_dir();
    let path = dir.path().join("t-0");
    run_local(async move {
        let (log, _) = Log::open(&path, compacted(16 << 10), options(), false, 0)
            .await
            .unwrap();
        let log = RefCell::new(log);
        // Few keys, so cleaning shrinks every segment and old positions become other batches.
        let inputs: Vec<Input> = (0..300u16)
            .map(|i| Input {
                records: (0..4u16).map(|j| ((i * 4 + j) % 7, Some(i))).collect(),
                codec: Compression::None,
            })
            .collect();
        let appended = append_all(&log, &inputs).await;
        let active_base = log.borrow().segment_summaries().last().unwrap().0;
        let model = model_after_one_pass(&appended, active_base);
        log.borrow_mut().set_cache_limit(0);
        let end = log.borrow().log_end_offset;
        // Sequential fetches over the closed segments: windows and a background read ahead.
        let mut offset = 0;
        while offset < active_base / 2 {
            let chunk = Log::read(&log, offset, 1000, end, true).await.unwrap();
            offset = decode(&chunk).last().unwrap().0.last_offset() + 1;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        let (_, background, windows, _) = log.borrow().read_ahead_stats();
        assert!(background > 0 && windows > 0);
        let stats = clean(&log, 5_000).await;
        assert!(stats.segments_cleaned >= 3, "{stats:?}");
        // Reading on from where the consumer was, and from the start: the cleaned log only.
        for start in [offset, 0] {
            let mut seen = Vec::new();
            let mut at = start;
            while at < end {
                let chunk = Log::read(&log, at, 1000, end, true).await.unwrap();
                let Some(last) = decode(&chunk).last().map(|(h, _)| h.last_offset()) else {
                    break;
                };
                seen.extend(decode(&chunk).into_iter().flat_map(|(_, s)| s));
                at = last + 1;
            }
            let first = seen.first().map_or(end, |r| r.offset);
            let expected: Vec<Seen> = model
                .iter()
                .filter(|r| r.offset >= first)
                .cloned()
                .collect();
            assert!(
                first
                    <= start.max(
                        model
                            .iter()
                            .find(|r| r.offset >= start)
                            .map_or(end, |r| r.offset)
                    )
            );
            assert_eq!(seen, expected, "reading from {start} after the swap");
        }
    });
}
