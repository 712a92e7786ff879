//! Metadata (key 3), versions 0-12: brokers, cluster id, controller, and topics with their
//! partitions (this broker leads all of them). Unknown topics are created when
//! `auto.create.topics.enable` is true and the request allows it (always below v4), else they
//! are reported as UNKNOWN_TOPIC_OR_PARTITION; unknown topic ids as UNKNOWN_TOPIC_ID.

use std::sync::Arc;

use super::topics::{
    self, AUTHORIZED_OPERATIONS_OMITTED, CLUSTER_AUTHORIZED_OPERATIONS, TOPIC_AUTHORIZED_OPERATIONS,
};
use super::{ApiSpec, HandlerError, Reply, Request};
use crate::metadata::{validate_topic_name, MetadataImage, TopicImage};
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use crate::protocol::messages::{MetadataRequest, MetadataResponse};
use crate::protocol::{ApiKey, Uuid};

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::Metadata,
    min_version: 0,
    max_version: 12,
    advertised_min: 0,
    note: "supported; auto-creates topics when auto.create.topics.enable",
};

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: MetadataRequest = request.decode()?;
    let shard = &request.shard;
    let mut image = shard.metadata();
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let all_topics = body.topics.is_none()
        || (request.version == 0 && body.topics.as_ref().is_some_and(Vec::is_empty));
    let allow_auto_create = request.version < 4 || body.allow_auto_topic_creation;
    if !all_topics && allow_auto_create {
        let unknown: Vec<String> = body
            .topics
            .iter()
            .flatten()
            .filter_map(|t| t.name.clone())
            .filter(|name| image.topic(name).is_none())
            .collect();
        if !unknown.is_empty() {
            image = topics::auto_create(shard, unknown).await;
        }
    }
    let topic_results = if all_topics {
        image
            .topics
            .values()
            .map(|t| describe_topic(&image, t, body.include_topic_authorized_operations))
            .collect()
    } else {
        body.topics
            .iter()
            .flatten()
            .map(|requested| match (&requested.name, requested.topic_id) {
                (Some(name), _) => match image.topic(name) {
                    Some(topic) => {
                        describe_topic(&image, topic, body.include_topic_authorized_operations)
                    }
                    // Kafka fills in the operations for unknown names too; only unknown
                    // topic ids keep the "omitted" marker.
                    None => missing_topic(
                        Some(name.clone()),
                        Uuid::ZERO,
                        topic_error(name),
                        body.include_topic_authorized_operations,
                    ),
                },
                (None, id) => match image.topic_by_id(&id) {
                    Some(topic) => {
                        describe_topic(&image, topic, body.include_topic_authorized_operations)
                    }
                    None => missing_topic(None, id, ErrorCode::UnknownTopicId, false),
                },
            })
            .collect()
    };
    let (host, port) = shard
        .broker
        .advertised()
        .unwrap_or(("127.0.0.1".into(), 9092));
    let response = MetadataResponse {
        brokers: vec![MetadataResponseBroker {
            node_id: image.node_id,
            host,
            port: port as i32,
            rack: None,
            ..Default::default()
        }],
        cluster_id: Some(image.cluster_id.clone()),
        controller_id: image.node_id,
        topics: topic_results,
        cluster_authorized_operations: if body.include_cluster_authorized_operations {
            CLUSTER_AUTHORIZED_OPERATIONS
        } else {
            AUTHORIZED_OPERATIONS_OMITTED
        },
        ..Default::default()
    };
    request.respond(&response)
}

fn topic_error(name: &str) -> ErrorCode {
    if validate_topic_name(name).is_err() {
        ErrorCode::InvalidTopicException
    } else {
        ErrorCode::UnknownTopicOrPartition
    }
}

fn missing_topic(
    name: Option<String>,
    topic_id: Uuid,
    error: ErrorCode,
    include_operations: bool,
) -> MetadataResponseTopic {
    MetadataResponseTopic {
        error_code: error.code(),
        name,
        topic_id,
        topic_authorized_operations: authorized_operations(include_operations),
        ..Default::default()
    }
}

fn describe_topic(
    image: &MetadataImage,
    topic: &Arc<TopicImage>,
    include_operations: bool,
) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|p| MetadataResponsePartition {
            error_code: ErrorCode::None.code(),
            partition_index: p.index,
            leader_id: image.node_id,
            leader_epoch: p.leader_epoch,
            replica_nodes: p.replicas.clone(),
            isr_nodes: p.replicas.clone(),
            offline_replicas: Vec::new(),
            ..Default::default()
        })
        .collect();
    MetadataResponseTopic {
        error_code: ErrorCode::None.code(),
        name: Some(topic.name.to_string()),
        topic_id: topic.id,
        is_internal: topic.is_internal(),
        partitions,
        topic_authorized_operations: authorized_operations(include_operations),
        ..Default::default()
    }
}

/// A topic's authorized operations as Kafka without an authorizer reports them: every topic
/// operation when asked (for existing topics and unknown names alike; kafka-python decodes
/// the field of every topic and fails on the "omitted" value), else the omitted marker.
fn authorized_operations(include_operations: bool) -> i32 {
    if include_operations {
        TOPIC_AUTHORIZED_OPERATIONS
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    }
}
