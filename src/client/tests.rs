//! `Client` against a scripted broker on a local port: the fallbacks (AlterConfigs,
//! Metadata for DescribeCluster), Fetch by topic id (v13+), produce retries after a leader
//! change, and a broker whose answer leaves a partition out.
//!
//! The fake answers ApiVersions from its API list and hands every other request, decoded, to
//! the test's handler, which returns the response to send (or `None` for none).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use bytes::Bytes;

use super::*;
use crate::protocol::frame::{decode_request, encode_response};
use crate::protocol::messages::api_versions_response::ApiVersion;
use crate::protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use crate::protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use crate::protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use crate::protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use crate::protocol::messages::{
    alter_configs_response, AlterConfigsResponse, ApiVersionsResponse, DescribeConfigsResponse,
    FetchResponse, MetadataResponse, ProduceResponse,
};
use crate::protocol::{ApiKey, Message, RequestBody, Uuid};
use crate::records::{BatchBuilder, Compression};

/// One request as the fake broker received it.
struct Received {
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: RequestBody,
}

impl Received {
    fn reply<M: Message>(&self, response: &M) -> Option<Vec<Bytes>> {
        Some(encode_response(self.correlation_id, self.key.code(), self.version, response).unwrap())
    }
}

type Handler = Box<dyn FnMut(&Received, u16) -> Option<Vec<Bytes>> + Send>;

/// Starts a broker serving `apis` (ApiVersions is added) on a free port; returns its address.
fn fake_broker(apis: &[(ApiKey, i16, i16)], handler: Handler) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut advertised: Vec<ApiVersion> = apis
        .iter()
        .map(|&(key, min_version, max_version)| ApiVersion {
            api_key: key.code(),
            min_version,
            max_version,
            ..ApiVersion::default()
        })
        .collect();
    advertised.push(ApiVersion {
        api_key: ApiKey::ApiVersions.code(),
        min_version: 0,
        max_version: 4,
        ..ApiVersion::default()
    });
    let handler = Arc::new(Mutex::new(handler));
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let advertised = advertised.clone();
            let handler = handler.clone();
            thread::spawn(move || serve(stream, port, &advertised, &handler));
        }
    });
    format!("127.0.0.1:{port}")
}

fn serve(mut stream: TcpStream, port: u16, advertised: &[ApiVersion], handler: &Mutex<Handler>) {
    loop {
        let mut size = [0u8; 4];
        if stream.read_exact(&mut size).is_err() {
            return;
        }
        let mut frame = vec![0u8; u32::from_be_bytes(size) as usize];
        stream.read_exact(&mut frame).unwrap();
        let (header, body) = decode_request(&mut Bytes::from(frame)).unwrap();
        let received = Received {
            key: ApiKey::from_i16(header.request_api_key).unwrap(),
            version: header.request_api_version,
            correlation_id: header.correlation_id,
            body,
        };
        let reply = if received.key == ApiKey::ApiVersions {
            received.reply(&ApiVersionsResponse {
                api_keys: advertised.to_vec(),
                ..ApiVersionsResponse::default()
            })
        } else {
            (handler.lock().unwrap())(&received, port)
        };
        for chunk in reply.into_iter().flatten() {
            stream.write_all(&chunk).unwrap();
        }
    }
}

const TOPIC_ID: Uuid = Uuid([7; 16]);

/// Metadata of one broker (node 1, the fake itself) leading topic `t` with `partitions`.
fn metadata(port: u16, partitions: i32) -> MetadataResponse {
    MetadataResponse {
        brokers: vec![MetadataResponseBroker {
            node_id: 1,
            host: "127.0.0.1".into(),
            port: i32::from(port),
            ..MetadataResponseBroker::default()
        }],
        cluster_id: Some("fake-cluster".into()),
        controller_id: 1,
        topics: vec![MetadataResponseTopic {
            name: Some("t".into()),
            topic_id: TOPIC_ID,
            partitions: (0..partitions)
                .map(|partition_index| MetadataResponsePartition {
                    partition_index,
                    leader_id: 1,
                    replica_nodes: vec![1],
                    isr_nodes: vec![1],
                    ..MetadataResponsePartition::default()
                })
                .collect(),
            ..MetadataResponseTopic::default()
        }],
        ..MetadataResponse::default()
    }
}

fn config(name: &str, value: &str, source: i8) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult {
        name: name.into(),
        value: Some(value.into()),
        config_source: source,
        ..DescribeConfigsResourceResult::default()
    }
}

