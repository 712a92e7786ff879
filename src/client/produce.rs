//! Writing: Produce requests (`Client::produce`, one batch per partition, one request per
//! leader) and `Producer`, which partitions records like Kafka's default partitioner and
//! accumulates them into RecordBatch v2 batches (`BatchBuilder`, any codec).
//!
//! Batches are bounded by `ProducerConfig::batch_bytes_max` (uncompressed, header included): a
//! record that would overflow its partition's open batch sends that batch first. The caller
//! decides when to `flush` (the CLI does when its input goes idle, which stands in for
//! `linger.ms`). Retriable partition errors (leader moved, not enough replicas yet) are retried
//! after a metadata refresh; I/O errors are not, since the batch may already be written.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;

use super::error::{ClientError, KafkaError};
use super::partitioner::Partitioner;
use super::{should_retry, Client, PartitionOutcome, RETRY_ATTEMPTS, RETRY_BACKOFF};
use crate::protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use crate::protocol::messages::produce_response::PartitionProduceResponse;
use crate::protocol::messages::{ProduceRequest, ProduceResponse};
use crate::protocol::{ApiKey, ErrorCode};
use crate::records::{BatchBuilder, Compression};

/// How many replicas must have a batch before the broker answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// No answer at all: offsets and errors are unknown.
    None,
    /// The leader appended it.
    Leader,
    /// Every in-sync replica has it (durable on Weir: fdatasync'ed).
    All,
}

impl Acks {
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl FromStr for Acks {
    type Err = String;

    fn from_str(text: &str) -> Result<Acks, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            other => Err(format!("acks must be 0, 1 or all, not '{other}'")),
        }
    }
}

/// The broker's answer for one partition's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceAck {
    /// Offset of the batch's first record.
    pub base_offset: i64,
    /// The broker's timestamp for LogAppendTime topics, else -1.
    pub log_append_time: i64,
}

/// A partition and its acknowledgement (`None` with acks=0).
pub type PartitionAck = (i32, Option<ProduceAck>);

impl Client {
    /// Sends one batch per partition of `topic` (at most one per partition) and returns each
    /// partition's acknowledgement, in the order given; `None` with acks=0.
    pub fn produce(
        &mut self,
        topic: &str,
        batches: &[(i32, Bytes)],
        acks: Acks,
        timeout: Duration,
    ) -> Result<Vec<PartitionAck>, ClientError> {
        let by_partition: BTreeMap<i32, Bytes> = batches.iter().cloned().collect();
        if by_partition.len() != batches.len() {
            return Err(ClientError::Request(
                "a produce request holds at most one batch per partition".into(),
            ));
        }
        let mut acked: BTreeMap<i32, Option<ProduceAck>> = BTreeMap::new();
        let mut pending: Vec<i32> = by_partition.keys().copied().collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            attempt += 1;
            let mut retry = Vec::new();
            let mut last_error = None;
            for (leader, group) in self.leaders(topic, pending.iter().copied())? {
                let group: Vec<(i32, Bytes)> = group
                    .iter()
                    .map(|p| (*p, by_partition[p].clone()))
                    .collect();
                for outcome in self.produce_to(leader, topic, &group, acks, timeout)? {
                    match outcome {
                        Ok((partition, ack)) => {
                            acked.insert(partition, ack);
                        }
                        Err((partition, error)) if should_retry(&error) => {
                            retry.push(partition);
                            last_error = Some(error);
                        }
                        Err((_, error)) => return Err(error),
                    }
                }
            }
            if let Some(error) = last_error {
                if attempt >= RETRY_ATTEMPTS {
                    return Err(error);
                }
                self.invalidate(topic);
                std::thread::sleep(RETRY_BACKOFF * attempt);
            }
            pending = retry;
        }
        Ok(batches
            .iter()
            .map(|(partition, _)| (*partition, acked.get(partition).copied().flatten()))
            .collect())
    }

    fn produce_to(
        &mut self,
        leader: i32,
        topic: &str,
        batches: &[(i32, Bytes)],
        acks: Acks,
        timeout: Duration,
    ) -> Result<Vec<PartitionOutcome<PartitionAck>>, ClientError> {
        let key = ApiKey::Produce;
        let connection = self.broker(leader)?;
        let version = connection.version(key)?;
        let request = ProduceRequest {
            transactional_id: None,
            acks: acks.wire(),
            timeout_ms: i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX),
            topic_data: vec![TopicProduceData {
                name: topic.to_string(),
                partition_data: batches
                    .iter()
                    .map(|(index, records)| PartitionProduceData {
                        index: *index,
                        records: Some(records.clone()),
                        ..PartitionProduceData::default()
                    })
                    .collect(),
                ..TopicProduceData::default()
            }],
            ..ProduceRequest::default()
        };
        if acks == Acks::None {
            connection.send_only(key, version, &request)?;
            return Ok(batches.iter().map(|(p, _)| Ok((*p, None))).collect());
        }
        let response: ProduceResponse = connection.request(key, version, &request, timeout)?;
        let address = connection.address().to_string();
        let answers: BTreeMap<i32, _> = response
            .responses
            .into_iter()
            .filter(|t| t.name == topic)
            .flat_map(|t| t.partition_responses)
            .map(|p| (p.index, p))
            .collect();
        Ok(batches
            .iter()
            .map(|(partition, _)| {
                let partition = *partition;
                match answers.get(&partition) {
                    Some(answer) => produce_outcome(topic, answer)
                        .map(|ack| (partition, Some(ack)))
                        .map_err(|error| (partition, error)),
                    None => Err((
                        partition,
                        ClientError::Protocol {
                            address: address.clone(),
                            api: key.name(),
                            detail: format!("no answer for topic '{topic}' partition {partition}"),
                        },
                    )),
                }
            })
            .collect())
    }
}

