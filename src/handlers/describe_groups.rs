//! DescribeGroups (key 15), versions 0-5: state, protocol and members of groups. A Stable group
//! shows each member's metadata and assignment; other states show members without them (as
//! Kafka). An unknown group, or a consumer-protocol (KIP-848) one, is described as Dead with no
//! error (v0-5), as Kafka does (ConsumerGroupDescribe describes those).

use super::{ApiSpec, HandlerError, Reply, Request};
use crate::coordinator::group::GroupState;
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use crate::protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use crate::protocol::ApiKey;
use crate::shard::group_coordinator::to_coordinator;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::DescribeGroups,
    min_version: 0,
    max_version: 5,
    advertised_min: 0,
    note: "supported (classic groups)",
};

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: DescribeGroupsRequest = request.decode()?;
    let operations = super::groups::group_authorized_operations(body.include_authorized_operations);
    let mut groups = Vec::with_capacity(body.groups.len());
    for group_id in body.groups {
        let id = group_id.clone();
        let outcome = to_coordinator(&request.shard, &group_id, move |shard| async move {
            let store = shard.groups.store.borrow();
            // A consumer-protocol group is not a classic group: Kafka describes it as Dead
            // (versions 0-5 have no error for it).
            let classic = store
                .groups
                .get(&id)
                .filter(|_| !store.consumer.contains_key(&id));
            let Some(g) = classic else {
                return Ok(DescribedGroup {
                    group_id: id,
                    group_state: GroupState::Dead.name().to_string(),
                    ..Default::default()
                });
            };
            let stable = g.is(GroupState::Stable);
            let protocol = g.protocol.clone().unwrap_or_default();
            Ok(DescribedGroup {
                group_id: id,
                group_state: g.state.name().to_string(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                protocol_data: if stable {
                    protocol.clone()
                } else {
                    String::new()
                },
                members: g
                    .members
                    .values()
                    .map(|m| DescribedGroupMember {
                        member_id: m.id.clone(),
                        group_instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        member_metadata: if stable {
                            m.metadata(&protocol)
                        } else {
                            Default::default()
                        },
                        member_assignment: if stable {
                            m.assignment.clone()
                        } else {
                            Default::default()
                        },
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
        })
        .await;
        let mut described = outcome.unwrap_or_else(|code| DescribedGroup {
            error_code: code.code(),
            group_id: group_id.clone(),
            ..Default::default()
        });
        if described.error_code == ErrorCode::None.code() {
            described.authorized_operations = operations;
        }
        groups.push(described);
    }
    request.respond(&DescribeGroupsResponse {
        groups,
        ..Default::default()
    })
}
