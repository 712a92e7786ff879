//! JoinGroup (key 11), versions 0-9: the join phase of the classic group protocol. The response
//! waits for the rebalance (up to the rebalance timeout), so it is a [`Reply::Later`]: the
//! connection keeps serving its other requests meanwhile. v4+ members without an id first get
//! MEMBER_ID_REQUIRED with their id, as in Kafka. A consumer-protocol (KIP-848) group with
//! members answers INCONSISTENT_GROUP_PROTOCOL; an empty one is converted to a classic group.

use super::groups::{new_member_id, run_parked};
use super::{ApiSpec, HandlerError, Reply, Request};
use crate::coordinator::group::state::{JoinRequest, JoinResult, Protocol};
use crate::coordinator::group::GroupReply;
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::join_group_response::JoinGroupResponseMember;
use crate::protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use crate::protocol::ApiKey;
use crate::shard::group_coordinator::dispatch_to_coordinator;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::JoinGroup,
    min_version: 0,
    max_version: 9,
    advertised_min: 0,
    note: "classic protocol (eager and cooperative, static membership, MEMBER_ID_REQUIRED v4+)",
};

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: JoinGroupRequest = request.decode()?;
    if body.group_id.is_empty() {
        return request.respond(&response(
            request.version,
            JoinResult::error(&body.member_id, ErrorCode::InvalidGroupId),
        ));
    }
    let client_id = request.client_id.clone().unwrap_or_default();
    let join = JoinRequest {
        member_id: body.member_id.clone(),
        instance_id: body.group_instance_id.clone(),
        client_id,
        client_host: request.client_host.to_string(),
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if request.version == 0 {
            body.session_timeout_ms
        } else {
            body.rebalance_timeout_ms
        },
        session_timeout_ms: body.session_timeout_ms,
        protocol_type: body.protocol_type.clone(),
        protocols: body
            .protocols
            .into_iter()
            .map(|p| Protocol {
                name: p.name,
                metadata: p.metadata,
            })
            .collect(),
        require_known_member_id: request.version >= 4,
    };
    let group = body.group_id.clone();
    let member_id = body.member_id.clone();
    let queued = dispatch_to_coordinator(&request.shard, &group.clone(), move |shard| async move {
        // One id namespace with consumer-protocol groups: an empty one becomes classic.
        crate::shard::consumer_groups::make_room_for_classic(&shard, &group).await?;
        let config = shard.groups.config.clone();
        let now = crate::event::now_ms();
        // Only a member without an id may create the group (Kafka's getOrMaybeCreateGroup).
        let create = join.member_id.is_empty();
        let reply = run_parked(&shard, &group, create, |g, waiter, fx| {
            g.join(join, waiter, now, &config, new_member_id, fx)
        })
        .await?;
        match reply {
            GroupReply::Join(result) => Ok(result),
            GroupReply::Sync(_) => Err(ErrorCode::UnknownServerError),
        }
    })
    .await;
    let receiver = match queued {
        Ok(receiver) => receiver,
        Err(code) => {
            return request.respond(&response(
                request.version,
                JoinResult::error(&member_id, code),
            ))
        }
    };
    Ok(Reply::Later(Box::pin(async move {
        let result = receiver
            .await
            .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable))
            .unwrap_or_else(|code| JoinResult::error(&member_id, code));
        request
            .encode(&response(request.version, result))
            .expect("a JoinGroup response encodes at the request's version")
    })))
}

fn response(version: i16, result: JoinResult) -> JoinGroupResponse {
    let protocol_name = match result.protocol_name {
        None if version < 7 => Some(String::new()),
        other => other,
    };
    JoinGroupResponse {
        error_code: result.error.code(),
        generation_id: result.generation_id,
        protocol_type: result.protocol_type,
        protocol_name,
        leader: result.leader,
        skip_assignment: false,
        member_id: result.member_id,
        members: result
            .members
            .into_iter()
            .map(|m| JoinGroupResponseMember {
                member_id: m.member_id,
                group_instance_id: m.instance_id,
                metadata: m.metadata,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}