/// One partition's produce answer: its offsets, or its error with the broker's explanation
/// (and, v8+, which records it refused and why).
fn produce_outcome(
    topic: &str,
    answer: &PartitionProduceResponse,
) -> Result<ProduceAck, ClientError> {
    if answer.error_code == ErrorCode::None.code() {
        return Ok(ProduceAck {
            base_offset: answer.base_offset,
            log_append_time: answer.log_append_time_ms,
        });
    }
    let record_errors: Vec<String> = answer
        .record_errors
        .iter()
        .map(|e| match &e.batch_index_error_message {
            Some(message) => format!("record {}: {message}", e.batch_index),
            None => format!("record {}", e.batch_index),
        })
        .collect();
    let message = match (&answer.error_message, record_errors.is_empty()) {
        (Some(message), true) => Some(message.clone()),
        (Some(message), false) => Some(format!("{message} ({})", record_errors.join("; "))),
        (None, false) => Some(record_errors.join("; ")),
        (None, true) => None,
    };
    Err(ClientError::Kafka(
        KafkaError::new(
            ApiKey::Produce.name(),
            format!("topic '{topic}' partition {}", answer.index),
            answer.error_code,
        )
        .with_message(message),
    ))
}

/// Settings of a `Producer`.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub acks: Acks,
    pub compression: Compression,
    /// Largest uncompressed batch (header included); a single larger record goes alone.
    pub batch_bytes_max: usize,
    /// How long the broker may take to meet `acks`.
    pub timeout: Duration,
    /// Let the broker create the topic if it does not exist (and `auto.create.topics.enable`).
    pub allow_auto_create: bool,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            compression: Compression::None,
            batch_bytes_max: 256 * 1024,
            timeout: Duration::from_secs(30),
            allow_auto_create: true,
        }
    }
}

/// A record to produce. `None` key or value is null (distinct from empty).
#[derive(Debug, Clone, Copy)]
pub struct OutgoingRecord<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
    /// CreateTime in ms since the epoch.
    pub timestamp: i64,
    /// `None`: the default partitioner decides.
    pub partition: Option<i32>,
}

/// One batch the broker acknowledged (or, with acks=0, that was sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub partition: i32,
    /// `None` with acks=0.
    pub base_offset: Option<i64>,
    pub record_count: usize,
}

impl Delivery {
    /// Offsets the batch's records got.
    pub fn offsets(&self) -> Option<RangeInclusive<i64>> {
        let base = self.base_offset?;
        let count = i64::try_from(self.record_count).ok()?;
        // Checked: the base offset comes from the broker.
        Some(base..=base.checked_add(count.checked_sub(1)?)?)
    }
}

/// Partitions and batches records for one topic.
pub struct Producer {
    client: Client,
    topic: String,
    partitioner: Partitioner,
    config: ProducerConfig,
    open: BTreeMap<i32, BatchBuilder>,
}

/// Bytes a record adds to a batch, near enough to decide when a batch is full (the varints
/// of a record and its lengths take at most 21 bytes, each header's lengths 10).
fn record_size_estimate(record: &OutgoingRecord<'_>) -> usize {
    let headers: usize = record
        .headers
        .iter()
        .map(|(key, value)| key.len() + value.map_or(0, <[u8]>::len) + 10)
        .sum();
    record.key.map_or(0, <[u8]>::len) + record.value.map_or(0, <[u8]>::len) + headers + 21
}

