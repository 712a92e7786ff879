//! ApiVersions (key 18), versions 0-4: the APIs and version ranges Weir serves, from [`APIS`].
//! A version newer than 4 gets Kafka's fallback: a v0 response with UNSUPPORTED_VERSION and the
//! supported list, so the client can retry with a version both sides know.

use super::{ApiSpec, HandlerError, Reply, Request, APIS};
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::api_versions_response::ApiVersion;
use crate::protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use crate::protocol::ApiKey;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::ApiVersions,
    min_version: 0,
    max_version: 4,
    advertised_min: 0,
    note: "supported; newer versions get the v0 UNSUPPORTED_VERSION fallback",
};

fn supported() -> Vec<ApiVersion> {
    let mut keys: Vec<ApiVersion> = APIS
        .iter()
        .map(|spec| ApiVersion {
            api_key: spec.key.code(),
            min_version: spec.advertised_min,
            max_version: spec.max_version,
            ..Default::default()
        })
        .collect();
    keys.sort_by_key(|k| k.api_key);
    keys
}

pub fn handle(request: Request) -> Result<Reply, HandlerError> {
    if request.version > SPEC.max_version || request.version < 0 {
        let response = ApiVersionsResponse {
            error_code: ErrorCode::UnsupportedVersion.code(),
            api_keys: supported(),
            ..Default::default()
        };
        let frame = crate::protocol::frame::encode_response(
            request.correlation_id,
            request.api_key,
            0,
            &response,
        )?;
        return Ok(Reply::Now(frame));
    }
    let error_code = match request.decode::<ApiVersionsRequest>() {
        Ok(_) => ErrorCode::None,
        // Kafka answers a malformed ApiVersions (v3+ fields) with INVALID_REQUEST rather than closing.
        Err(_) => ErrorCode::InvalidRequest,
    };
    let response = ApiVersionsResponse {
        error_code: error_code.code(),
        api_keys: supported(),
        ..Default::default()
    };
    request.respond(&response)
}
