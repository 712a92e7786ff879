//! `__consumer_offsets` records in Kafka's format: key = 2-byte version + OffsetCommitKey
//! (version 1) or GroupMetadataKey (version 2); value = 2-byte version + OffsetCommitValue
//! (version 3, or 1 with an explicit expire timestamp) or GroupMetadataValue (version 3); a null
//! value is a tombstone. Tools that decode the topic (kcat, Burrow, kafka-console-consumer's
//! formatters) read them as they read Kafka's.
//!
//! [`GroupStore::apply`] is the replay: the broker applies committed offsets through it after
//! they are durable, and startup applies every record of the log through it.

use std::collections::BTreeMap;

use bytes::{Buf, Bytes};

use super::state::{ClassicGroup, CommittedOffset};
use crate::protocol::group_coordinator::{
    GroupMetadataKey, GroupMetadataValue, OffsetCommitKey, OffsetCommitValue,
};
use crate::protocol::messages::ConsumerProtocolSubscription;
use crate::protocol::wire::encode_to_bytes;
use crate::protocol::Message;

pub const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
pub const GROUP_METADATA_KEY_VERSION: i16 = 2;
pub const GROUP_METADATA_VALUE_VERSION: i16 = 3;

/// One decoded record of `__consumer_offsets`.
#[derive(Clone, Debug, PartialEq)]
pub enum GroupRecord {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<CommittedOffset>,
    },
    Metadata {
        group: String,
        value: Option<GroupMetadataValue>,
    },
}

fn versioned<M: Message>(version: i16, message: &M) -> Bytes {
    let body = encode_to_bytes(message, version).expect("group records always encode");
    let mut out = Vec::with_capacity(body.len() + 2);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&body);
    Bytes::from(out)
}

impl GroupRecord {
    pub fn group(&self) -> &str {
        match self {
            GroupRecord::Offset { group, .. } | GroupRecord::Metadata { group, .. } => group,
        }
    }

    /// (key, value) bytes.
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        match self {
            GroupRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => {
                let key = versioned(
                    OFFSET_COMMIT_KEY_VERSION,
                    &OffsetCommitKey {
                        group: group.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                        ..Default::default()
                    },
                );
                let value = value.as_ref().map(|v| {
                    let (version, expire) = match v.expire_timestamp_ms {
                        Some(expire) => (1, expire),
                        None => (3, -1),
                    };
                    versioned(
                        version,
                        &OffsetCommitValue {
                            offset: v.offset,
                            leader_epoch: v.leader_epoch,
                            metadata: v.metadata.clone(),
                            commit_timestamp: v.commit_timestamp_ms,
                            expire_timestamp: expire,
                            ..Default::default()
                        },
                    )
                });
                (key, value)
            }
            GroupRecord::Metadata { group, value } => {
                let key = versioned(
                    GROUP_METADATA_KEY_VERSION,
                    &GroupMetadataKey {
                        group: group.clone(),
                        ..Default::default()
                    },
                );
                let value = value
                    .as_ref()
                    .map(|v| versioned(GROUP_METADATA_VALUE_VERSION, v));
                (key, value)
            }
        }
    }

    /// Decodes a record; None for keys of other record types (the consumer-group records are
    /// `consumer_group::records`; share groups are not served) or undecodable bytes.
    pub fn decode(key: &Bytes, value: Option<&Bytes>) -> Option<GroupRecord> {
        let mut key = key.clone();
        if key.len() < 2 {
            return None;
        }
        let key_version = key.get_i16();
        let value_body = |v: &Bytes| -> Option<(i16, Bytes)> {
            let mut v = v.clone();
            if v.len() < 2 {
                return None;
            }
            let version = v.get_i16();
            Some((version, v))
        };
        match key_version {
            0 | 1 => {
                let key = OffsetCommitKey::decode(&mut key, key_version).ok()?;
                let value = match value {
                    None => None,
                    Some(v) => {
                        let (version, mut body) = value_body(v)?;
                        if !(0..=4).contains(&version) {
                            return None;
                        }
                        let v = OffsetCommitValue::decode(&mut body, version).ok()?;
                        Some(CommittedOffset {
                            offset: v.offset,
                            leader_epoch: v.leader_epoch,
                            metadata: v.metadata,
                            commit_timestamp_ms: v.commit_timestamp,
                            expire_timestamp_ms: (v.expire_timestamp >= 0)
                                .then_some(v.expire_timestamp),
                        })
                    }
                };
                Some(GroupRecord::Offset {
                    group: key.group,
                    topic: key.topic,
                    partition: key.partition,
                    value,
                })
            }
            2 => {
                let key = GroupMetadataKey::decode(&mut key, key_version).ok()?;
                let value = match value {
                    None => None,
                    Some(v) => {
                        let (version, mut body) = value_body(v)?;
                        if !(0..=4).contains(&version) {
                            return None;
                        }
                        Some(GroupMetadataValue::decode(&mut body, version).ok()?)
                    }
                };
                Some(GroupRecord::Metadata {
                    group: key.group,
                    value,
                })
            }
            _ => None,
        }
    }
}

