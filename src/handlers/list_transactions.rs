//! ListTransactions (key 66), versions 0-1: every transactional id the broker coordinates,
//! filtered by state names, producer ids and (v1, KIP-994) by running longer than
//! `duration_filter` ms. Unknown state names are echoed in `unknown_state_filters`.

use super::{ApiSpec, HandlerError, Reply, Request};
use crate::coordinator::transaction::TxnState;
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::list_transactions_response::TransactionState;
use crate::protocol::messages::{ListTransactionsRequest, ListTransactionsResponse};
use crate::protocol::ApiKey;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::ListTransactions,
    min_version: 0,
    max_version: 1,
    advertised_min: 0,
    note: "supported (state, producer id and duration filters)",
};

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: ListTransactionsRequest = request.decode()?;
    let mut unknown = Vec::new();
    let mut states = Vec::new();
    for name in &body.state_filters {
        match TxnState::from_name(name) {
            Some(state) => states.push(state),
            None => unknown.push(name.clone()),
        }
    }
    let producers = body.producer_id_filters.clone();
    let duration = if request.version >= 1 {
        body.duration_filter
    } else {
        -1
    };
    let now = crate::event::now_ms();
    let per_shard = request
        .shard
        .broadcast(move |shard| {
            let states = states.clone();
            let producers = producers.clone();
            async move {
                let store = shard.txns.store.borrow();
                store
                    .txns
                    .values()
                    .map(|e| &e.meta)
                    .filter(|m| states.is_empty() || states.contains(&m.state))
                    .filter(|m| producers.is_empty() || producers.contains(&m.producer_id))
                    .filter(|m| {
                        duration < 0
                            || (m.state == TxnState::Ongoing
                                && now.saturating_sub(m.start_ms) >= duration)
                    })
                    .map(|m| (m.transactional_id.clone(), m.producer_id, m.state.name()))
                    .collect::<Vec<_>>()
            }
        })
        .await;
    let mut error = ErrorCode::None;
    let mut listed = Vec::new();
    for result in per_shard {
        match result {
            Ok(list) => listed.extend(list),
            Err(_) => error = ErrorCode::CoordinatorNotAvailable,
        }
    }
    listed.sort();
    request.respond(&ListTransactionsResponse {
        error_code: error.code(),
        unknown_state_filters: unknown,
        transaction_states: listed
            .into_iter()
            .map(|(transactional_id, producer_id, state)| TransactionState {
                transactional_id,
                producer_id,
                transaction_state: state.to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}
