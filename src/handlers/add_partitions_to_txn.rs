//! AddPartitionsToTxn (key 24), versions 0-4: partitions join a producer's transaction before
//! it produces to them (so the coordinator knows where to write markers). v0-3 carry one
//! transaction (librdkafka sends v0); v4 (broker to broker, KIP-890) carries several and may
//! only verify (`verify_only`). Unknown partitions get UNKNOWN_TOPIC_OR_PARTITION and the others
//! of the request OPERATION_NOT_ATTEMPTED, as in Kafka; nothing is added then.

use super::{ApiSpec, HandlerError, Reply, Request};
use crate::coordinator::transaction::TxnPartitions;
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use crate::protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use crate::protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use crate::protocol::ApiKey;
use crate::shard::txn_coordinator;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::AddPartitionsToTxn,
    min_version: 0,
    max_version: 4,
    advertised_min: 0,
    note: "supported (v4 batches and verify_only)",
};

fn results(
    topics: &[AddPartitionsToTxnTopic],
    error_of: impl Fn(&str, i32) -> ErrorCode,
) -> Vec<AddPartitionsToTxnTopicResult> {
    topics
        .iter()
        .map(|t| AddPartitionsToTxnTopicResult {
            name: t.name.clone(),
            results_by_partition: t
                .partitions
                .iter()
                .map(|&p| AddPartitionsToTxnPartitionResult {
                    partition_index: p,
                    partition_error_code: error_of(&t.name, p).code(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect()
}

/// One transaction of the request: the error of each of its partitions.
async fn add(
    request: &Request,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    verify_only: bool,
    topics: &[AddPartitionsToTxnTopic],
) -> Vec<AddPartitionsToTxnTopicResult> {
    let shard = &request.shard;
    let image = shard.metadata();
    let unknown = |topic: &str, p: i32| {
        !image
            .topic(topic)
            .is_some_and(|t| p >= 0 && (p as usize) < t.partitions.len())
    };
    if topics
        .iter()
        .any(|t| t.partitions.iter().any(|&p| unknown(&t.name, p)))
    {
        return results(topics, |topic, p| {
            if unknown(topic, p) {
                ErrorCode::UnknownTopicOrPartition
            } else {
                ErrorCode::OperationNotAttempted
            }
        });
    }
    let mut wanted = TxnPartitions::new();
    for t in topics {
        wanted
            .entry(t.name.clone())
            .or_default()
            .extend(t.partitions.iter().copied());
    }
    let id = transactional_id.to_string();
    if verify_only {
        return match txn_coordinator::verify_partitions(
            shard,
            id,
            producer_id,
            producer_epoch,
            wanted,
        )
        .await
        {
            Ok(missing) => results(topics, |topic, p| {
                if missing.get(topic).is_some_and(|s| s.contains(&p)) {
                    ErrorCode::InvalidTxnState
                } else {
                    ErrorCode::None
                }
            }),
            Err(error) => results(topics, |_, _| error),
        };
    }
    let outcome =
        txn_coordinator::add_partitions(shard, id, producer_id, producer_epoch, wanted).await;
    let error = match outcome {
        Ok(()) => ErrorCode::None,
        Err(error) => txn_coordinator::fenced_for_version(error, request.version, 2),
    };
    results(topics, |_, _| error)
}

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: AddPartitionsToTxnRequest = request.decode()?;
    if request.version <= 3 {
        let results = add(
            &request,
            &body.v3_and_below_transactional_id,
            body.v3_and_below_producer_id,
            body.v3_and_below_producer_epoch,
            false,
            &body.v3_and_below_topics,
        )
        .await;
        return request.respond(&AddPartitionsToTxnResponse {
            results_by_topic_v3_and_below: results,
            ..Default::default()
        });
    }
    let mut by_transaction = Vec::with_capacity(body.transactions.len());
    for t in &body.transactions {
        let topic_results = add(
            &request,
            &t.transactional_id,
            t.producer_id,
            t.producer_epoch,
            t.verify_only,
            &t.topics,
        )
        .await;
        by_transaction.push(AddPartitionsToTxnResult {
            transactional_id: t.transactional_id.clone(),
            topic_results,
            ..Default::default()
        });
    }
    request.respond(&AddPartitionsToTxnResponse {
        results_by_transaction: by_transaction,
        ..Default::default()
    })
}
