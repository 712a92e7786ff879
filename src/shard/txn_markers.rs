//! Writing transaction markers into partitions, for the transaction coordinator (on whichever
//! shard it runs) and for the WriteTxnMarkers API: routes to the partition's owner shard, appends
//! the COMMIT/ABORT control batch there ([`crate::partition::Partition::write_txn_marker`]), waits
//! until it is durable (below the high watermark, as acks=all) and returns its offset.

use std::rc::Rc;
use std::sync::Arc;

use super::Shard;
use crate::protocol::error::ErrorCode;

/// Writes one marker and waits for it to be durable; the marker's offset, or Kafka's error for
/// the partition (UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER, INVALID_PRODUCER_EPOCH,
/// TRANSACTION_COORDINATOR_FENCED, KAFKA_STORAGE_ERROR, …).
pub async fn write_marker(
    shard: &Rc<Shard>,
    topic: &str,
    partition: i32,
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    commit: bool,
) -> Result<i64, ErrorCode> {
    let known = shard
        .metadata()
        .topic(topic)
        .is_some_and(|t| partition >= 0 && (partition as usize) < t.partitions.len());
    if !known {
        return Err(ErrorCode::UnknownTopicOrPartition);
    }
    let owner = shard.owner_of(topic, partition);
    let topic: Arc<str> = Arc::from(topic);
    shard
        .submit_to(owner, move |owner_shard: Rc<Shard>| async move {
            let Some(found) = owner_shard.partition(&topic, partition) else {
                return Err(ErrorCode::NotLeaderOrFollower);
            };
            let offset = found
                .write_txn_marker(
                    producer_id,
                    producer_epoch,
                    coordinator_epoch,
                    commit,
                    &owner_shard.flusher,
                )
                .await
                .map_err(|e| e.code)?;
            found.wait_for_offset(offset).await.map_err(|e| e.code)?;
            if &*topic == crate::coordinator::group::OFFSETS_TOPIC {
                // The transaction's offsets (TxnOffsetCommit) become the group's, or go.
                owner_shard.groups.store.borrow_mut().complete_txn(
                    producer_id,
                    partition,
                    commit,
                    crate::event::now_ms(),
                );
            }
            Ok(offset)
        })
        .await
        .unwrap_or(Err(ErrorCode::NotLeaderOrFollower))
}
