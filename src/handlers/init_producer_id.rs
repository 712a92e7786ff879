//! InitProducerId (key 22), versions 0-5. Without a transactional id: a new producer id (epoch
//! 0) for an idempotent producer, from blocks the controller records in the metadata log (Kafka's
//! ProducerIdsRecord), so ids are never reused across restarts. With one: the transaction
//! coordinator's answer for the id — its producer id with the epoch bumped, which fences every
//! older producer of the id (an open transaction of theirs is aborted first, and the client is
//! told CONCURRENT_TRANSACTIONS to retry). v3+ may carry the producer's current id and epoch
//! (KIP-360) to keep them across a recoverable error.

use super::find_coordinator::ensure_transaction_topic;
use super::{ApiSpec, HandlerError, Reply, Request};
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};
use crate::protocol::ApiKey;
use crate::shard::txn_coordinator;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::InitProducerId,
    min_version: 0,
    max_version: 5,
    advertised_min: 0,
    note: "idempotent and transactional producers (epoch bumps, fencing, KIP-360 expected id/epoch)",
};

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: InitProducerIdRequest = request.decode()?;
    let shard = request.shard.clone();
    let outcome = match body.transactional_id {
        Some(id) if !id.is_empty() => {
            let max = shard.broker.transaction_max_timeout_ms();
            if body.transaction_timeout_ms <= 0 || body.transaction_timeout_ms > max {
                Err(ErrorCode::InvalidTransactionTimeout)
            } else {
                let expected = (body.producer_id >= 0 && body.producer_epoch >= 0)
                    .then_some((body.producer_id, body.producer_epoch));
                match ensure_transaction_topic(&shard).await {
                    Ok(()) => {
                        txn_coordinator::init_producer_id(
                            &shard,
                            id,
                            body.transaction_timeout_ms,
                            expected,
                        )
                        .await
                    }
                    Err(error) => Err(error),
                }
            }
        }
        _ => shard
            .with_controller(|_, controller| async move {
                controller.allocate_producer_id().await.map_err(|e| e.code)
            })
            .await
            .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable))
            .map(|producer_id| (producer_id, 0)),
    };
    let response = match outcome {
        Ok((producer_id, producer_epoch)) => InitProducerIdResponse {
            error_code: 0,
            producer_id,
            producer_epoch,
            ..Default::default()
        },
        Err(code) => InitProducerIdResponse {
            error_code: txn_coordinator::fenced_for_version(code, request.version, 4).code(),
            producer_id: -1,
            producer_epoch: -1,
            ..Default::default()
        },
    };
    request.respond(&response)
}
