//! Produce (key 0): versions 3-11 served, 0-11 advertised as Kafka 4 does (v0-v2 carry the old
//! message formats and are answered with UNSUPPORTED_VERSION per partition).
//!
//! First phase (in request order): validate acks, auto-create unknown topics, and hand every
//! partition's batch to its owner shard. Queuing in order is enough to keep a connection's
//! appends in order: the owner runs jobs from one source in arrival order and takes the
//! partition's FIFO append lock first thing. Second phase (the reply): acks=1 waits for the
//! append, acks=all also for the high watermark to pass the batch (fdatasync, or the write with
//! write.caching), bounded by the request's timeout. acks=0 gets no response at all.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::oneshot;

use super::topics::{self};
use super::{ApiSpec, HandlerError, Reply, Request};
use crate::partition::{AppendOutcome, PartitionError};
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use crate::protocol::messages::{ProduceRequest, ProduceResponse};
use crate::protocol::ApiKey;
use crate::shard::metrics::ShardMetrics;
use crate::shard::Shard;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::Produce,
    min_version: 3,
    max_version: 11,
    advertised_min: 0,
    note: "supported (acks 0/1/all, idempotence, transactional batches); v0-2 answered UNSUPPORTED_VERSION",
};

type Outcome = Result<AppendOutcome, PartitionError>;

enum Pending {
    Done(Outcome),
    Waiting(oneshot::Receiver<Outcome>),
}

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: ProduceRequest = request.decode()?;
    let refusal = if request.version < SPEC.min_version {
        Some(PartitionError::new(
            ErrorCode::UnsupportedVersion,
            "Produce v0-v2 (message formats 0 and 1) are not supported",
        ))
    } else if !matches!(body.acks, -1..=1) {
        Some(PartitionError::new(
            ErrorCode::InvalidRequiredAcks,
            format!("acks={} is not 0, 1 or -1 (all)", body.acks),
        ))
    } else {
        None
    };
    let shard = request.shard.clone();
    let mut image = shard.metadata();
    if refusal.is_none() {
        let unknown: Vec<String> = body
            .topic_data
            .iter()
            .map(|t| t.name.clone())
            .filter(|n| image.topic(n).is_none())
            .collect();
        if !unknown.is_empty() {
            image = topics::auto_create(&shard, unknown).await;
        }
    }
    let timeout = Duration::from_millis(body.timeout_ms.max(0) as u64);
    let mut topics: Vec<(String, Vec<(i32, Pending)>)> = Vec::with_capacity(body.topic_data.len());
    for topic in body.topic_data {
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        let known = image.topic(&topic.name).cloned();
        for data in topic.partition_data {
            let pending = match (&refusal, &known) {
                (Some(error), _) => Pending::Done(Err(error.clone())),
                // As Kafka: only the coordinators write their internal topics.
                (None, Some(known)) if crate::metadata::is_internal_topic(&known.name) => {
                    Pending::Done(Err(PartitionError::new(
                        ErrorCode::InvalidTopicException,
                        format!("cannot append to internal topic '{}'", known.name),
                    )))
                }
                (None, Some(known))
                    if data.index >= 0 && (data.index as usize) < known.partitions.len() =>
                {
                    let owner = shard.owner_of(&known.name, data.index);
                    let (name, index, records, acks) =
                        (known.name.clone(), data.index, data.records, body.acks);
                    Pending::Waiting(
                        shard
                            .dispatch(owner, move |owner_shard| {
                                produce_on_owner(owner_shard, name, index, records, acks, timeout)
                            })
                            .await,
                    )
                }
                _ => Pending::Done(Err(PartitionError::new(
                    ErrorCode::UnknownTopicOrPartition,
                    format!(
                        "topic '{}' partition {} does not exist",
                        topic.name, data.index
                    ),
                ))),
            };
            partitions.push((data.index, pending));
        }
        topics.push((topic.name, partitions));
    }
    if body.acks == 0 {
        return Ok(Reply::NoResponse);
    }
    let encoder = ResponseEncoder {
        correlation_id: request.correlation_id,
        api_key: request.api_key,
        version: request.version,
    };
    Ok(Reply::Later(Box::pin(async move {
        let mut responses = Vec::with_capacity(topics.len());
        for (name, partitions) in topics {
            let mut partition_responses = Vec::with_capacity(partitions.len());
            for (index, pending) in partitions {
                let outcome = match pending {
                    Pending::Done(outcome) => outcome,
                    Pending::Waiting(receiver) => receiver.await.unwrap_or_else(|_| {
                        Err(PartitionError::new(
                            ErrorCode::NotLeaderOrFollower,
                            "the partition's shard stopped",
                        ))
                    }),
                };
                partition_responses.push(partition_response(index, outcome));
            }
            responses.push(TopicProduceResponse {
                name,
                partition_responses,
                ..Default::default()
            });
        }
        encoder.encode(&ProduceResponse {
            responses,
            ..Default::default()
        })
    })))
}

struct ResponseEncoder {
    correlation_id: i32,
    api_key: i16,
    version: i16,
}

impl ResponseEncoder {
    fn encode(&self, response: &ProduceResponse) -> Vec<Bytes> {
        crate::protocol::frame::encode_response(
            self.correlation_id,
            self.api_key,
            self.version,
            response,
        )
        .expect("a produce response encodes at the request's version")
    }
}

fn partition_response(index: i32, outcome: Outcome) -> PartitionProduceResponse {
    match outcome {
        Ok(appended) => PartitionProduceResponse {
            index,
            error_code: ErrorCode::None.code(),
            base_offset: appended.base_offset,
            log_append_time_ms: appended.log_append_time,
            log_start_offset: appended.log_start_offset,
            ..Default::default()
        },
        Err(error) => PartitionProduceResponse {
            index,
            error_code: error.code.code(),
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
            error_message: error.message,
            ..Default::default()
        },
    }
}

/// Runs on the owner shard: append, then wait as acks asks.
async fn produce_on_owner(
    shard: Rc<Shard>,
    topic: Arc<str>,
    index: i32,
    records: Option<Bytes>,
    acks: i16,
    timeout: Duration,
) -> Outcome {
    let Some(partition) = shard.partition(&topic, index) else {
        return Err(PartitionError::code(ErrorCode::NotLeaderOrFollower));
    };
    let bytes = records.as_ref().map(Bytes::len).unwrap_or(0) as u64;
    let appended = match partition.append(records, &shard.flusher).await {
        Ok(appended) => appended,
        Err(error) => {
            ShardMetrics::add(&shard.metrics.produce_errors, 1);
            return Err(error);
        }
    };
    if !appended.duplicate {
        ShardMetrics::add(&shard.metrics.produce_bytes, bytes);
        ShardMetrics::add(&shard.metrics.produce_batches, 1);
        ShardMetrics::add(
            &shard.metrics.produce_records,
            (appended.last_offset - appended.base_offset + 1) as u64,
        );
    }
    if acks == -1 {
        use futures::future::{select, Either};
        let wait = partition.wait_for_offset(appended.last_offset);
        let timer = glommio::timer::sleep(timeout);
        futures::pin_mut!(wait);
        futures::pin_mut!(timer);
        match select(wait, timer).await {
            Either::Left((result, _)) => result?,
            Either::Right(_) => {
                return Err(PartitionError::new(
                    ErrorCode::RequestTimedOut,
                    format!(
                        "the batch was not flushed within the request timeout of {} ms",
                        timeout.as_millis()
                    ),
                ));
            }
        }
    }
    Ok(appended)
}