#[test]
fn alter_configs_falls_back_to_replacing_the_merged_overrides() {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let captured = sent.clone();
    let address = fake_broker(
        &[
            (ApiKey::DescribeConfigs, 1, 4),
            (ApiKey::AlterConfigs, 0, 2),
        ],
        Box::new(move |request, _| match &request.body {
            RequestBody::DescribeConfigs(_) => request.reply(&DescribeConfigsResponse {
                results: vec![DescribeConfigsResult {
                    resource_type: 2,
                    resource_name: "t".into(),
                    configs: vec![
                        config("retention.ms", "1000", 1),
                        config("segment.bytes", "4096", 1),
                        config("cleanup.policy", "delete", 5),
                    ],
                    ..DescribeConfigsResult::default()
                }],
                ..DescribeConfigsResponse::default()
            }),
            RequestBody::AlterConfigs(alter) => {
                let resource = &alter.resources[0];
                captured.lock().unwrap().extend(
                    resource
                        .configs
                        .iter()
                        .map(|c| (c.name.clone(), c.value.clone())),
                );
                request.reply(&AlterConfigsResponse {
                    responses: vec![alter_configs_response::AlterConfigsResourceResponse {
                        resource_type: resource.resource_type,
                        resource_name: resource.resource_name.clone(),
                        ..Default::default()
                    }],
                    ..AlterConfigsResponse::default()
                })
            }
            other => panic!("unexpected {other:?}"),
        }),
    );
    let mut client = Client::connect(&address).unwrap();
    assert!(!client
        .api_versions()
        .supports(ApiKey::IncrementalAlterConfigs));
    client
        .alter_configs(
            &ConfigResource::Topic("t".into()),
            &[
                ConfigChange {
                    name: "retention.ms".into(),
                    op: ConfigOp::Set("2000".into()),
                },
                ConfigChange {
                    name: "segment.bytes".into(),
                    op: ConfigOp::Delete,
                },
                ConfigChange {
                    name: "cleanup.policy".into(),
                    op: ConfigOp::Append("compact".into()),
                },
            ],
            false,
        )
        .unwrap();
    assert_eq!(
        *sent.lock().unwrap(),
        vec![
            (
                "cleanup.policy".to_string(),
                Some("delete,compact".to_string())
            ),
            ("retention.ms".to_string(), Some("2000".to_string())),
        ]
    );
}

#[test]
fn describe_cluster_falls_back_to_metadata() {
    let address = fake_broker(
        &[(ApiKey::Metadata, 0, 12)],
        Box::new(|request, port| match &request.body {
            RequestBody::Metadata(asked) => {
                assert_eq!(asked.topics.as_deref(), Some(&[][..]), "no topics wanted");
                request.reply(&MetadataResponse {
                    topics: Vec::new(),
                    ..metadata(port, 1)
                })
            }
            other => panic!("unexpected {other:?}"),
        }),
    );
    let mut client = Client::connect(&address).unwrap();
    let cluster = client.describe_cluster().unwrap();
    assert_eq!(cluster.cluster_id.as_deref(), Some("fake-cluster"));
    assert_eq!(cluster.controller_id, 1);
    assert_eq!(cluster.brokers.len(), 1);
    assert_eq!(cluster.brokers[0].address(), address);
}

fn one_batch(base_offset: i64, values: &[&str]) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::Lz4, base_offset, 5);
    for value in values {
        builder.append(5, None, Some(value.as_bytes()), &[]);
    }
    builder.build().unwrap()
}

#[test]
fn fetch_v13_names_the_topic_by_id() {
    let address = fake_broker(
        &[(ApiKey::Metadata, 1, 12), (ApiKey::Fetch, 4, 13)],
        Box::new(|request, port| match &request.body {
            RequestBody::Metadata(_) => request.reply(&metadata(port, 1)),
            RequestBody::Fetch(fetch) => {
                assert_eq!(request.version, 13);
                assert_eq!(fetch.topics[0].topic_id, TOPIC_ID);
                assert_eq!(fetch.topics[0].partitions[0].fetch_offset, 1);
                request.reply(&FetchResponse {
                    responses: vec![FetchableTopicResponse {
                        topic_id: TOPIC_ID,
                        partitions: vec![PartitionData {
                            partition_index: 0,
                            high_watermark: 3,
                            log_start_offset: 0,
                            records: Some(one_batch(0, &["a", "b", "c"])),
                            ..PartitionData::default()
                        }],
                        ..FetchableTopicResponse::default()
                    }],
                    ..FetchResponse::default()
                })
            }
            other => panic!("unexpected {other:?}"),
        }),
    );
    let mut client = Client::connect(&address).unwrap();
    let fetched = client
        .fetch("t", &[(0, 1)], &FetchOptions::default())
        .unwrap();
    assert_eq!(fetched.len(), 1);
    let values: Vec<&[u8]> = fetched[0]
        .records
        .iter()
        .map(|r| r.value.as_deref().unwrap())
        .collect();
    assert_eq!(values, vec![&b"b"[..], b"c"]);
    assert_eq!(fetched[0].records[0].offset, 1);
    assert_eq!(fetched[0].next_offset, 3);
    assert_eq!(fetched[0].high_watermark, 3);
}

