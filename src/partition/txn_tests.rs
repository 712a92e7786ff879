//! Transactions at partition level: transactional appends, markers, the last stable offset,
//! read_committed reads with their aborted transactions, and all of it across restarts.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;

use super::flusher::Flusher;
use super::Partition;
use crate::config::TopicConfig;
use crate::protocol::error::ErrorCode;
use crate::records::batch;
use crate::records::builder::BatchBuilder;
use crate::records::compression::Compression;
use crate::storage::log::LogOptions;
use crate::testing::{data_dir, run_local};

const A: i64 = 1000;
const B: i64 = 2000;
const C: i64 = 3000;

fn data(producer_id: i64, sequence: i32, values: &[&str], transactional: bool) -> Bytes {
    let now = crate::event::now_ms();
    let mut builder = BatchBuilder::new(Compression::None, 0, now)
        .producer(producer_id, 0, sequence)
        .transactional(transactional);
    for value in values {
        builder.append(now, Some(value.as_bytes()), Some(value.as_bytes()), &[]);
    }
    builder.build().unwrap()
}

async fn open(dir: &Path, config: TopicConfig, clean: bool) -> Rc<Partition> {
    Partition::open(
        dir,
        "txn".into(),
        0,
        crate::protocol::Uuid::default(),
        0,
        config,
        LogOptions::default(),
        clean,
    )
    .await
    .unwrap()
    .0
}

/// What a read_committed client keeps of a fetch: data batches, minus those of aborted
/// transactions (from the listed first offset up to the producer's ABORT marker), minus control
/// batches. As (offset, value).
fn committed_view(records: &Bytes, aborted: &[(i64, i64)]) -> Vec<(i64, String)> {
    let mut pending: Vec<(i64, i64)> = aborted.to_vec();
    pending.sort_by_key(|a| a.1);
    let mut skipping: HashMap<i64, bool> = HashMap::new();
    let mut out = Vec::new();
    for item in batch::split(records) {
        let (header, bytes) = item.unwrap();
        while let Some(&(pid, first)) = pending.first() {
            if first > header.last_offset() {
                break;
            }
            skipping.insert(pid, true);
            pending.remove(0);
        }
        if header.is_control() {
            skipping.remove(&header.producer_id);
            continue;
        }
        if header.is_transactional() && skipping.contains_key(&header.producer_id) {
            continue;
        }
        for record in crate::records::record::records(&bytes, 1 << 20).unwrap() {
            let record = record.unwrap();
            let value = String::from_utf8(record.value.clone().unwrap().to_vec()).unwrap();
            out.push((record.offset(&header), value));
        }
    }
    out
}

/// Every value below the high watermark, control batches left out (read_uncommitted).
fn all_values(records: &Bytes) -> Vec<String> {
    committed_view(records, &[])
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

async fn read_committed(partition: &Partition) -> (Vec<String>, Vec<(i64, i64)>) {
    let outcome = partition
        .read_isolated(0, 1 << 20, true, true)
        .await
        .unwrap();
    let aborted = outcome
        .aborted_transactions
        .expect("read_committed lists aborted txns");
    let values = committed_view(&outcome.records, &aborted)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    (values, aborted)
}

async fn settle(partition: &Partition) {
    partition.flush(crate::event::now_ms(), true).await;
}

/// The history most tests use: A opens a transaction (a1), B commits (b1, b2), A writes a2, C
/// aborts (c1), A stays open. Returns A's first offset.
async fn interleaved_history(partition: &Rc<Partition>, flusher: &Rc<Flusher>) -> i64 {
    let a1 = partition
        .append(Some(data(A, 0, &["a1"], true)), flusher)
        .await
        .unwrap();
    partition
        .append(Some(data(B, 0, &["b1"], true)), flusher)
        .await
        .unwrap();
    partition
        .append(Some(data(C, 0, &["c1"], true)), flusher)
        .await
        .unwrap();
    partition
        .append(Some(data(B, 1, &["b2"], true)), flusher)
        .await
        .unwrap();
    partition
        .write_txn_marker(B, 0, 0, true, flusher)
        .await
        .unwrap();
    partition
        .append(Some(data(A, 1, &["a2"], true)), flusher)
        .await
        .unwrap();
    partition
        .write_txn_marker(C, 0, 0, false, flusher)
        .await
        .unwrap();
    partition
        .append(Some(data(9, 0, &["plain"], false)), flusher)
        .await
        .unwrap();
    settle(partition).await;
    a1.base_offset
}

#[test]
fn given_interleaved_transactions_read_committed_stops_at_the_open_one_and_hides_aborts() {
    let dir = data_dir();
    run_local(async move {
        let partition = open(dir.path(), TopicConfig::default(), true).await;
        let flusher = Flusher::new(64 << 20);
        let a_first = interleaved_history(&partition, &flusher).await;
        let offsets = partition.offsets();
        assert_eq!(offsets.high_watermark, 8, "6 data records + 2 markers");
        assert_eq!(offsets.last_stable_offset, a_first, "A is still open");
        let (values, aborted) = read_committed(&partition).await;
        assert!(
            values.is_empty(),
            "nothing is stable before A's first offset: {values:?}"
        );
        assert!(aborted.is_empty());
        let everything = partition.read(0, 1 << 20, true).await.unwrap().0;
        assert_eq!(
            all_values(&everything),
            ["a1", "b1", "c1", "b2", "a2", "plain"]
        );
        // A commits: everything becomes stable once the marker is below the high watermark.
        let marker = partition
            .write_txn_marker(A, 0, 0, true, &flusher)
            .await
            .unwrap();
        assert_eq!(
            partition.last_stable_offset(),
            a_first,
            "marker not durable yet"
        );
        settle(&partition).await;
        assert_eq!(partition.last_stable_offset(), marker + 1);
        let (values, aborted) = read_committed(&partition).await;
        assert_eq!(values, ["a1", "b1", "b2", "a2", "plain"]);
        assert_eq!(aborted, vec![(C, 2)]);
        partition.close().await.unwrap();
    });
}

#[test]
fn given_open_transaction_a_non_transactional_batch_is_invalid_txn_state() {
    let dir = data_dir();
    run_local(async move {
        let partition = open(dir.path(), TopicConfig::default(), true).await;
        let flusher = Flusher::new(64 << 20);
        partition
            .append(Some(data(A, 0, &["a1"], true)), &flusher)
            .await
            .unwrap();
        let refused = partition
            .append(Some(data(A, 1, &["oops"], false)), &flusher)
            .await
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::InvalidTxnState);
        partition
            .write_txn_marker(A, 0, 0, false, &flusher)
            .await
            .unwrap();
        partition
            .append(Some(data(A, 1, &["fine"], false)), &flusher)
            .await
            .unwrap();
        partition.close().await.unwrap();
    });
}

