//! The partition side of transactions (KIP-98) on the wire: transactional batches produced raw
//! (as a transactional producer sends them), markers written with WriteTxnMarkers (as the
//! transaction coordinator does), and librdkafka consumers reading them with
//! `isolation.level=read_committed` (no aborted record, nothing past an open transaction, the
//! rest once it commits) and `read_uncommitted` (everything). Also across a kill -9.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::raw::Raw;
use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use weir::protocol::messages::describe_producers_request::TopicRequest;
use weir::protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use weir::protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use weir::protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use weir::protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use weir::protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, FetchRequest, FetchResponse,
    ListOffsetsRequest, ListOffsetsResponse, ProduceRequest, ProduceResponse,
    WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use weir::protocol::ErrorCode;
use weir::records::builder::BatchBuilder;
use weir::records::compression::Compression;

const TOPIC: &str = "txn";
const A: i64 = 1000;
const B: i64 = 2000;
const C: i64 = 3000;
const PLAIN: i64 = 4000;

fn batch(producer_id: i64, sequence: i32, values: &[&str], transactional: bool) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut builder = BatchBuilder::new(Compression::Lz4, 0, now)
        .producer(producer_id, 0, sequence)
        .transactional(transactional);
    for value in values {
        builder.append(now, Some(b"k"), Some(value.as_bytes()), &[]);
    }
    builder.build().unwrap()
}

