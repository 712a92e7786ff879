//! Reading: ListOffsets (earliest, latest, by timestamp) and Fetch, with fetched record batches
//! decoded into records.
//!
//! Decoding (`decode_records`) is pure: every complete batch is CRC-checked (as Kafka's
//! consumer does by default), control batches (transaction markers) are skipped, records below
//! the requested offset are dropped (a fetch returns whole batches, which may start earlier),
//! and a trailing partial batch — legal, the broker cuts responses at a byte limit — is left for
//! the next fetch. The next offset to fetch is the end of the last complete batch, so offsets a
//! batch covers without records (compaction) are not fetched twice. Decompression of each batch
//! is bounded by `FetchOptions::decompressed_bytes_max`.
//!
//! Isolation is read-uncommitted: records of open or aborted transactions are returned.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use super::error::{ClientError, KafkaError};
use super::{should_retry, Client, PartitionOutcome, RETRY_ATTEMPTS, RETRY_BACKOFF};
use crate::protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use crate::protocol::messages::fetch_response::PartitionData;
use crate::protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use crate::protocol::messages::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
};
use crate::protocol::{ApiKey, ErrorCode};
use crate::records::batch::{split, validate, BatchError, TimestampType};
use crate::records::record::{records, Header};

/// Which offset ListOffsets should find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark (the offset the next record will get).
    Latest,
    /// The first offset whose timestamp is at or after this many ms since the epoch.
    Timestamp(i64),
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(ms) => ms,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    pub partition: i32,
    /// -1 when no record has a timestamp at or after the one asked for.
    pub offset: i64,
    /// The found record's timestamp (-1 for earliest/latest).
    pub timestamp: i64,
}

/// Limits of one fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// How long the broker may wait for `min_bytes` to arrive.
    pub max_wait: Duration,
    pub min_bytes: i32,
    /// Bytes for the whole response (the first batch comes whole even if larger, KIP-74).
    pub max_bytes: i32,
    pub partition_max_bytes: i32,
    /// Largest decompressed size of one batch.
    pub decompressed_bytes_max: usize,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            max_wait: Duration::from_millis(500),
            min_bytes: 1,
            max_bytes: 50 * 1024 * 1024,
            partition_max_bytes: 1024 * 1024,
            decompressed_bytes_max: 64 * 1024 * 1024,
        }
    }
}

/// One record as a consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub timestamp_type: TimestampType,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// What one fetch returned for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedPartition {
    pub partition: i32,
    /// The partition's error; its records are empty then.
    pub error: Option<KafkaError>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub records: Vec<ConsumedRecord>,
    /// Where the next fetch of this partition should start.
    pub next_offset: i64,
    /// Size of a batch that did not fit the partition's byte limit, when nothing else came.
    pub oversized_batch_bytes: Option<usize>,
}

/// Records decoded from one partition's `records` blob.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodedRecords {
    pub records: Vec<ConsumedRecord>,
    /// The offset after the last complete batch, `None` when there was none.
    pub next_offset: Option<i64>,
    /// Declared size of a trailing partial batch.
    pub partial_batch_bytes: Option<usize>,
}

/// Decodes the batches of a fetched `records` blob from `from_offset` on.
pub fn decode_records(
    partition: i32,
    data: &Bytes,
    from_offset: i64,
    decompressed_bytes_max: usize,
) -> Result<DecodedRecords, BatchError> {
    let mut decoded = DecodedRecords::default();
    for item in split(data) {
        let (header, batch) = match item {
            Ok(found) => found,
            Err(BatchError::Truncated { needed, .. }) => {
                decoded.partial_batch_bytes = Some(needed);
                break;
            }
            Err(error) => return Err(error),
        };
        validate(&batch)?;
        decoded.next_offset = Some(header.next_offset());
        if header.is_control() || header.next_offset() <= from_offset {
            continue;
        }
        for record in records(&batch, decompressed_bytes_max)? {
            let record = record?;
            let offset = record.offset(&header);
            if offset < from_offset {
                continue;
            }
            decoded.records.push(ConsumedRecord {
                partition,
                offset,
                timestamp: record.timestamp(&header),
                timestamp_type: header.timestamp_type(),
                key: record.key,
                value: record.value,
                headers: record.headers,
            });
        }
    }
    Ok(decoded)
}

