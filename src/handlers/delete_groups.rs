//! DeleteGroups (key 42), versions 0-2: deletes Empty groups — tombstones for their offsets
//! and their metadata in `__consumer_offsets`, answered once durable. A group with members is
//! refused (NON_EMPTY_GROUP), an unknown one is GROUP_ID_NOT_FOUND. Consumer-protocol
//! (KIP-848) groups alike: their ConsumerGroup* records are tombstoned too.

use super::{ApiSpec, HandlerError, Reply, Request};
use crate::coordinator::group::state::Effects;
use crate::coordinator::group::{GroupRecord, GroupState};
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::delete_groups_response::DeletableGroupResult;
use crate::protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use crate::protocol::ApiKey;
use crate::shard::group_coordinator::{apply_effects, to_coordinator, write_and_apply};

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::DeleteGroups,
    min_version: 0,
    max_version: 2,
    advertised_min: 0,
    note: "supported (Empty classic and consumer groups; tombstones in __consumer_offsets)",
};

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: DeleteGroupsRequest = request.decode()?;
    let mut results = Vec::with_capacity(body.groups_names.len());
    for group_id in body.groups_names {
        let id = group_id.clone();
        let outcome = to_coordinator(&request.shard, &group_id, move |shard| async move {
            if let Some(deleted) = crate::shard::consumer_groups::delete(&shard, &id).await {
                return deleted;
            }
            let now = crate::event::now_ms();
            let mut fx = Effects::default();
            let offsets = shard
                .groups
                .with_group(&id, |g| match g.state {
                    GroupState::Dead => Err(ErrorCode::GroupIdNotFound),
                    GroupState::Empty => {
                        g.mark_dead(now, &mut fx);
                        Ok(g.offsets.keys().cloned().collect::<Vec<_>>())
                    }
                    _ => Err(ErrorCode::NonEmptyGroup),
                })
                .unwrap_or(Err(ErrorCode::GroupIdNotFound))?;
            apply_effects(&shard, &id, fx);
            let mut records: Vec<GroupRecord> = offsets
                .into_iter()
                .map(|(topic, partition)| GroupRecord::Offset {
                    group: id.clone(),
                    topic,
                    partition,
                    value: None,
                })
                .collect();
            records.push(GroupRecord::Metadata {
                group: id.clone(),
                value: None,
            });
            let written = write_and_apply(&shard, &id, records).await;
            if written.is_err() {
                // Not deleted after all: the group is usable again.
                shard
                    .groups
                    .with_group(&id, |g| g.state = GroupState::Empty);
            }
            written
        })
        .await;
        results.push(DeletableGroupResult {
            group_id,
            error_code: outcome.err().unwrap_or(ErrorCode::None).code(),
            ..Default::default()
        });
    }
    request.respond(&DeleteGroupsResponse {
        results,
        ..Default::default()
    })
}