#[test]
fn produce_retries_a_partition_whose_leader_moved() {
    let produces = Arc::new(Mutex::new(0));
    let metadatas = Arc::new(Mutex::new(0));
    let (produce_count, metadata_count) = (produces.clone(), metadatas.clone());
    let address = fake_broker(
        &[(ApiKey::Metadata, 1, 12), (ApiKey::Produce, 3, 11)],
        Box::new(move |request, port| match &request.body {
            RequestBody::Metadata(_) => {
                *metadata_count.lock().unwrap() += 1;
                request.reply(&metadata(port, 2))
            }
            RequestBody::Produce(produce) => {
                let mut count = produce_count.lock().unwrap();
                *count += 1;
                let error = if *count == 1 {
                    crate::protocol::ErrorCode::NotLeaderOrFollower.code()
                } else {
                    0
                };
                assert_eq!(produce.acks, -1);
                request.reply(&ProduceResponse {
                    responses: vec![TopicProduceResponse {
                        name: "t".into(),
                        partition_responses: vec![PartitionProduceResponse {
                            index: produce.topic_data[0].partition_data[0].index,
                            error_code: error,
                            base_offset: if error == 0 { 42 } else { -1 },
                            ..PartitionProduceResponse::default()
                        }],
                        ..TopicProduceResponse::default()
                    }],
                    ..ProduceResponse::default()
                })
            }
            other => panic!("unexpected {other:?}"),
        }),
    );
    let client = Client::connect(&address).unwrap();
    let mut producer = Producer::new(client, "t", ProducerConfig::default()).unwrap();
    let record = OutgoingRecord {
        key: Some(b"k"),
        value: Some(b"v"),
        headers: &[],
        timestamp: 1,
        partition: Some(1),
    };
    assert!(producer.send(&record).unwrap().is_empty());
    let deliveries = producer.flush().unwrap();
    assert_eq!(
        deliveries,
        vec![Delivery {
            partition: 1,
            base_offset: Some(42),
            record_count: 1
        }]
    );
    assert_eq!(*produces.lock().unwrap(), 2);
    assert!(
        *metadatas.lock().unwrap() >= 2,
        "leaders are looked up again"
    );
}

#[test]
fn an_answer_that_leaves_out_a_partition_is_a_protocol_error() {
    let address = fake_broker(
        &[(ApiKey::Metadata, 1, 12), (ApiKey::Fetch, 4, 12)],
        Box::new(|request, port| match &request.body {
            RequestBody::Metadata(_) => request.reply(&metadata(port, 2)),
            RequestBody::Fetch(_) => request.reply(&FetchResponse::default()),
            other => panic!("unexpected {other:?}"),
        }),
    );
    let mut client = Client::connect(&address).unwrap();
    let error = client
        .fetch("t", &[(0, 0), (1, 0)], &FetchOptions::default())
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::Protocol { detail, .. } if detail.contains("partition 0")),
        "{error}"
    );
    // Asking for a partition the topic does not have fails before any fetch.
    let error = client
        .fetch("t", &[(5, 0)], &FetchOptions::default())
        .unwrap_err();
    assert!(error.is_kafka(crate::protocol::ErrorCode::UnknownTopicOrPartition));
}

#[test]
fn acks_zero_sends_without_waiting_for_an_answer() {
    let produced = Arc::new(Mutex::new(Vec::new()));
    let captured = produced.clone();
    let address = fake_broker(
        &[(ApiKey::Metadata, 1, 12), (ApiKey::Produce, 3, 11)],
        Box::new(move |request, port| match &request.body {
            RequestBody::Metadata(_) => request.reply(&metadata(port, 1)),
            RequestBody::Produce(produce) => {
                captured.lock().unwrap().push(produce.acks);
                None
            }
            other => panic!("unexpected {other:?}"),
        }),
    );
    let mut client = Client::connect(&address).unwrap();
    let acks = client
        .produce(
            "t",
            &[(0, one_batch(0, &["x"]))],
            Acks::None,
            std::time::Duration::from_secs(1),
        )
        .unwrap();
    assert_eq!(acks, vec![(0, None)]);
    // The connection is still in step: a later request gets its own answer.
    assert_eq!(client.topic("t", false).unwrap().partition_count(), 1);
    assert_eq!(*produced.lock().unwrap(), vec![0]);
}
