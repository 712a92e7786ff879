//! OffsetCommit (key 8), versions 2-9: committed offsets are OffsetCommit records appended to
//! the group's `__consumer_offsets` partition; the response waits until they are durable, and
//! the group's offsets change only by replaying those records. Members are checked (generation,
//! member id, static instance); a group with no members takes "simple" commits (generation -1).
//! A consumer-protocol (KIP-848) group checks v9's member id and member epoch instead
//! (UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH, FENCED_MEMBER_EPOCH).

use super::{ApiSpec, HandlerError, Reply, Request};
use crate::coordinator::group::{CommittedOffset, GroupRecord};
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use crate::protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use crate::protocol::ApiKey;
use crate::shard::group_coordinator::{commit_error, to_coordinator, write_and_apply};

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::OffsetCommit,
    min_version: 2,
    max_version: 9,
    advertised_min: 2,
    note: "classic and consumer-protocol groups, simple (generation -1) commits; durable before the response",
};

/// One partition of the request: its name, index, and either the offset to write or an error.
type Item = (String, i32, Result<CommittedOffset, ErrorCode>);

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: OffsetCommitRequest = request.decode()?;
    let shard = request.shard.clone();
    let image = shard.metadata();
    let now = crate::event::now_ms();
    let max_metadata = shard.broker.offset_metadata_max_bytes();
    let expire = (request.version <= 4 && body.retention_time_ms >= 0)
        .then(|| now.saturating_add(body.retention_time_ms));
    let mut items: Vec<Item> = Vec::new();
    for topic in &body.topics {
        for p in &topic.partitions {
            let outcome = super::groups::commit_item(
                &image,
                &topic.name,
                p.partition_index,
                p.committed_offset,
                p.committed_leader_epoch,
                p.committed_metadata.as_ref(),
                max_metadata,
                now,
                expire,
            );
            items.push((topic.name.clone(), p.partition_index, outcome));
        }
    }
    // Kafka accepts the empty group id here (for old clients' offset storage).
    let outcome = {
        let group = body.group_id.clone();
        let (member, instance, generation) = (
            body.member_id.clone(),
            body.group_instance_id.clone(),
            body.generation_id_or_member_epoch,
        );
        let to_write = items.clone();
        let version = request.version;
        to_coordinator(&shard, &body.group_id, move |shard| async move {
            let now = crate::event::now_ms();
            let consumer = shard.groups.store.borrow().consumer.get(&group).map(|g| {
                // A consumer-protocol group: the member id and epoch of KIP-848.
                g.validate_offset_commit(&member, generation, version)
            });
            if let Some(checked) = consumer {
                checked?;
            } else {
                let exists = shard.groups.with_group(&group, |_| ()).is_some();
                if !exists && generation >= 0 {
                    return Err(ErrorCode::IllegalGeneration);
                }
                shard.groups.with_group_or_new(&group, |g| {
                    g.validate_commit(&member, instance.as_deref(), generation, now)
                })?;
            }
            let records: Vec<GroupRecord> = to_write
                .into_iter()
                .filter_map(|(topic, partition, outcome)| {
                    outcome.ok().map(|value| GroupRecord::Offset {
                        group: group.clone(),
                        topic,
                        partition,
                        value: Some(value),
                    })
                })
                .collect();
            let written = if records.is_empty() {
                Ok(())
            } else {
                write_and_apply(&shard, &group, records)
                    .await
                    .map_err(commit_error)
            };
            shard.groups.forget_if_unused(&group);
            written
        })
        .await
    };
    let topics = super::groups::commit_results(items, outcome)
        .into_iter()
        .map(|(name, partitions)| OffsetCommitResponseTopic {
            name,
            partitions: partitions
                .into_iter()
                .map(|(partition_index, error)| OffsetCommitResponsePartition {
                    partition_index,
                    error_code: error.code(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    request.respond(&OffsetCommitResponse {
        topics,
        ..Default::default()
    })
}