#[test]
fn markers_are_fenced_by_producer_and_coordinator_epochs() {
    let dir = data_dir();
    run_local(async move {
        let partition = open(dir.path(), TopicConfig::default(), true).await;
        let flusher = Flusher::new(64 << 20);
        let mut builder = BatchBuilder::new(Compression::None, 0, crate::event::now_ms())
            .producer(A, 3, 0)
            .transactional(true);
        builder.append(crate::event::now_ms(), None, Some(b"x"), &[]);
        partition
            .append(Some(builder.build().unwrap()), &flusher)
            .await
            .unwrap();
        let old_epoch = partition.write_txn_marker(A, 2, 5, true, &flusher).await;
        assert_eq!(old_epoch.unwrap_err().code, ErrorCode::InvalidProducerEpoch);
        partition
            .write_txn_marker(A, 3, 5, true, &flusher)
            .await
            .unwrap();
        let old_coordinator = partition.write_txn_marker(A, 3, 4, true, &flusher).await;
        assert_eq!(
            old_coordinator.unwrap_err().code,
            ErrorCode::TransactionCoordinatorFenced
        );
        // A retried COMMIT with no open transaction is written again, as Kafka does; an epoch
        // bump (fencing) is accepted too and becomes the producer's epoch.
        partition
            .write_txn_marker(A, 3, 5, true, &flusher)
            .await
            .unwrap();
        partition
            .write_txn_marker(A, 4, 5, false, &flusher)
            .await
            .unwrap();
        let producers = partition.producers();
        assert_eq!(producers.len(), 1);
        assert_eq!(producers[0].epoch, 4);
        assert_eq!(producers[0].coordinator_epoch, 5);
        assert_eq!(producers[0].current_txn_first_offset, None);
        settle(&partition).await;
        assert_eq!(partition.last_stable_offset(), partition.high_watermark());
        partition.close().await.unwrap();
    });
}

#[test]
fn read_committed_list_offsets_latest_is_the_last_stable_offset() {
    let dir = data_dir();
    run_local(async move {
        let partition = open(dir.path(), TopicConfig::default(), true).await;
        let flusher = Flusher::new(64 << 20);
        let a_first = interleaved_history(&partition, &flusher).await;
        assert_eq!(partition.list_offset(-1, true).await.unwrap().0, a_first);
        assert_eq!(partition.list_offset(-1, false).await.unwrap().0, 8);
        // By timestamp: read_uncommitted finds the first record; read_committed only below the
        // LSO (A's first offset 0: nothing is stable yet).
        assert_eq!(partition.list_offset(0, false).await.unwrap().0, 0);
        assert_eq!(partition.list_offset(0, true).await.unwrap(), (-1, -1));
        assert_eq!(partition.list_offset(-3, true).await.unwrap(), (-1, -1));
        partition.close().await.unwrap();
    });
}

