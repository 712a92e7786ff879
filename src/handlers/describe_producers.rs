//! DescribeProducers (key 61), version 0: the active producers of partitions (KIP-664), as the
//! partition's producer state knows them: id, epoch, last sequence, last timestamp, coordinator
//! epoch and the first offset of the open transaction (-1 when none). Each partition is asked on
//! its owner shard.

use super::topics::on_partition;
use super::{ApiSpec, HandlerError, Reply, Request};
use crate::partition::PartitionError;
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use crate::protocol::messages::{DescribeProducersRequest, DescribeProducersResponse};
use crate::protocol::ApiKey;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::DescribeProducers,
    min_version: 0,
    max_version: 0,
    advertised_min: 0,
    note: "supported (idempotent and transactional producer state per partition)",
};

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: DescribeProducersRequest = request.decode()?;
    let shard = request.shard.clone();
    let image = shard.metadata();
    let mut topics = Vec::with_capacity(body.topics.len());
    for topic in body.topics {
        let mut partitions = Vec::with_capacity(topic.partition_indexes.len());
        for index in topic.partition_indexes {
            let outcome = match image.topic(&topic.name) {
                Some(known) if index >= 0 && (index as usize) < known.partitions.len() => {
                    on_partition(
                        &shard,
                        known.name.clone(),
                        index,
                        |_, partition| async move { Ok(describe(&partition)) },
                    )
                    .await
                }
                _ => Err(PartitionError::code(ErrorCode::UnknownTopicOrPartition)),
            };
            partitions.push(match outcome {
                Ok(active_producers) => PartitionResponse {
                    partition_index: index,
                    active_producers,
                    ..Default::default()
                },
                Err(error) => PartitionResponse {
                    partition_index: index,
                    error_code: error.code.code(),
                    error_message: error.message,
                    ..Default::default()
                },
            });
        }
        topics.push(TopicResponse {
            name: topic.name,
            partitions,
            ..Default::default()
        });
    }
    request.respond(&DescribeProducersResponse {
        topics,
        ..Default::default()
    })
}

fn describe(partition: &crate::partition::Partition) -> Vec<ProducerState> {
    partition
        .producers()
        .into_iter()
        .map(|entry| ProducerState {
            producer_id: entry.producer_id,
            producer_epoch: entry.epoch as i32,
            last_sequence: entry.batches.back().map_or(-1, |b| b.last_sequence),
            last_timestamp: entry.last_timestamp,
            coordinator_epoch: entry.coordinator_epoch,
            current_txn_start_offset: entry.current_txn_first_offset.unwrap_or(-1),
            ..Default::default()
        })
        .collect()
}
