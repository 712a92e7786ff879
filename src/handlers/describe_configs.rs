//! DescribeConfigs (key 32), versions 1-4: effective topic and broker configs with their source
//! (topic override, dynamic broker default, static broker setting, default), synonyms (v1+),
//! types and documentation (v3+), using Kafka's names and defaults.

use std::collections::BTreeMap;

use super::{ApiSpec, HandlerError, Reply, Request};
use crate::config::{self, resolve_topic_setting, BrokerConfig, ConfigSource, TOPIC_CONFIGS};
use crate::metadata::{MetadataImage, RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use crate::protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use crate::protocol::ApiKey;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::DescribeConfigs,
    min_version: 1,
    max_version: 4,
    advertised_min: 1,
    note: "supported (topics and the broker; synonyms, types, documentation)",
};

/// Every topic config with its effective value and source.
pub fn topic_config_entries(
    overrides: &BTreeMap<String, String>,
    dynamic_broker: &BTreeMap<String, String>,
    broker: &BrokerConfig,
) -> Vec<(&'static str, String, ConfigSource)> {
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let (value, source) = resolve_topic_setting(def, overrides, dynamic_broker, broker);
            (def.def.name, value.to_string(), source)
        })
        .collect()
}

/// Where a broker-level setting's value comes from.
fn broker_setting(
    name: &str,
    dynamic: &BTreeMap<String, String>,
    broker: &BrokerConfig,
) -> (String, ConfigSource) {
    if let Some(value) = dynamic.get(name) {
        (value.clone(), ConfigSource::DynamicDefaultBrokerConfig)
    } else if broker.is_set(name) {
        (
            broker.get(name).unwrap_or_default().to_string(),
            ConfigSource::StaticBrokerConfig,
        )
    } else {
        (
            broker.get(name).unwrap_or_default().to_string(),
            ConfigSource::DefaultConfig,
        )
    }
}

fn synonym(name: &str, value: &str, source: ConfigSource) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym {
        name: name.to_string(),
        value: Some(value.to_string()),
        source: source as i8,
        ..Default::default()
    }
}

fn describe_topic(
    image: &MetadataImage,
    broker: &BrokerConfig,
    name: &str,
    keys: Option<&Vec<String>>,
    synonyms: bool,
    docs: bool,
) -> Result<Vec<DescribeConfigsResourceResult>, (ErrorCode, String)> {
    let topic = image.topic(name).ok_or((
        ErrorCode::UnknownTopicOrPartition,
        format!("Topic '{name}' does not exist."),
    ))?;
    let wanted = |n: &str| keys.is_none_or(|k| k.iter().any(|x| x == n));
    Ok(TOPIC_CONFIGS
        .iter()
        .filter(|def| wanted(def.def.name))
        .map(|def| {
            let (value, source) =
                resolve_topic_setting(def, &topic.configs, &image.broker_configs, broker);
            let mut chain = Vec::new();
            if synonyms {
                if let Some(v) = topic.configs.get(def.def.name) {
                    chain.push(synonym(def.def.name, v, ConfigSource::TopicConfig));
                }
                if let Some(v) = image.broker_configs.get(def.broker_name) {
                    chain.push(synonym(
                        def.broker_name,
                        v,
                        ConfigSource::DynamicDefaultBrokerConfig,
                    ));
                }
                if broker.is_set(def.broker_name) {
                    chain.push(synonym(
                        def.broker_name,
                        broker.get(def.broker_name).unwrap_or_default(),
                        ConfigSource::StaticBrokerConfig,
                    ));
                }
                chain.push(synonym(
                    def.broker_name,
                    def.def.default,
                    ConfigSource::DefaultConfig,
                ));
            }
            DescribeConfigsResourceResult {
                name: def.def.name.to_string(),
                value: Some(value.to_string()),
                read_only: false,
                is_default: source == ConfigSource::DefaultConfig,
                config_source: source as i8,
                is_sensitive: false,
                synonyms: chain,
                config_type: def.def.kind as i8,
                documentation: docs.then(|| def.def.doc.to_string()),
                ..Default::default()
            }
        })
        .collect())
}

fn describe_broker(
    image: &MetadataImage,
    broker: &BrokerConfig,
    name: &str,
    keys: Option<&Vec<String>>,
    synonyms: bool,
    docs: bool,
) -> Result<Vec<DescribeConfigsResourceResult>, (ErrorCode, String)> {
    if !name.is_empty() && name != image.node_id.to_string() {
        return Err((
            ErrorCode::InvalidRequest,
            format!("broker '{name}' is not this broker ({})", image.node_id),
        ));
    }
    let wanted = |n: &str| keys.is_none_or(|k| k.iter().any(|x| x == n));
    Ok(broker
        .entries()
        .filter(|(n, _, _)| wanted(n))
        .filter_map(|(n, _, _)| config::broker_config_def(n).map(|def| (n, def)))
        .map(|(n, def)| {
            let (value, source) = broker_setting(n, &image.broker_configs, broker);
            DescribeConfigsResourceResult {
                name: n.to_string(),
                synonyms: if synonyms {
                    vec![synonym(n, &value, source)]
                } else {
                    Vec::new()
                },
                value: Some(value),
                read_only: !config::is_dynamic_broker_config(n),
                is_default: source == ConfigSource::DefaultConfig,
                config_source: source as i8,
                is_sensitive: false,
                config_type: def.kind as i8,
                documentation: docs.then(|| def.doc.to_string()),
                ..Default::default()
            }
        })
        .collect())
}

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: DescribeConfigsRequest = request.decode()?;
    let image = request.shard.metadata();
    let broker = &request.shard.broker;
    let results = body
        .resources
        .iter()
        .map(|resource| {
            let keys = resource.configuration_keys.as_ref();
            let described = match resource.resource_type {
                RESOURCE_TOPIC => describe_topic(
                    &image,
                    broker,
                    &resource.resource_name,
                    keys,
                    body.include_synonyms,
                    body.include_documentation,
                ),
                RESOURCE_BROKER => describe_broker(
                    &image,
                    broker,
                    &resource.resource_name,
                    keys,
                    body.include_synonyms,
                    body.include_documentation,
                ),
                other => Err((
                    ErrorCode::InvalidRequest,
                    format!("resource type {other} is not supported (2: topic, 4: broker)"),
                )),
            };
            match described {
                Ok(configs) => DescribeConfigsResult {
                    error_code: 0,
                    resource_type: resource.resource_type,
                    resource_name: resource.resource_name.clone(),
                    configs,
                    ..Default::default()
                },
                Err((code, message)) => DescribeConfigsResult {
                    error_code: code.code(),
                    error_message: Some(message),
                    resource_type: resource.resource_type,
                    resource_name: resource.resource_name.clone(),
                    ..Default::default()
                },
            }
        })
        .collect();
    request.respond(&DescribeConfigsResponse {
        results,
        ..Default::default()
    })
}
