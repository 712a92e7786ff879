//! LeaveGroup (key 13), versions 0-5: members leave (one member id in v0-2, a batch of member
//! ids or `group.instance.id`s in v3+), which starts a rebalance of the rest.

use super::{ApiSpec, HandlerError, Reply, Request};
use crate::coordinator::group::state::Effects;
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::leave_group_response::MemberResponse;
use crate::protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use crate::protocol::ApiKey;
use crate::shard::group_coordinator::{apply_effects, to_coordinator};

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::LeaveGroup,
    min_version: 0,
    max_version: 5,
    advertised_min: 0,
    note: "classic protocol; batched members and static members (v3+)",
};

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: LeaveGroupRequest = request.decode()?;
    let batched = request.version >= 3;
    let leaving: Vec<(String, Option<String>)> = if batched {
        body.members
            .iter()
            .map(|m| (m.member_id.clone(), m.group_instance_id.clone()))
            .collect()
    } else {
        vec![(body.member_id.clone(), None)]
    };
    let outcome = if body.group_id.is_empty() {
        Err(ErrorCode::InvalidGroupId)
    } else {
        let group = body.group_id.clone();
        let members = leaving.clone();
        to_coordinator(&request.shard, &body.group_id, move |shard| async move {
            let now = crate::event::now_ms();
            let config = shard.groups.config.clone();
            let mut fx = Effects::default();
            let errors = shard.groups.with_group(&group, |g| {
                members
                    .iter()
                    .map(|(member, instance)| {
                        g.leave(member, instance.as_deref(), now, &config, &mut fx)
                    })
                    .collect::<Vec<_>>()
            });
            apply_effects(&shard, &group, fx);
            Ok(errors.unwrap_or_else(|| vec![ErrorCode::UnknownMemberId; members.len()]))
        })
        .await
    };
    let response = match outcome {
        Err(code) => LeaveGroupResponse {
            error_code: code.code(),
            ..Default::default()
        },
        Ok(errors) if batched => LeaveGroupResponse {
            error_code: 0,
            members: leaving
                .into_iter()
                .zip(errors)
                .map(|((member_id, group_instance_id), error)| MemberResponse {
                    member_id,
                    group_instance_id,
                    error_code: error.code(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        },
        Ok(errors) => LeaveGroupResponse {
            error_code: errors.first().copied().unwrap_or(ErrorCode::None).code(),
            ..Default::default()
        },
    };
    request.respond(&response)
}
