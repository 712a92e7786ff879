//! Transaction administration over the Kafka protocol: list the transactional ids the brokers
//! coordinate and describe one (ListTransactions, DescribeTransactions on its coordinator), as
//! Kafka's admin client does. What `weir transactions` is built on.

use std::collections::BTreeMap;
use std::time::Duration;

use super::error::{check, ClientError};
use super::groups::retriable_coordinator_error;
use super::{Client, RETRY_ATTEMPTS, RETRY_BACKOFF};
use crate::protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ListTransactionsRequest,
    ListTransactionsResponse,
};
use crate::protocol::ApiKey;

/// A transactional id as ListTransactions reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedTransaction {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: String,
}

/// A transactional id as its coordinator describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionDescription {
    pub coordinator: i32,
    pub transactional_id: String,
    pub state: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    /// When the transaction in progress started (-1: none).
    pub start_time_ms: i64,
    pub partitions: Vec<(String, i32)>,
}

/// What to list.
#[derive(Clone, Debug, Default)]
pub struct TransactionFilter {
    /// State names (Ongoing, PrepareCommit, CompleteAbort, …); empty: all.
    pub states: Vec<String>,
    pub producer_ids: Vec<i64>,
    /// Only transactions running for at least this long (ListTransactions v1); `None`: all.
    pub min_duration_ms: Option<i64>,
}

impl Client {
    /// Every transactional id the cluster coordinates, sorted, asking every broker.
    pub fn list_transactions(
        &mut self,
        filter: &TransactionFilter,
    ) -> Result<Vec<ListedTransaction>, ClientError> {
        let key = ApiKey::ListTransactions;
        let mut listed = BTreeMap::new();
        for node in self.every_broker()? {
            let connection = self.broker(node)?;
            let version = connection.version(key)?;
            if filter.min_duration_ms.is_some() && version < 1 {
                return Err(ClientError::Request(
                    "the broker's ListTransactions predates duration filters (v1)".to_string(),
                ));
            }
            let request = ListTransactionsRequest {
                state_filters: filter.states.clone(),
                producer_id_filters: filter.producer_ids.clone(),
                duration_filter: filter.min_duration_ms.unwrap_or(-1),
                ..Default::default()
            };
            let response: ListTransactionsResponse =
                connection.request(key, version, &request, Duration::ZERO)?;
            check(
                key.name(),
                || "the transaction list".to_string(),
                response.error_code,
                None,
            )?;
            if let Some(unknown) = response.unknown_state_filters.first() {
                return Err(ClientError::Request(format!(
                    "'{unknown}' is not a transaction state; use Empty, Ongoing, PrepareCommit, \
                     PrepareAbort, CompleteCommit, CompleteAbort, Dead or PrepareEpochFence"
                )));
            }
            for t in response.transaction_states {
                listed.insert(
                    t.transactional_id.clone(),
                    ListedTransaction {
                        transactional_id: t.transactional_id,
                        producer_id: t.producer_id,
                        state: t.transaction_state,
                    },
                );
            }
        }
        Ok(listed.into_values().collect())
    }

    /// `transactional_id` as its coordinator describes it (TRANSACTIONAL_ID_NOT_FOUND when it
    /// has none).
    pub fn describe_transaction(
        &mut self,
        transactional_id: &str,
    ) -> Result<TransactionDescription, ClientError> {
        let what = format!("transactional id '{transactional_id}'");
        let key = ApiKey::DescribeTransactions;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let node = self.find_coordinator(1, transactional_id, &what)?;
            let connection = self.broker(node)?;
            let version = connection.version(key)?;
            let response: DescribeTransactionsResponse = connection.request(
                key,
                version,
                &DescribeTransactionsRequest {
                    transactional_ids: vec![transactional_id.to_string()],
                    ..Default::default()
                },
                Duration::ZERO,
            )?;
            let Some(state) = response
                .transaction_states
                .into_iter()
                .find(|s| s.transactional_id == transactional_id)
            else {
                return Err(self.missing(key, &what));
            };
            match check(key.name(), || what.clone(), state.error_code, None) {
                Ok(()) => {}
                Err(error)
                    if retriable_coordinator_error(&error) && attempt < RETRY_ATTEMPTS * 4 =>
                {
                    std::thread::sleep(RETRY_BACKOFF * attempt.min(5));
                    continue;
                }
                Err(error) => return Err(error),
            }
            return Ok(TransactionDescription {
                coordinator: node,
                transactional_id: state.transactional_id,
                state: state.transaction_state,
                producer_id: state.producer_id,
                producer_epoch: state.producer_epoch,
                timeout_ms: state.transaction_timeout_ms,
                start_time_ms: state.transaction_start_time_ms,
                partitions: state
                    .topics
                    .into_iter()
                    .flat_map(|t| {
                        let topic = t.topic;
                        t.partitions.into_iter().map(move |p| (topic.clone(), p))
                    })
                    .collect(),
            });
        }
    }
}