impl Producer {
    /// Looks `topic` up (creating it if allowed and the broker does) and starts producing.
    pub fn new(
        mut client: Client,
        topic: &str,
        config: ProducerConfig,
    ) -> Result<Producer, ClientError> {
        let metadata = client.topic(topic, config.allow_auto_create)?;
        Ok(Producer {
            client,
            topic: topic.to_string(),
            partitioner: Partitioner::new(metadata.partition_count(), fastrand::u32(..)),
            config,
            open: BTreeMap::new(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partition_count(&self) -> i32 {
        self.partitioner.partitions()
    }

    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Records waiting in open batches.
    pub fn pending_records(&self) -> usize {
        self.open.values().map(BatchBuilder::record_count).sum()
    }

    /// Adds `record` to its partition's batch, sending that batch first if the record would
    /// overflow it. Returns the deliveries of batches sent meanwhile.
    pub fn send(&mut self, record: &OutgoingRecord<'_>) -> Result<Vec<Delivery>, ClientError> {
        let partition = match record.partition {
            Some(partition) if !(0..self.partition_count()).contains(&partition) => {
                return Err(ClientError::Kafka(
                    KafkaError::new(
                        ApiKey::Produce.name(),
                        format!("topic '{}' partition {partition}", self.topic),
                        ErrorCode::UnknownTopicOrPartition.code(),
                    )
                    .with_message(Some(format!(
                        "the topic has {} partitions (0-{})",
                        self.partition_count(),
                        self.partition_count() - 1
                    ))),
                ))
            }
            Some(partition) => partition,
            None => self.partitioner.partition(record.key),
        };
        let size = record_size_estimate(record);
        let full = self.open.get(&partition).is_some_and(|batch| {
            !batch.is_empty() && batch.uncompressed_size() + size > self.config.batch_bytes_max
        });
        let sent = if full {
            self.send_batches(&[partition])?
        } else {
            Vec::new()
        };
        let compression = self.config.compression;
        self.open
            .entry(partition)
            .or_insert_with(|| BatchBuilder::new(compression, 0, record.timestamp))
            .append(record.timestamp, record.key, record.value, record.headers);
        Ok(sent)
    }

    /// Sends every open batch.
    pub fn flush(&mut self) -> Result<Vec<Delivery>, ClientError> {
        let partitions: Vec<i32> = self.open.keys().copied().collect();
        self.send_batches(&partitions)
    }

    pub fn into_client(self) -> Client {
        self.client
    }

    fn send_batches(&mut self, partitions: &[i32]) -> Result<Vec<Delivery>, ClientError> {
        let mut batches = Vec::with_capacity(partitions.len());
        let mut counts = BTreeMap::new();
        for &partition in partitions {
            let Some(builder) = self.open.remove(&partition) else {
                continue;
            };
            counts.insert(partition, builder.record_count());
            let batch = builder.build().map_err(|error| {
                ClientError::Request(format!(
                    "cannot build a batch for topic '{}' partition {partition}: {error}",
                    self.topic
                ))
            })?;
            self.partitioner.batch_completed(partition);
            batches.push((partition, batch));
        }
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        let acks =
            self.client
                .produce(&self.topic, &batches, self.config.acks, self.config.timeout)?;
        Ok(acks
            .into_iter()
            .map(|(partition, ack)| Delivery {
                partition,
                base_offset: ack.map(|a| a.base_offset),
                record_count: counts.get(&partition).copied().unwrap_or(0),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_parse_like_kafka_settings() {
        assert_eq!("0".parse(), Ok(Acks::None));
        assert_eq!("1".parse(), Ok(Acks::Leader));
        assert_eq!("all".parse(), Ok(Acks::All));
        assert_eq!("ALL".parse(), Ok(Acks::All));
        assert_eq!("-1".parse(), Ok(Acks::All));
        assert!("2".parse::<Acks>().is_err());
        assert_eq!(Acks::All.wire(), -1);
    }

    #[test]
    fn deliveries_cover_their_records_offsets() {
        let delivery = Delivery {
            partition: 2,
            base_offset: Some(10),
            record_count: 3,
        };
        assert_eq!(delivery.offsets(), Some(10..=12));
        let unacknowledged = Delivery {
            base_offset: None,
            ..delivery
        };
        assert_eq!(unacknowledged.offsets(), None);
        let absurd = Delivery {
            base_offset: Some(i64::MAX),
            ..delivery
        };
        assert_eq!(absurd.offsets(), None, "no overflow on a broker's nonsense");
    }

    #[test]
    fn size_estimates_grow_with_every_field() {
        let headers: [(&str, Option<&[u8]>); 1] = [("trace", Some(b"abc"))];
        let bare = OutgoingRecord {
            key: None,
            value: None,
            headers: &[],
            timestamp: 0,
            partition: None,
        };
        let full = OutgoingRecord {
            key: Some(b"key"),
            value: Some(b"value"),
            headers: &headers,
            ..bare
        };
        assert_eq!(record_size_estimate(&bare), 21);
        assert_eq!(record_size_estimate(&full), 21 + 3 + 5 + 5 + 3 + 10);
    }
}
