//! A small blocking Kafka client on `std::net::TcpStream`, for Weir's command-line tools (and
//! anything else that wants a few requests without an async runtime or librdkafka).
//!
//! - `connection`: one socket, the ApiVersions handshake, framed request/response exchanges.
//! - `versions`: pure ApiVersions negotiation (highest version both sides speak).
//! - `admin`: Metadata, CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
//!   IncrementalAlterConfigs (AlterConfigs fallback), DescribeCluster (Metadata fallback).
//! - `produce`: Produce requests, and `Producer`, which partitions and batches records.
//! - `partitioner`: Kafka's default partitioner (murmur2 for keys, sticky for null keys).
//! - `fetch`: ListOffsets, Fetch, and decoding fetched batches into records.
//! - `error`: `ClientError` and `KafkaError` (an error code with its name and message).
//!
//! A `Client` owns the bootstrap connection plus one connection per other broker it has had to
//! talk to. Admin requests go to the bootstrap broker (KRaft brokers forward them); Produce,
//! Fetch and ListOffsets go to each partition's leader, found through cached topic metadata
//! that is refreshed when a broker says the leader moved. With a single broker in the cluster
//! the bootstrap connection is that broker, so no second connection is made (and an advertised
//! address that is not reachable from here does not matter).
//!
//! Nothing here panics on what a broker sends: malformed or unexpected responses are
//! `ClientError::Protocol`, oversized frames are refused before buffering, every wait is
//! bounded by `ClientConfig`.

pub mod admin;
pub mod connection;
pub mod error;
pub mod fetch;
pub mod groups;
pub mod partitioner;
pub mod produce;
pub mod transactions;
pub mod versions;

#[cfg(test)]
mod tests;

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

pub use admin::{
    BrokerInfo, ClusterInfo, ClusterMetadata, ConfigChange, ConfigEntry, ConfigOp, ConfigResource,
    ConfigSource, CreatedTopic, NewTopic, PartitionMetadata, TopicMetadata,
};
pub use connection::Connection;
pub use error::{ClientError, KafkaError};
pub use fetch::{ConsumedRecord, FetchOptions, FetchedPartition, ListedOffset, OffsetSpec};
pub use partitioner::Partitioner;
pub use produce::{Acks, Delivery, OutgoingRecord, ProduceAck, Producer, ProducerConfig};
pub use versions::ApiVersions;

use crate::protocol::ErrorCode;

/// Largest response frame accepted by default: above Kafka's default `fetch.max.bytes`
/// (50 MiB) plus the response's own overhead.
pub const RESPONSE_BYTES_MAX_DEFAULT: usize = 64 * 1024 * 1024;

/// Attempts for a request whose partitions answer with a retriable error (leader moved, not
/// available yet), refreshing metadata in between.
pub const RETRY_ATTEMPTS: u32 = 5;

/// Pause before retry `n` is `n` times this.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// Connection settings and limits.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Sent in every request header; brokers log it.
    pub client_id: String,
    pub connect_timeout: Duration,
    /// How long a broker has to answer, on top of any wait the request itself asks for.
    pub request_timeout: Duration,
    /// Response frames larger than this are refused (and the connection closed).
    pub response_bytes_max: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            client_id: "weir-cli".into(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            response_bytes_max: RESPONSE_BYTES_MAX_DEFAULT,
        }
    }
}

pub struct Client {
    config: ClientConfig,
    bootstrap: Connection,
    /// `host:port` of every broker in the latest metadata, by node id.
    brokers: BTreeMap<i32, String>,
    /// Connections to brokers other than the bootstrap one, opened on first use.
    connections: BTreeMap<i32, Connection>,
    /// Partition leaders by topic, from the latest metadata that named the topic.
    topics: HashMap<String, TopicMetadata>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bootstrap", &self.bootstrap)
            .field("brokers", &self.brokers)
            .finish()
    }
}

impl Client {
    /// Connects to the first reachable address of `bootstrap` (`HOST:PORT`, comma-separated
    /// for several) with default settings.
    pub fn connect(bootstrap: &str) -> Result<Client, ClientError> {
        Client::connect_with(bootstrap, ClientConfig::default())
    }

