//! The consumer group records of `__consumer_offsets` (KIP-848), in Kafka's format: the key's
//! 2-byte prefix is the record type (3 group epoch, 4 subscribed topic metadata, 5 member
//! metadata, 6 target assignment epoch, 7 a member's target assignment, 8 a member's current
//! assignment), the value's prefix its version (0); a null value is a tombstone.
//!
//! Assignments are stored by topic id, as Kafka does: encoding takes the topic ids from the
//! metadata image, decoding maps them back to names (a topic deleted since is dropped).
//! [`apply`] is the replay: the heartbeat path writes these records and startup applies them,
//! so a restarted broker has the same epochs, members and assignments.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, Bytes};

use super::{ConsumerGroup, ConsumerMember, MemberState};
use crate::coordinator::assignor::Assignment;
use crate::protocol::group_coordinator::consumer_group_current_member_assignment_value::TopicPartitions as CurrentTopic;
use crate::protocol::group_coordinator::consumer_group_partition_metadata_value::TopicMetadata;
use crate::protocol::group_coordinator::consumer_group_target_assignment_member_value::TopicPartition as TargetTopic;
use crate::protocol::group_coordinator::{
    ConsumerGroupCurrentMemberAssignmentKey, ConsumerGroupCurrentMemberAssignmentValue,
    ConsumerGroupMemberMetadataKey, ConsumerGroupMemberMetadataValue, ConsumerGroupMetadataKey,
    ConsumerGroupMetadataValue, ConsumerGroupPartitionMetadataKey,
    ConsumerGroupPartitionMetadataValue, ConsumerGroupTargetAssignmentMemberKey,
    ConsumerGroupTargetAssignmentMemberValue, ConsumerGroupTargetAssignmentMetadataKey,
    ConsumerGroupTargetAssignmentMetadataValue,
};
use crate::protocol::wire::{encode_to_bytes, Uuid};
use crate::protocol::Message;

pub const GROUP_EPOCH_KEY: i16 = 3;
pub const PARTITION_METADATA_KEY: i16 = 4;
pub const MEMBER_METADATA_KEY: i16 = 5;
pub const TARGET_EPOCH_KEY: i16 = 6;
pub const TARGET_MEMBER_KEY: i16 = 7;
pub const CURRENT_ASSIGNMENT_KEY: i16 = 8;

/// What a member subscribes to and how it joined (the ConsumerGroupMemberMetadata value).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberMetadata {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscriptions: BTreeSet<String>,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
}

/// A member's epochs and partitions (the ConsumerGroupCurrentMemberAssignment value).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CurrentAssignment {
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: i8,
    pub assigned: Assignment,
    pub pending_revocation: Assignment,
}

/// One consumer group record; `None` values are tombstones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsumerRecord {
    GroupEpoch {
        group: String,
        epoch: Option<i32>,
    },
    /// Partition counts of the subscribed topics the group epoch last saw.
    Topics {
        group: String,
        topics: Option<BTreeMap<String, i32>>,
    },
    Member {
        group: String,
        member: String,
        value: Option<MemberMetadata>,
    },
    TargetEpoch {
        group: String,
        epoch: Option<i32>,
    },
    TargetMember {
        group: String,
        member: String,
        value: Option<Assignment>,
    },
    Current {
        group: String,
        member: String,
        value: Option<CurrentAssignment>,
    },
}

/// Kafka's MemberState bytes.
pub fn state_byte(state: MemberState) -> i8 {
    match state {
        MemberState::Stable => 0,
        MemberState::UnreleasedPartitions => 1,
        MemberState::UnrevokedPartitions => 2,
    }
}

fn state_of(byte: i8) -> MemberState {
    match byte {
        1 => MemberState::UnreleasedPartitions,
        2 => MemberState::UnrevokedPartitions,
        _ => MemberState::Stable,
    }
}

fn prefixed<M: Message>(prefix: i16, version: i16, message: &M) -> Bytes {
    let body = encode_to_bytes(message, version).expect("group records always encode");
    let mut out = Vec::with_capacity(body.len() + 2);
    out.extend_from_slice(&prefix.to_be_bytes());
    out.extend_from_slice(&body);
    Bytes::from(out)
}

