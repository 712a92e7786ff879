//! CreateTopics (key 19), versions 2-7: creates topics with a partition count (or manual
//! assignment) and configs through the controller. Errors as Kafka gives them:
//! TOPIC_ALREADY_EXISTS, INVALID_PARTITIONS, INVALID_REPLICATION_FACTOR, INVALID_CONFIG,
//! INVALID_TOPIC_EXCEPTION; `validate_only` checks everything and creates nothing. v5+ responses
//! carry the topic id, partition count and effective configs.

use std::collections::BTreeMap;

use super::describe_configs::topic_config_entries;
use super::topics;
use super::{ApiSpec, HandlerError, Reply, Request};
use crate::metadata::controller::CreateTopicSpec;
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use crate::protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use crate::protocol::ApiKey;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::CreateTopics,
    min_version: 2,
    max_version: 7,
    advertised_min: 2,
    note: "supported (partitions, assignments, configs, validate_only)",
};

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: CreateTopicsRequest = request.decode()?;
    let shard = request.shard.clone();
    let mut seen = std::collections::HashSet::new();
    let duplicates: std::collections::HashSet<String> = body
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.clone()))
        .map(|t| t.name.clone())
        .collect();
    let specs: Vec<CreateTopicSpec> = body
        .topics
        .iter()
        .filter(|t| !duplicates.contains(&t.name))
        .map(|t| CreateTopicSpec {
            name: t.name.clone(),
            num_partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignments: t
                .assignments
                .iter()
                .map(|a| (a.partition_index, a.broker_ids.clone()))
                .collect(),
            configs: t
                .configs
                .iter()
                .map(|c| (c.name.clone(), c.value.clone()))
                .collect(),
        })
        .collect();
    let outcomes = topics::create_topics(&shard, specs.clone(), body.validate_only).await;
    let image = shard.metadata();
    let mut results: Vec<CreatableTopicResult> = specs
        .iter()
        .zip(outcomes)
        .map(|(spec, outcome)| match outcome {
            Ok(created) => {
                let overrides: BTreeMap<String, String> = spec
                    .configs
                    .iter()
                    .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
                    .collect();
                let configs =
                    topic_config_entries(&overrides, &image.broker_configs, &shard.broker)
                        .into_iter()
                        .map(|(name, value, source)| CreatableTopicConfigs {
                            name: name.to_string(),
                            value: Some(value),
                            read_only: false,
                            config_source: source as i8,
                            is_sensitive: false,
                            ..Default::default()
                        })
                        .collect();
                CreatableTopicResult {
                    name: spec.name.clone(),
                    topic_id: created.id,
                    error_code: 0,
                    num_partitions: created.partitions,
                    replication_factor: 1,
                    configs: Some(configs),
                    ..Default::default()
                }
            }
            Err(error) => failed(&spec.name, error.code, error.message),
        })
        .collect();
    for name in duplicates {
        results.push(failed(
            &name,
            ErrorCode::InvalidRequest,
            format!("Create topics request from client contains a duplicate topic: {name}"),
        ));
    }
    request.respond(&CreateTopicsResponse {
        topics: results,
        ..Default::default()
    })
}

fn failed(name: &str, code: ErrorCode, message: String) -> CreatableTopicResult {
    CreatableTopicResult {
        name: name.to_string(),
        error_code: code.code(),
        error_message: Some(message),
        num_partitions: -1,
        replication_factor: -1,
        configs: None,
        ..Default::default()
    }
}
