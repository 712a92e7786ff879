//! Helpers the topic-level handlers share: metadata changes through the controller on shard 0,
//! auto-creation of topics, and running work on a partition's owner shard.

use std::rc::Rc;
use std::sync::Arc;

use crate::metadata::controller::{plan_create_topic, ApiError, CreateTopicSpec};
use crate::metadata::{MetadataImage, MetadataRecord};
use crate::partition::{Partition, PartitionError};
use crate::protocol::error::ErrorCode;
use crate::protocol::Uuid;
use crate::shard::Shard;

fn controller_gone() -> ApiError {
    ApiError::new(
        ErrorCode::NotController,
        "the controller shard is shutting down",
    )
}

/// Runs one planned metadata change per item on the controller (shard 0), publishes the
/// resulting image to every shard, and returns each item's outcome in order.
pub async fn change_metadata<S, T, P>(
    shard: &Rc<Shard>,
    items: Vec<S>,
    validate_only: bool,
    plan: P,
) -> Vec<Result<T, ApiError>>
where
    S: Send + 'static,
    T: Send + 'static,
    P: Fn(
            &MetadataImage,
            &crate::config::BrokerConfig,
            &S,
        ) -> Result<(Vec<MetadataRecord>, T), ApiError>
        + Send
        + 'static,
{
    let count = items.len();
    shard
        .with_controller(move |controller_shard, controller| async move {
            let mut results = Vec::with_capacity(items.len());
            let mut changed = None;
            for item in &items {
                let outcome = if validate_only {
                    plan(&controller.image(), &controller.broker, item).map(|(_, value)| value)
                } else {
                    let broker = controller.broker.clone();
                    controller
                        .change(|image| plan(image, &broker, item))
                        .await
                        .map(|(image, value)| {
                            changed = Some(image);
                            value
                        })
                };
                results.push(outcome);
            }
            if let Some(image) = changed {
                controller_shard.publish_metadata(image).await;
            }
            results
        })
        .await
        .unwrap_or_else(|_| (0..count).map(|_| Err(controller_gone())).collect())
}

/// What CreateTopics reports about a created topic.
#[derive(Clone, Copy, Debug)]
pub struct CreatedTopic {
    pub id: Uuid,
    pub partitions: i32,
}

pub async fn create_topics(
    shard: &Rc<Shard>,
    specs: Vec<CreateTopicSpec>,
    validate_only: bool,
) -> Vec<Result<CreatedTopic, ApiError>> {
    change_metadata(shard, specs, validate_only, |image, broker, spec| {
        plan_create_topic(image, broker, spec)
            .map(|(records, id, partitions)| (records, CreatedTopic { id, partitions }))
    })
    .await
}

/// Creates the topics among `names` that do not exist yet, with the broker defaults (Kafka's
/// auto.create.topics.enable). Returns the image afterwards. Names that are invalid or fail to
/// be created are left out; callers report them as unknown.
pub async fn auto_create(shard: &Rc<Shard>, names: Vec<String>) -> Arc<MetadataImage> {
    let image = shard.metadata();
    let missing: Vec<CreateTopicSpec> = names
        .into_iter()
        .filter(|name| {
            // Internal topics are created by their coordinator with their own settings.
            image.topic(name).is_none()
                && !crate::metadata::is_internal_topic(name)
                && crate::metadata::validate_topic_name(name).is_ok()
        })
        .map(|name| CreateTopicSpec {
            name,
            num_partitions: -1,
            replication_factor: -1,
            ..Default::default()
        })
        .collect();
    if missing.is_empty() || !shard.broker.auto_create_topics() {
        return image;
    }
    for (spec, result) in missing
        .iter()
        .map(|s| s.name.clone())
        .zip(create_topics(shard, missing.clone(), false).await)
    {
        match result {
            Ok(created) => tracing::info!(
                "auto-created topic '{spec}' with {} partition(s)",
                created.partitions
            ),
            Err(error) if error.code == ErrorCode::TopicAlreadyExists => {}
            Err(error) => tracing::warn!("auto-creating topic '{spec}' failed: {}", error.message),
        }
    }
    shard.metadata()
}

/// Runs `work` with partition `partition` of `topic` on its owner shard.
pub async fn on_partition<R, F, Fut>(
    shard: &Rc<Shard>,
    topic: Arc<str>,
    partition: i32,
    work: F,
) -> Result<R, PartitionError>
where
    F: FnOnce(Rc<Shard>, Rc<Partition>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<R, PartitionError>> + 'static,
    R: Send + 'static,
{
    let owner = shard.owner_of(&topic, partition);
    shard
        .submit_to(owner, move |owner_shard: Rc<Shard>| async move {
            match owner_shard.partition(&topic, partition) {
                Some(found) => work(owner_shard, found).await,
                None => Err(PartitionError::code(ErrorCode::UnknownTopicOrPartition)),
            }
        })
        .await
        .unwrap_or_else(|_| {
            Err(PartitionError::new(
                ErrorCode::NotLeaderOrFollower,
                "the partition's shard is shutting down",
            ))
        })
}

/// Kafka's leader-epoch fencing: a client that knows a newer epoch than ours is ahead
/// (UNKNOWN_LEADER_EPOCH), an older one is fenced (FENCED_LEADER_EPOCH); -1 skips the check.
pub fn check_leader_epoch(current_leader_epoch: i32, ours: i32) -> Result<(), PartitionError> {
    if current_leader_epoch < 0 || current_leader_epoch == ours {
        Ok(())
    } else if current_leader_epoch > ours {
        Err(PartitionError::code(ErrorCode::UnknownLeaderEpoch))
    } else {
        Err(PartitionError::code(ErrorCode::FencedLeaderEpoch))
    }
}

/// Bits of Kafka's AclOperation values a client may perform on a topic (no ACLs: all of them).
pub const TOPIC_AUTHORIZED_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);
/// Bits for the cluster resource.
pub const CLUSTER_AUTHORIZED_OPERATIONS: i32 =
    (1 << 4) | (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);
/// "Not requested" in Kafka's responses.
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;