impl Client {
    /// The offsets `spec` names for `partitions` of `topic`, asking each partition's leader.
    pub fn list_offsets(
        &mut self,
        topic: &str,
        partitions: &[i32],
        spec: OffsetSpec,
    ) -> Result<Vec<ListedOffset>, ClientError> {
        let mut found = BTreeMap::new();
        let mut pending: Vec<i32> = partitions.to_vec();
        let mut attempt = 0;
        while !pending.is_empty() {
            attempt += 1;
            let mut retry = Vec::new();
            let mut last_error = None;
            for (leader, group) in self.leaders(topic, pending.iter().copied())? {
                for outcome in self.list_offsets_at(leader, topic, &group, spec)? {
                    match outcome {
                        Ok(listed) => {
                            found.insert(listed.partition, listed);
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
        Ok(partitions
            .iter()
            .filter_map(|partition| found.get(partition).copied())
            .collect())
    }

    fn list_offsets_at(
        &mut self,
        leader: i32,
        topic: &str,
        partitions: &[i32],
        spec: OffsetSpec,
    ) -> Result<Vec<PartitionOutcome<ListedOffset>>, ClientError> {
        let key = ApiKey::ListOffsets;
        let connection = self.broker(leader)?;
        let version = connection.version(key)?;
        let request = ListOffsetsRequest {
            replica_id: -1,
            topics: vec![ListOffsetsTopic {
                name: topic.to_string(),
                partitions: partitions
                    .iter()
                    .map(|&partition_index| ListOffsetsPartition {
                        partition_index,
                        timestamp: spec.wire(),
                        ..ListOffsetsPartition::default()
                    })
                    .collect(),
                ..ListOffsetsTopic::default()
            }],
            ..ListOffsetsRequest::default()
        };
        let response: ListOffsetsResponse =
            connection.request(key, version, &request, Duration::ZERO)?;
        let answers: BTreeMap<i32, _> = response
            .topics
            .into_iter()
            .filter(|t| t.name == topic)
            .flat_map(|t| t.partitions)
            .map(|p| (p.partition_index, p))
            .collect();
        let address = connection.address().to_string();
        Ok(partitions
            .iter()
            .map(|&partition| {
                let Some(answer) = answers.get(&partition) else {
                    return Err((
                        partition,
                        ClientError::Protocol {
                            address: address.clone(),
                            api: key.name(),
                            detail: format!("no answer for topic '{topic}' partition {partition}"),
                        },
                    ));
                };
                if answer.error_code != ErrorCode::None.code() {
                    return Err((
                        partition,
                        ClientError::Kafka(KafkaError::new(
                            key.name(),
                            format!("topic '{topic}' partition {partition}"),
                            answer.error_code,
                        )),
                    ));
                }
                Ok(ListedOffset {
                    partition,
                    offset: answer.offset,
                    timestamp: answer.timestamp,
                })
            })
            .collect())
    }

    /// Fetches `topic` from each `(partition, offset)` (one request per leader). Partition
    /// errors are returned in the results, so the caller decides (reset an out-of-range
    /// offset, retry after a leader change); request-level failures are `Err`.
    pub fn fetch(
        &mut self,
        topic: &str,
        positions: &[(i32, i64)],
        options: &FetchOptions,
    ) -> Result<Vec<FetchedPartition>, ClientError> {
        let offsets: BTreeMap<i32, i64> = positions.iter().copied().collect();
        let metadata = self.cached_topic(topic)?;
        let mut results = Vec::with_capacity(positions.len());
        for (leader, group) in self.leaders(topic, offsets.keys().copied())? {
            let wanted: Vec<(i32, i64)> = group.iter().map(|p| (*p, offsets[p])).collect();
            results.extend(self.fetch_from(leader, topic, &metadata, &wanted, options)?);
        }
        if results
            .iter()
            .any(|r| r.error.as_ref().is_some_and(|e| e.is_retriable()))
        {
            self.invalidate(topic);
        }
        Ok(results)
    }

    fn fetch_from(
        &mut self,
        leader: i32,
        topic: &str,
        metadata: &super::TopicMetadata,
        positions: &[(i32, i64)],
        options: &FetchOptions,
    ) -> Result<Vec<FetchedPartition>, ClientError> {
        let key = ApiKey::Fetch;
        let connection = self.broker(leader)?;
        let version = connection.version(key)?;
        let max_wait_ms = i32::try_from(options.max_wait.as_millis()).unwrap_or(i32::MAX);
        let request = FetchRequest {
            replica_id: -1,
            max_wait_ms,
            min_bytes: options.min_bytes,
            max_bytes: options.max_bytes,
            // Sessionless full fetches: session id 0, epoch -1 (KIP-227).
            session_id: 0,
            session_epoch: -1,
            topics: vec![FetchTopic {
                // v13+ names topics by id; the name is ignorable there.
                topic: topic.to_string(),
                topic_id: if version >= 13 {
                    metadata.id
                } else {
                    Default::default()
                },
                partitions: positions
                    .iter()
                    .map(|&(partition, fetch_offset)| FetchPartition {
                        partition,
                        fetch_offset,
                        partition_max_bytes: options.partition_max_bytes,
                        ..FetchPartition::default()
                    })
                    .collect(),
                ..FetchTopic::default()
            }],
            ..FetchRequest::default()
        };
        let response: FetchResponse =
            connection.request(key, version, &request, options.max_wait)?;
        let address = connection.address().to_string();
        let protocol = |detail: String| ClientError::Protocol {
            address: address.clone(),
            api: key.name(),
            detail,
        };
        super::error::check(
            key.name(),
            || format!("fetch of topic '{topic}'"),
            response.error_code,
            None,
        )?;
        let mut answers = BTreeMap::new();
        for answer in response.responses {
            let ours = if version >= 13 {
                answer.topic_id == metadata.id
            } else {
                answer.topic == topic
            };
            if ours {
                for partition in answer.partitions {
                    answers.insert(partition.partition_index, partition);
                }
            }
        }
        let mut results = Vec::with_capacity(positions.len());
        for &(partition, offset) in positions {
            let Some(answer) = answers.remove(&partition) else {
                return Err(protocol(format!(
                    "no answer for topic '{topic}' partition {partition}"
                )));
            };
            results.push(
                fetched_partition(topic, partition, offset, answer, options).map_err(protocol)?,
            );
        }
        Ok(results)
    }
}

/// One partition's fetch answer as records from `offset`, or why its records are invalid.
fn fetched_partition(
    topic: &str,
    partition: i32,
    offset: i64,
    answer: PartitionData,
    options: &FetchOptions,
) -> Result<FetchedPartition, String> {
    let mut fetched = FetchedPartition {
        partition,
        error: None,
        high_watermark: answer.high_watermark,
        log_start_offset: answer.log_start_offset,
        records: Vec::new(),
        next_offset: offset,
        oversized_batch_bytes: None,
    };
    if answer.error_code != ErrorCode::None.code() {
        fetched.error = Some(KafkaError::new(
            ApiKey::Fetch.name(),
            format!("topic '{topic}' partition {partition}"),
            answer.error_code,
        ));
        return Ok(fetched);
    }
    let data = answer.records.unwrap_or_default();
    let decoded = decode_records(partition, &data, offset, options.decompressed_bytes_max)
        .map_err(|error| {
            format!("topic '{topic}' partition {partition} at offset {offset}: {error}")
        })?;
    fetched.records = decoded.records;
    // Never backwards, whatever offsets the batches claim.
    fetched.next_offset = decoded.next_offset.unwrap_or(offset).max(offset);
    if decoded.next_offset.is_none() {
        fetched.oversized_batch_bytes = decoded.partial_batch_bytes;
    }
    Ok(fetched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::batch::set_base_offset;
    use crate::records::builder::{BatchBuilder, EndTransactionMarker};
    use crate::records::control::ControlType;
    use crate::records::Compression;

    fn batch(codec: Compression, base_offset: i64, values: &[&str]) -> Vec<u8> {
        let mut builder = BatchBuilder::new(codec, base_offset, 1_000);
        for (index, value) in values.iter().enumerate() {
            builder.append(
                1_000 + index as i64,
                Some(b"k"),
                Some(value.as_bytes()),
                &[("h", None)],
            );
        }
        builder.build().unwrap().to_vec()
    }

    fn values(decoded: &DecodedRecords) -> Vec<(i64, String)> {
        decoded
            .records
            .iter()
            .map(|r| {
                (
                    r.offset,
                    String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn records_below_the_fetch_offset_are_skipped_in_every_codec() {
        for codec in Compression::ALL {
            let mut data = batch(codec, 10, &["a", "b", "c"]);
            data.extend(batch(codec, 13, &["d"]));
            let decoded = decode_records(0, &Bytes::from(data), 12, 1 << 20).unwrap();
            assert_eq!(
                values(&decoded),
                vec![(12, "c".into()), (13, "d".into())],
                "{codec}"
            );
            assert_eq!(decoded.next_offset, Some(14));
            assert_eq!(decoded.partial_batch_bytes, None);
            let record = &decoded.records[0];
            assert_eq!(record.timestamp, 1_002);
            assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
            assert_eq!(record.headers[0].key, "h");
            assert_eq!(record.headers[0].value, None);
        }
    }

    #[test]
    fn a_trailing_partial_batch_is_left_for_the_next_fetch() {
        let mut data = batch(Compression::None, 0, &["a", "b"]);
        let second = batch(Compression::None, 2, &["c"]);
        data.extend_from_slice(&second[..second.len() - 5]);
        let decoded = decode_records(3, &Bytes::from(data), 0, 1 << 20).unwrap();
        assert_eq!(values(&decoded), vec![(0, "a".into()), (1, "b".into())]);
        assert_eq!(decoded.records[0].partition, 3);
        assert_eq!(decoded.next_offset, Some(2));
        assert_eq!(decoded.partial_batch_bytes, Some(second.len()));
        // Only a fragment: nothing decoded, nothing consumed.
        let fragment = Bytes::from(second[..30].to_vec());
        let decoded = decode_records(0, &fragment, 2, 1 << 20).unwrap();
        assert_eq!(decoded.next_offset, None);
        assert_eq!(decoded.partial_batch_bytes, Some(second.len()));
    }

    #[test]
    fn control_batches_advance_the_offset_without_records() {
        let marker = EndTransactionMarker {
            kind: ControlType::Commit,
            coordinator_epoch: 0,
            producer_id: 7,
            producer_epoch: 0,
        };
        let mut control = BatchBuilder::end_transaction_marker(&marker, 0, 5)
            .build()
            .unwrap()
            .to_vec();
        set_base_offset(&mut control, 4).unwrap();
        let mut data = batch(Compression::None, 0, &["a", "b", "c", "d"]);
        data.extend(control);
        let decoded = decode_records(0, &Bytes::from(data), 0, 1 << 20).unwrap();
        assert_eq!(decoded.records.len(), 4);
        assert_eq!(decoded.next_offset, Some(5));
    }

    #[test]
    fn corrupt_batches_are_errors() {
        let mut data = batch(Compression::None, 0, &["a"]);
        let last = data.len() - 1;
        data[last] ^= 0xff;
        assert!(matches!(
            decode_records(0, &Bytes::from(data), 0, 1 << 20),
            Err(BatchError::CrcMismatch { .. })
        ));
        // A compressed batch larger than the decompression bound is refused.
        let big = "x".repeat(10_000);
        let data = batch(Compression::Zstd, 0, &[&big]);
        assert!(decode_records(0, &Bytes::from(data), 0, 1_000).is_err());
    }

    #[test]
    fn an_empty_blob_has_no_records_and_no_progress() {
        let decoded = decode_records(0, &Bytes::new(), 5, 1 << 20).unwrap();
        assert_eq!(decoded, DecodedRecords::default());
    }
}
