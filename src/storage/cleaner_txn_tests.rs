//! Compaction of logs with transactions: nothing undecided is cleaned, aborted records never
//! count as a key's latest value and leave cleaned segments, markers stay while their
//! transaction's data remains before them and until `delete.retention.ms`, and `.txnindex`
//! entries follow their markers.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::Path;

use bytes::Bytes;

use super::cleaner::CleanerOptions;
use super::log::{Log, LogOptions};
use super::txn_index::AbortedTxn;
use crate::config::TopicConfig;
use crate::records::batch::{self, BatchHeader};
use crate::records::builder::{BatchBuilder, ControlType, EndTransactionMarker};
use crate::records::compression::Compression;
use crate::records::record::records;
use crate::testing::{data_dir, run_local};

const T: i64 = 10_000;
const RETENTION_MS: i64 = 1_000;

fn config() -> TopicConfig {
    TopicConfig {
        cleanup_compact: true,
        cleanup_delete: false,
        segment_bytes: 1 << 20,
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

fn data(producer_id: i64, key: &str, value: &str) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::None, 0, T)
        .producer(producer_id, 0, if producer_id >= 0 { 0 } else { -1 })
        .transactional(producer_id >= 0);
    builder.append(T, Some(key.as_bytes()), Some(value.as_bytes()), &[]);
    builder.build().unwrap()
}

fn marker(producer_id: i64, kind: ControlType) -> Bytes {
    let marker = EndTransactionMarker {
        kind,
        coordinator_epoch: 0,
        producer_id,
        producer_epoch: 0,
    };
    BatchBuilder::end_transaction_marker(&marker, 0, T)
        .build()
        .unwrap()
}

fn append(log: &RefCell<Log>, bytes: &Bytes) -> i64 {
    let header = batch::validate(bytes).unwrap();
    log.borrow_mut().append(&header, bytes, 0, None).base_offset
}

async fn roll(log: &RefCell<Log>) {
    let base = log.borrow().segment_summaries().last().unwrap().0;
    log.borrow_mut().segment_mut(base).unwrap().rolled = true;
    assert!(Log::roll_if_needed(log, 100, T).await.unwrap());
}

/// Every batch as (offset of its first record or its base, what it is).
async fn contents(log: &RefCell<Log>) -> Vec<(i64, String)> {
    let end = log.borrow().log_end_offset;
    let chunk = Log::read(log, 0, 1 << 20, end, true).await.unwrap();
    let mut out = Vec::new();
    for item in batch::split(&chunk) {
        let (header, bytes): (BatchHeader, Bytes) = item.unwrap();
        if header.is_control() {
            let kind = crate::records::control::read_marker(&bytes).unwrap().kind;
            out.push((
                header.base_offset,
                format!("{kind:?}-{}", header.producer_id),
            ));
            continue;
        }
        for record in records(&bytes, 1 << 20).unwrap() {
            let record = record.unwrap();
            let value = String::from_utf8(record.value.clone().unwrap().to_vec()).unwrap();
            out.push((record.offset(&header), value));
        }
    }
    out
}

async fn clean(log: &RefCell<Log>, now_ms: i64, first_unstable: Option<i64>) {
    log.borrow_mut().cleaner.first_dirty = Some(0);
    let stats = Log::clean(
        log,
        now_ms,
        &CleanerOptions::default(),
        &HashSet::new(),
        first_unstable,
    )
    .await
    .unwrap();
    assert!(stats.ran, "{stats:?}");
}

fn txn_index_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".txnindex"))
        .collect();
    names.sort();
    names
}

/// Segments: [0 P1 k1 (aborted) | 1 P2 k1 | 2 ABORT P1 | 3 COMMIT P2 | 4 k2] [5 k1 newer]
/// [6 P3 k5 (open) | 7 k5 later] [8 active].
async fn history(log: &RefCell<Log>) {
    append(log, &data(1, "k1", "aborted"));
    append(log, &data(2, "k1", "committed"));
    let abort = append(log, &marker(1, ControlType::Abort));
    log.borrow_mut().append_aborted(AbortedTxn {
        producer_id: 1,
        first_offset: 0,
        last_offset: abort,
        last_stable_offset: 1,
    });
    append(log, &marker(2, ControlType::Commit));
    append(log, &data(-1, "k2", "plain"));
    roll(log).await;
    append(log, &data(-1, "k1", "newer"));
    roll(log).await;
    append(log, &data(3, "k5", "open"));
    append(log, &data(-1, "k5", "later"));
    roll(log).await;
    append(log, &data(-1, "k9", "active"));
    Log::flush(log, true, T).await.unwrap();
}

