//! Helpers the group handlers share: running a group operation on the coordinator shard and
//! waiting for a JoinGroup/SyncGroup reply there.

use std::rc::Rc;

use futures::channel::oneshot;

use crate::coordinator::group::state::{Effects, GroupReply};
use crate::protocol::error::ErrorCode;
use crate::shard::group_coordinator::{apply_effects, Waiter};
use crate::shard::Shard;

/// Kafka's group ACL operations a client may perform without ACLs: READ, DELETE, DESCRIBE.
const GROUP_AUTHORIZED_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

/// `authorized_operations` of a described group: the group operations when the request asks for
/// them (DescribeGroups v3+, ConsumerGroupDescribe), else Kafka's "omitted" marker.
pub fn group_authorized_operations(include: bool) -> i32 {
    if include {
        GROUP_AUTHORIZED_OPERATIONS
    } else {
        super::topics::AUTHORIZED_OPERATIONS_OMITTED
    }
}

/// Kafka's member id for a new member: `<client.id>-<random UUID>`.
pub fn new_member_id(client_id: &str) -> String {
    let bytes = crate::metadata::random_uuid().0;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{client_id}-{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Runs `operation` on group `group` (on the coordinator shard), applies its effects and waits
/// for the reply it hands to the waiter.
pub async fn run_parked(
    shard: &Rc<Shard>,
    group: &str,
    create: bool,
    operation: impl FnOnce(
        &mut crate::coordinator::group::ClassicGroup<Waiter>,
        Waiter,
        &mut Effects<Waiter>,
    ),
) -> Result<GroupReply, ErrorCode> {
    let (waiter, reply) = oneshot::channel();
    let mut fx = Effects::default();
    if create {
        shard
            .groups
            .with_group_or_new(group, |g| operation(g, waiter, &mut fx));
    } else if shard
        .groups
        .with_group(group, |g| operation(g, waiter, &mut fx))
        .is_none()
    {
        return Err(ErrorCode::UnknownMemberId);
    }
    apply_effects(shard, group, fx);
    shard.groups.forget_if_unused(group);
    reply.await.map_err(|_| ErrorCode::CoordinatorNotAvailable)
}

/// One partition of an OffsetCommit or TxnOffsetCommit: the offset to write, or why not
/// (UNKNOWN_TOPIC_OR_PARTITION, OFFSET_METADATA_TOO_LARGE beyond `offset.metadata.max.bytes`).
#[allow(clippy::too_many_arguments)]
pub fn commit_item(
    image: &crate::metadata::MetadataImage,
    topic: &str,
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: Option<&String>,
    max_metadata: usize,
    now_ms: i64,
    expire_timestamp_ms: Option<i64>,
) -> Result<crate::coordinator::group::CommittedOffset, ErrorCode> {
    let known = image
        .topic(topic)
        .is_some_and(|t| partition >= 0 && (partition as usize) < t.partitions.len());
    let metadata = metadata.cloned().unwrap_or_default();
    if !known {
        Err(ErrorCode::UnknownTopicOrPartition)
    } else if metadata.len() > max_metadata {
        Err(ErrorCode::OffsetMetadataTooLarge)
    } else {
        Ok(crate::coordinator::group::CommittedOffset {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp_ms: now_ms,
            expire_timestamp_ms,
        })
    }
}

/// The error of each committed partition, grouped by topic in request order: each partition's
/// own refusal, else the outcome of the write.
pub fn commit_results<T>(
    items: Vec<(String, i32, Result<T, ErrorCode>)>,
    written: Result<(), ErrorCode>,
) -> Vec<(String, Vec<(i32, ErrorCode)>)> {
    let mut topics: Vec<(String, Vec<(i32, ErrorCode)>)> = Vec::new();
    for (topic, partition, item) in items {
        let error = match (&item, written) {
            (Err(code), _) => *code,
            (Ok(_), Err(code)) => code,
            (Ok(_), Ok(())) => ErrorCode::None,
        };
        match topics.last_mut() {
            Some((last, partitions)) if *last == topic => partitions.push((partition, error)),
            _ => topics.push((topic, vec![(partition, error)])),
        }
    }
    topics
}
