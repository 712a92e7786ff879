//! SyncGroup (key 14), versions 0-5: the leader's assignment is written to
//! `__consumer_offsets` (GroupMetadataValue) and every member gets its part once the record is
//! durable. Waits for the leader, so the response is a [`Reply::Later`].

use bytes::Bytes;

use super::groups::run_parked;
use super::{ApiSpec, HandlerError, Reply, Request};
use crate::coordinator::group::state::SyncResult;
use crate::coordinator::group::GroupReply;
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use crate::protocol::ApiKey;
use crate::shard::group_coordinator::dispatch_to_coordinator;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::SyncGroup,
    min_version: 0,
    max_version: 5,
    advertised_min: 0,
    note: "classic protocol; the assignment is durable in __consumer_offsets before members get it",
};

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: SyncGroupRequest = request.decode()?;
    if body.group_id.is_empty() {
        return request.respond(&response(SyncResult::error(ErrorCode::InvalidGroupId)));
    }
    let group = body.group_id.clone();
    let assignments: Vec<(String, Bytes)> = body
        .assignments
        .into_iter()
        .map(|a| (a.member_id, a.assignment))
        .collect();
    let queued = dispatch_to_coordinator(&request.shard, &group.clone(), move |shard| async move {
        let now = crate::event::now_ms();
        let reply = run_parked(&shard, &group, false, |g, waiter, fx| {
            g.sync(
                &body.member_id,
                body.group_instance_id.as_deref(),
                body.generation_id,
                body.protocol_type.as_deref(),
                body.protocol_name.as_deref(),
                assignments,
                waiter,
                now,
                fx,
            )
        })
        .await?;
        match reply {
            GroupReply::Sync(result) => Ok(result),
            GroupReply::Join(_) => Err(ErrorCode::UnknownServerError),
        }
    })
    .await;
    let receiver = match queued {
        Ok(receiver) => receiver,
        Err(code) => return request.respond(&response(SyncResult::error(code))),
    };
    Ok(Reply::Later(Box::pin(async move {
        let result = receiver
            .await
            .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable))
            .unwrap_or_else(SyncResult::error);
        request
            .encode(&response(result))
            .expect("a SyncGroup response encodes at the request's version")
    })))
}

fn response(result: SyncResult) -> SyncGroupResponse {
    SyncGroupResponse {
        error_code: result.error.code(),
        protocol_type: result.protocol_type,
        protocol_name: result.protocol_name,
        assignment: result.assignment,
        ..Default::default()
    }
}
