//! OffsetDelete (key 47), version 0: deletes committed offsets of a group (tombstones),
//! refusing partitions of topics a live consumer group still subscribes to
//! (GROUP_SUBSCRIBED_TO_TOPIC).

use super::{ApiSpec, HandlerError, Reply, Request};
use crate::coordinator::group::{GroupRecord, GroupState};
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use crate::protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use crate::protocol::ApiKey;
use crate::shard::group_coordinator::{to_coordinator, write_and_apply};

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::OffsetDelete,
    min_version: 0,
    max_version: 0,
    advertised_min: 0,
    note: "supported",
};

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: OffsetDeleteRequest = request.decode()?;
    let image = request.shard.metadata();
    // (topic, partition, error before the coordinator is asked)
    let mut asked: Vec<(String, i32, ErrorCode)> = Vec::new();
    for topic in &body.topics {
        let known = image.topic(&topic.name);
        for p in &topic.partitions {
            let index = p.partition_index;
            let error =
                if known.is_some_and(|t| index >= 0 && (index as usize) < t.partitions.len()) {
                    ErrorCode::None
                } else {
                    ErrorCode::UnknownTopicOrPartition
                };
            asked.push((topic.name.clone(), index, error));
        }
    }
    let group = body.group_id.clone();
    let request_items = asked.clone();
    let outcome = to_coordinator(&request.shard, &body.group_id, move |shard| async move {
        // A consumer-protocol group: topics its members subscribe to keep their offsets.
        let consumer_subscribed = shard
            .groups
            .store
            .borrow()
            .consumer
            .get(&group)
            .map(|g| g.subscribed_topics());
        let checked = shard
            .groups
            .with_group(&group, |g| {
                if g.is(GroupState::Dead) {
                    return Err(ErrorCode::GroupIdNotFound);
                }
                let subscribed = if let Some(topics) = consumer_subscribed {
                    Some(topics.into_iter().collect())
                } else if g.is(GroupState::Empty) {
                    Some(Default::default())
                } else {
                    g.subscribed_topics()
                };
                let Some(subscribed) = subscribed else {
                    return Err(ErrorCode::NonEmptyGroup);
                };
                Ok(request_items
                    .into_iter()
                    .map(|(topic, partition, error)| {
                        let error = if error != ErrorCode::None {
                            error
                        } else if subscribed.contains(&topic) {
                            ErrorCode::GroupSubscribedToTopic
                        } else {
                            ErrorCode::None
                        };
                        let present = g.offsets.contains_key(&(topic.clone(), partition));
                        (topic, partition, error, present)
                    })
                    .collect::<Vec<_>>())
            })
            .unwrap_or(Err(ErrorCode::GroupIdNotFound))?;
        let tombstones: Vec<GroupRecord> = checked
            .iter()
            .filter(|(_, _, error, present)| *error == ErrorCode::None && *present)
            .map(|(topic, partition, _, _)| GroupRecord::Offset {
                group: group.clone(),
                topic: topic.clone(),
                partition: *partition,
                value: None,
            })
            .collect();
        if !tombstones.is_empty() {
            write_and_apply(&shard, &group, tombstones).await?;
        }
        Ok(checked
            .into_iter()
            .map(|(t, p, e, _)| (t, p, e))
            .collect::<Vec<_>>())
    })
    .await;
    let (error, items) = match outcome {
        Ok(items) => (ErrorCode::None, items),
        Err(code) => (code, Vec::new()),
    };
    let mut topics: Vec<OffsetDeleteResponseTopic> = Vec::new();
    for (topic, partition, error) in items {
        let entry = match topics.last_mut() {
            Some(last) if last.name == topic => last,
            _ => {
                topics.push(OffsetDeleteResponseTopic {
                    name: topic,
                    ..Default::default()
                });
                topics.last_mut().expect("pushed")
            }
        };
        entry.partitions.push(OffsetDeleteResponsePartition {
            partition_index: partition,
            error_code: error.code(),
            ..Default::default()
        });
    }
    request.respond(&OffsetDeleteResponse {
        error_code: error.code(),
        topics,
        ..Default::default()
    })
}