#[test]
fn compaction_drops_aborted_data_keeps_markers_while_needed_and_never_cleans_open_transactions() {
    let dir = data_dir();
    let path = dir.path().join("t-0");
    run_local(async move {
        let (log, _) = Log::open(&path, config(), options(), true, 0)
            .await
            .unwrap();
        let log = RefCell::new(log);
        history(&log).await;
        // Offset 6 starts an open transaction: its segment is not cleanable, so "open" stays
        // although "later" supersedes it.
        clean(&log, T + 500, Some(6)).await;
        assert_eq!(
            contents(&log).await,
            [
                (2, "Abort-1".to_string()),
                (3, "Commit-2".to_string()),
                (4, "plain".to_string()),
                (5, "newer".to_string()),
                (6, "open".to_string()),
                (7, "later".to_string()),
                (8, "active".to_string()),
            ],
            "aborted data gone; committed k1 superseded; markers kept (their data was there)"
        );
        assert_eq!(log.borrow().aborted_transactions(0, 100), vec![(1, 0)]);
        assert_eq!(txn_index_files(&path), ["00000000000000000000.txnindex"]);

        // Next pass, markers younger than delete.retention.ms: kept although no data remains.
        clean(&log, T + 900, Some(6)).await;
        assert_eq!(contents(&log).await.len(), 7);

        // Past delete.retention.ms, with no data of their transactions left: markers go, and
        // the aborted entry (and the then empty .txnindex) with them.
        clean(&log, T + RETENTION_MS + 1, Some(6)).await;
        let after = contents(&log).await;
        assert!(after.iter().all(|(_, v)| !v.contains('-')), "{after:?}");
        assert_eq!(after.first(), Some(&(4, "plain".to_string())));
        assert!(log.borrow().aborted_transactions(0, 100).is_empty());
        assert!(txn_index_files(&path).is_empty());

        // The transaction decided: its segment becomes cleanable.
        clean(&log, T + RETENTION_MS + 1, None).await;
        let after = contents(&log).await;
        assert!(!after.contains(&(6, "open".to_string())), "{after:?}");
    });
}

#[test]
fn an_aborted_record_is_never_a_keys_latest_value() {
    let dir = data_dir();
    let path = dir.path().join("t-0");
    run_local(async move {
        let (log, _) = Log::open(&path, config(), options(), true, 0)
            .await
            .unwrap();
        let log = RefCell::new(log);
        append(&log, &data(-1, "k", "committed-value"));
        append(&log, &data(7, "k", "aborted-value"));
        let abort = append(&log, &marker(7, ControlType::Abort));
        log.borrow_mut().append_aborted(AbortedTxn {
            producer_id: 7,
            first_offset: 1,
            last_offset: abort,
            last_stable_offset: abort + 1,
        });
        append(&log, &data(-1, "other", "x"));
        roll(&log).await;
        append(&log, &data(-1, "tail", "y"));
        Log::flush(&log, true, T).await.unwrap();
        clean(&log, T + 10, None).await;
        let values: Vec<String> = contents(&log).await.into_iter().map(|(_, v)| v).collect();
        assert_eq!(values, ["committed-value", "Abort-7", "x", "y"]);
    });
}

#[test]
fn aborted_entries_of_a_cleaned_segment_survive_a_restart() {
    let dir = data_dir();
    let path = dir.path().join("t-0");
    run_local(async move {
        let (log, _) = Log::open(&path, config(), options(), true, 0)
            .await
            .unwrap();
        let log = RefCell::new(log);
        history(&log).await;
        clean(&log, T + 500, Some(6)).await;
        Log::close(&log, T).await.unwrap();
        drop(log);
        let (log, _) = Log::open(&path, config(), options(), false, 0)
            .await
            .unwrap();
        assert_eq!(log.aborted_transactions(0, 100), vec![(1, 0)]);
        assert_eq!(log.aborted_transactions(3, 100), Vec::<(i64, i64)>::new());
    });
}
