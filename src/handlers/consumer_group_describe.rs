//! ConsumerGroupDescribe (key 69), version 0: a consumer-protocol group's state, epochs,
//! assignor and members, each with its epoch, subscriptions, current and target assignment
//! (topics by id and name). An unknown id, or a classic group, is GROUP_ID_NOT_FOUND.

use super::{ApiSpec, HandlerError, Reply, Request};
use crate::coordinator::assignor::Assignment;
use crate::metadata::MetadataImage;
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::consumer_group_describe_response::{
    Assignment as WireAssignment, DescribedGroup, Member, TopicPartitions,
};
use crate::protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse};
use crate::protocol::ApiKey;
use crate::shard::consumer_groups::{state_name, topic_id};
use crate::shard::group_coordinator::to_coordinator;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::ConsumerGroupDescribe,
    min_version: 0,
    max_version: 0,
    advertised_min: 0,
    note: "consumer protocol (KIP-848) groups",
};

fn wire(image: &MetadataImage, assignment: &Assignment) -> WireAssignment {
    WireAssignment {
        topic_partitions: assignment
            .iter()
            .filter(|(_, partitions)| !partitions.is_empty())
            .map(|(topic, partitions)| TopicPartitions {
                topic_id: topic_id(image, topic).unwrap_or_default(),
                topic_name: topic.clone(),
                partitions: partitions.iter().copied().collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: ConsumerGroupDescribeRequest = request.decode()?;
    let operations = super::groups::group_authorized_operations(body.include_authorized_operations);
    let mut groups = Vec::with_capacity(body.group_ids.len());
    for group_id in body.group_ids {
        let id = group_id.clone();
        let outcome = to_coordinator(&request.shard, &group_id, move |shard| async move {
            let image = shard.metadata();
            let store = shard.groups.store.borrow();
            let Some(g) = store.consumer.get(&id) else {
                let message = if store.groups.contains_key(&id) {
                    format!("Group {id} is not a consumer group.")
                } else {
                    format!("Group {id} not found.")
                };
                return Ok(DescribedGroup {
                    group_id: id,
                    error_code: ErrorCode::GroupIdNotFound.code(),
                    error_message: Some(message),
                    ..Default::default()
                });
            };
            Ok(DescribedGroup {
                group_id: id,
                group_state: state_name(g).to_string(),
                group_epoch: g.group_epoch,
                assignment_epoch: g.assignment_epoch,
                assignor_name: g.assignor_name(&shard.groups.consumer_config),
                members: g
                    .members
                    .values()
                    .map(|m| Member {
                        member_id: m.id.clone(),
                        instance_id: m.instance_id.clone(),
                        rack_id: m.rack_id.clone(),
                        member_epoch: m.member_epoch,
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        subscribed_topic_names: m.subscriptions.iter().cloned().collect(),
                        assignment: wire(&image, &m.assigned),
                        target_assignment: wire(
                            &image,
                            g.target.get(&m.id).unwrap_or(&Assignment::new()),
                        ),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
        })
        .await;
        let mut described = outcome.unwrap_or_else(|code| DescribedGroup {
            error_code: code.code(),
            group_id: group_id.clone(),
            ..Default::default()
        });
        described.authorized_operations = if described.error_code == ErrorCode::None.code() {
            operations
        } else {
            super::topics::AUTHORIZED_OPERATIONS_OMITTED
        };
        groups.push(described);
    }
    request.respond(&ConsumerGroupDescribeResponse {
        groups,
        ..Default::default()
    })
}
