//! CreatePartitions (key 37), versions 0-3: grows a topic to a new partition count. Reducing is
//! refused with INVALID_PARTITIONS and a message that says partitions cannot be removed.

use super::topics::change_metadata;
use super::{ApiSpec, HandlerError, Reply, Request};
use crate::metadata::controller::plan_create_partitions;
use crate::protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use crate::protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use crate::protocol::ApiKey;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::CreatePartitions,
    min_version: 0,
    max_version: 3,
    advertised_min: 0,
    note: "supported (grow only; validate_only)",
};

/// (topic, new partition count, manual assignments of the new partitions).
type GrowRequest = (String, i32, Vec<(i32, Vec<i32>)>);

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: CreatePartitionsRequest = request.decode()?;
    let shard = request.shard.clone();
    let items: Vec<GrowRequest> = body
        .topics
        .iter()
        .map(|t| {
            let assignments = t
                .assignments
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, a)| (i as i32, a.broker_ids.clone()))
                .collect();
            (t.name.clone(), t.count, assignments)
        })
        .collect();
    let outcomes = change_metadata(
        &shard,
        items.clone(),
        body.validate_only,
        |image, broker, (name, count, assignments)| {
            let current = image
                .topic(name)
                .map(|t| t.partitions.len() as i32)
                .unwrap_or(0);
            let shifted: Vec<(i32, Vec<i32>)> = assignments
                .iter()
                .map(|(i, b)| (current + i, b.clone()))
                .collect();
            plan_create_partitions(image, broker, name, *count, &shifted)
                .map(|records| (records, ()))
        },
    )
    .await;
    let results = items
        .into_iter()
        .zip(outcomes)
        .map(|((name, _, _), outcome)| match outcome {
            Ok(()) => CreatePartitionsTopicResult {
                name,
                error_code: 0,
                error_message: None,
                ..Default::default()
            },
            Err(error) => CreatePartitionsTopicResult {
                name,
                error_code: error.code.code(),
                error_message: Some(error.message),
                ..Default::default()
            },
        })
        .collect();
    request.respond(&CreatePartitionsResponse {
        results,
        ..Default::default()
    })
}