/// The state that must survive a restart: the open transaction (LSO), the aborted one (txnindex)
/// and the producers' transaction state, after a clean shutdown and after a crash (no close:
/// the active segment has no index files and producer state replays from the last snapshot).
fn survives_restart(clean: bool, config: TopicConfig) {
    survives_restart_after(clean, config, |_| {});
}

fn survives_restart_after(clean: bool, config: TopicConfig, damage: impl FnOnce(&Path)) {
    let dir = data_dir();
    let path = dir.path().to_path_buf();
    let a_first = run_local({
        let path = path.clone();
        let config = config.clone();
        async move {
            let partition = open(&path, config, true).await;
            let flusher = Flusher::new(64 << 20);
            let a_first = interleaved_history(&partition, &flusher).await;
            if clean {
                partition.close().await.unwrap();
            }
            a_first
        }
    });
    damage(&path.join("txn-0"));
    run_local(async move {
        let partition = open(&path, config, clean).await;
        let flusher = Flusher::new(64 << 20);
        assert_eq!(partition.high_watermark(), 8);
        assert_eq!(partition.last_stable_offset(), a_first, "A is still open");
        assert_eq!(partition.ongoing_transactions(), vec![(a_first, A)]);
        let refused = partition
            .append(Some(data(A, 2, &["oops"], false)), &flusher)
            .await
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::InvalidTxnState);
        partition
            .append(Some(data(A, 2, &["a3"], true)), &flusher)
            .await
            .unwrap();
        partition
            .write_txn_marker(A, 0, 0, true, &flusher)
            .await
            .unwrap();
        settle(&partition).await;
        let (values, aborted) = read_committed(&partition).await;
        assert_eq!(values, ["a1", "b1", "b2", "a2", "plain", "a3"]);
        assert_eq!(aborted, vec![(C, 2)]);
        assert_eq!(partition.last_stable_offset(), partition.high_watermark());
        partition.close().await.unwrap();
    });
}

#[test]
fn transactions_survive_a_clean_restart() {
    survives_restart(true, TopicConfig::default());
}

#[test]
fn transactions_survive_a_crash() {
    survives_restart(false, TopicConfig::default());
}

/// Tiny segments: every batch rolls, so markers and their transactions' data land in different
/// segments and the aborted entries are persisted with sealed segments.
#[test]
fn transactions_survive_a_crash_across_many_segments() {
    survives_restart(
        false,
        TopicConfig {
            segment_bytes: 100,
            ..TopicConfig::default()
        },
    );
}

#[test]
fn the_aborted_index_of_sealed_segments_is_kept_on_disk() {
    let dir = data_dir();
    let path = dir.path().to_path_buf();
    let config = TopicConfig {
        segment_bytes: 100,
        ..TopicConfig::default()
    };
    run_local({
        let (path, config) = (path.clone(), config.clone());
        async move {
            let partition = open(&path, config, true).await;
            let flusher = Flusher::new(64 << 20);
            interleaved_history(&partition, &flusher).await;
            partition.close().await.unwrap();
        }
    });
    let files: Vec<String> = std::fs::read_dir(path.join("txn-0"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".txnindex"))
        .collect();
    // C's ABORT marker is at offset 6: its segment (base 6) holds the only entry.
    assert_eq!(
        files,
        vec![crate::storage::segment::file_name(6, "txnindex")]
    );
    let bytes = std::fs::read(path.join("txn-0").join(&files[0])).unwrap();
    let (entries, whole) = crate::storage::txn_index::decode(&bytes);
    assert!(whole);
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (
            entries[0].producer_id,
            entries[0].first_offset,
            entries[0].last_offset
        ),
        (C, 2, 6)
    );
    // A (first offset 0) was open when C aborted.
    assert_eq!(entries[0].last_stable_offset, 0);
}

/// A crash after a roll, before the rolled segment was sealed: it has data but no index files.
/// Recovery scans it and replays from the snapshot taken when it was created, so the ABORT
/// marker it holds is indexed again (else read_committed would show the aborted record).
#[test]
fn transactions_survive_a_crash_before_a_rolled_segment_was_sealed() {
    survives_restart_after(
        false,
        TopicConfig {
            segment_bytes: 100,
            ..TopicConfig::default()
        },
        |dir| {
            // C's ABORT marker is at offset 6, alone in its segment; 7 is the active one.
            for extension in ["index", "timeindex", "txnindex"] {
                let file = dir.join(crate::storage::segment::file_name(6, extension));
                std::fs::remove_file(&file).unwrap();
            }
        },
    );
}
