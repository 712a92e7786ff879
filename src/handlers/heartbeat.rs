//! Heartbeat (key 12), versions 0-4: keeps a member's session alive; REBALANCE_IN_PROGRESS
//! tells it to rejoin.

use super::{ApiSpec, HandlerError, Reply, Request};
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use crate::protocol::ApiKey;
use crate::shard::group_coordinator::to_coordinator;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::Heartbeat,
    min_version: 0,
    max_version: 4,
    advertised_min: 0,
    note: "classic protocol",
};

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: HeartbeatRequest = request.decode()?;
    let error = if body.group_id.is_empty() {
        ErrorCode::InvalidGroupId
    } else {
        let group = body.group_id.clone();
        to_coordinator(
            &request.shard,
            &body.group_id.clone(),
            move |shard| async move {
                let now = crate::event::now_ms();
                Ok(shard
                    .groups
                    .with_group(&group, |g| {
                        g.heartbeat(
                            &body.member_id,
                            body.group_instance_id.as_deref(),
                            body.generation_id,
                            now,
                        )
                    })
                    .unwrap_or(ErrorCode::UnknownMemberId))
            },
        )
        .await
        .unwrap_or_else(|code| code)
    };
    request.respond(&HeartbeatResponse {
        error_code: error.code(),
        ..Default::default()
    })
}