fn key<M: Message>(record_type: i16, message: &M) -> Bytes {
    // Keys are versioned by their record type and encoded at that version.
    prefixed(record_type, record_type, message)
}

fn value<M: Message>(message: &M) -> Bytes {
    prefixed(0, 0, message)
}

/// (topic id, sorted partitions) of an assignment; topics without an id are left out.
fn by_id(assignment: &Assignment, ids: &dyn Fn(&str) -> Option<Uuid>) -> Vec<(Uuid, Vec<i32>)> {
    assignment
        .iter()
        .filter(|(_, partitions)| !partitions.is_empty())
        .filter_map(|(topic, partitions)| {
            ids(topic).map(|id| (id, partitions.iter().copied().collect()))
        })
        .collect()
}

fn by_name(
    topics: impl Iterator<Item = (Uuid, Vec<i32>)>,
    names: &dyn Fn(&Uuid) -> Option<String>,
) -> Assignment {
    let mut out = Assignment::new();
    for (id, partitions) in topics {
        if let Some(name) = names(&id) {
            out.entry(name).or_default().extend(partitions);
        }
    }
    out
}

impl ConsumerRecord {
    pub fn group(&self) -> &str {
        match self {
            ConsumerRecord::GroupEpoch { group, .. }
            | ConsumerRecord::Topics { group, .. }
            | ConsumerRecord::Member { group, .. }
            | ConsumerRecord::TargetEpoch { group, .. }
            | ConsumerRecord::TargetMember { group, .. }
            | ConsumerRecord::Current { group, .. } => group,
        }
    }

