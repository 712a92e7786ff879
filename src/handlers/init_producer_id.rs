//! InitProducerId (key 22), versions 0-5: a new producer id (epoch 0) for an idempotent
//! producer, from blocks the controller records in the metadata log (Kafka's ProducerIdsRecord),
//! so ids are never reused across restarts. Transactional ids are refused until the transaction
//! coordinator exists.

use super::{ApiSpec, HandlerError, Reply, Request};
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};
use crate::protocol::ApiKey;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::InitProducerId,
    min_version: 0,
    max_version: 5,
    advertised_min: 0,
    note:
        "idempotent producers; transactional ids refused (INVALID_REQUEST) until transactions land",
};

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: InitProducerIdRequest = request.decode()?;
    let response = if body.transactional_id.is_some() {
        InitProducerIdResponse {
            error_code: ErrorCode::InvalidRequest.code(),
            producer_id: -1,
            producer_epoch: -1,
            ..Default::default()
        }
    } else {
        let allocated = request
            .shard
            .with_controller(|_, controller| async move {
                controller.allocate_producer_id().await.map_err(|e| e.code)
            })
            .await
            .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable));
        match allocated {
            Ok(producer_id) => InitProducerIdResponse {
                error_code: 0,
                producer_id,
                producer_epoch: 0,
                ..Default::default()
            },
            Err(code) => InitProducerIdResponse {
                error_code: code.code(),
                producer_id: -1,
                producer_epoch: -1,
                ..Default::default()
            },
        }
    };
    request.respond(&response)
}
