//! FindCoordinator (key 10), versions 0-6: this broker coordinates every group and every
//! transactional id (a single node). The first lookup creates `__consumer_offsets` (groups) or
//! `__transaction_state` (transactions) through the controller, as Kafka does. v4+ batches keys
//! in `coordinator_keys`.

use std::rc::Rc;

use super::topics::create_topics;
use super::{ApiSpec, HandlerError, Reply, Request};
use crate::coordinator::group::OFFSETS_TOPIC;
use crate::coordinator::transaction::TRANSACTION_TOPIC;
use crate::metadata::controller::CreateTopicSpec;
use crate::protocol::error::ErrorCode;
use crate::protocol::messages::find_coordinator_response::Coordinator;
use crate::protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use crate::protocol::ApiKey;
use crate::shard::Shard;

pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::FindCoordinator,
    min_version: 0,
    max_version: 6,
    advertised_min: 0,
    note: "groups and transactions (creates __consumer_offsets / __transaction_state on first use)",
};

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Creates `__consumer_offsets` if it does not exist: `offsets.topic.num.partitions`
/// partitions, compacted.
pub async fn ensure_offsets_topic(shard: &Rc<Shard>) -> Result<(), ErrorCode> {
    ensure_internal_topic(
        shard,
        OFFSETS_TOPIC,
        shard.broker.offsets_topic_num_partitions(),
        shard.broker.offsets_topic_segment_bytes(),
    )
    .await
}

/// Creates `__transaction_state` if it does not exist: `transaction.state.log.num.partitions`
/// partitions, compacted.
pub async fn ensure_transaction_topic(shard: &Rc<Shard>) -> Result<(), ErrorCode> {
    ensure_internal_topic(
        shard,
        TRANSACTION_TOPIC,
        shard.broker.transaction_state_log_num_partitions(),
        shard.broker.transaction_state_log_segment_bytes(),
    )
    .await
}

async fn ensure_internal_topic(
    shard: &Rc<Shard>,
    name: &str,
    partitions: i32,
    segment_bytes: i64,
) -> Result<(), ErrorCode> {
    if shard.metadata().topic(name).is_some() {
        return Ok(());
    }
    let spec = CreateTopicSpec {
        name: name.to_string(),
        num_partitions: partitions,
        replication_factor: -1,
        assignments: Vec::new(),
        configs: vec![
            ("cleanup.policy".to_string(), Some("compact".to_string())),
            ("segment.bytes".to_string(), Some(segment_bytes.to_string())),
            ("compression.type".to_string(), Some("producer".to_string())),
        ],
    };
    match create_topics(shard, vec![spec], false).await.pop() {
        Some(Ok(created)) => {
            tracing::info!("created {name} with {} partitions", created.partitions);
            Ok(())
        }
        Some(Err(error)) if error.code == ErrorCode::TopicAlreadyExists => Ok(()),
        Some(Err(error)) => {
            tracing::warn!("creating {name}: {}", error.message);
            Err(ErrorCode::CoordinatorNotAvailable)
        }
        None => Err(ErrorCode::CoordinatorNotAvailable),
    }
}

pub async fn handle(request: Request) -> Result<Reply, HandlerError> {
    let body: FindCoordinatorRequest = request.decode()?;
    let shard = request.shard.clone();
    let outcome = match body.key_type {
        KEY_TYPE_GROUP => ensure_offsets_topic(&shard).await,
        KEY_TYPE_TRANSACTION => ensure_transaction_topic(&shard).await,
        _ => Err(ErrorCode::InvalidRequest),
    };
    let (host, port) = shard
        .broker
        .advertised()
        .unwrap_or_else(|_| ("127.0.0.1".to_string(), 9092));
    let node_id = shard.metadata().node_id;
    let answer = |key: String| -> Coordinator {
        match outcome {
            Ok(()) => Coordinator {
                key,
                node_id,
                host: host.clone(),
                port: port as i32,
                error_code: 0,
                error_message: None,
                ..Default::default()
            },
            Err(code) => Coordinator {
                key,
                node_id: -1,
                host: String::new(),
                port: -1,
                error_code: code.code(),
                error_message: Some(
                    match code {
                        ErrorCode::InvalidRequest => "unknown coordinator key type",
                        _ if body.key_type == KEY_TYPE_TRANSACTION => {
                            "the transaction coordinator is not available"
                        }
                        _ => "the group coordinator is not available",
                    }
                    .to_string(),
                ),
                ..Default::default()
            },
        }
    };
    let response = if request.version >= 4 {
        FindCoordinatorResponse {
            coordinators: body.coordinator_keys.iter().cloned().map(answer).collect(),
            ..Default::default()
        }
    } else {
        let single = answer(body.key.clone());
        FindCoordinatorResponse {
            error_code: single.error_code,
            error_message: single.error_message,
            node_id: single.node_id,
            host: single.host,
            port: single.port,
            ..Default::default()
        }
    };
    request.respond(&response)
}
