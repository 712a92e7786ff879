//! Administrative requests as typed `Client` methods: Metadata, CreateTopics, DeleteTopics,
//! CreatePartitions, DescribeConfigs, IncrementalAlterConfigs (or AlterConfigs when the broker
//! lacks it), DescribeCluster (or Metadata when the broker lacks it).
//!
//! Each method works on one resource and turns that resource's error code into
//! `ClientError::Kafka`, so callers match on a code instead of digging through response arrays.
//! Requests are encoded at the negotiated version; a field the version cannot carry (say
//! `validate_only` on CreateTopics v0) fails locally instead of being dropped silently.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::error::{check, ClientError, KafkaError};
use super::{should_retry, Client, RETRY_ATTEMPTS, RETRY_BACKOFF};
use crate::protocol::messages::create_partitions_request::CreatePartitionsTopic;
use crate::protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use crate::protocol::messages::delete_topics_request::DeleteTopicState;
use crate::protocol::messages::describe_configs_request::DescribeConfigsResource;
use crate::protocol::messages::metadata_request::MetadataRequestTopic;
use crate::protocol::messages::metadata_response::MetadataResponseTopic;
use crate::protocol::messages::{
    alter_configs_request, incremental_alter_configs_request, AlterConfigsRequest,
    AlterConfigsResponse, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, DescribeClusterRequest,
    DescribeClusterResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, MetadataRequest,
    MetadataResponse,
};
use crate::protocol::{ApiKey, Uuid};

/// Kafka's ConfigResource types.
const RESOURCE_TYPE_TOPIC: i8 = 2;
const RESOURCE_TYPE_BROKER: i8 = 4;

/// A broker as Metadata or DescribeCluster lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl BrokerInfo {
    /// `host:port`, with an IPv6 host in brackets.
    pub fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    pub partition: i32,
    /// -1 when there is no leader.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline: Vec<i32>,
    pub error: Option<KafkaError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub name: String,
    pub id: Uuid,
    pub internal: bool,
    /// The topic's error (unknown topic, invalid name, leader not yet available, …).
    pub error: Option<KafkaError>,
    /// Sorted by partition index.
    pub partitions: Vec<PartitionMetadata>,
}

impl TopicMetadata {
    pub fn partition(&self, index: i32) -> Option<&PartitionMetadata> {
        self.partitions.iter().find(|p| p.partition == index)
    }

    pub fn partition_count(&self) -> i32 {
        i32::try_from(self.partitions.len()).unwrap_or(i32::MAX)
    }

    /// Replicas per partition (the largest, should partitions differ).
    pub fn replication_factor(&self) -> usize {
        self.partitions
            .iter()
            .map(|p| p.replicas.len())
            .max()
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMetadata {
    pub cluster_id: Option<String>,
    /// -1 when the broker does not say.
    pub controller_id: i32,
    pub brokers: Vec<BrokerInfo>,
    pub topics: Vec<TopicMetadata>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: Vec<BrokerInfo>,
}

/// A topic to create; `None` lets the broker choose (`num.partitions`,
/// `default.replication.factor`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    pub partitions: Option<i32>,
    pub replication_factor: Option<i16>,
    pub configs: Vec<(String, String)>,
}

/// What CreateTopics reported; the counts are -1 and `configs` empty before v5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedTopic {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: Vec<ConfigEntry>,
}

/// Something configs are attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigResource {
    Topic(String),
    /// A broker by node id; the empty name is the cluster-wide dynamic default.
    Broker(String),
}

impl ConfigResource {
    fn wire(&self) -> (i8, &str) {
        match self {
            ConfigResource::Topic(name) => (RESOURCE_TYPE_TOPIC, name),
            ConfigResource::Broker(name) => (RESOURCE_TYPE_BROKER, name),
        }
    }

    /// The source of values set on this resource itself (what AlterConfigs replaces).
    fn override_source(&self) -> ConfigSource {
        match self {
            ConfigResource::Topic(_) => ConfigSource::DynamicTopic,
            ConfigResource::Broker(name) if name.is_empty() => ConfigSource::DynamicDefaultBroker,
            ConfigResource::Broker(_) => ConfigSource::DynamicBroker,
        }
    }
}

impl fmt::Display for ConfigResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigResource::Topic(name) => write!(f, "topic '{name}'"),
            ConfigResource::Broker(name) if name.is_empty() => f.write_str("the broker defaults"),
            ConfigResource::Broker(name) => write!(f, "broker {name}"),
        }
    }
}