    pub fn connect_with(bootstrap: &str, config: ClientConfig) -> Result<Client, ClientError> {
        let mut last_error = None;
        for address in bootstrap.split(',').map(str::trim) {
            match Connection::open(address, &config) {
                Ok(connection) => {
                    return Ok(Client {
                        config,
                        bootstrap: connection,
                        brokers: BTreeMap::new(),
                        connections: BTreeMap::new(),
                        topics: HashMap::new(),
                    })
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| ClientError::Address {
            address: bootstrap.to_string(),
            reason: "no address given".into(),
        }))
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The address the client bootstrapped from.
    pub fn bootstrap_address(&self) -> &str {
        self.bootstrap.address()
    }

    /// Versions negotiated with the bootstrap broker.
    pub fn api_versions(&self) -> &ApiVersions {
        self.bootstrap.versions()
    }

    /// The bootstrap connection, for requests any broker can answer.
    pub fn any_broker(&mut self) -> &mut Connection {
        &mut self.bootstrap
    }

    /// The connection to broker `node`, opened if needed. The bootstrap connection stands in
    /// when the cluster has one broker or the node is not in the metadata.
    pub fn broker(&mut self, node: i32) -> Result<&mut Connection, ClientError> {
        if self.brokers.len() <= 1 {
            return Ok(&mut self.bootstrap);
        }
        let Some(address) = self.brokers.get(&node) else {
            return Ok(&mut self.bootstrap);
        };
        match self.connections.entry(node) {
            Entry::Occupied(entry) => Ok(entry.into_mut()),
            Entry::Vacant(entry) => Ok(entry.insert(Connection::open(address, &self.config)?)),
        }
    }

    /// Metadata for `topic`, from the cache or the broker.
    pub fn cached_topic(&mut self, topic: &str) -> Result<TopicMetadata, ClientError> {
        if let Some(cached) = self.topics.get(topic) {
            return Ok(cached.clone());
        }
        self.topic(topic, false)
    }

    /// Forgets cached leaders of `topic`, so the next request looks them up again.
    pub fn invalidate(&mut self, topic: &str) {
        self.topics.remove(topic);
    }

    /// Groups `partitions` of `topic` by leader, failing for a partition the topic lacks.
    fn leaders(
        &mut self,
        topic: &str,
        partitions: impl IntoIterator<Item = i32>,
    ) -> Result<BTreeMap<i32, Vec<i32>>, ClientError> {
        let metadata = self.cached_topic(topic)?;
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for partition in partitions {
            let Some(found) = metadata.partition(partition) else {
                return Err(ClientError::Kafka(
                    KafkaError::new(
                        "Metadata",
                        format!("topic '{topic}' partition {partition}"),
                        ErrorCode::UnknownTopicOrPartition.code(),
                    )
                    .with_message(Some(format!(
                        "the topic has {} partitions (0-{})",
                        metadata.partitions.len(),
                        metadata.partitions.len().saturating_sub(1)
                    ))),
                ));
            };
            if found.leader < 0 {
                return Err(ClientError::Kafka(KafkaError::new(
                    "Metadata",
                    format!("topic '{topic}' partition {partition}"),
                    ErrorCode::LeaderNotAvailable.code(),
                )));
            }
            by_leader.entry(found.leader).or_default().push(partition);
        }
        Ok(by_leader)
    }

    fn remember(&mut self, metadata: &ClusterMetadata) {
        self.brokers = metadata
            .brokers
            .iter()
            .map(|broker| (broker.node_id, broker.address()))
            .collect();
        // A broker that left the cluster (or moved) gets a fresh connection next time.
        let brokers = &self.brokers;
        self.connections.retain(|node, connection| {
            brokers.get(node).map(String::as_str) == Some(connection.address())
        });
        for topic in &metadata.topics {
            if topic.error.is_none() {
                self.topics.insert(topic.name.clone(), topic.clone());
            }
        }
    }
}

/// One partition's result inside a multi-partition request: the value, or the partition and
/// its error (which the caller may retry).
pub(crate) type PartitionOutcome<T> = Result<T, (i32, ClientError)>;

/// Whether a failed partition request is worth retrying after a metadata refresh. An unknown
/// topic is retriable in Kafka (metadata may lag), but a tool should say so at once.
pub(crate) fn should_retry(error: &ClientError) -> bool {
    error
        .kafka()
        .is_some_and(|e| e.is_retriable() && !e.is(ErrorCode::UnknownTopicOrPartition))
}