/// (error code, base offset) of producing `records` to partition 0.
fn produce(raw: &mut Raw, records: Bytes) -> (i16, i64) {
    let request = ProduceRequest {
        transactional_id: Some("tx".into()),
        acks: -1,
        timeout_ms: 5000,
        topic_data: vec![TopicProduceData {
            name: TOPIC.into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(records),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let response: ProduceResponse = raw.request(0, 9, &request);
    let partition = &response.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

fn produce_ok(raw: &mut Raw, records: Bytes) -> i64 {
    let (error, offset) = produce(raw, records);
    assert_eq!(error, 0, "produce refused");
    offset
}

/// The error code WriteTxnMarkers returns for one marker on `topic`-0.
fn marker(raw: &mut Raw, topic: &str, producer_id: i64, epoch: i16, commit: bool) -> i16 {
    let request = WriteTxnMarkersRequest {
        markers: vec![WritableTxnMarker {
            producer_id,
            producer_epoch: epoch,
            transaction_result: commit,
            coordinator_epoch: 0,
            topics: vec![WritableTxnMarkerTopic {
                name: topic.into(),
                partition_indexes: vec![0],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let response: WriteTxnMarkersResponse = raw.request(27, 1, &request);
    assert_eq!(response.markers[0].producer_id, producer_id);
    let topic_result = &response.markers[0].topics[0];
    assert_eq!(topic_result.name, topic);
    assert_eq!(topic_result.partitions[0].partition_index, 0);
    topic_result.partitions[0].error_code
}

fn latest(raw: &mut Raw, isolation_level: i8) -> i64 {
    let request = ListOffsetsRequest {
        replica_id: -1,
        isolation_level,
        topics: vec![ListOffsetsTopic {
            name: TOPIC.into(),
            partitions: vec![ListOffsetsPartition {
                partition_index: 0,
                current_leader_epoch: -1,
                timestamp: -1,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let response: ListOffsetsResponse = raw.request(2, 7, &request);
    let partition = &response.topics[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    partition.offset
}

/// (producer id, current transaction start offset) of every producer of `TOPIC`-0.
fn producers(raw: &mut Raw) -> Vec<(i64, i64)> {
    let request = DescribeProducersRequest {
        topics: vec![TopicRequest {
            name: TOPIC.into(),
            partition_indexes: vec![0],
            ..Default::default()
        }],
        ..Default::default()
    };
    let response: DescribeProducersResponse = raw.request(61, 0, &request);
    let partition = &response.topics[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    partition
        .active_producers
        .iter()
        .map(|p| (p.producer_id, p.current_txn_start_offset))
        .collect()
}

/// A sessionless Fetch v11 of `TOPIC`-0 from `offset`: (last stable offset, aborted
/// transactions as (producer id, first offset), last offset of the batches returned).
fn raw_fetch(
    raw: &mut Raw,
    offset: i64,
    isolation_level: i8,
) -> (i64, Option<Vec<(i64, i64)>>, i64) {
    let request = FetchRequest {
        replica_id: -1,
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1 << 20,
        isolation_level,
        session_epoch: -1,
        topics: vec![FetchTopic {
            topic: TOPIC.into(),
            partitions: vec![FetchPartition {
                partition: 0,
                current_leader_epoch: -1,
                fetch_offset: offset,
                log_start_offset: -1,
                partition_max_bytes: 1 << 20,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let response: FetchResponse = raw.request(1, 11, &request);
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    let records = partition.records.clone().unwrap_or_default();
    let last = weir::records::batch::split(&records)
        .map(|b| b.unwrap().0.last_offset())
        .last()
        .unwrap_or(-1);
    let aborted = partition.aborted_transactions.as_ref().map(|list| {
        list.iter()
            .map(|a| (a.producer_id, a.first_offset))
            .collect()
    });
    (partition.last_stable_offset, aborted, last)
}

fn reader(broker: &Broker, isolation: &str) -> BaseConsumer {
    let consumer = consumer(
        broker,
        &[("isolation.level", isolation), ("fetch.wait.max.ms", "100")],
    );
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(TOPIC, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    consumer
}

/// Polls for `quiet` after the last record (or until `want` records): the values seen.
fn poll_values(consumer: &BaseConsumer, want: usize, quiet: Duration) -> Vec<String> {
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Instant::now();
    while Instant::now() < deadline && values.len() < want && last.elapsed() < quiet {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                values.push(String::from_utf8(message.payload().unwrap().to_vec()).unwrap());
                last = Instant::now();
            }
            Some(Err(error)) => panic!("consume error: {error}"),
            None => {}
        }
    }
    values
}

/// p0 | b1 (B) | c1 (C) | a1 (A, stays open) | b2 | COMMIT B | c2 | ABORT C | p1.
/// Returns A's first offset.
fn write_history(raw: &mut Raw) -> i64 {
    produce_ok(raw, batch(PLAIN, 0, &["p0"], false));
    produce_ok(raw, batch(B, 0, &["b1"], true));
    produce_ok(raw, batch(C, 0, &["c1"], true));
    let a_first = produce_ok(raw, batch(A, 0, &["a1"], true));
    produce_ok(raw, batch(B, 1, &["b2"], true));
    assert_eq!(marker(raw, TOPIC, B, 0, true), 0);
    produce_ok(raw, batch(C, 1, &["c2"], true));
    assert_eq!(marker(raw, TOPIC, C, 0, false), 0);
    produce_ok(raw, batch(PLAIN, 1, &["p1"], false));
    a_first
}

#[test]
fn read_committed_consumers_skip_aborts_and_wait_for_open_transactions() {
    let broker = Broker::start(&[]);
    create_topic(&broker, TOPIC, 1, &[]);
    let mut raw = Raw::connect(&broker);
    let a_first = write_history(&mut raw);
    assert_eq!(a_first, 3);

    // Kafka's produce rule: an open transaction's producer must keep writing transactionally.
    let (error, _) = produce(&mut raw, batch(A, 1, &["not-txn"], false));
    assert_eq!(error, ErrorCode::InvalidTxnState.code());
    // Markers: an older producer epoch is fenced, an unknown partition reported per partition.
    assert_eq!(
        marker(&mut raw, TOPIC, A, -1, true),
        ErrorCode::InvalidRequest.code()
    );
    assert_eq!(
        marker(&mut raw, "no-such-topic", A, 0, true),
        ErrorCode::UnknownTopicOrPartition.code()
    );

    assert_eq!(
        latest(&mut raw, 1),
        a_first,
        "read_committed LATEST is the LSO"
    );
    assert_eq!(latest(&mut raw, 0), 9, "read_uncommitted LATEST is the HW");
    // The Fetch response itself: read_committed stops before A's first offset and lists C's
    // aborted transaction (its data c1 at offset 2 is in the range); read_uncommitted reads to
    // the high watermark and lists nothing.
    assert_eq!(
        raw_fetch(&mut raw, 0, 1),
        (a_first, Some(vec![(C, 2)]), a_first - 1)
    );
    assert_eq!(raw_fetch(&mut raw, 0, 0).2, 8);
    assert!(raw_fetch(&mut raw, 0, 0)
        .1
        .is_none_or(|list| list.is_empty()));
    let described = producers(&mut raw);
    assert!(described.contains(&(A, a_first)), "{described:?}");
    assert!(described.contains(&(B, -1)), "{described:?}");
    assert!(described.contains(&(C, -1)), "{described:?}");

    // The CLI shows the same over DescribeProducers.
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["producers", "describe", TOPIC, "0", "--bootstrap"])
        .arg(broker.bootstrap())
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let table = String::from_utf8(cli.stdout).unwrap();
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let row_of = |pid: i64| {
        rows.iter()
            .find(|r| r[0] == pid.to_string())
            .unwrap_or_else(|| panic!("producer {pid} missing from:\n{table}"))
    };
    assert_eq!(row_of(A)[5], a_first.to_string());
    assert_eq!(row_of(B)[5], "-");
    assert_eq!(row_of(B)[2], "1", "B's last sequence");
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["producers", "describe", TOPIC, "7", "--bootstrap"])
        .arg(broker.bootstrap())
        .output()
        .unwrap();
    assert!(!missing.status.success());

    let uncommitted = reader(&broker, "read_uncommitted");
    assert_eq!(
        poll_values(&uncommitted, 7, Duration::from_secs(3)),
        ["p0", "b1", "c1", "a1", "b2", "c2", "p1"]
    );

    let committed = reader(&broker, "read_committed");
    // Up to A's first offset only: p0 and b1 (c1 is aborted).
    assert_eq!(
        poll_values(&committed, 10, Duration::from_secs(3)),
        ["p0", "b1"]
    );
    // A commits: the long poll wakes and the rest arrives, still without C's records.
    assert_eq!(marker(&mut raw, TOPIC, A, 0, true), 0);
    assert_eq!(
        poll_values(&committed, 3, Duration::from_secs(10)),
        ["a1", "b2", "p1"]
    );
    assert_eq!(latest(&mut raw, 1), latest(&mut raw, 0));
    // From offset 4 on, the aborted transaction (c1 at 2, c2 at 6, ABORT at 7) still overlaps.
    assert_eq!(raw_fetch(&mut raw, 4, 1), (10, Some(vec![(C, 2)]), 9));
    assert_eq!(raw_fetch(&mut raw, 8, 1), (10, Some(vec![]), 9));
    assert_eq!(
        poll_values(&committed, 1, Duration::from_secs(2)),
        Vec::<String>::new()
    );
}

#[test]
fn after_kill9_read_committed_is_still_correct_and_not_stuck() {
    let mut broker = Broker::start(&[]);
    create_topic(&broker, TOPIC, 1, &[]);
    let a_first = {
        let mut raw = Raw::connect(&broker);
        write_history(&mut raw)
    };
    broker.kill9();
    broker.restart();

    let mut raw = Raw::connect(&broker);
    assert_eq!(
        latest(&mut raw, 1),
        a_first,
        "A is still open after the crash"
    );
    let (error, _) = produce(&mut raw, batch(A, 1, &["not-txn"], false));
    assert_eq!(error, ErrorCode::InvalidTxnState.code());
    let committed = reader(&broker, "read_committed");
    assert_eq!(
        poll_values(&committed, 10, Duration::from_secs(3)),
        ["p0", "b1"]
    );
    produce_ok(&mut raw, batch(A, 1, &["a2"], true));
    assert_eq!(marker(&mut raw, TOPIC, A, 0, true), 0);
    assert_eq!(
        poll_values(&committed, 4, Duration::from_secs(10)),
        ["a1", "b2", "p1", "a2"]
    );

    // And once more after a clean restart: nothing open, C still aborted.
    broker.stop();
    broker.restart();
    let mut raw = Raw::connect(&broker);
    assert_eq!(latest(&mut raw, 1), latest(&mut raw, 0));
    let fresh = reader(&broker, "read_committed");
    assert_eq!(
        poll_values(&fresh, 6, Duration::from_secs(10)),
        ["p0", "b1", "a1", "b2", "p1", "a2"]
    );
}
