//! Idempotent producers on the wire: a retried batch is acknowledged with its original offset and
//! stored once (also after a restart, from the producer snapshot or the recovery scan), a
//! sequence gap gets OUT_OF_ORDER_SEQUENCE_NUMBER, producer ids are never handed out twice.
//! (librdkafka's idempotent producer is exercised in `kafka_clients.rs`; here the exact retries
//! and gaps a client would only send after network faults are sent on purpose.)

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::raw::Raw;
use common::*;
use rdkafka::consumer::Consumer;
use weir::protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use weir::protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
};
use weir::protocol::ErrorCode;
use weir::records::builder::BatchBuilder;
use weir::records::compression::Compression;

fn batch(producer_id: i64, sequence: i32, records: usize) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::Lz4, 0, 1_700_000_000_000).producer(
        producer_id,
        0,
        sequence,
    );
    for i in 0..records {
        builder.append(
            1_700_000_000_000,
            Some(b"k"),
            Some(format!("{sequence}-{i}").as_bytes()),
            &[],
        );
    }
    builder.build().unwrap()
}

/// (error code, base offset) of producing `records` to partition 0 of `topic`.
fn produce(raw: &mut Raw, topic: &str, records: Bytes) -> (i16, i64) {
    let request = ProduceRequest {
        acks: -1,
        timeout_ms: 5000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(records),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let response: ProduceResponse = raw.try_request(0, 9, &request).expect("produce response");
    let partition = &response.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

fn init_producer_id(raw: &mut Raw) -> i64 {
    let request = InitProducerIdRequest {
        transactional_id: None,
        transaction_timeout_ms: 60_000,
        producer_id: -1,
        producer_epoch: -1,
        ..Default::default()
    };
    let response: InitProducerIdResponse = raw
        .try_request(22, 2, &request)
        .expect("InitProducerId response");
    assert_eq!(response.error_code, 0);
    assert_eq!(response.producer_epoch, 0);
    response.producer_id
}

fn high_watermark(broker: &Broker, topic: &str) -> i64 {
    consumer(broker, &[])
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap()
        .1
}

#[test]
fn retries_are_stored_once_and_gaps_refused_across_restarts() {
    let mut broker = Broker::start(&[]);
    create_topic(&broker, "idem", 1, &[]);
    let mut raw = Raw::connect(&broker);
    let producer_id = init_producer_id(&mut raw);
    assert_ne!(
        init_producer_id(&mut raw),
        producer_id,
        "every producer gets its own id"
    );

    assert_eq!(produce(&mut raw, "idem", batch(producer_id, 0, 3)), (0, 0));
    assert_eq!(produce(&mut raw, "idem", batch(producer_id, 3, 2)), (0, 3));
    // The retry of the first batch: acknowledged with its original offset, not stored again.
    assert_eq!(produce(&mut raw, "idem", batch(producer_id, 0, 3)), (0, 0));
    assert_eq!(high_watermark(&broker, "idem"), 5);
    // A gap (sequence 9 after 4).
    let (error, _) = produce(&mut raw, "idem", batch(producer_id, 9, 1));
    assert_eq!(error, ErrorCode::OutOfOrderSequenceNumber.code());
    assert_eq!(
        high_watermark(&broker, "idem"),
        5,
        "the refused batch is not stored"
    );

    // After a clean restart (producer snapshot) and after a crash (recovery scan) the broker
    // still recognises the retry and still refuses the gap.
    for crash in [false, true] {
        if crash {
            broker.kill9();
        } else {
            broker.stop();
        }
        broker.restart();
        let mut raw = Raw::connect(&broker);
        assert_eq!(
            produce(&mut raw, "idem", batch(producer_id, 3, 2)),
            (0, 3),
            "crash={crash}: retry is a duplicate"
        );
        assert_eq!(
            produce(&mut raw, "idem", batch(producer_id, 9, 1)).0,
            ErrorCode::OutOfOrderSequenceNumber.code()
        );
        assert_eq!(high_watermark(&broker, "idem"), 5);
        assert_ne!(
            init_producer_id(&mut raw),
            producer_id,
            "ids are not reused after a restart"
        );
    }
    let mut raw = Raw::connect(&broker);
    assert_eq!(
        produce(&mut raw, "idem", batch(producer_id, 5, 1)),
        (0, 5),
        "the next sequence is accepted"
    );
}
