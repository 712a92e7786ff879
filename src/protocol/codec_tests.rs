//! Tests of the generated codec as a whole: known-answer byte vectors written by hand
//! from the protocol guide, version and default rules, and property tests over every
//! generated type and version (arbitrary input never panics; populated values survive
//! encode → decode → encode byte for byte).

use bytes::Bytes;
use proptest::prelude::*;

use super::frame::{decode_request, decode_request_header, encode_request, encode_response};
use super::generated::{visit_all_messages, MessageVisitor};
use super::messages::{
    api_versions_response, fetch_response, metadata_request, produce_request, ApiVersionsRequest,
    ApiVersionsResponse, FetchResponse, MetadataRequest, ProduceRequest,
};
use super::sample::{Sample, Sampler};
use super::wire::{encode_to_bytes, DecodeError, EncodeError, Encoder, Message, RawTaggedField};
use super::{ApiKey, RequestBody};

fn concatenate(chunks: &[Bytes]) -> Vec<u8> {
    chunks
        .iter()
        .flat_map(|chunk| chunk.iter().copied())
        .collect()
}

/// Decodes `bytes` at `version`, requiring every byte to be consumed.
fn decode_exact<M: Message>(bytes: &[u8], version: i16) -> M {
    let mut input = Bytes::copy_from_slice(bytes);
    let message = M::decode(&mut input, version).expect("known answer decodes");
    assert!(
        input.is_empty(),
        "{} bytes left after decoding",
        input.len()
    );
    message
}

fn encode_vec<M: Message>(message: &M, version: i16) -> Vec<u8> {
    encode_to_bytes(message, version).expect("encodes").to_vec()
}

#[test]
fn api_versions_v3_request_frame_known_answer() {
    #[rustfmt::skip]
    let frame: &[u8] = &[
        0, 0, 0, 28,                  // size
        0, 18, 0, 3, 0, 0, 0, 7,      // api key 18, version 3, correlation id 7
        0, 3, b'c', b'l', b'i',       // client id: classic int16 string even in header v2
        0,                            // header tagged fields: none
        5, b'w', b'e', b'i', b'r',    // client software name: compact string
        4, b'0', b'.', b'1',          // client software version
        1, 9, 2, 0xbe, 0xef,          // one unknown tagged field: tag 9, 2 bytes
    ];
    let mut rest = Bytes::copy_from_slice(&frame[4..]);
    let (header, body) = decode_request(&mut rest).expect("frame decodes");
    assert!(rest.is_empty());
    assert_eq!(
        (
            header.request_api_key,
            header.request_api_version,
            header.correlation_id
        ),
        (18, 3, 7)
    );
    assert_eq!(header.client_id.as_deref(), Some("cli"));
    let RequestBody::ApiVersions(request) = body else {
        panic!("decoded as {body:?}");
    };
    assert_eq!(request.client_software_name, "weir");
    assert_eq!(request.client_software_version, "0.1");
    assert_eq!(
        request.unknown_tagged_fields,
        vec![RawTaggedField {
            tag: 9,
            data: Bytes::from_static(&[0xbe, 0xef])
        }]
    );
    let reencoded = encode_request(7, Some("cli"), 18, 3, &request).expect("encodes");
    assert_eq!(concatenate(&reencoded), frame);
}

#[test]
fn metadata_v1_request_known_answer() {
    #[rustfmt::skip]
    let body: &[u8] = &[
        0, 0, 0, 2,                   // two topics (classic int32 count)
        0, 1, b'a',                   // "a"
        0, 2, b'b', b'c',             // "bc"
    ];
    let request: MetadataRequest = decode_exact(body, 1);
    let names: Vec<Option<&str>> = request
        .topics
        .iter()
        .flatten()
        .map(|topic| topic.name.as_deref())
        .collect();
    assert_eq!(names, [Some("a"), Some("bc")]);
    assert_eq!(encode_vec(&request, 1), body);

    // A null array (-1) asks for every topic from version 1 on.
    let all: MetadataRequest = decode_exact(&[0xff, 0xff, 0xff, 0xff], 1);
    assert_eq!(all.topics, None);
    assert_eq!(encode_vec(&all, 1), [0xff, 0xff, 0xff, 0xff]);
    // Version 0 has no null topics array.
    assert_eq!(
        MetadataRequest::decode(&mut Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]), 0),
        Err(DecodeError::UnexpectedNull { what: "array" })
    );
    assert_eq!(
        encode_to_bytes(&all, 0),
        Err(EncodeError::NullNotAllowed {
            field: "MetadataRequest.Topics",
            version: 0
        })
    );
    let topic = metadata_request::MetadataRequestTopic {
        name: Some("x".into()),
        ..Default::default()
    };
    assert_eq!(request.topics.as_ref().map(Vec::len), Some(2));
    assert_ne!(
        request.topics.as_ref().and_then(|topics| topics.first()),
        Some(&topic)
    );
}

