//! ConsumerGroupHeartbeat (key 68), versions 0-1: the consumer group protocol of KIP-848
//! (`group.protocol=consumer`). Joins (epoch 0), heartbeats, leaves (epoch -1, or -2 for a
//! static member) a group whose assignment the broker computes; the reply carries the member's
//! epoch and, when it changed, its assignment. Topic ids of the request and response are mapped
//! through the metadata image: owned partitions of unknown topic ids are ignored (the topic is
//! gone), subscribed names of topics that do not exist are kept and get no partitions until they
//! do. v0 lets the broker pick the member id; v1 members bring their own (KIP-1082).
//! The reply waits until the records of the change are durable.

use std::collections::BTreeSet;

use super::{ApiSpec, HandlerError, Reply, Request};
use crate::coordinator::assignor::Assignment;
use crate::coordinator::consumer_group::{Heartbeat, JOIN_EPOCH, LEAVE_EPOCH};
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::consumer_group_heartbeat_response::{
    Assignment as WireAssignment, TopicPartitions,
};
use crate::protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use crate::protocol::ApiKey;
use crate::shard::consumer_groups::{self, topic_id, topic_name};
use crate::shard::group_coordinator::to_coordinator;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::ConsumerGroupHeartbeat,
    min_version: 0,
    max_version: 1,
    advertised_min: 0,
    note: "consumer protocol (KIP-848): server-side assignors uniform and range, static members; no regex subscriptions",
};

fn error(code: ErrorCode, message: &str) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse {
        error_code: code.code(),
        error_message: Some(message.to_string()),
        ..Default::default()
    }
}

/// Kafka's request checks (throwing INVALID_REQUEST), or None if the request is well formed.
fn invalid(body: &ConsumerGroupHeartbeatRequest, version: i16) -> Option<&'static str> {
    if body.group_id.is_empty() {
        return Some("GroupId can't be empty.");
    }
    if body.rack_id.as_deref() == Some("") {
        return Some("RackId can't be empty.");
    }
    // An empty regex means "no regex" (librdkafka sends it with topic names).
    if body
        .subscribed_topic_regex
        .as_deref()
        .is_some_and(|r| !r.is_empty())
    {
        return Some("SubscribedTopicRegex is not supported by this broker.");
    }
    if version >= 1 && body.member_id.is_empty() {
        return Some("MemberId can't be empty.");
    }
    match body.member_epoch {
        JOIN_EPOCH => {
            if body.rebalance_timeout_ms == -1 {
                return Some("RebalanceTimeoutMs must be provided in first request.");
            }
            if body.topic_partitions.as_ref().is_none_or(|t| !t.is_empty()) {
                return Some("TopicPartitions must be empty when (re-)joining.");
            }
            if body.subscribed_topic_names.is_none() {
                return Some("SubscribedTopicNames must be set in first request.");
            }
        }
        epoch if epoch > 0 || epoch == LEAVE_EPOCH || epoch == -2 => {
            if body.member_id.is_empty() {
                return Some("MemberId can't be empty.");
            }
        }
        _ => return Some("MemberEpoch is invalid."),
    }
    None
}

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: ConsumerGroupHeartbeatRequest = request.decode()?;
    if let Some(message) = invalid(&body, request.version) {
        tracing::debug!(
            "ConsumerGroupHeartbeat of '{}' refused: {message}",
            body.group_id
        );
        return request.respond(&error(ErrorCode::InvalidRequest, message));
    }
    let image = request.shard.metadata();
    let owned: Option<Assignment> = body.topic_partitions.as_ref().map(|topics| {
        let mut owned = Assignment::new();
        for t in topics {
            if let Some(name) = topic_name(&image, &t.topic_id) {
                owned
                    .entry(name)
                    .or_default()
                    .extend(t.partitions.iter().copied());
            }
        }
        owned
    });
    let heartbeat = Heartbeat {
        member_id: body.member_id.clone(),
        member_epoch: body.member_epoch,
        instance_id: body.instance_id.clone(),
        rack_id: body.rack_id.clone(),
        rebalance_timeout_ms: body.rebalance_timeout_ms,
        subscriptions: body
            .subscribed_topic_names
            .as_ref()
            .map(|names| names.iter().cloned().collect::<BTreeSet<String>>()),
        server_assignor: body.server_assignor.clone(),
        owned,
        client_id: request.client_id.clone().unwrap_or_default(),
        client_host: request.client_host.to_string(),
    };
    let group = body.group_id.clone();
    let outcome = to_coordinator(&request.shard, &body.group_id, move |shard| {
        consumer_groups::heartbeat(shard, group, heartbeat)
    })
    .await;
    let response = match outcome {
        Ok(reply) => ConsumerGroupHeartbeatResponse {
            member_id: Some(reply.member_id),
            member_epoch: reply.member_epoch,
            heartbeat_interval_ms: reply.heartbeat_interval_ms,
            assignment: reply.assignment.map(|assignment| WireAssignment {
                topic_partitions: assignment
                    .into_iter()
                    .filter_map(|(topic, partitions)| {
                        topic_id(&image, &topic).map(|topic_id| TopicPartitions {
                            topic_id,
                            partitions: partitions.into_iter().collect(),
                            ..Default::default()
                        })
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        },
        Err(code) => ConsumerGroupHeartbeatResponse {
            error_code: code.code(),
            error_message: Some(message(code, &body.group_id)),
            member_epoch: -1,
            ..Default::default()
        },
    };
    request.respond(&response)
}

fn message(code: ErrorCode, group: &str) -> String {
    match code {
        ErrorCode::GroupIdNotFound => {
            format!("Group {group} is not a consumer group or does not exist.")
        }
        ErrorCode::UnsupportedAssignor => format!(
            "ServerAssignor is not one of this broker's assignors: {}.",
            crate::coordinator::assignor::ASSIGNORS.join(", ")
        ),
        other => other.name().to_string(),
    }
}
