//! Requests sent with Weir's own codec over a bare socket, for protocol details that client
//! libraries depend on but cannot be made to show directly.

mod common;

use common::raw::Raw;
use common::*;
use weir::protocol::messages::metadata_request::MetadataRequestTopic;
use weir::protocol::messages::{MetadataRequest, MetadataResponse};
use weir::protocol::{ApiKey, ErrorCode, Uuid};

/// Every topic operation, as Kafka without an authorizer reports it.
const ALL_TOPIC_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);

fn metadata(
    client: &mut Raw,
    version: i16,
    topics: Vec<MetadataRequestTopic>,
    include: bool,
) -> MetadataResponse {
    client.request(
        ApiKey::Metadata.code(),
        version,
        &MetadataRequest {
            topics: Some(topics),
            allow_auto_topic_creation: false,
            include_topic_authorized_operations: include,
            ..Default::default()
        },
    )
}

fn by_name(name: &str) -> MetadataRequestTopic {
    MetadataRequestTopic {
        name: Some(name.to_string()),
        ..Default::default()
    }
}

/// kafka-python's describe_topics decodes the authorized operations of every topic in the
/// response and failed on an unknown topic's "omitted" marker (i32::MIN); Kafka fills them in
/// for unknown names too.
#[test]
fn metadata_reports_authorized_operations_for_unknown_topic_names() {
    let broker = Broker::start(&[]);
    create_topic(&broker, "known", 1, &[]);
    let mut client = Raw::connect(&broker);
    for version in [8, 10, 12] {
        let response = metadata(
            &mut client,
            version,
            vec![by_name("known"), by_name("unknown")],
            true,
        );
        let [known, unknown] = &response.topics[..] else {
            panic!("two topics expected: {response:?}");
        };
        assert_eq!(known.error_code, ErrorCode::None.code());
        assert_eq!(known.topic_authorized_operations, ALL_TOPIC_OPERATIONS);
        assert_eq!(
            unknown.error_code,
            ErrorCode::UnknownTopicOrPartition.code()
        );
        assert_eq!(
            unknown.topic_authorized_operations, ALL_TOPIC_OPERATIONS,
            "v{version}"
        );

        let response = metadata(&mut client, version, vec![by_name("unknown")], false);
        assert_eq!(
            response.topics[0].topic_authorized_operations,
            i32::MIN,
            "not asked for"
        );
    }
    // An unknown topic id stays "omitted", as in Kafka.
    let response = metadata(
        &mut client,
        12,
        vec![MetadataRequestTopic {
            topic_id: Uuid([7; 16]),
            name: None,
            ..Default::default()
        }],
        true,
    );
    assert_eq!(
        response.topics[0].error_code,
        ErrorCode::UnknownTopicId.code()
    );
    assert_eq!(response.topics[0].topic_authorized_operations, i32::MIN);
}