/// Where a config's effective value comes from (Kafka's `ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    Unknown,
    DynamicTopic,
    DynamicBroker,
    DynamicDefaultBroker,
    StaticBroker,
    Default,
    DynamicBrokerLogger,
    ClientMetrics,
    Group,
    Other(i8),
}

impl ConfigSource {
    pub fn from_wire(source: i8) -> ConfigSource {
        match source {
            -1 | 0 => ConfigSource::Unknown,
            1 => ConfigSource::DynamicTopic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            6 => ConfigSource::DynamicBrokerLogger,
            7 => ConfigSource::ClientMetrics,
            8 => ConfigSource::Group,
            other => ConfigSource::Other(other),
        }
    }

    /// Kafka's name, as `kafka-configs.sh --describe` prints it.
    pub fn name(self) -> &'static str {
        match self {
            ConfigSource::Unknown | ConfigSource::Other(_) => "UNKNOWN",
            ConfigSource::DynamicTopic => "DYNAMIC_TOPIC_CONFIG",
            ConfigSource::DynamicBroker => "DYNAMIC_BROKER_CONFIG",
            ConfigSource::DynamicDefaultBroker => "DYNAMIC_DEFAULT_BROKER_CONFIG",
            ConfigSource::StaticBroker => "STATIC_BROKER_CONFIG",
            ConfigSource::Default => "DEFAULT_CONFIG",
            ConfigSource::DynamicBrokerLogger => "DYNAMIC_BROKER_LOGGER_CONFIG",
            ConfigSource::ClientMetrics => "CLIENT_METRICS_CONFIG",
            ConfigSource::Group => "GROUP_CONFIG",
        }
    }

    /// A short human label: `topic`, `broker`, `broker default`, `static`, `default`.
    pub fn label(self) -> &'static str {
        match self {
            ConfigSource::Unknown | ConfigSource::Other(_) => "unknown",
            ConfigSource::DynamicTopic => "topic",
            ConfigSource::DynamicBroker => "broker",
            ConfigSource::DynamicDefaultBroker => "broker default",
            ConfigSource::StaticBroker => "static",
            ConfigSource::Default => "default",
            ConfigSource::DynamicBrokerLogger => "logger",
            ConfigSource::ClientMetrics => "client metrics",
            ConfigSource::Group => "group",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    /// `None` for sensitive values (and nulls).
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub sensitive: bool,
}

/// One change of IncrementalAlterConfigs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOp {
    Set(String),
    /// Remove the override: the value falls back to the broker's.
    Delete,
    /// Add items to a list config (e.g. `cleanup.policy`) unless already present.
    Append(String),
    /// Remove items from a list config.
    Subtract(String),
}

impl ConfigOp {
    /// IncrementalAlterConfigs' operation code.
    fn code(&self) -> i8 {
        match self {
            ConfigOp::Set(_) => 0,
            ConfigOp::Delete => 1,
            ConfigOp::Append(_) => 2,
            ConfigOp::Subtract(_) => 3,
        }
    }

