//! DeleteTopics (key 20), versions 1-6: removes topics (by name, or by id in v6) through the
//! controller. Every shard drops the partitions and renames their directories away before the
//! response, so a topic created again under the same name starts empty.

use super::topics::change_metadata;
use super::{ApiSpec, HandlerError, Reply, Request};
use crate::metadata::controller::{plan_delete_topic, ApiError};
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::delete_topics_response::DeletableTopicResult;
use crate::protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use crate::protocol::{ApiKey, Uuid};

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::DeleteTopics,
    min_version: 1,
    max_version: 6,
    advertised_min: 1,
    note: "supported (by name; by id in v6)",
};

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: DeleteTopicsRequest = request.decode()?;
    let shard = request.shard.clone();
    let image = shard.metadata();
    // (name as the client gave it, topic id as the client gave it, resolved name)
    let mut targets: Vec<(Option<String>, Uuid, Result<String, ApiError>)> = Vec::new();
    if request.version >= 6 {
        for state in body.topics {
            let resolved = match (&state.name, state.topic_id) {
                (Some(name), _) => Ok(name.clone()),
                (None, id) => image
                    .topic_by_id(&id)
                    .map(|t| t.name.to_string())
                    .ok_or_else(|| {
                        ApiError::new(
                            ErrorCode::UnknownTopicId,
                            format!("Topic id {id} does not exist."),
                        )
                    }),
            };
            targets.push((state.name, state.topic_id, resolved));
        }
    } else {
        for name in body.topic_names {
            targets.push((Some(name.clone()), Uuid::ZERO, Ok(name)));
        }
    }
    let names: Vec<String> = targets
        .iter()
        .filter_map(|(_, _, r)| r.as_ref().ok().cloned())
        .collect();
    let mut outcomes = change_metadata(&shard, names, false, |image, broker, name: &String| {
        let id = image.topic(name).map(|t| t.id).unwrap_or(Uuid::ZERO);
        plan_delete_topic(image, broker, name).map(|records| (records, id))
    })
    .await
    .into_iter();
    let responses = targets
        .into_iter()
        .map(|(name, topic_id, resolved)| {
            let outcome =
                resolved.and_then(|_| outcomes.next().expect("one outcome per resolved name"));
            match outcome {
                Ok(id) => DeletableTopicResult {
                    name,
                    topic_id: if topic_id.is_zero() { id } else { topic_id },
                    error_code: 0,
                    ..Default::default()
                },
                Err(error) => DeletableTopicResult {
                    name,
                    topic_id,
                    error_code: error.code.code(),
                    error_message: Some(error.message),
                    ..Default::default()
                },
            }
        })
        .collect();
    request.respond(&DeleteTopicsResponse {
        responses,
        ..Default::default()
    })
}
