//! EndTxn (key 26), versions 0-4: commit or abort the producer's transaction. The answer comes
//! once the decision (PrepareCommit / PrepareAbort) is durable in `__transaction_state`; the
//! markers are then written to every partition of the transaction in the background, and the
//! id takes no new transaction (CONCURRENT_TRANSACTIONS) until they all are. A retry of a
//! decision already carried out succeeds.

use super::{ApiSpec, HandlerError, Reply, Request};
use crate::protocol::messages::{EndTxnRequest, EndTxnResponse};
use crate::protocol::ApiKey;
use crate::shard::txn_coordinator;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::EndTxn,
    min_version: 0,
    max_version: 4,
    advertised_min: 0,
    note: "supported (answered once the decision is durable; markers follow)",
};

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: EndTxnRequest = request.decode()?;
    let outcome = txn_coordinator::end_txn(
        &request.shard,
        body.transactional_id.clone(),
        body.producer_id,
        body.producer_epoch,
        body.committed,
    )
    .await;
    let error = match outcome {
        Ok(()) => crate::protocol::error::ErrorCode::None,
        Err(error) => txn_coordinator::fenced_for_version(error, request.version, 2),
    };
    request.respond(&EndTxnResponse {
        error_code: error.code(),
        producer_id: -1,
        producer_epoch: -1,
        ..Default::default()
    })
}
