//! ListGroups (key 16), versions 0-5: every group of every shard, with its protocol type,
//! state (v4+, filterable by state) and type (v5+, filterable: "classic", or "consumer" for
//! groups of the KIP-848 protocol, whose protocol type is "consumer").

use std::rc::Rc;

use super::{ApiSpec, HandlerError, Reply, Request};
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::list_groups_response::ListedGroup;
use crate::protocol::messages::{ListGroupsRequest, ListGroupsResponse};
use crate::protocol::ApiKey;
use crate::shard::Shard;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::ListGroups,
    min_version: 0,
    max_version: 5,
    advertised_min: 0,
    note: "supported (states filter v4+, types filter v5: classic and consumer groups)",
};

/// One listed group: id, protocol type, state name, group type.
type Listed = (String, String, String, &'static str);

/// The groups of one shard, and whether some of its partitions are still loading.
fn local_groups(shard: &Rc<Shard>) -> (Vec<Listed>, bool) {
    let store = shard.groups.store.borrow();
    let classic = store
        .groups
        .values()
        .filter(|g| !store.consumer.contains_key(&g.id))
        .map(|g| {
            (
                g.id.clone(),
                g.protocol_type.clone().unwrap_or_default(),
                g.state.name().to_string(),
                "classic",
            )
        });
    let consumer = store.consumer.values().map(|g| {
        (
            g.id.clone(),
            "consumer".to_string(),
            crate::shard::consumer_groups::state_name(g).to_string(),
            "consumer",
        )
    });
    let groups = classic.chain(consumer).collect();
    (groups, shard.groups.loading())
}

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: ListGroupsRequest = request.decode()?;
    let results = request
        .shard
        .broadcast(|shard| async move { local_groups(&shard) })
        .await;
    let mut error = ErrorCode::None;
    let mut groups = Vec::new();
    let states: Vec<String> = body
        .states_filter
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    let types: Vec<String> = body.types_filter.iter().map(|s| s.to_lowercase()).collect();
    for result in results {
        let Ok((listed, loading)) = result else {
            error = ErrorCode::CoordinatorNotAvailable;
            continue;
        };
        if loading {
            error = ErrorCode::CoordinatorLoadInProgress;
        }
        for (group_id, protocol_type, state, group_type) in listed {
            if !states.is_empty() && !states.contains(&state.to_lowercase()) {
                continue;
            }
            if !types.is_empty() && !types.iter().any(|t| t == group_type) {
                continue;
            }
            groups.push(ListedGroup {
                group_id,
                protocol_type,
                group_state: state,
                group_type: group_type.to_string(),
                ..Default::default()
            });
        }
    }
    request.respond(&ListGroupsResponse {
        error_code: error.code(),
        groups,
        ..Default::default()
    })
}
