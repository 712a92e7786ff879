//! DeleteRecords (key 21), versions 0-2: moves a partition's log start offset forward (offset -1:
//! to the high watermark); consumers then start there, and closed segments wholly below it are
//! deleted. The new start survives a restart (checkpointed in the partition directory).

use super::topics::on_partition;
use super::{ApiSpec, HandlerError, Reply, Request};
use crate::partition::PartitionError;
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use crate::protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use crate::protocol::ApiKey;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::DeleteRecords,
    min_version: 0,
    max_version: 2,
    advertised_min: 0,
    note: "supported (moves the log start offset, deletes segments below it)",
};

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: DeleteRecordsRequest = request.decode()?;
    let shard = request.shard.clone();
    let image = shard.metadata();
    let mut topics = Vec::with_capacity(body.topics.len());
    for topic in body.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let index = p.partition_index;
            let offset = p.offset;
            let outcome = match image.topic(&topic.name) {
                Some(known) if index >= 0 && (index as usize) < known.partitions.len() => {
                    on_partition(
                        &shard,
                        known.name.clone(),
                        index,
                        move |_, partition| async move { partition.delete_records(offset).await },
                    )
                    .await
                }
                _ => Err(PartitionError::code(ErrorCode::UnknownTopicOrPartition)),
            };
            partitions.push(match outcome {
                Ok(low_watermark) => DeleteRecordsPartitionResult {
                    partition_index: index,
                    low_watermark,
                    error_code: 0,
                    ..Default::default()
                },
                Err(error) => DeleteRecordsPartitionResult {
                    partition_index: index,
                    low_watermark: -1,
                    error_code: error.code.code(),
                    ..Default::default()
                },
            });
        }
        topics.push(DeleteRecordsTopicResult {
            name: topic.name,
            partitions,
            ..Default::default()
        });
    }
    request.respond(&DeleteRecordsResponse {
        topics,
        ..Default::default()
    })
}
