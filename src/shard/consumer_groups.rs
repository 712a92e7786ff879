//! The consumer group protocol (KIP-848) on the coordinator shard: heartbeats run the pure
//! state machine ([`crate::coordinator::consumer_group`]), and what they changed is appended to
//! the group's `__consumer_offsets` partition as Kafka's ConsumerGroup* records; the reply waits
//! until those are durable, as every group write does. Startup replays the same records
//! ([`apply_loaded`]); the shard's group tick expires members ([`tick`]).
//!
//! One group-id namespace with the classic groups (as Kafka): a classic group with members
//! refuses consumer heartbeats (GROUP_ID_NOT_FOUND), an Empty one is converted (its metadata
//! tombstoned, its offsets kept). Committed offsets of a consumer group live in the store's
//! classic entry for the id, which then has no classic metadata.

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;

use super::group_coordinator::{append_encoded, commit_error};
use super::Shard;
use crate::coordinator::consumer_group::records::{self, ConsumerRecord};
use crate::coordinator::consumer_group::{
    Changes, ConsumerGroup, ConsumerGroupConfig, Heartbeat, HeartbeatReply, JOIN_EPOCH,
};
use crate::coordinator::group::{GroupRecord, GroupState};
use crate::metadata::MetadataImage;
use crate::protocol::error::ErrorCode;
use crate::protocol::wire::Uuid;

/// The settings of consumer-protocol groups, from the broker's configuration.
pub fn config(broker: &crate::config::BrokerConfig) -> ConsumerGroupConfig {
    ConsumerGroupConfig {
        session_timeout_ms: broker.group_consumer_session_timeout_ms(),
        heartbeat_interval_ms: broker.group_consumer_heartbeat_interval_ms(),
        max_size: broker.group_consumer_max_size(),
        ..ConsumerGroupConfig::default()
    }
}

/// The partition counts of `names` that exist (what the assignors and the group epoch see).
pub fn topic_counts<'a>(
    image: &MetadataImage,
    names: impl IntoIterator<Item = &'a String>,
) -> BTreeMap<String, i32> {
    names
        .into_iter()
        .filter_map(|name| {
            image
                .topic(name)
                .map(|t| (name.clone(), t.partitions.len() as i32))
        })
        .collect()
}

pub fn topic_id(image: &MetadataImage, name: &str) -> Option<Uuid> {
    image.topic(name).map(|t| t.id)
}

pub fn topic_name(image: &MetadataImage, id: &Uuid) -> Option<String> {
    image.topic_by_id(id).map(|t| t.name.to_string())
}

/// Encodes consumer records (and classic ones, e.g. a converted group's metadata tombstone).
fn encode(
    image: &MetadataImage,
    classic: &[GroupRecord],
    consumer: &[ConsumerRecord],
) -> Vec<(Bytes, Option<Bytes>)> {
    let ids = |name: &str| topic_id(image, name);
    classic
        .iter()
        .map(GroupRecord::encode)
        .chain(consumer.iter().map(|r| r.encode(&ids)))
        .collect()
}

/// Appends the records of `group` and waits until they are durable.
pub async fn persist(
    shard: &Rc<Shard>,
    group: &str,
    classic: Vec<GroupRecord>,
    consumer: Vec<ConsumerRecord>,
) -> Result<(), ErrorCode> {
    if classic.is_empty() && consumer.is_empty() {
        return Ok(());
    }
    let encoded = encode(&shard.metadata(), &classic, &consumer);
    append_encoded(shard, group, encoded)
        .await
        .map_err(commit_error)
}

/// Whether a classic group blocks `group` from becoming a consumer group; Ok(true) when an
/// Empty classic group with metadata must be converted first.
fn classic_conflict(shard: &Rc<Shard>, group: &str) -> Result<bool, ErrorCode> {
    let store = shard.groups.store.borrow();
    if store.consumer.contains_key(group) {
        return Ok(false);
    }
    match store.groups.get(group) {
        None => Ok(false),
        Some(g) if g.members.is_empty() && g.is(GroupState::Empty) => {
            Ok(g.protocol_type.is_some() || g.generation > 0)
        }
        Some(_) => Err(ErrorCode::GroupIdNotFound),
    }
}