    fn value(&self) -> Option<&str> {
        match self {
            ConfigOp::Set(value) | ConfigOp::Append(value) | ConfigOp::Subtract(value) => {
                Some(value)
            }
            ConfigOp::Delete => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    pub name: String,
    pub op: ConfigOp,
}

/// Applies `changes` to the current overrides the way IncrementalAlterConfigs would, for the
/// AlterConfigs fallback (which replaces the whole set). List operations start from the
/// override, or from the effective value in `effective` when there is none, as Kafka does.
pub fn apply_changes(
    overrides: &BTreeMap<String, String>,
    effective: &BTreeMap<String, String>,
    changes: &[ConfigChange],
) -> BTreeMap<String, String> {
    let mut result = overrides.clone();
    for change in changes {
        let base = || {
            result
                .get(&change.name)
                .or_else(|| effective.get(&change.name))
                .map(|value| list_items(value))
                .unwrap_or_default()
        };
        match &change.op {
            ConfigOp::Set(value) => {
                result.insert(change.name.clone(), value.clone());
            }
            ConfigOp::Delete => {
                result.remove(&change.name);
            }
            ConfigOp::Append(value) => {
                let mut items = base();
                for item in list_items(value) {
                    if !items.contains(&item) {
                        items.push(item);
                    }
                }
                result.insert(change.name.clone(), items.join(","));
            }
            ConfigOp::Subtract(value) => {
                let removed = list_items(value);
                let items: Vec<String> = base()
                    .into_iter()
                    .filter(|item| !removed.contains(item))
                    .collect();
                result.insert(change.name.clone(), items.join(","));
            }
        }
    }
    result
}

fn list_items(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

fn topic_from_response(topic: MetadataResponseTopic) -> TopicMetadata {
    let name = topic.name.unwrap_or_else(|| topic.topic_id.to_string());
    let error = (topic.error_code != 0)
        .then(|| KafkaError::new("Metadata", format!("topic '{name}'"), topic.error_code));
    let mut partitions: Vec<PartitionMetadata> = topic
        .partitions
        .into_iter()
        .map(|p| PartitionMetadata {
            partition: p.partition_index,
            leader: p.leader_id,
            leader_epoch: p.leader_epoch,
            error: (p.error_code != 0).then(|| {
                KafkaError::new(
                    "Metadata",
                    format!("topic '{name}' partition {}", p.partition_index),
                    p.error_code,
                )
            }),
            replicas: p.replica_nodes,
            isr: p.isr_nodes,
            offline: p.offline_replicas,
        })
        .collect();
    partitions.sort_by_key(|p| p.partition);
    TopicMetadata {
        name,
        id: topic.topic_id,
        internal: topic.is_internal,
        error,
        partitions,
    }
}

impl Client {
    fn timeout_ms(&self) -> i32 {
        i32::try_from(self.config.request_timeout.as_millis()).unwrap_or(i32::MAX)
    }

    /// Metadata for `topics` (`None`: every topic). Per-topic errors stay in the result.
    /// `allow_auto_create` needs Metadata v4+; older versions always let the broker create.
    pub fn metadata(
        &mut self,
        topics: Option<&[&str]>,
        allow_auto_create: bool,
    ) -> Result<ClusterMetadata, ClientError> {
        let key = ApiKey::Metadata;
        let version = self.bootstrap.version(key)?;
        let request = MetadataRequest {
            topics: topics.map(|names| {
                names
                    .iter()
                    .map(|name| MetadataRequestTopic {
                        name: Some((*name).to_string()),
                        ..MetadataRequestTopic::default()
                    })
                    .collect()
            }),
            allow_auto_topic_creation: allow_auto_create || version < 4,
            ..MetadataRequest::default()
        };
        let response: MetadataResponse =
            self.bootstrap
                .request(key, version, &request, Duration::ZERO)?;
        let metadata = ClusterMetadata {
            cluster_id: response.cluster_id,
            controller_id: response.controller_id,
            brokers: response
                .brokers
                .into_iter()
                .map(|b| BrokerInfo {
                    node_id: b.node_id,
                    host: b.host,
                    port: b.port,
                    rack: b.rack,
                })
                .collect(),
            topics: response
                .topics
                .into_iter()
                .map(topic_from_response)
                .collect(),
        };
        self.remember(&metadata);
        Ok(metadata)
    }

    /// Every topic, sorted by name.
    pub fn list_topics(&mut self) -> Result<Vec<TopicMetadata>, ClientError> {
        let mut topics = self.metadata(None, false)?.topics;
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// Metadata of one topic; its error code (unknown topic, …) becomes `Err`. A topic that
    /// was just created may report LEADER_NOT_AVAILABLE for a moment: that is retried.
    pub fn topic(
        &mut self,
        name: &str,
        allow_auto_create: bool,
    ) -> Result<TopicMetadata, ClientError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let found = self
                .metadata(Some(&[name]), allow_auto_create)?
                .topics
                .into_iter()
                .find(|t| t.name == name);
            let result = match found {
                None => Err(ClientError::Protocol {
                    address: self.bootstrap_address().to_string(),
                    api: ApiKey::Metadata.name(),
                    detail: format!("the response does not mention topic '{name}'"),
                }),
                Some(topic) => match topic.error.clone() {
                    Some(error) => Err(ClientError::Kafka(error)),
                    None => Ok(topic),
                },
            };
            match result {
                Err(error) if should_retry(&error) && attempt < RETRY_ATTEMPTS => {
                    std::thread::sleep(RETRY_BACKOFF * attempt);
                }
                other => return other,
            }
        }
    }

    pub fn create_topic(
        &mut self,
        topic: &NewTopic,
        validate_only: bool,
    ) -> Result<CreatedTopic, ClientError> {
        let key = ApiKey::CreateTopics;
        let version = self.bootstrap.version(key)?;
        let request = CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: topic.name.clone(),
                num_partitions: topic.partitions.unwrap_or(-1),
                replication_factor: topic.replication_factor.unwrap_or(-1),
                configs: topic
                    .configs
                    .iter()
                    .map(|(name, value)| CreatableTopicConfig {
                        name: name.clone(),
                        value: Some(value.clone()),
                        ..CreatableTopicConfig::default()
                    })
                    .collect(),
                ..CreatableTopic::default()
            }],
            timeout_ms: self.timeout_ms(),
            validate_only,
            ..CreateTopicsRequest::default()
        };
        // The broker may use all of `timeout_ms` before answering.
        let response: CreateTopicsResponse =
            self.bootstrap
                .request(key, version, &request, self.config.request_timeout)?;
        let result = response
            .topics
            .into_iter()
            .find(|t| t.name == topic.name)
            .ok_or_else(|| self.missing(key, &format!("topic '{}'", topic.name)))?;
        check(
            key.name(),
            || format!("topic '{}'", topic.name),
            result.error_code,
            result.error_message,
        )?;
        Ok(CreatedTopic {
            name: result.name,
            id: result.topic_id,
            partitions: result.num_partitions,
            replication_factor: result.replication_factor,
            configs: result
                .configs
                .unwrap_or_default()
                .into_iter()
                .map(|c| ConfigEntry {
                    name: c.name,
                    value: c.value,
                    source: ConfigSource::from_wire(c.config_source),
                    read_only: c.read_only,
                    sensitive: c.is_sensitive,
                })
                .collect(),
        })
    }

    pub fn delete_topic(&mut self, name: &str) -> Result<(), ClientError> {
        let key = ApiKey::DeleteTopics;
        let version = self.bootstrap.version(key)?;
        let mut request = DeleteTopicsRequest {
            timeout_ms: self.timeout_ms(),
            ..DeleteTopicsRequest::default()
        };
        // v6 names topics in structs (name or id); earlier versions in a list of names.
        if version >= 6 {
            request.topics = vec![DeleteTopicState {
                name: Some(name.to_string()),
                ..DeleteTopicState::default()
            }];
        } else {
            request.topic_names = vec![name.to_string()];
        }
        // The broker may use all of `timeout_ms` before answering.
        let response: DeleteTopicsResponse =
            self.bootstrap
                .request(key, version, &request, self.config.request_timeout)?;
        let result = response
            .responses
            .into_iter()
            .find(|r| r.name.as_deref() == Some(name))
            .ok_or_else(|| self.missing(key, &format!("topic '{name}'")))?;
        self.invalidate(name);
        check(
            key.name(),
            || format!("topic '{name}'"),
            result.error_code,
            result.error_message,
        )
    }

    /// Grows `name` to `total` partitions.
    pub fn create_partitions(
        &mut self,
        name: &str,
        total: i32,
        validate_only: bool,
    ) -> Result<(), ClientError> {
        let key = ApiKey::CreatePartitions;
        let version = self.bootstrap.version(key)?;
        let request = CreatePartitionsRequest {
            topics: vec![CreatePartitionsTopic {
                name: name.to_string(),
                count: total,
                assignments: None,
                ..CreatePartitionsTopic::default()
            }],
            timeout_ms: self.timeout_ms(),
            validate_only,
            ..CreatePartitionsRequest::default()
        };
        // The broker may use all of `timeout_ms` before answering.
        let response: CreatePartitionsResponse =
            self.bootstrap
                .request(key, version, &request, self.config.request_timeout)?;
        let result = response
            .results
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| self.missing(key, &format!("topic '{name}'")))?;
        self.invalidate(name);
        check(
            key.name(),
            || format!("topic '{name}'"),
            result.error_code,
            result.error_message,
        )
    }

    /// Effective configs of `resource` (`keys`: only these; `None`: all).
    pub fn describe_configs(
        &mut self,
        resource: &ConfigResource,
        keys: Option<&[&str]>,
    ) -> Result<Vec<ConfigEntry>, ClientError> {
        let key = ApiKey::DescribeConfigs;
        let version = self.bootstrap.version(key)?;
        let (resource_type, resource_name) = resource.wire();
        let request = DescribeConfigsRequest {
            resources: vec![DescribeConfigsResource {
                resource_type,
                resource_name: resource_name.to_string(),
                configuration_keys: keys
                    .map(|keys| keys.iter().map(|k| (*k).to_string()).collect()),
                ..DescribeConfigsResource::default()
            }],
            ..DescribeConfigsRequest::default()
        };
        let response: DescribeConfigsResponse =
            self.bootstrap
                .request(key, version, &request, Duration::ZERO)?;
        let result = response
            .results
            .into_iter()
            .find(|r| r.resource_type == resource_type && r.resource_name == resource_name)
            .ok_or_else(|| self.missing(key, &resource.to_string()))?;
        check(
            key.name(),
            || resource.to_string(),
            result.error_code,
            result.error_message,
        )?;
        Ok(result
            .configs
            .into_iter()
            .map(|c| ConfigEntry {
                source: if version == 0 {
                    // v0 has only a default flag.
                    if c.is_default {
                        ConfigSource::Default
                    } else {
                        ConfigSource::Unknown
                    }
                } else {
                    ConfigSource::from_wire(c.config_source)
                },
                name: c.name,
                value: c.value,
                read_only: c.read_only,
                sensitive: c.is_sensitive,
            })
            .collect())
    }

    /// Changes configs of `resource`: IncrementalAlterConfigs when the broker has it, else
    /// AlterConfigs with the current overrides and `changes` applied (which cannot keep
    /// sensitive overrides: the broker does not reveal their values).
    pub fn alter_configs(
        &mut self,
        resource: &ConfigResource,
        changes: &[ConfigChange],
        validate_only: bool,
    ) -> Result<(), ClientError> {
        if self
            .api_versions()
            .supports(ApiKey::IncrementalAlterConfigs)
            || !self.api_versions().supports(ApiKey::AlterConfigs)
        {
            self.incremental_alter_configs(resource, changes, validate_only)
        } else {
            self.replace_configs(resource, changes, validate_only)
        }
    }

    fn incremental_alter_configs(
        &mut self,
        resource: &ConfigResource,
        changes: &[ConfigChange],
        validate_only: bool,
    ) -> Result<(), ClientError> {
        use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
        let key = ApiKey::IncrementalAlterConfigs;
        let version = self.bootstrap.version(key)?;
        let (resource_type, resource_name) = resource.wire();
        let request = IncrementalAlterConfigsRequest {
            resources: vec![AlterConfigsResource {
                resource_type,
                resource_name: resource_name.to_string(),
                configs: changes
                    .iter()
                    .map(|change| AlterableConfig {
                        name: change.name.clone(),
                        config_operation: change.op.code(),
                        value: change.op.value().map(str::to_string),
                        ..AlterableConfig::default()
                    })
                    .collect(),
                ..AlterConfigsResource::default()
            }],
            validate_only,
            ..IncrementalAlterConfigsRequest::default()
        };
        let response: IncrementalAlterConfigsResponse =
            self.bootstrap
                .request(key, version, &request, Duration::ZERO)?;
        let result = response
            .responses
            .into_iter()
            .find(|r| r.resource_type == resource_type && r.resource_name == resource_name)
            .ok_or_else(|| self.missing(key, &resource.to_string()))?;
        check(
            key.name(),
            || resource.to_string(),
            result.error_code,
            result.error_message,
        )
    }

    fn replace_configs(
        &mut self,
        resource: &ConfigResource,
        changes: &[ConfigChange],
        validate_only: bool,
    ) -> Result<(), ClientError> {
        use alter_configs_request::{AlterConfigsResource, AlterableConfig};
        let entries = self.describe_configs(resource, None)?;
        let own = resource.override_source();
        let overrides: BTreeMap<String, String> = entries
            .iter()
            .filter(|entry| entry.source == own)
            .filter_map(|entry| Some((entry.name.clone(), entry.value.clone()?)))
            .collect();
        let effective: BTreeMap<String, String> = entries
            .into_iter()
            .filter_map(|entry| Some((entry.name, entry.value?)))
            .collect();
        let wanted = apply_changes(&overrides, &effective, changes);
        let key = ApiKey::AlterConfigs;
        let version = self.bootstrap.version(key)?;
        let (resource_type, resource_name) = resource.wire();
        let request = AlterConfigsRequest {
            resources: vec![AlterConfigsResource {
                resource_type,
                resource_name: resource_name.to_string(),
                configs: wanted
                    .into_iter()
                    .map(|(name, value)| AlterableConfig {
                        name,
                        value: Some(value),
                        ..AlterableConfig::default()
                    })
                    .collect(),
                ..AlterConfigsResource::default()
            }],
            validate_only,
            ..AlterConfigsRequest::default()
        };
        let response: AlterConfigsResponse =
            self.bootstrap
                .request(key, version, &request, Duration::ZERO)?;
        let result = response
            .responses
            .into_iter()
            .find(|r| r.resource_type == resource_type && r.resource_name == resource_name)
            .ok_or_else(|| self.missing(key, &resource.to_string()))?;
        check(
            key.name(),
            || resource.to_string(),
            result.error_code,
            result.error_message,
        )
    }

    /// Cluster id, controller and brokers: DescribeCluster, or Metadata on brokers without it.
    pub fn describe_cluster(&mut self) -> Result<ClusterInfo, ClientError> {
        let key = ApiKey::DescribeCluster;
        if !self.api_versions().supports(key) {
            let metadata = self.metadata(Some(&[]), false)?;
            return Ok(ClusterInfo {
                cluster_id: metadata.cluster_id,
                controller_id: metadata.controller_id,
                brokers: metadata.brokers,
            });
        }
        let version = self.bootstrap.version(key)?;
        let response: DescribeClusterResponse = self.bootstrap.request(
            key,
            version,
            &DescribeClusterRequest::default(),
            Duration::ZERO,
        )?;
        check(
            key.name(),
            || "the cluster".to_string(),
            response.error_code,
            response.error_message,
        )?;
        Ok(ClusterInfo {
            cluster_id: Some(response.cluster_id),
            controller_id: response.controller_id,
            brokers: response
                .brokers
                .into_iter()
                .map(|b| BrokerInfo {
                    node_id: b.broker_id,
                    host: b.host,
                    port: b.port,
                    rack: b.rack,
                })
                .collect(),
        })
    }

    /// A response that leaves out the resource asked about.
    pub(crate) fn missing(&self, key: ApiKey, resource: &str) -> ClientError {
        ClientError::Protocol {
            address: self.bootstrap_address().to_string(),
            api: key.name(),
            detail: format!("the response does not mention {resource}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    fn change(name: &str, op: ConfigOp) -> ConfigChange {
        ConfigChange {
            name: name.into(),
            op,
        }
    }

    #[test]
    fn set_and_delete_replace_overrides() {
        let overrides = map(&[("retention.ms", "1000"), ("segment.bytes", "1048576")]);
        let result = apply_changes(
            &overrides,
            &BTreeMap::new(),
            &[
                change("retention.ms", ConfigOp::Set("2000".into())),
                change("segment.bytes", ConfigOp::Delete),
                change("min.insync.replicas", ConfigOp::Set("1".into())),
            ],
        );
        assert_eq!(
            result,
            map(&[("min.insync.replicas", "1"), ("retention.ms", "2000")])
        );
    }

    #[test]
    fn list_operations_start_from_the_effective_value() {
        let effective = map(&[("cleanup.policy", "delete")]);
        let appended = apply_changes(
            &BTreeMap::new(),
            &effective,
            &[change(
                "cleanup.policy",
                ConfigOp::Append("compact,delete".into()),
            )],
        );
        assert_eq!(appended, map(&[("cleanup.policy", "delete,compact")]));
        let subtracted = apply_changes(
            &appended,
            &effective,
            &[change(
                "cleanup.policy",
                ConfigOp::Subtract("delete".into()),
            )],
        );
        assert_eq!(subtracted, map(&[("cleanup.policy", "compact")]));
    }

    #[test]
    fn config_sources_keep_kafka_names() {
        assert_eq!(ConfigSource::from_wire(1).name(), "DYNAMIC_TOPIC_CONFIG");
        assert_eq!(ConfigSource::from_wire(5).label(), "default");
        assert_eq!(ConfigSource::from_wire(-1), ConfigSource::Unknown);
        assert_eq!(ConfigSource::from_wire(42), ConfigSource::Other(42));
    }

    #[test]
    fn ipv6_broker_addresses_get_brackets() {
        let broker = BrokerInfo {
            node_id: 1,
            host: "::1".into(),
            port: 9092,
            rack: None,
        };
        assert_eq!(broker.address(), "[::1]:9092");
    }
}
