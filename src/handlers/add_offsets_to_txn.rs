//! AddOffsetsToTxn (key 25), versions 0-3: the group's `__consumer_offsets` partition joins the
//! producer's transaction, so the offsets it then commits with TxnOffsetCommit become visible
//! with the transaction's COMMIT marker (`send_offsets_to_transaction`).

use super::find_coordinator::ensure_offsets_topic;
use super::{ApiSpec, HandlerError, Reply, Request};
use crate::coordinator::group::OFFSETS_TOPIC;
use crate::coordinator::transaction::TxnPartitions;
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use crate::protocol::ApiKey;
use crate::shard::{group_coordinator, txn_coordinator};

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::AddOffsetsToTxn,
    min_version: 0,
    max_version: 3,
    advertised_min: 0,
    note: "supported",
};

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: AddOffsetsToTxnRequest = request.decode()?;
    let shard = request.shard.clone();
    let outcome = async {
        ensure_offsets_topic(&shard).await?;
        let partition = group_coordinator::coordinator_partition(&shard.metadata(), &body.group_id)
            .ok_or(ErrorCode::CoordinatorNotAvailable)?;
        let mut partitions = TxnPartitions::new();
        partitions
            .entry(OFFSETS_TOPIC.to_string())
            .or_default()
            .insert(partition);
        txn_coordinator::add_partitions(
            &shard,
            body.transactional_id.clone(),
            body.producer_id,
            body.producer_epoch,
            partitions,
        )
        .await
    }
    .await;
    let error = match outcome {
        Ok(()) => ErrorCode::None,
        Err(error) => txn_coordinator::fenced_for_version(error, request.version, 2),
    };
    request.respond(&AddOffsetsToTxnResponse {
        error_code: error.code(),
        ..Default::default()
    })
}