/// Topics of a ConsumerProtocolSubscription (2-byte version + struct); None if undecodable.
pub fn subscription_topics(metadata: &Bytes) -> Option<Vec<String>> {
    let mut bytes = metadata.clone();
    if bytes.len() < 2 {
        return None;
    }
    let version = bytes.get_i16().clamp(0, 3);
    ConsumerProtocolSubscription::decode(&mut bytes, version)
        .ok()
        .map(|s| s.topics)
}

/// The groups of one shard (over every offsets partition it owns), keyed by group id. One id
/// namespace: a consumer-protocol group (KIP-848) is in `consumer`, and its committed offsets
/// in an entry of `groups` that has no classic metadata.
pub struct GroupStore<W> {
    pub groups: BTreeMap<String, ClassicGroup<W>>,
    pub consumer: BTreeMap<String, crate::coordinator::consumer_group::ConsumerGroup>,
    /// Offsets written by transactions (TxnOffsetCommit) whose marker has not been seen, keyed
    /// by (producer id, offsets partition): applied by a COMMIT marker, dropped by an ABORT.
    pub pending_txn: BTreeMap<(i64, i32), Vec<GroupRecord>>,
}

impl<W> Default for GroupStore<W> {
    fn default() -> Self {
        GroupStore {
            groups: BTreeMap::new(),
            consumer: BTreeMap::new(),
            pending_txn: BTreeMap::new(),
        }
    }
}

impl<W> GroupStore<W> {
    /// Holds a transactional offset record until its transaction ends.
    pub fn add_pending_txn(&mut self, producer_id: i64, partition: i32, record: GroupRecord) {
        self.pending_txn
            .entry((producer_id, partition))
            .or_default()
            .push(record);
    }

    /// A transaction marker of `producer_id` in offsets partition `partition`: its offsets
    /// become committed (in the order they were written) or are dropped.
    pub fn complete_txn(&mut self, producer_id: i64, partition: i32, commit: bool, now_ms: i64) {
        let Some(records) = self.pending_txn.remove(&(producer_id, partition)) else {
            return;
        };
        if commit {
            for record in records {
                self.apply(record, now_ms);
            }
        }
    }

    /// The partitions of `group` whose offset a transaction has written but not yet committed
    /// (OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT for them).
    pub fn pending_offsets_of(&self, group: &str) -> std::collections::HashSet<(String, i32)> {
        self.pending_txn
            .values()
            .flatten()
            .filter_map(|r| match r {
                GroupRecord::Offset {
                    group: g,
                    topic,
                    partition,
                    ..
                } if g == group => Some((topic.clone(), *partition)),
                _ => None,
            })
            .collect()
    }

    /// Applies one record (replay). A group tombstone removes the group's metadata; the group
    /// disappears once it has neither metadata nor offsets.
    pub fn apply(&mut self, record: GroupRecord, now_ms: i64) {
        match record {
            GroupRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => match value {
                Some(value) => {
                    self.groups
                        .entry(group.clone())
                        .or_insert_with(|| ClassicGroup::new(group, now_ms))
                        .offsets
                        .insert((topic, partition), value);
                }
                None => {
                    if let Some(existing) = self.groups.get_mut(&group) {
                        existing.offsets.remove(&(topic, partition));
                        if existing.offsets.is_empty()
                            && existing.members.is_empty()
                            && existing.generation == 0
                            && existing.protocol_type.is_none()
                        {
                            self.groups.remove(&group);
                        }
                    }
                }
            },
            GroupRecord::Metadata { group, value } => match value {
                Some(value) => self
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| ClassicGroup::new(group, now_ms))
                    .load(&value, now_ms),
                None => {
                    let offsets = self
                        .groups
                        .remove(&group)
                        .map(|g| g.offsets)
                        .unwrap_or_default();
                    if !offsets.is_empty() {
                        let mut fresh = ClassicGroup::new(group.clone(), now_ms);
                        fresh.offsets = offsets;
                        self.groups.insert(group, fresh);
                    }
                }
            },
        }
    }
}
