//! Cluster metadata: Kafka's metadata records (TopicRecord, PartitionRecord, ConfigRecord,
//! RemoveTopicRecord, ProducerIdsRecord), the immutable [`MetadataImage`] they build, and the
//! controller that appends them to the `__cluster_metadata` log.
//!
//! State changes only by appending records and replaying them: the controller (on shard 0) writes
//! records, fsyncs, applies them to a copy of the image and publishes the new `Arc` image to every
//! shard; startup rebuilds the same image by replaying the log. Shards read their own `Arc`
//! without locks.

pub mod controller;
pub mod records;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::config::{BrokerConfig, TopicConfig};
use crate::protocol::Uuid;
pub use records::MetadataRecord;

/// Kafka's ConfigResource types.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

#[derive(Clone, Debug, PartialEq)]
pub struct PartitionImage {
    pub index: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TopicImage {
    pub name: Arc<str>,
    pub id: Uuid,
    pub partitions: Vec<PartitionImage>,
    /// Topic-level overrides only (defaults are resolved through the broker config).
    pub configs: BTreeMap<String, String>,
}

impl TopicImage {
    pub fn is_internal(&self) -> bool {
        is_internal_topic(&self.name)
    }
}

pub fn is_internal_topic(name: &str) -> bool {
    name == "__consumer_offsets" || name == "__transaction_state"
}

/// The metadata every shard holds a pointer to. Cloned only by the controller when it applies
/// new records.
#[derive(Clone, Debug, Default)]
pub struct MetadataImage {
    pub cluster_id: String,
    pub node_id: i32,
    pub topics: BTreeMap<Arc<str>, Arc<TopicImage>>,
    pub topic_names: HashMap<Uuid, Arc<str>>,
    /// Dynamic cluster-wide broker defaults (AlterConfigs on the broker resource).
    pub broker_configs: BTreeMap<String, String>,
    /// Next producer id the controller hands out (ProducerIdsRecord blocks).
    pub next_producer_id: i64,
    /// Offset of the last record applied.
    pub offset: i64,
}

impl MetadataImage {
    pub fn new(cluster_id: String, node_id: i32) -> MetadataImage {
        MetadataImage {
            cluster_id,
            node_id,
            offset: -1,
            ..Default::default()
        }
    }

    pub fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&Arc<TopicImage>> {
        self.topic_names
            .get(id)
            .and_then(|name| self.topics.get(name))
    }

    /// Typed settings of a topic, resolved through the override chain.
    pub fn topic_config(&self, topic: &TopicImage, broker: &BrokerConfig) -> TopicConfig {
        TopicConfig::resolve(&topic.configs, &self.broker_configs, broker)
    }

    /// Applies one record (replay). Records that do not fit the image (a partition of an unknown
    /// topic, say) are ignored, as Kafka's image builder does with records it cannot place.
    pub fn apply(&mut self, record: &MetadataRecord) {
        match record {
            MetadataRecord::Topic { name, id } => {
                let name: Arc<str> = Arc::from(name.as_str());
                self.topic_names.insert(*id, name.clone());
                self.topics.insert(
                    name.clone(),
                    Arc::new(TopicImage {
                        name,
                        id: *id,
                        partitions: Vec::new(),
                        configs: BTreeMap::new(),
                    }),
                );
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                leader,
                leader_epoch,
                replicas,
            } => {
                if let Some(topic) = self.topic_mut(topic_id) {
                    let image = PartitionImage {
                        index: *partition,
                        leader: *leader,
                        leader_epoch: *leader_epoch,
                        replicas: replicas.clone(),
                    };
                    match topic
                        .partitions
                        .binary_search_by_key(partition, |p| p.index)
                    {
                        Ok(position) => topic.partitions[position] = image,
                        Err(position) => topic.partitions.insert(position, image),
                    }
                }
            }
            MetadataRecord::Config {
                resource_type,
                resource_name,
                name,
                value,
            } => match *resource_type {
                RESOURCE_TOPIC => {
                    let Some(id) = self.topics.get(resource_name.as_str()).map(|t| t.id) else {
                        return;
                    };
                    if let Some(topic) = self.topic_mut(&id) {
                        match value {
                            Some(value) => topic.configs.insert(name.clone(), value.clone()),
                            None => topic.configs.remove(name),
                        };
                    }
                }
                RESOURCE_BROKER => {
                    match value {
                        Some(value) => self.broker_configs.insert(name.clone(), value.clone()),
                        None => self.broker_configs.remove(name),
                    };
                }
                _ => {}
            },
            MetadataRecord::RemoveTopic { topic_id } => {
                if let Some(name) = self.topic_names.remove(topic_id) {
                    self.topics.remove(&name);
                }
            }
            MetadataRecord::ProducerIds { next_producer_id } => {
                self.next_producer_id = self.next_producer_id.max(*next_producer_id);
            }
        }
    }

    fn topic_mut(&mut self, id: &Uuid) -> Option<&mut TopicImage> {
        let name = self.topic_names.get(id)?;
        self.topics.get_mut(name).map(Arc::make_mut)
    }
}

/// Kafka's topic name rules (`org.apache.kafka.common.internals.Topic.validate`).
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return Err("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > 249 {
        return Err(format!(
            "Topic name is illegal, it can't be longer than 249 characters, topic name: {name}"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// A random (version 4) UUID that is not zero and not Kafka's reserved METADATA_TOPIC_ID (1).
pub fn random_uuid() -> Uuid {
    loop {
        let mut bytes = [0u8; 16];
        fastrand::fill(&mut bytes);
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let uuid = Uuid(bytes);
        if uuid.to_string().starts_with('-') {
            continue; // Kafka avoids ids whose string form starts with '-' (CLI parsing)
        }
        return uuid;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_eu-west").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("has space").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
    }

    #[test]
    fn random_uuids_are_version_4_and_print_as_kafka_does() {
        let uuid = random_uuid();
        assert_eq!(uuid.0[6] >> 4, 4);
        assert_eq!(uuid.to_string().len(), 22);
        assert!(!uuid.to_string().starts_with('-'));
    }

    #[test]
    fn replay_builds_topics_configs_and_removals() {
        let mut image = MetadataImage::new("c".into(), 1);
        let id = random_uuid();
        image.apply(&MetadataRecord::Topic {
            name: "t".into(),
            id,
        });
        for p in 0..3 {
            image.apply(&MetadataRecord::Partition {
                topic_id: id,
                partition: p,
                leader: 1,
                leader_epoch: 0,
                replicas: vec![1],
            });
        }
        image.apply(&MetadataRecord::Config {
            resource_type: RESOURCE_TOPIC,
            resource_name: "t".into(),
            name: "retention.ms".into(),
            value: Some("5".into()),
        });
        assert_eq!(image.topic("t").unwrap().partitions.len(), 3);
        assert_eq!(
            image
                .topic("t")
                .unwrap()
                .configs
                .get("retention.ms")
                .map(String::as_str),
            Some("5")
        );
        image.apply(&MetadataRecord::Config {
            resource_type: RESOURCE_TOPIC,
            resource_name: "t".into(),
            name: "retention.ms".into(),
            value: None,
        });
        assert!(image.topic("t").unwrap().configs.is_empty());
        image.apply(&MetadataRecord::RemoveTopic { topic_id: id });
        assert!(image.topic("t").is_none());
        assert!(image.topic_by_id(&id).is_none());
    }
}
