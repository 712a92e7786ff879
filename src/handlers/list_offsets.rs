//! ListOffsets (key 2), versions 1-8: the offset for a timestamp (through the time index), or for
//! Kafka's special timestamps -1 (latest: the high watermark), -2 (earliest: the log start),
//! -3 (the record with the largest timestamp) and -4 (earliest local: the log start).

use super::topics::{check_leader_epoch, on_partition};
use super::{ApiSpec, HandlerError, Reply, Request};
use crate::partition::PartitionError;
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use crate::protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use crate::protocol::ApiKey;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::ListOffsets,
    min_version: 1,
    max_version: 8,
    advertised_min: 1,
    note: "supported (earliest, latest, max timestamp, by timestamp via the time index; latest = LSO for read_committed)",
};

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: ListOffsetsRequest = request.decode()?;
    let shard = request.shard.clone();
    let image = shard.metadata();
    let with_epoch = request.version >= 4;
    let mut topics = Vec::with_capacity(body.topics.len());
    for topic in body.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let index = p.partition_index;
            let outcome = match image.topic(&topic.name) {
                Some(known) if index >= 0 && (index as usize) < known.partitions.len() => {
                    let (timestamp, epoch) = (p.timestamp, p.current_leader_epoch);
                    let read_committed = body.isolation_level == 1;
                    on_partition(
                        &shard,
                        known.name.clone(),
                        index,
                        move |_, partition| async move {
                            check_leader_epoch(epoch, partition.leader_epoch())?;
                            let (offset, found_timestamp) =
                                partition.list_offset(timestamp, read_committed).await?;
                            Ok((offset, found_timestamp, partition.leader_epoch()))
                        },
                    )
                    .await
                }
                _ => Err(PartitionError::code(ErrorCode::UnknownTopicOrPartition)),
            };
            partitions.push(match outcome {
                Ok((offset, timestamp, leader_epoch)) => ListOffsetsPartitionResponse {
                    partition_index: index,
                    error_code: ErrorCode::None.code(),
                    timestamp,
                    offset,
                    leader_epoch: if offset >= 0 && with_epoch {
                        leader_epoch
                    } else {
                        -1
                    },
                    ..Default::default()
                },
                Err(error) => ListOffsetsPartitionResponse {
                    partition_index: index,
                    error_code: error.code.code(),
                    timestamp: -1,
                    offset: -1,
                    leader_epoch: -1,
                    ..Default::default()
                },
            });
        }
        topics.push(ListOffsetsTopicResponse {
            name: topic.name,
            partitions,
            ..Default::default()
        });
    }
    request.respond(&ListOffsetsResponse {
        topics,
        ..Default::default()
    })
}