#[test]
fn produce_v3_request_with_records_known_answer() {
    #[rustfmt::skip]
    let body: &[u8] = &[
        0xff, 0xff,                   // transactional id: null
        0xff, 0xff,                   // acks: -1
        0, 0, 0x75, 0x30,             // timeout: 30000 ms
        0, 0, 0, 1,                   // one topic
        0, 1, b't',                   // "t"
        0, 0, 0, 1,                   // one partition
        0, 0, 0, 0,                   // partition 0
        0, 0, 0, 5, 1, 2, 3, 4, 5,    // records: 5 bytes
    ];
    let input = Bytes::copy_from_slice(body);
    let mut cursor = input.clone();
    let request = ProduceRequest::decode(&mut cursor, 3).expect("decodes");
    assert!(cursor.is_empty());
    assert_eq!(
        (
            request.transactional_id.as_deref(),
            request.acks,
            request.timeout_ms
        ),
        (None, -1, 30_000)
    );
    let partition = &request.topic_data[0].partition_data[0];
    let records = partition.records.as_ref().expect("records present");
    assert_eq!(&records[..], &[1, 2, 3, 4, 5]);
    assert_eq!(
        records.as_ptr(),
        input[body.len() - 5..].as_ptr(),
        "records are a slice of the input"
    );
    assert_eq!(encode_vec(&request, 3), body);
}

#[test]
fn flexible_response_with_tagged_fields_known_answer() {
    #[rustfmt::skip]
    let body: &[u8] = &[
        0, 0,                         // error code
        2,                            // one api key (compact count + 1)
        0, 18, 0, 0, 0, 4, 0,         // ApiVersions 0..=4, no tagged fields
        0, 0, 0, 0,                   // throttle time
        2,                            // two tagged fields
        1, 8, 0, 0, 0, 0, 0, 0, 0, 5, // tag 1: finalized features epoch = 5
        3, 1, 1,                      // tag 3: zk migration ready = true
    ];
    let response: ApiVersionsResponse = decode_exact(body, 3);
    assert_eq!(response.finalized_features_epoch, 5);
    assert!(response.zk_migration_ready);
    assert_eq!(
        response.api_keys,
        vec![api_versions_response::ApiVersion {
            api_key: 18,
            min_version: 0,
            max_version: 4,
            ..Default::default()
        }]
    );
    assert_eq!(encode_vec(&response, 3), body);

    // Defaults are not written: the same response without them has an empty section.
    let plain = ApiVersionsResponse {
        finalized_features_epoch: -1,
        zk_migration_ready: false,
        ..response.clone()
    };
    assert_eq!(encode_vec(&plain, 3), [&body[..14], &[0]].concat());
    // ApiVersions responses always use header v0 (no tagged-field byte after the id).
    let framed = concatenate(&encode_response(77, 18, 3, &response).expect("encodes"));
    assert_eq!(&framed[4..8], &77i32.to_be_bytes());
    assert_eq!(&framed[8..], body);
}

#[test]
fn fetch_response_carries_large_records_without_copying() {
    let records = Bytes::from(vec![0x42; 64 * 1024]);
    let partition = fetch_response::PartitionData {
        records: Some(records.clone()),
        ..Default::default()
    };
    let topic = fetch_response::FetchableTopicResponse {
        partitions: vec![partition],
        ..Default::default()
    };
    let response = FetchResponse {
        responses: vec![topic],
        ..Default::default()
    };
    let chunks = encode_response(1, ApiKey::Fetch.code(), 16, &response).expect("encodes");
    assert_eq!(chunks.len(), 3, "header+fields, records, trailing fields");
    assert_eq!(chunks[1].as_ptr(), records.as_ptr());
    let frame = concatenate(&chunks);
    let size = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
    assert_eq!(usize::try_from(size).expect("fits"), frame.len() - 4);
    let mut body = Bytes::from(frame[4 + 4 + 1..].to_vec());
    assert_eq!(FetchResponse::decode(&mut body, 16), Ok(response));
}

#[test]
fn versions_outside_the_schema_are_rejected() {
    assert_eq!(
        ProduceRequest::decode(&mut Bytes::new(), 12),
        Err(DecodeError::UnsupportedVersion {
            message: "ProduceRequest",
            version: 12,
            min: 0,
            max: 11
        })
    );
    assert!(matches!(
        ProduceRequest::default().encode(&mut Encoder::new(), -1),
        Err(EncodeError::UnsupportedVersion { .. })
    ));
}

