//! AlterConfigs (key 33, versions 0-2: replaces a resource's overrides) and
//! IncrementalAlterConfigs (key 44, versions 0-1: SET, DELETE, APPEND, SUBTRACT per key) for
//! topics and the broker's dynamic defaults. Changes go through the controller and reach every
//! partition before the response; `validate_only` changes nothing.

use super::topics::change_metadata;
use super::{ApiSpec, HandlerError, Reply, Request};
use crate::metadata::controller::{plan_broker_configs, plan_topic_configs, ApiError, ConfigOp};
use crate::metadata::{RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::{alter_configs_response, incremental_alter_configs_response};
use crate::protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use crate::protocol::ApiKey;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::AlterConfigs,
    min_version: 0,
    max_version: 2,
    advertised_min: 0,
    note: "supported (topics, broker dynamic defaults)",
};
pub const INCREMENTAL_SPEC: ApiSpec = ApiSpec {
    key: ApiKey::IncrementalAlterConfigs,
    min_version: 0,
    max_version: 1,
    advertised_min: 0,
    note: "supported (SET, DELETE, APPEND, SUBTRACT)",
};

/// One resource's requested change.
#[derive(Clone)]
struct Change {
    resource_type: i8,
    resource_name: String,
    ops: Result<Vec<(String, ConfigOp)>, ApiError>,
}

pub async fn handle(request: Request, incremental: bool) -> Result<Reply, HandlerError> {
    let (changes, validate_only) = if incremental {
        let body: IncrementalAlterConfigsRequest = request.decode()?;
        let changes = body
            .resources
            .into_iter()
            .map(|r| Change {
                resource_type: r.resource_type,
                resource_name: r.resource_name,
                ops: r
                    .configs
                    .into_iter()
                    .map(|c| {
                        let value = c.value.unwrap_or_default();
                        match c.config_operation {
                            0 => Ok((c.name, ConfigOp::Set(value))),
                            1 => Ok((c.name, ConfigOp::Delete)),
                            2 => Ok((c.name, ConfigOp::Append(value))),
                            3 => Ok((c.name, ConfigOp::Subtract(value))),
                            other => Err(ApiError::new(
                                ErrorCode::InvalidRequest,
                                format!("unknown config operation {other} for {}", c.name),
                            )),
                        }
                    })
                    .collect(),
            })
            .collect::<Vec<_>>();
        (changes, body.validate_only)
    } else {
        let body: AlterConfigsRequest = request.decode()?;
        let changes = body
            .resources
            .into_iter()
            .map(|r| Change {
                resource_type: r.resource_type,
                resource_name: r.resource_name,
                ops: Ok(r
                    .configs
                    .into_iter()
                    .map(|c| {
                        (
                            c.name,
                            c.value.map(ConfigOp::Set).unwrap_or(ConfigOp::Delete),
                        )
                    })
                    .collect()),
            })
            .collect::<Vec<_>>();
        (changes, body.validate_only)
    };
    let node_id = request.shard.metadata().node_id.to_string();
    let outcomes = change_metadata(
        &request.shard,
        changes.clone(),
        validate_only,
        move |image, _, change: &Change| {
            let ops = change.ops.clone()?;
            let records = match change.resource_type {
                RESOURCE_TOPIC => {
                    plan_topic_configs(image, &change.resource_name, &ops, incremental)?
                }
                RESOURCE_BROKER
                    if change.resource_name.is_empty() || change.resource_name == node_id =>
                {
                    plan_broker_configs(image, &ops, incremental)?
                }
                RESOURCE_BROKER => {
                    return Err(ApiError::new(
                        ErrorCode::InvalidRequest,
                        format!("broker '{}' is not this broker", change.resource_name),
                    ));
                }
                other => {
                    return Err(ApiError::new(
                        ErrorCode::InvalidRequest,
                        format!("resource type {other} is not supported (2: topic, 4: broker)"),
                    ))
                }
            };
            Ok((records, ()))
        },
    )
    .await;
    let results: Vec<(i16, Option<String>, i8, String)> = changes
        .into_iter()
        .zip(outcomes)
        .map(|(change, outcome)| match outcome {
            Ok(()) => (0, None, change.resource_type, change.resource_name),
            Err(error) => (
                error.code.code(),
                Some(error.message),
                change.resource_type,
                change.resource_name,
            ),
        })
        .collect();
    if incremental {
        let responses = results
            .into_iter()
            .map(
                |(error_code, error_message, resource_type, resource_name)| {
                    incremental_alter_configs_response::AlterConfigsResourceResponse {
                        error_code,
                        error_message,
                        resource_type,
                        resource_name,
                        ..Default::default()
                    }
                },
            )
            .collect();
        request.respond(&IncrementalAlterConfigsResponse {
            responses,
            ..Default::default()
        })
    } else {
        let responses = results
            .into_iter()
            .map(
                |(error_code, error_message, resource_type, resource_name)| {
                    alter_configs_response::AlterConfigsResourceResponse {
                        error_code,
                        error_message,
                        resource_type,
                        resource_name,
                        ..Default::default()
                    }
                },
            )
            .collect();
        request.respond(&AlterConfigsResponse {
            responses,
            ..Default::default()
        })
    }
}