/// One ConsumerGroupHeartbeat, on the coordinator shard.
pub async fn heartbeat(
    shard: Rc<Shard>,
    group_id: String,
    request: Heartbeat,
) -> Result<HeartbeatReply, ErrorCode> {
    let joining = request.member_epoch == JOIN_EPOCH;
    let convert = classic_conflict(&shard, &group_id)?;
    let now = crate::event::now_ms();
    let image = shard.metadata();
    let config = shard.groups.consumer_config.clone();
    let mut classic = Vec::new();
    let (reply, consumer) = {
        let mut store = shard.groups.store.borrow_mut();
        if !store.consumer.contains_key(&group_id) && !joining {
            return Err(ErrorCode::GroupIdNotFound);
        }
        let created = !store.consumer.contains_key(&group_id);
        let group = store
            .consumer
            .entry(group_id.clone())
            .or_insert_with(|| ConsumerGroup::new(group_id.clone()));
        let mut changes = Changes::default();
        let client_id = request.client_id.clone();
        // Only the topics this group can care about: its members' subscriptions, the new one, and
        // those whose partition counts it saw (not every topic of the cluster per heartbeat).
        let mut names = group.subscribed_topics();
        names.extend(request.subscriptions.iter().flatten().cloned());
        names.extend(group.topics_seen.keys().cloned());
        let topics = topic_counts(&image, &names);
        let reply = group.heartbeat(
            request,
            now,
            &topics,
            &config,
            || crate::handlers::groups::new_member_id(&client_id),
            &mut changes,
        );
        let reply = match reply {
            Ok(reply) => reply,
            Err(error) => {
                if created {
                    store.consumer.remove(&group_id);
                }
                return Err(error);
            }
        };
        let consumer = records::records_for(group, &changes);
        if changes.target_recomputed {
            *shard
                .groups
                .consumer_rebalances
                .borrow_mut()
                .entry(group_id.clone())
                .or_default() += 1;
        }
        if convert {
            let record = GroupRecord::Metadata {
                group: group_id.clone(),
                value: None,
            };
            store.apply(record.clone(), now);
            classic.push(record);
            tracing::info!("group '{group_id}': empty classic group converted to a consumer group");
        }
        (reply, consumer)
    };
    persist(&shard, &group_id, classic, consumer).await?;
    Ok(reply)
}

/// Expires members past their session or revocation deadline, persisting the removals.
pub fn tick(shard: &Rc<Shard>, now: i64) {
    let expired: Vec<(String, Vec<ConsumerRecord>)> = {
        let mut store = shard.groups.store.borrow_mut();
        store
            .consumer
            .values_mut()
            .filter_map(|group| {
                let mut changes = Changes::default();
                group
                    .expire(now, &mut changes)
                    .then(|| (group.id.clone(), records::records_for(group, &changes)))
            })
            .collect()
    };
    for (group, records) in expired {
        tracing::info!("group '{group}': consumer member(s) expired");
        let shard = shard.clone();
        glommio::spawn_local(async move {
            if let Err(error) = persist(&shard, &group, Vec::new(), records).await {
                tracing::warn!("group '{group}': writing member expiry: {}", error.name());
            }
        })
        .detach();
    }
}

/// Replays a loaded record if it is a consumer group record; false if it is not one.
pub fn apply_loaded(shard: &Rc<Shard>, key: &Bytes, value: Option<&Bytes>, now: i64) -> bool {
    let image = shard.metadata();
    let names = |id: &Uuid| topic_name(&image, id);
    let Some(record) = ConsumerRecord::decode(key, value, &names) else {
        return false;
    };
    let session = shard.groups.consumer_config.session_timeout_ms;
    let mut store = shard.groups.store.borrow_mut();
    records::apply(&mut store.consumer, record, now, session);
    true
}

/// Deletes an Empty consumer group: tombstones for its records and offsets, once durable.
/// None if `group` is not a consumer group.
pub async fn delete(shard: &Rc<Shard>, group: &str) -> Option<Result<(), ErrorCode>> {
    let (consumer, offsets) = {
        let store = shard.groups.store.borrow();
        let g = store.consumer.get(group)?;
        if !g.members.is_empty() {
            return Some(Err(ErrorCode::NonEmptyGroup));
        }
        let offsets: Vec<(String, i32)> = store
            .groups
            .get(group)
            .map(|c| c.offsets.keys().cloned().collect())
            .unwrap_or_default();
        (records::tombstones(g), offsets)
    };
    let classic: Vec<GroupRecord> = offsets
        .into_iter()
        .map(|(topic, partition)| GroupRecord::Offset {
            group: group.to_string(),
            topic,
            partition,
            value: None,
        })
        .collect();
    if let Err(error) = persist(shard, group, classic.clone(), consumer).await {
        return Some(Err(error));
    }
    let now = crate::event::now_ms();
    let mut store = shard.groups.store.borrow_mut();
    store.consumer.remove(group);
    for record in classic {
        store.apply(record, now);
    }
    shard.groups.consumer_rebalances.borrow_mut().remove(group);
    Some(Ok(()))
}

/// The states of a consumer-protocol group, as Kafka names them.
pub const STATES: [&str; 4] = ["Empty", "Assigning", "Reconciling", "Stable"];

/// Before a classic JoinGroup: a consumer group with members refuses it
/// (INCONSISTENT_GROUP_PROTOCOL; Kafka's online migration of members is not served), an empty
/// one is deleted (its records tombstoned, its offsets kept) so the classic group can form.
pub async fn make_room_for_classic(shard: &Rc<Shard>, group: &str) -> Result<(), ErrorCode> {
    let tombstones = {
        let store = shard.groups.store.borrow();
        let Some(g) = store.consumer.get(group) else {
            return Ok(());
        };
        if !g.members.is_empty() {
            return Err(ErrorCode::InconsistentGroupProtocol);
        }
        records::tombstones(g)
    };
    persist(shard, group, Vec::new(), tombstones).await?;
    shard.groups.store.borrow_mut().consumer.remove(group);
    tracing::info!("group '{group}': empty consumer group converted to a classic group");
    Ok(())
}

/// Kafka's consumer group state names (ListGroups, DescribeGroups, ConsumerGroupDescribe).
pub fn state_name(group: &ConsumerGroup) -> &'static str {
    match group.state() {
        "empty" => "Empty",
        "assigning" => "Assigning",
        "reconciling" => "Reconciling",
        _ => "Stable",
    }
}
