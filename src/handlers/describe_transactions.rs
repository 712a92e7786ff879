//! DescribeTransactions (key 65), version 0: the coordinator's view of transactional ids —
//! state, timeout, start time, producer id and epoch, and the partitions of the transaction in
//! progress. An unknown id gets TRANSACTIONAL_ID_NOT_FOUND.

use super::{ApiSpec, HandlerError, Reply, Request};
use crate::coordinator::transaction::TxnMetadata;
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use crate::protocol::messages::{DescribeTransactionsRequest, DescribeTransactionsResponse};
use crate::protocol::ApiKey;
use crate::shard::txn_coordinator;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::DescribeTransactions,
    min_version: 0,
    max_version: 0,
    advertised_min: 0,
    note: "supported",
};

fn describe(id: &str, found: Result<TxnMetadata, ErrorCode>) -> TransactionState {
    match found {
        Ok(meta) => TransactionState {
            error_code: 0,
            transactional_id: id.to_string(),
            transaction_state: meta.state.name().to_string(),
            transaction_timeout_ms: meta.timeout_ms,
            transaction_start_time_ms: meta.start_ms,
            producer_id: meta.producer_id,
            producer_epoch: meta.producer_epoch,
            topics: meta
                .partitions
                .into_iter()
                .map(|(topic, ids)| TopicData {
                    topic,
                    partitions: ids.into_iter().collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        },
        Err(error) => TransactionState {
            error_code: error.code(),
            transactional_id: id.to_string(),
            transaction_state: String::new(),
            transaction_start_time_ms: -1,
            producer_id: -1,
            producer_epoch: -1,
            ..Default::default()
        },
    }
}

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: DescribeTransactionsRequest = request.decode()?;
    let shard = request.shard.clone();
    let mut states = Vec::with_capacity(body.transactional_ids.len());
    for id in body.transactional_ids {
        let found = if shard
            .metadata()
            .topic(crate::coordinator::transaction::TRANSACTION_TOPIC)
            .is_none()
        {
            Err(ErrorCode::TransactionalIdNotFound)
        } else {
            let key = id.clone();
            txn_coordinator::to_coordinator(&shard, &id, move |shard| async move {
                shard
                    .txns
                    .store
                    .borrow()
                    .get(&key)
                    .cloned()
                    .ok_or(ErrorCode::TransactionalIdNotFound)
            })
            .await
        };
        states.push(describe(&id, found));
    }
    request.respond(&DescribeTransactionsResponse {
        transaction_states: states,
        ..Default::default()
    })
}
