//! TxnOffsetCommit (key 28), versions 0-4: a transactional producer commits a consumer group's
//! offsets inside its transaction (`send_offsets_to_transaction`). The offsets are written to
//! the group's `__consumer_offsets` partition as a transactional batch of the producer (its id
//! and epoch: a fenced producer's commit is refused by the partition), held pending by the group
//! coordinator, and become the group's committed offsets only with the transaction's COMMIT
//! marker (an ABORT drops them). v3+ checks the member id and generation when given.

use super::{ApiSpec, HandlerError, Reply, Request};
use crate::coordinator::group::{CommittedOffset, GroupRecord, OFFSETS_TOPIC};
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use crate::protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use crate::protocol::ApiKey;
use crate::records::builder::BatchBuilder;
use crate::records::compression::Compression;
use crate::shard::group_coordinator::{self, commit_error, coordinator_partition, to_coordinator};

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::TxnOffsetCommit,
    min_version: 0,
    max_version: 4,
    advertised_min: 0,
    note: "supported (offsets pending until the transaction's marker)",
};

type Item = (String, i32, Result<CommittedOffset, ErrorCode>);

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: TxnOffsetCommitRequest = request.decode()?;
    let shard = request.shard.clone();
    let image = shard.metadata();
    let now = crate::event::now_ms();
    let max_metadata = shard.broker.offset_metadata_max_bytes();
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
                None,
            );
            items.push((topic.name.clone(), p.partition_index, outcome));
        }
    }
    let outcome = {
        let group = body.group_id.clone();
        let (member, instance, generation) = (
            body.member_id.clone(),
            body.group_instance_id.clone(),
            body.generation_id,
        );
        let (producer_id, producer_epoch) = (body.producer_id, body.producer_epoch);
        let to_write = items.clone();
        to_coordinator(&shard, &body.group_id, move |shard| async move {
            let consumer = shard.groups.store.borrow().consumer.get(&group).map(|g| {
                if member.is_empty() {
                    Ok(())
                } else {
                    g.validate_offset_commit(&member, generation, 9)
                }
            });
            match consumer {
                Some(checked) => checked?,
                None => shard.groups.with_group_or_new(&group, |g| {
                    g.validate_txn_commit(&member, instance.as_deref(), generation)
                })?,
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
                write_pending(&shard, &group, producer_id, producer_epoch, records).await
            };
            shard.groups.forget_if_unused(&group);
            written
        })
        .await
    };
    let topics = super::groups::commit_results(items, outcome)
        .into_iter()
        .map(|(name, partitions)| TxnOffsetCommitResponseTopic {
            name,
            partitions: partitions
                .into_iter()
                .map(
                    |(partition_index, error)| TxnOffsetCommitResponsePartition {
                        partition_index,
                        error_code: error.code(),
                        ..Default::default()
                    },
                )
                .collect(),
            ..Default::default()
        })
        .collect();
    request.respond(&TxnOffsetCommitResponse {
        topics,
        ..Default::default()
    })
}

/// Writes the offsets as the producer's transactional batch and, once durable, holds them
/// pending in the group store until the transaction's marker.
async fn write_pending(
    shard: &std::rc::Rc<crate::shard::Shard>,
    group: &str,
    producer_id: i64,
    producer_epoch: i16,
    records: Vec<GroupRecord>,
) -> Result<(), ErrorCode> {
    let index = coordinator_partition(&shard.metadata(), group).ok_or(ErrorCode::NotCoordinator)?;
    let now = crate::event::now_ms();
    let mut builder = BatchBuilder::new(Compression::None, 0, now)
        .producer(producer_id, producer_epoch, 0)
        .transactional(true);
    for record in &records {
        let (key, value) = record.encode();
        builder.append(now, Some(&key), value.as_deref(), &[]);
    }
    let batch = builder.build().map_err(|_| ErrorCode::UnknownServerError)?;
    group_coordinator::append_batch(
        shard,
        OFFSETS_TOPIC,
        index,
        batch,
        std::time::Duration::from_millis(shard.broker.offsets_commit_timeout_ms()),
    )
    .await
    .map_err(|error| match error {
        ErrorCode::InvalidProducerEpoch | ErrorCode::ProducerFenced => error,
        other => commit_error(other),
    })?;
    let mut store = shard.groups.store.borrow_mut();
    for record in records {
        store.add_pending_txn(producer_id, index, record);
    }
    Ok(())
}
