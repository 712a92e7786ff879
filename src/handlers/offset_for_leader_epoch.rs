//! OffsetForLeaderEpoch (key 23), versions 2-4: the end offset of a leader epoch, which clients
//! use to detect log truncation after a leader change. A single node has one epoch per partition
//! (from its PartitionRecord), starting at offset 0; the answers follow Kafka's
//! LeaderEpochFileCache: the current epoch ends at the log end, an older one at the start of the
//! current one, a newer one is undefined (-1, -1).

use super::topics::{check_leader_epoch, on_partition};
use super::{ApiSpec, HandlerError, Reply, Request};
use crate::partition::PartitionError;
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use crate::protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use crate::protocol::ApiKey;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::OffsetForLeaderEpoch,
    min_version: 2,
    max_version: 4,
    advertised_min: 2,
    note: "supported (one leader epoch per partition on a single node)",
};

/// (epoch, end offset) for `requested` given the current `epoch` that began at offset 0.
pub fn end_offset_for(requested: i32, epoch: i32, log_end_offset: i64) -> (i32, i64) {
    if requested < 0 || requested > epoch {
        (-1, -1)
    } else if requested == epoch {
        (epoch, log_end_offset)
    } else {
        (requested, 0)
    }
}

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: OffsetForLeaderEpochRequest = request.decode()?;
    let shard = request.shard.clone();
    let image = shard.metadata();
    let mut topics = Vec::with_capacity(body.topics.len());
    for topic in body.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let index = p.partition;
            let (current, requested) = (p.current_leader_epoch, p.leader_epoch);
            let outcome = match image.topic(&topic.topic) {
                Some(known) if index >= 0 && (index as usize) < known.partitions.len() => {
                    on_partition(
                        &shard,
                        known.name.clone(),
                        index,
                        move |_, partition| async move {
                            check_leader_epoch(current, partition.leader_epoch())?;
                            Ok(end_offset_for(
                                requested,
                                partition.leader_epoch(),
                                partition.offsets().log_end_offset,
                            ))
                        },
                    )
                    .await
                }
                _ => Err(PartitionError::code(ErrorCode::UnknownTopicOrPartition)),
            };
            partitions.push(match outcome {
                Ok((leader_epoch, end_offset)) => EpochEndOffset {
                    error_code: 0,
                    partition: index,
                    leader_epoch,
                    end_offset,
                    ..Default::default()
                },
                Err(error) => EpochEndOffset {
                    error_code: error.code.code(),
                    partition: index,
                    leader_epoch: -1,
                    end_offset: -1,
                    ..Default::default()
                },
            });
        }
        topics.push(OffsetForLeaderTopicResult {
            topic: topic.topic,
            partitions,
            ..Default::default()
        });
    }
    request.respond(&OffsetForLeaderEpochResponse {
        topics,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::end_offset_for;

    #[test]
    fn epochs_follow_kafkas_cache_rules() {
        assert_eq!(end_offset_for(0, 0, 42), (0, 42));
        assert_eq!(end_offset_for(1, 0, 42), (-1, -1));
        assert_eq!(end_offset_for(-1, 0, 42), (-1, -1));
        assert_eq!(end_offset_for(2, 5, 42), (2, 0));
    }
}