    /// (key, value) bytes; `ids` gives a topic's id.
    pub fn encode(&self, ids: &dyn Fn(&str) -> Option<Uuid>) -> (Bytes, Option<Bytes>) {
        match self {
            ConsumerRecord::GroupEpoch { group, epoch } => (
                key(
                    GROUP_EPOCH_KEY,
                    &ConsumerGroupMetadataKey {
                        group_id: group.clone(),
                        ..Default::default()
                    },
                ),
                epoch.map(|epoch| {
                    value(&ConsumerGroupMetadataValue {
                        epoch,
                        ..Default::default()
                    })
                }),
            ),
            ConsumerRecord::Topics { group, topics } => (
                key(
                    PARTITION_METADATA_KEY,
                    &ConsumerGroupPartitionMetadataKey {
                        group_id: group.clone(),
                        ..Default::default()
                    },
                ),
                topics.as_ref().map(|topics| {
                    value(&ConsumerGroupPartitionMetadataValue {
                        topics: topics
                            .iter()
                            .filter_map(|(name, count)| {
                                ids(name).map(|topic_id| TopicMetadata {
                                    topic_id,
                                    topic_name: name.clone(),
                                    num_partitions: *count,
                                    ..Default::default()
                                })
                            })
                            .collect(),
                        ..Default::default()
                    })
                }),
            ),
            ConsumerRecord::Member {
                group,
                member,
                value: v,
            } => (
                key(
                    MEMBER_METADATA_KEY,
                    &ConsumerGroupMemberMetadataKey {
                        group_id: group.clone(),
                        member_id: member.clone(),
                        ..Default::default()
                    },
                ),
                v.as_ref().map(|m| {
                    value(&ConsumerGroupMemberMetadataValue {
                        instance_id: m.instance_id.clone(),
                        rack_id: m.rack_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        subscribed_topic_names: m.subscriptions.iter().cloned().collect(),
                        rebalance_timeout_ms: m.rebalance_timeout_ms,
                        server_assignor: m.server_assignor.clone(),
                        ..Default::default()
                    })
                }),
            ),
            ConsumerRecord::TargetEpoch { group, epoch } => (
                key(
                    TARGET_EPOCH_KEY,
                    &ConsumerGroupTargetAssignmentMetadataKey {
                        group_id: group.clone(),
                        ..Default::default()
                    },
                ),
                epoch.map(|assignment_epoch| {
                    value(&ConsumerGroupTargetAssignmentMetadataValue {
                        assignment_epoch,
                        ..Default::default()
                    })
                }),
            ),
            ConsumerRecord::TargetMember {
                group,
                member,
                value: v,
            } => (
                key(
                    TARGET_MEMBER_KEY,
                    &ConsumerGroupTargetAssignmentMemberKey {
                        group_id: group.clone(),
                        member_id: member.clone(),
                        ..Default::default()
                    },
                ),
                v.as_ref().map(|assignment| {
                    value(&ConsumerGroupTargetAssignmentMemberValue {
                        topic_partitions: by_id(assignment, ids)
                            .into_iter()
                            .map(|(topic_id, partitions)| TargetTopic {
                                topic_id,
                                partitions,
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    })
                }),
            ),
            ConsumerRecord::Current {
                group,
                member,
                value: v,
            } => (
                key(
                    CURRENT_ASSIGNMENT_KEY,
                    &ConsumerGroupCurrentMemberAssignmentKey {
                        group_id: group.clone(),
                        member_id: member.clone(),
                        ..Default::default()
                    },
                ),
                v.as_ref().map(|c| {
                    let topics = |a: &Assignment| -> Vec<CurrentTopic> {
                        by_id(a, ids)
                            .into_iter()
                            .map(|(topic_id, partitions)| CurrentTopic {
                                topic_id,
                                partitions,
                                ..Default::default()
                            })
                            .collect()
                    };
                    value(&ConsumerGroupCurrentMemberAssignmentValue {
                        member_epoch: c.member_epoch,
                        previous_member_epoch: c.previous_member_epoch,
                        state: c.state,
                        assigned_partitions: topics(&c.assigned),
                        partitions_pending_revocation: topics(&c.pending_revocation),
                        ..Default::default()
                    })
                }),
            ),
        }
    }

    /// Decodes a consumer group record; None for other record types or undecodable bytes.
    /// `names` gives the name of a topic id (None: the topic is gone).
    pub fn decode(
        key: &Bytes,
        value: Option<&Bytes>,
        names: &dyn Fn(&Uuid) -> Option<String>,
    ) -> Option<ConsumerRecord> {
        let mut key = key.clone();
        if key.len() < 2 {
            return None;
        }
        let record_type = key.get_i16();
        if !(GROUP_EPOCH_KEY..=CURRENT_ASSIGNMENT_KEY).contains(&record_type) {
            return None;
        }
        // The value's body, if its version is one we know (0).
        let body = match value {
            None => None,
            Some(v) => {
                let mut v = v.clone();
                if v.len() < 2 || v.get_i16() != 0 {
                    return None;
                }
                Some(v)
            }
        };
        Some(match record_type {
            GROUP_EPOCH_KEY => ConsumerRecord::GroupEpoch {
                group: ConsumerGroupMetadataKey::decode(&mut key, record_type)
                    .ok()?
                    .group_id,
                epoch: match body {
                    None => None,
                    Some(mut b) => Some(ConsumerGroupMetadataValue::decode(&mut b, 0).ok()?.epoch),
                },
            },
            PARTITION_METADATA_KEY => ConsumerRecord::Topics {
                group: ConsumerGroupPartitionMetadataKey::decode(&mut key, record_type)
                    .ok()?
                    .group_id,
                topics: match body {
                    None => None,
                    Some(mut b) => Some(
                        ConsumerGroupPartitionMetadataValue::decode(&mut b, 0)
                            .ok()?
                            .topics
                            .into_iter()
                            .filter_map(|t| names(&t.topic_id).map(|name| (name, t.num_partitions)))
                            .collect(),
                    ),
                },
            },
            MEMBER_METADATA_KEY => {
                let k = ConsumerGroupMemberMetadataKey::decode(&mut key, record_type).ok()?;
                ConsumerRecord::Member {
                    group: k.group_id,
                    member: k.member_id,
                    value: match body {
                        None => None,
                        Some(mut b) => {
                            let m = ConsumerGroupMemberMetadataValue::decode(&mut b, 0).ok()?;
                            Some(MemberMetadata {
                                instance_id: m.instance_id,
                                rack_id: m.rack_id,
                                client_id: m.client_id,
                                client_host: m.client_host,
                                subscriptions: m.subscribed_topic_names.into_iter().collect(),
                                rebalance_timeout_ms: m.rebalance_timeout_ms,
                                server_assignor: m.server_assignor,
                            })
                        }
                    },
                }
            }
            TARGET_EPOCH_KEY => ConsumerRecord::TargetEpoch {
                group: ConsumerGroupTargetAssignmentMetadataKey::decode(&mut key, record_type)
                    .ok()?
                    .group_id,
                epoch: match body {
                    None => None,
                    Some(mut b) => Some(
                        ConsumerGroupTargetAssignmentMetadataValue::decode(&mut b, 0)
                            .ok()?
                            .assignment_epoch,
                    ),
                },
            },
            TARGET_MEMBER_KEY => {
                let k =
                    ConsumerGroupTargetAssignmentMemberKey::decode(&mut key, record_type).ok()?;
                ConsumerRecord::TargetMember {
                    group: k.group_id,
                    member: k.member_id,
                    value: match body {
                        None => None,
                        Some(mut b) => {
                            let v =
                                ConsumerGroupTargetAssignmentMemberValue::decode(&mut b, 0).ok()?;
                            Some(by_name(
                                v.topic_partitions
                                    .into_iter()
                                    .map(|t| (t.topic_id, t.partitions)),
                                names,
                            ))
                        }
                    },
                }
            }
            _ => {
                let k =
                    ConsumerGroupCurrentMemberAssignmentKey::decode(&mut key, record_type).ok()?;
                ConsumerRecord::Current {
                    group: k.group_id,
                    member: k.member_id,
                    value: match body {
                        None => None,
                        Some(mut b) => {
                            let v = ConsumerGroupCurrentMemberAssignmentValue::decode(&mut b, 0)
                                .ok()?;
                            let topics = |list: Vec<CurrentTopic>| {
                                by_name(list.into_iter().map(|t| (t.topic_id, t.partitions)), names)
                            };
                            Some(CurrentAssignment {
                                member_epoch: v.member_epoch,
                                previous_member_epoch: v.previous_member_epoch,
                                state: v.state,
                                assigned: topics(v.assigned_partitions),
                                pending_revocation: topics(v.partitions_pending_revocation),
                            })
                        }
                    },
                }
            }
        })
    }
}

/// The records that persist what a heartbeat (or an expiry) changed, in the order Kafka writes
/// them: member metadata and removals, then the group epoch, the target, the current
/// assignments.
pub fn records_for(group: &ConsumerGroup, changes: &super::Changes) -> Vec<ConsumerRecord> {
    let id = &group.id;
    let mut out = Vec::new();
    for member_id in &changes.members_removed {
        if group.members.contains_key(member_id) {
            continue;
        }
        for record in [
            ConsumerRecord::Current {
                group: id.clone(),
                member: member_id.clone(),
                value: None,
            },
            ConsumerRecord::TargetMember {
                group: id.clone(),
                member: member_id.clone(),
                value: None,
            },
            ConsumerRecord::Member {
                group: id.clone(),
                member: member_id.clone(),
                value: None,
            },
        ] {
            out.push(record);
        }
    }
    for member_id in &changes.members_updated {
        if let Some(m) = group.members.get(member_id) {
            out.push(ConsumerRecord::Member {
                group: id.clone(),
                member: member_id.clone(),
                value: Some(member_metadata(m)),
            });
        }
    }
    if changes.group_epoch_bumped || changes.target_recomputed {
        out.push(ConsumerRecord::Topics {
            group: id.clone(),
            topics: Some(group.topics_seen.clone()),
        });
        out.push(ConsumerRecord::GroupEpoch {
            group: id.clone(),
            epoch: Some(group.group_epoch),
        });
    }
    if changes.target_recomputed {
        for (member_id, assignment) in &group.target {
            out.push(ConsumerRecord::TargetMember {
                group: id.clone(),
                member: member_id.clone(),
                value: Some(assignment.clone()),
            });
        }
        out.push(ConsumerRecord::TargetEpoch {
            group: id.clone(),
            epoch: Some(group.assignment_epoch),
        });
    }
    for member_id in &changes.members_updated {
        if let Some(m) = group.members.get(member_id) {
            out.push(ConsumerRecord::Current {
                group: id.clone(),
                member: member_id.clone(),
                value: Some(CurrentAssignment {
                    member_epoch: m.member_epoch,
                    previous_member_epoch: m.previous_member_epoch,
                    state: state_byte(m.state),
                    assigned: m.assigned.clone(),
                    pending_revocation: m.pending_revocation.clone(),
                }),
            });
        }
    }
    out
}

/// Tombstones for every record of `group` (it is deleted): members first, the epoch last.
pub fn tombstones(group: &ConsumerGroup) -> Vec<ConsumerRecord> {
    let id = &group.id;
    let mut out = Vec::new();
    let members: BTreeSet<&String> = group.members.keys().chain(group.target.keys()).collect();
    for member in members {
        out.push(ConsumerRecord::Current {
            group: id.clone(),
            member: member.clone(),
            value: None,
        });
        out.push(ConsumerRecord::TargetMember {
            group: id.clone(),
            member: member.clone(),
            value: None,
        });
        out.push(ConsumerRecord::Member {
            group: id.clone(),
            member: member.clone(),
            value: None,
        });
    }
    out.push(ConsumerRecord::TargetEpoch {
        group: id.clone(),
        epoch: None,
    });
    out.push(ConsumerRecord::Topics {
        group: id.clone(),
        topics: None,
    });
    out.push(ConsumerRecord::GroupEpoch {
        group: id.clone(),
        epoch: None,
    });
    out
}

pub fn member_metadata(m: &ConsumerMember) -> MemberMetadata {
    MemberMetadata {
        instance_id: m.instance_id.clone(),
        rack_id: m.rack_id.clone(),
        client_id: m.client_id.clone(),
        client_host: m.client_host.clone(),
        subscriptions: m.subscriptions.clone(),
        rebalance_timeout_ms: m.rebalance_timeout_ms,
        server_assignor: m.server_assignor.clone(),
    }
}

/// Applies one record (replay). A loaded member's session starts at `now_ms`: it times out
/// unless it heartbeats within `session_timeout_ms`, as after a coordinator failover in Kafka.
pub fn apply(
    groups: &mut BTreeMap<String, ConsumerGroup>,
    record: ConsumerRecord,
    now_ms: i64,
    session_timeout_ms: i64,
) {
    let group_id = record.group().to_string();
    if let ConsumerRecord::GroupEpoch { epoch: None, .. } = record {
        groups.remove(&group_id);
        return;
    }
    let group = groups
        .entry(group_id.clone())
        .or_insert_with(|| ConsumerGroup::new(group_id));
    match record {
        ConsumerRecord::GroupEpoch { epoch, .. } => group.group_epoch = epoch.unwrap_or(0),
        ConsumerRecord::Topics { topics, .. } => group.topics_seen = topics.unwrap_or_default(),
        ConsumerRecord::TargetEpoch { epoch, .. } => group.assignment_epoch = epoch.unwrap_or(0),
        ConsumerRecord::TargetMember { member, value, .. } => match value {
            Some(assignment) => {
                group.target.insert(member, assignment);
            }
            None => {
                group.target.remove(&member);
            }
        },
        ConsumerRecord::Member { member, value, .. } => match value {
            Some(m) => {
                let entry = group
                    .members
                    .entry(member.clone())
                    .or_insert_with(|| ConsumerMember::restored(member));
                entry.instance_id = m.instance_id;
                entry.rack_id = m.rack_id;
                entry.client_id = m.client_id;
                entry.client_host = m.client_host;
                entry.subscriptions = m.subscriptions;
                entry.rebalance_timeout_ms = m.rebalance_timeout_ms;
                entry.server_assignor = m.server_assignor;
                entry.session_deadline_ms = now_ms + session_timeout_ms;
            }
            None => {
                group.members.remove(&member);
            }
        },
        ConsumerRecord::Current { member, value, .. } => {
            let Some(c) = value else { return };
            let Some(entry) = group.members.get_mut(&member) else {
                return;
            };
            entry.member_epoch = c.member_epoch;
            entry.previous_member_epoch = c.previous_member_epoch;
            entry.state = state_of(c.state);
            entry.assigned = c.assigned;
            entry.pending_revocation = c.pending_revocation;
            entry.revocation_deadline_ms = (entry.state == MemberState::UnrevokedPartitions)
                .then(|| now_ms + i64::from(entry.rebalance_timeout_ms));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Changes, ConsumerGroupConfig, Heartbeat, JOIN_EPOCH, LEAVE_EPOCH};
    use super::*;

    fn ids(name: &str) -> Option<Uuid> {
        let mut id = [0u8; 16];
        id[..name.len().min(16)].copy_from_slice(&name.as_bytes()[..name.len().min(16)]);
        Some(Uuid(id))
    }

    fn names(id: &Uuid) -> Option<String> {
        let name: Vec<u8> = id.0.iter().copied().take_while(|b| *b != 0).collect();
        // "gone" stands for a topic deleted since the record was written.
        String::from_utf8(name).ok().filter(|n| n != "gone")
    }

    fn through_bytes(record: &ConsumerRecord) -> ConsumerRecord {
        let (key, value) = record.encode(&ids);
        ConsumerRecord::decode(&key, value.as_ref(), &names).expect("decodes")
    }

    fn assignment(list: &[(&str, &[i32])]) -> Assignment {
        list.iter()
            .map(|(t, ps)| (t.to_string(), ps.iter().copied().collect()))
            .collect()
    }

    #[test]
    fn every_record_type_round_trips_with_kafka_key_types() {
        let group = "g".to_string();
        let member = "m-1".to_string();
        let records = [
            ConsumerRecord::GroupEpoch {
                group: group.clone(),
                epoch: Some(7),
            },
            ConsumerRecord::Topics {
                group: group.clone(),
                topics: Some([("orders".to_string(), 6)].into()),
            },
            ConsumerRecord::Member {
                group: group.clone(),
                member: member.clone(),
                value: Some(MemberMetadata {
                    instance_id: Some("i-1".into()),
                    rack_id: None,
                    client_id: "rdkafka".into(),
                    client_host: "/127.0.0.1".into(),
                    subscriptions: ["orders".to_string()].into(),
                    rebalance_timeout_ms: 300_000,
                    server_assignor: Some("range".into()),
                }),
            },
            ConsumerRecord::TargetEpoch {
                group: group.clone(),
                epoch: Some(7),
            },
            ConsumerRecord::TargetMember {
                group: group.clone(),
                member: member.clone(),
                value: Some(assignment(&[("orders", &[0, 2, 4])])),
            },
            ConsumerRecord::Current {
                group: group.clone(),
                member: member.clone(),
                value: Some(CurrentAssignment {
                    member_epoch: 7,
                    previous_member_epoch: 5,
                    state: 2,
                    assigned: assignment(&[("orders", &[0, 2])]),
                    pending_revocation: assignment(&[("orders", &[1])]),
                }),
            },
        ];
        for (index, record) in records.iter().enumerate() {
            let (key, value) = record.encode(&ids);
            assert_eq!(
                i16::from_be_bytes([key[0], key[1]]),
                GROUP_EPOCH_KEY + index as i16
            );
            assert_eq!(value.as_ref().map(|v| (v[0], v[1])), Some((0, 0)));
            assert_eq!(&through_bytes(record), record);
        }
        for record in tombstones(&ConsumerGroup::new(group.clone())) {
            assert_eq!(record.encode(&ids).1, None);
            assert_eq!(through_bytes(&record), record);
        }
        // Classic keys (0-2) and share-group keys (9+) are not consumer records.
        for other in [0i16, 1, 2, 9, 12] {
            let key = Bytes::from(other.to_be_bytes().to_vec());
            assert_eq!(ConsumerRecord::decode(&key, None, &names), None);
        }
    }

    #[test]
    fn assignments_of_deleted_topics_are_dropped_on_decode() {
        let record = ConsumerRecord::TargetMember {
            group: "g".into(),
            member: "m".into(),
            value: Some(assignment(&[("gone", &[0]), ("kept", &[1, 3])])),
        };
        let decoded = through_bytes(&record);
        assert_eq!(
            decoded,
            ConsumerRecord::TargetMember {
                group: "g".into(),
                member: "m".into(),
                value: Some(assignment(&[("kept", &[1, 3])])),
            }
        );
    }

    /// Drives a group through joins, reconciliation and a leave; replaying every record it
    /// wrote (through bytes) rebuilds the same epochs, members and assignments.
    #[test]
    fn replaying_the_written_records_rebuilds_the_group() {
        let topics: BTreeMap<String, i32> = [("orders".to_string(), 6)].into();
        let config = ConsumerGroupConfig::default();
        let mut group = ConsumerGroup::new("g".into());
        let mut written: Vec<ConsumerRecord> = Vec::new();
        let mut epochs: BTreeMap<String, i32> = BTreeMap::new();
        let mut owned: BTreeMap<String, Assignment> = BTreeMap::new();
        let mut beat = |group: &mut ConsumerGroup, id: &str, leave: bool, now: i64| {
            let epoch = epochs.get(id).copied();
            let request = Heartbeat {
                member_id: id.into(),
                member_epoch: match (leave, epoch) {
                    (true, _) => LEAVE_EPOCH,
                    (false, Some(e)) => e,
                    (false, None) => JOIN_EPOCH,
                },
                rebalance_timeout_ms: 60_000,
                subscriptions: Some(["orders".to_string()].into()),
                owned: Some(owned.get(id).cloned().unwrap_or_default()),
                client_id: "c".into(),
                ..Default::default()
            };
            let mut changes = Changes::default();
            let reply = group
                .heartbeat(
                    request,
                    now,
                    &topics,
                    &config,
                    || unreachable!(),
                    &mut changes,
                )
                .expect("heartbeat");
            if leave {
                epochs.remove(id);
            } else {
                epochs.insert(id.into(), reply.member_epoch);
                if let Some(a) = reply.assignment {
                    owned.insert(id.into(), a);
                }
            }
            records_for(group, &changes)
        };
        let mut now = 0;
        for round in 0..4 {
            for id in ["a", "b", "c"] {
                now += 100;
                written.extend(beat(&mut group, id, false, now));
            }
            if round == 1 {
                written.extend(beat(&mut group, "b", true, now));
            }
        }
        assert_eq!(group.members.len(), 3, "b rejoined after leaving");
        let mut replayed = BTreeMap::new();
        for record in &written {
            apply(&mut replayed, through_bytes(record), now, 45_000);
        }
        let restored = &replayed["g"];
        assert_eq!(restored.group_epoch, group.group_epoch);
        assert_eq!(restored.assignment_epoch, group.assignment_epoch);
        assert_eq!(restored.target, group.target);
        assert_eq!(restored.topics_seen, group.topics_seen);
        assert_eq!(
            restored.members.keys().collect::<Vec<_>>(),
            group.members.keys().collect::<Vec<_>>()
        );
        for (id, member) in &group.members {
            let r = &restored.members[id];
            assert_eq!(
                (r.member_epoch, r.previous_member_epoch, r.state),
                (
                    member.member_epoch,
                    member.previous_member_epoch,
                    member.state
                ),
                "{id}"
            );
            assert_eq!(r.assigned, member.assigned, "{id}");
            assert_eq!(r.pending_revocation, member.pending_revocation, "{id}");
            assert_eq!(member_metadata(r), member_metadata(member), "{id}");
            assert_eq!(r.session_deadline_ms, now + 45_000);
        }
        // Deleting the group: its tombstones remove it entirely.
        for record in tombstones(restored) {
            let record = through_bytes(&record);
            apply(&mut replayed, record, now, 45_000);
        }
        assert!(replayed.is_empty());
    }
}