#[test]
fn non_default_absent_fields_fail_unless_ignorable() {
    let transactional = ProduceRequest {
        transactional_id: Some("tx".into()),
        ..Default::default()
    };
    assert_eq!(
        encode_to_bytes(&transactional, 2),
        Err(EncodeError::NonDefaultAbsentField {
            field: "ProduceRequest.TransactionalId",
            version: 2
        })
    );
    // ClientSoftwareName is ignorable: silently dropped before version 3.
    let named = ApiVersionsRequest {
        client_software_name: "weir".into(),
        ..Default::default()
    };
    assert_eq!(encode_vec(&named, 2), Vec::<u8>::new());
    // Unknown tagged fields cannot be sent at a non-flexible version.
    let tagged = ApiVersionsRequest {
        unknown_tagged_fields: vec![RawTaggedField {
            tag: 1,
            data: Bytes::new(),
        }],
        ..Default::default()
    };
    assert!(matches!(
        encode_to_bytes(&tagged, 2),
        Err(EncodeError::TaggedFieldsUnsupported { .. })
    ));
}

#[test]
fn schema_defaults_are_applied() {
    assert!(MetadataRequest::default().allow_auto_topic_creation);
    assert_eq!(ApiVersionsResponse::default().finalized_features_epoch, -1);
    assert_eq!(
        produce_request::PartitionProduceData::default().records,
        None
    );
    assert_eq!(
        fetch_response::PartitionData::default().preferred_read_replica,
        -1
    );
}

#[test]
fn thirteen_byte_garbage_requests_are_errors() {
    let frames: [[u8; 13]; 4] = [
        // Metadata v12 (header v2): empty client id, then a varint that never ends.
        [0, 3, 0, 12, 0, 0, 0, 1, 0, 0, 0xff, 0xff, 0xff],
        // Produce v3: null client id, then a transactional id longer than the frame.
        [0, 0, 0, 3, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff, 0],
        // Metadata v1: topic count 0x7fffffff with one byte left.
        [0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff, 0xff],
        // Fetch v17: client id claiming 0x7fff bytes.
        [0, 1, 0, 17, 0, 0, 0, 1, 0x7f, 0xff, 0, 0, 0],
    ];
    for frame in frames {
        assert!(
            decode_request(&mut Bytes::copy_from_slice(&frame)).is_err(),
            "{frame:?}"
        );
    }
}

#[test]
fn huge_array_counts_are_rejected_before_allocating() {
    // Metadata v1: 0x7fffffff topics; compact Metadata v12: 0xffffffff - 1 topics.
    let classic = MetadataRequest::decode(
        &mut Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 0, 1, b'a']),
        1,
    );
    assert!(matches!(
        classic,
        Err(DecodeError::LengthExceedsRemaining { what: "array", .. })
    ));
    let compact = MetadataRequest::decode(
        &mut Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0]),
        12,
    );
    assert!(matches!(
        compact,
        Err(DecodeError::LengthExceedsRemaining { what: "array", .. })
    ));
}

#[test]
fn request_header_versions_follow_flexibility() {
    use super::api_keys::{request_header_version, response_header_version};
    assert_eq!(request_header_version(0, 8), 1);
    assert_eq!(request_header_version(0, 9), 2);
    assert_eq!(request_header_version(18, 3), 2);
    assert_eq!(
        request_header_version(17, 1),
        1,
        "SaslHandshake is never flexible"
    );
    assert_eq!(
        request_header_version(999, 5),
        1,
        "unknown keys get the classic header"
    );
    assert_eq!(
        response_header_version(18, 4),
        0,
        "ApiVersions responses use header v0"
    );
    assert_eq!(response_header_version(1, 12), 1);
    assert_eq!(response_header_version(1, 11), 0);
    assert_eq!(ApiKey::from_i16(69), Some(ApiKey::ConsumerGroupDescribe));
    assert_eq!(ApiKey::Produce.versions(), (0, 11));
    assert_eq!(ApiKey::Fetch.flexible_min(), Some(12));
    assert_eq!(ApiKey::ALL.len(), 39);
    assert!(ApiKey::ALL.windows(2).all(|pair| pair[0] < pair[1]));
}

#[test]
fn request_header_decoder_reports_truncation() {
    assert!(matches!(
        decode_request_header(&mut Bytes::from_static(&[0, 3, 0])),
        Err(DecodeError::Truncated {
            what: "request header",
            ..
        })
    ));
}

/// Counts the generated types and versions the property tests walk.
#[derive(Default)]
struct Census {
    types: usize,
    versions: usize,
}

impl MessageVisitor for Census {
    fn visit<M: Message + Sample>(&mut self, _name: &'static str) {
        self.types += 1;
        self.versions += usize::from(M::VERSIONS.1.abs_diff(M::VERSIONS.0)) + 1;
    }
}

