//! Bad input never takes the broker down: garbage and truncated frames, frames over
//! `socket.request.max.bytes`, negative sizes, unknown API keys and versions, absurd array
//! counts and corrupt batches each cost the offender its connection (or get a Kafka error code)
//! while other connections keep working and nothing bad is stored.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::raw::Raw;
use common::*;
use weir::protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use weir::protocol::messages::{
    ApiVersionsResponse, MetadataRequest, ProduceRequest, ProduceResponse,
};
use weir::protocol::{ErrorCode, Message};
use weir::records::builder::BatchBuilder;
use weir::records::compression::Compression;

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

#[test]
fn garbage_oversized_and_unknown_requests_close_only_their_connection() {
    let mut broker = Broker::start(&["socket.request.max.bytes=1048576"]);
    let mut healthy = Raw::connect(&broker);
    assert!(healthy.api_versions().is_some());

    let abuses: Vec<(&str, Vec<u8>)> = vec![
        (
            "random garbage",
            (0..4000u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
        ),
        (
            "a 13-byte request",
            vec![0, 0, 0, 9, 0, 3, 0, 1, 0, 0, 0, 1, 0xff],
        ),
        (
            "a frame over socket.request.max.bytes",
            frame(&vec![0u8; 2 << 20]),
        ),
        ("a 2 GB size claim", vec![0x7f, 0xff, 0xff, 0xff, 0, 1]),
        ("a negative size", vec![0xff, 0xff, 0xff, 0xfe, 1, 2, 3]),
        (
            "an unknown API key",
            frame(&[0x03, 0xe7, 0, 0, 0, 0, 0, 1, 0xff, 0xff]),
        ),
        ("Produce v99", frame(&[0, 0, 0, 99, 0, 0, 0, 1, 0xff, 0xff])),
        ("a header cut short", frame(&[0, 3, 0, 1, 0, 0])),
        // Metadata v1 claiming 2^31-1 topics in 4 bytes.
        (
            "an absurd array count",
            frame(&[0, 3, 0, 1, 0, 0, 0, 7, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff]),
        ),
        // Metadata v9 (flexible) with a compact array count of 2^28.
        (
            "an absurd compact count",
            frame(&[
                0, 3, 0, 9, 0, 0, 0, 7, 0xff, 0xff, 0, 0x80, 0x80, 0x80, 0x80, 0x01, 0, 0, 0,
            ]),
        ),
    ];
    for (what, bytes) in abuses {
        let mut bad = Raw::connect(&broker);
        let _ = bad.send_raw(&bytes);
        assert!(bad.is_closed(), "{what}: the connection is closed");
        assert!(broker.is_running(), "{what}: the broker is still running");
        assert!(
            healthy.api_versions().is_some(),
            "{what}: other connections keep working"
        );
    }
    // A truncated frame: the client goes away in the middle.
    {
        let mut cut = Raw::connect(&broker);
        cut.send_raw(&[0, 0, 1, 0, 0, 3, 0, 1]).unwrap();
    }
    assert!(healthy.api_versions().is_some());
    assert!(
        broker.metrics().contains("weir_frames_rejected_total"),
        "rejections are counted"
    );
    broker.stop();
}

#[test]
fn too_new_api_versions_gets_the_v0_fallback() {
    let broker = Broker::start(&[]);
    let mut raw = Raw::connect(&broker);
    // ApiVersions v127: the header is v2 (flexible), the answer is a v0 response.
    let mut body = vec![0, 18, 0, 127, 0, 0, 0, 5, 0, 1, b'x', 0];
    body.extend_from_slice(&[2, b'a', 2, b'b', 0]);
    raw.send_raw(&frame(&body)).unwrap();
    let response = raw
        .read_frame()
        .expect("a response, not a closed connection");
    let mut bytes = Bytes::from(response);
    assert_eq!(i32::from_be_bytes(bytes[..4].try_into().unwrap()), 5);
    let _ = bytes.split_to(4);
    let decoded = ApiVersionsResponse::decode(&mut bytes, 0).unwrap();
    assert_eq!(decoded.error_code, ErrorCode::UnsupportedVersion.code());
    assert!(decoded
        .api_keys
        .iter()
        .any(|k| k.api_key == 18 && k.max_version == 4));
    assert!(decoded
        .api_keys
        .iter()
        .any(|k| k.api_key == 0 && k.min_version == 0 && k.max_version == 11));
}

#[test]
fn corrupt_batches_get_corrupt_message_and_are_not_stored() {
    let broker = Broker::start(&[]);
    create_topic(&broker, "guarded", 1, &[]);
    let mut raw = Raw::connect(&broker);
    let mut builder = BatchBuilder::new(Compression::None, 0, 1_700_000_000_000);
    builder.append(1_700_000_000_000, Some(b"k"), Some(b"value"), &[]);
    let good = builder.build().unwrap();
    let produce = |records: Bytes| ProduceRequest {
        acks: -1,
        timeout_ms: 5000,
        topic_data: vec![TopicProduceData {
            name: "guarded".into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(records),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut flipped = good.to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    let mut truncated = good.to_vec();
    truncated.truncate(good.len() - 3);
    let mut old_magic = good.to_vec();
    old_magic[16] = 1;
    let cases: Vec<(&str, Vec<u8>, ErrorCode)> = vec![
        ("a flipped bit", flipped, ErrorCode::CorruptMessage),
        ("a truncated batch", truncated, ErrorCode::CorruptMessage),
        (
            "message format v1",
            old_magic,
            ErrorCode::UnsupportedForMessageFormat,
        ),
        (
            "two batches in one partition",
            [good.to_vec(), good.to_vec()].concat(),
            ErrorCode::InvalidRecord,
        ),
    ];
    for (what, records, expected) in cases {
        let response: ProduceResponse = raw
            .try_request(0, 8, &produce(Bytes::from(records)))
            .expect("a produce response");
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!(
            partition.error_code,
            expected.code(),
            "{what}: {:?}",
            partition.error_message
        );
        assert!(
            partition.error_message.is_some(),
            "{what}: v8 responses say why"
        );
    }
    let response: ProduceResponse = raw.try_request(0, 8, &produce(good)).unwrap();
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(
        (partition.error_code, partition.base_offset),
        (0, 0),
        "only the valid batch is stored, at offset 0"
    );
    let consumer = consumer(&broker, &[]);
    use rdkafka::consumer::Consumer;
    assert_eq!(
        consumer
            .fetch_watermarks("guarded", 0, Duration::from_secs(10))
            .unwrap(),
        (0, 1)
    );
}

#[test]
fn metadata_for_a_bad_topic_name_is_an_error_not_a_topic() {
    let broker = Broker::start(&[]);
    let mut raw = Raw::connect(&broker);
    let request = MetadataRequest {
        topics: Some(vec![
            weir::protocol::messages::metadata_request::MetadataRequestTopic {
                name: Some("no spaces allowed".into()),
                ..Default::default()
            },
        ]),
        allow_auto_topic_creation: true,
        ..Default::default()
    };
    let response: weir::protocol::messages::MetadataResponse =
        raw.try_request(3, 4, &request).unwrap();
    assert_eq!(
        response.topics[0].error_code,
        ErrorCode::InvalidTopicException.code()
    );
}