#[test]
fn property_tests_cover_every_generated_type() {
    let mut census = Census::default();
    visit_all_messages(&mut census);
    // 39 APIs × 2 + 4 headers/consumer protocol, 25 metadata, 30 group and 2 txn records.
    assert_eq!(census.types, 139);
    assert!(census.versions > 400, "{} versions", census.versions);
}

/// Decodes `input` as `M` at `version`: no panic, and if it decodes, it re-encodes, and
/// that encoding decodes to the same value and encodes to the same bytes again.
fn check_decode_is_stable<M: Message>(name: &str, input: &[u8], version: i16) {
    let Ok(decoded) = M::decode(&mut Bytes::copy_from_slice(input), version) else {
        return;
    };
    let first = encode_to_bytes(&decoded, version).unwrap_or_else(|error| {
        panic!("{name} v{version}: decoded value does not encode: {error}")
    });
    let again = M::decode(&mut first.clone(), version).expect("re-decodes");
    // Compared through Debug: damaged bytes may decode an f64 to NaN, which is not equal to
    // itself but prints the same.
    assert_eq!(
        format!("{again:?}"),
        format!("{decoded:?}"),
        "{name} v{version}"
    );
    assert_eq!(
        encode_to_bytes(&again, version).as_ref(),
        Ok(&first),
        "{name} v{version}"
    );
}

/// Decodes the same bytes as every generated type at every version and two outside.
struct ArbitraryInput<'a>(&'a [u8]);

impl MessageVisitor for ArbitraryInput<'_> {
    fn visit<M: Message + Sample>(&mut self, name: &'static str) {
        let (min, max) = M::VERSIONS;
        for version in (min - 1)..=(max + 1) {
            check_decode_is_stable::<M>(name, self.0, version);
        }
    }
}

/// Builds a populated sample of every type at every version from `seed` and checks the
/// round trip, then feeds a truncated and a bit-flipped copy of the encoding back in.
struct SampleRoundTrip {
    seed: u64,
    cut: usize,
    flip: (usize, u8),
}

impl MessageVisitor for SampleRoundTrip {
    fn visit<M: Message + Sample>(&mut self, name: &'static str) {
        let (min, max) = M::VERSIONS;
        for version in min..=max {
            let mut sampler = Sampler::new(self.seed ^ u64::from(version.unsigned_abs()));
            let value = M::sample(&mut sampler, version);
            let mut out = Encoder::new();
            value
                .encode(&mut out, version)
                .unwrap_or_else(|error| panic!("{name} v{version}: {error}"));
            let encoded = out.into_single();
            let mut input = encoded.clone();
            let decoded = M::decode(&mut input, version)
                .unwrap_or_else(|error| panic!("{name} v{version}: {error}"));
            assert!(
                input.is_empty(),
                "{name} v{version}: {} bytes left",
                input.len()
            );
            assert_eq!(decoded, value, "{name} v{version}");
            assert_eq!(
                encode_to_bytes(&decoded, version).as_ref(),
                Ok(&encoded),
                "{name} v{version}"
            );
            self.damage::<M>(name, &encoded, version);
        }
    }
}

impl SampleRoundTrip {
    fn damage<M: Message>(&self, name: &str, encoded: &Bytes, version: i16) {
        if encoded.is_empty() {
            return;
        }
        // A strict prefix follows the same path as the full encoding and runs out.
        let cut = self.cut % encoded.len();
        assert!(
            M::decode(&mut encoded.slice(..cut), version).is_err(),
            "{name} v{version} cut at {cut}"
        );
        let mut flipped = encoded.to_vec();
        let (position, mask) = self.flip;
        let index = position % flipped.len();
        flipped[index] ^= mask | 1;
        check_decode_is_stable::<M>(name, &flipped, version);
    }
}

/// Cases per property, with no regression files written into the repository.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn arbitrary_bytes_never_panic_any_type_or_version(input in proptest::collection::vec(any::<u8>(), 0..160)) {
        visit_all_messages(&mut ArbitraryInput(&input));
    }

    #[test]
    fn arbitrary_request_frames_never_panic(api_key in 0i16..70, version in -1i16..20, body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut frame = Vec::with_capacity(body.len() + 10);
        frame.extend_from_slice(&api_key.to_be_bytes());
        frame.extend_from_slice(&version.to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 1, 0, 0]);
        frame.extend_from_slice(&body);
        let _ = decode_request(&mut Bytes::from(frame));
    }
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn populated_values_round_trip_byte_identical(seed in any::<u64>(), cut in any::<usize>(), position in any::<usize>(), mask in any::<u8>()) {
        visit_all_messages(&mut SampleRoundTrip { seed, cut, flip: (position, mask) });
    }
}
