//! Consumer-group administration over the Kafka protocol: find a group's coordinator, list and
//! describe groups, read and commit their offsets, delete them. What `weir group` is built on.
//! Every group request goes to the group's coordinator (FindCoordinator first), as Kafka's
//! admin client does.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use super::error::{check, ClientError, KafkaError};
use super::{Client, RETRY_ATTEMPTS, RETRY_BACKOFF};
use crate::protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use crate::protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use crate::protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerProtocolAssignment,
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, ListGroupsRequest, ListGroupsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
};
use crate::protocol::{ApiKey, ErrorCode, Message};

/// A group as ListGroups reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    /// Empty when the broker's ListGroups version predates states (v4).
    pub state: String,
    /// `classic` or `consumer`; empty before ListGroups v5.
    pub group_type: String,
}

/// One member of a described group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The partitions the member was assigned, decoded from the consumer protocol's assignment
    /// (empty for other protocol types, or before the group is Stable).
    pub assignment: Vec<(String, Vec<i32>)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    /// The chosen assignor (`range`, `cooperative-sticky`, …).
    pub protocol: String,
    pub members: Vec<GroupMember>,
}

/// A committed offset of one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// Decodes a consumer-protocol assignment (`int16 version` + ConsumerProtocolAssignment) into
/// `(topic, partitions)`. Newer versions than the codec knows are read as the newest it knows
/// (the format only grows at the end, as Kafka's ConsumerProtocol assumes).
pub fn decode_assignment(bytes: &Bytes) -> Result<Vec<(String, Vec<i32>)>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    if bytes.len() < 2 {
        return Err("assignment shorter than its version".into());
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    if version < 0 {
        return Err(format!("assignment version {version}"));
    }
    let version = version.min(3);
    let mut body = bytes.slice(2..);
    let assignment = ConsumerProtocolAssignment::decode(&mut body, version)
        .map_err(|e| format!("assignment: {e}"))?;
    Ok(assignment
        .assigned_partitions
        .into_iter()
        .map(|tp| (tp.topic, tp.partitions))
        .collect())
}

impl Client {
    /// The node id of `group`'s coordinator. COORDINATOR_NOT_AVAILABLE (the offsets topic is
    /// being created) and COORDINATOR_LOAD_IN_PROGRESS are retried.
    pub fn find_group_coordinator(&mut self, group: &str) -> Result<i32, ClientError> {
        self.find_coordinator(0, group, &format!("group '{group}'"))
    }

    /// The node id of the coordinator of `key` (`key_type` 0: a group, 1: a transactional id),
    /// retrying while it is being created or loaded.
    pub fn find_coordinator(
        &mut self,
        key_type: i8,
        coordinator_key: &str,
        what: &str,
    ) -> Result<i32, ClientError> {
        let key = ApiKey::FindCoordinator;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let version = self.bootstrap.version(key)?;
            let request = if version >= 4 {
                FindCoordinatorRequest {
                    key_type,
                    coordinator_keys: vec![coordinator_key.to_string()],
                    ..FindCoordinatorRequest::default()
                }
            } else {
                FindCoordinatorRequest {
                    key: coordinator_key.to_string(),
                    key_type,
                    ..FindCoordinatorRequest::default()
                }
            };
            let response: FindCoordinatorResponse =
                self.bootstrap
                    .request(key, version, &request, Duration::ZERO)?;
            let (code, message, node) = if version >= 4 {
                match response
                    .coordinators
                    .into_iter()
                    .find(|c| c.key == coordinator_key)
                {
                    Some(c) => (c.error_code, c.error_message, c.node_id),
                    None => return Err(self.missing(key, what)),
                }
            } else {
                (
                    response.error_code,
                    response.error_message,
                    response.node_id,
                )
            };
            match check(key.name(), || what.to_string(), code, message) {
                Ok(()) => return Ok(node),
                Err(error)
                    if retriable_coordinator_error(&error) && attempt < RETRY_ATTEMPTS * 4 =>
                {
                    std::thread::sleep(RETRY_BACKOFF * attempt.min(5));
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The node ids of every broker (ListGroups, ListTransactions: each broker answers for the
    /// keys it coordinates); the bootstrap connection (-1) when metadata lists none.
    pub(crate) fn every_broker(&mut self) -> Result<Vec<i32>, ClientError> {
        let mut nodes: Vec<i32> = self
            .metadata(Some(&[]), false)?
            .brokers
            .iter()
            .map(|b| b.node_id)
            .collect();
        if nodes.is_empty() {
            nodes.push(-1);
        }
        Ok(nodes)
    }

    /// Every group the cluster knows, optionally only those in `states` (ListGroups v4+),
    /// sorted by id. Asks every broker, as groups live on their coordinators.
    pub fn list_groups(&mut self, states: &[String]) -> Result<Vec<ListedGroup>, ClientError> {
        let key = ApiKey::ListGroups;
        let mut groups = BTreeMap::new();
        for node in self.every_broker()? {
            let connection = self.broker(node)?;
            let version = connection.version(key)?;
            let request = ListGroupsRequest {
                states_filter: if version >= 4 {
                    states.to_vec()
                } else {
                    Vec::new()
                },
                ..ListGroupsRequest::default()
            };
            let response: ListGroupsResponse =
                connection.request(key, version, &request, Duration::ZERO)?;
            check(
                key.name(),
                || "the group list".to_string(),
                response.error_code,
                None,
            )?;
            for group in response.groups {
                if version < 4
                    && !states.is_empty()
                    && !states
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(&group.group_state))
                {
                    continue;
                }
                groups.insert(
                    group.group_id.clone(),
                    ListedGroup {
                        group_id: group.group_id,
                        protocol_type: group.protocol_type,
                        state: group.group_state,
                        group_type: group.group_type,
                    },
                );
            }
        }
        Ok(groups.into_values().collect())
    }

    /// State, protocol and members of `group` (DescribeGroups on its coordinator). A group the
    /// coordinator does not know is reported by Kafka as state `Dead`: that is returned as is.
    /// DescribeGroups also answers `Dead` (or GROUP_ID_NOT_FOUND) for a group of the KIP-848
    /// consumer protocol, which is then described with ConsumerGroupDescribe.
    pub fn describe_group(&mut self, group: &str) -> Result<GroupDescription, ClientError> {
        match self.describe_classic_group(group) {
            Ok(described) if described.state != "Dead" => Ok(described),
            Ok(dead) => Ok(self.describe_consumer_group(group)?.unwrap_or(dead)),
            Err(error) if error.is_kafka(ErrorCode::GroupIdNotFound) => {
                self.describe_consumer_group(group)?.ok_or(error)
            }
            Err(error) => Err(error),
        }
    }

    /// ConsumerGroupDescribe of `group`; `None` when the broker does not speak it or the group is
    /// not a consumer-protocol group (GROUP_ID_NOT_FOUND).
    fn describe_consumer_group(
        &mut self,
        group: &str,
    ) -> Result<Option<GroupDescription>, ClientError> {
        let key = ApiKey::ConsumerGroupDescribe;
        let coordinator = self.find_group_coordinator(group)?;
        let connection = self.broker(coordinator)?;
        let Ok(version) = connection.version(key) else {
            return Ok(None);
        };
        let request = ConsumerGroupDescribeRequest {
            group_ids: vec![group.to_string()],
            ..ConsumerGroupDescribeRequest::default()
        };
        let response: ConsumerGroupDescribeResponse =
            connection.request(key, version, &request, Duration::ZERO)?;
        let Some(described) = response.groups.into_iter().find(|g| g.group_id == group) else {
            return Err(self.missing(key, &format!("group '{group}'")));
        };
        if described.error_code == ErrorCode::GroupIdNotFound.code() {
            return Ok(None);
        }
        check(
            key.name(),
            || format!("group '{group}'"),
            described.error_code,
            described.error_message,
        )?;
        let members = described
            .members
            .into_iter()
            .map(|m| GroupMember {
                assignment: m
                    .assignment
                    .topic_partitions
                    .into_iter()
                    .map(|tp| (tp.topic_name, tp.partitions))
                    .collect(),
                member_id: m.member_id,
                instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
            })
            .collect();
        Ok(Some(GroupDescription {
            group_id: described.group_id,
            state: described.group_state,
            protocol_type: "consumer".into(),
            protocol: described.assignor_name,
            members,
        }))
    }

    fn describe_classic_group(&mut self, group: &str) -> Result<GroupDescription, ClientError> {
        let key = ApiKey::DescribeGroups;
        let coordinator = self.find_group_coordinator(group)?;
        let connection = self.broker(coordinator)?;
        let version = connection.version(key)?;
        let request = DescribeGroupsRequest {
            groups: vec![group.to_string()],
            ..DescribeGroupsRequest::default()
        };
        let response: DescribeGroupsResponse =
            connection.request(key, version, &request, Duration::ZERO)?;
        let Some(described) = response.groups.into_iter().find(|g| g.group_id == group) else {
            return Err(self.missing(key, &format!("group '{group}'")));
        };
        check(
            key.name(),
            || format!("group '{group}'"),
            described.error_code,
            None,
        )?;
        let consumer = described.protocol_type == "consumer";
        let members = described
            .members
            .into_iter()
            .map(|m| GroupMember {
                assignment: if consumer {
                    decode_assignment(&m.member_assignment).unwrap_or_default()
                } else {
                    Vec::new()
                },
                member_id: m.member_id,
                instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
            })
            .collect();
        Ok(GroupDescription {
            group_id: described.group_id,
            state: described.group_state,
            protocol_type: described.protocol_type,
            protocol: described.protocol_data,
            members,
        })
    }

    /// Every committed offset of `group` (OffsetFetch with all topics), sorted by topic and
    /// partition. Partitions without a commit are left out.
    pub fn group_offsets(&mut self, group: &str) -> Result<Vec<CommittedOffset>, ClientError> {
        let key = ApiKey::OffsetFetch;
        let coordinator = self.find_group_coordinator(group)?;
        let connection = self.broker(coordinator)?;
        let version = connection.version(key)?;
        if version < 2 {
            return Err(ClientError::Request(
                "the broker's OffsetFetch is older than v2 and cannot list all of a group's offsets"
                    .into(),
            ));
        }
        let request = if version >= 8 {
            OffsetFetchRequest {
                groups: vec![OffsetFetchRequestGroup {
                    group_id: group.to_string(),
                    member_epoch: -1,
                    topics: None,
                    ..OffsetFetchRequestGroup::default()
                }],
                ..OffsetFetchRequest::default()
            }
        } else {
            OffsetFetchRequest {
                group_id: group.to_string(),
                topics: None,
                ..OffsetFetchRequest::default()
            }
        };
        let response: OffsetFetchResponse =
            connection.request(key, version, &request, Duration::ZERO)?;
        // v8+ answers per group, older versions at the top level: the same fields either way.
        type Row = (i32, i64, i32, Option<String>, i16);
        let (group_error, topics): (i16, Vec<(String, Vec<Row>)>) = if version >= 8 {
            let Some(answer) = response.groups.into_iter().find(|g| g.group_id == group) else {
                return Err(self.missing(key, &format!("group '{group}'")));
            };
            let topics = answer.topics.into_iter().map(|t| {
                let rows = t.partitions.into_iter().map(|p| {
                    (
                        p.partition_index,
                        p.committed_offset,
                        p.committed_leader_epoch,
                        p.metadata,
                        p.error_code,
                    )
                });
                (t.name, rows.collect())
            });
            (answer.error_code, topics.collect())
        } else {
            let topics = response.topics.into_iter().map(|t| {
                let rows = t.partitions.into_iter().map(|p| {
                    (
                        p.partition_index,
                        p.committed_offset,
                        p.committed_leader_epoch,
                        p.metadata,
                        p.error_code,
                    )
                });
                (t.name, rows.collect())
            });
            (response.error_code, topics.collect())
        };
        check(key.name(), || format!("group '{group}'"), group_error, None)?;
        let mut out = Vec::new();
        for (topic, rows) in topics {
            for (partition, offset, leader_epoch, metadata, error_code) in rows {
                check(
                    key.name(),
                    || format!("group '{group}' topic '{topic}' partition {partition}"),
                    error_code,
                    None,
                )?;
                if offset >= 0 {
                    out.push(CommittedOffset {
                        topic: topic.clone(),
                        partition,
                        offset,
                        leader_epoch,
                        metadata,
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }

    /// Commits `offsets` ((topic, partition) → offset) for `group` as an admin, outside any
    /// generation (generation -1, no member id): the coordinator accepts this only while the group
    /// has no members, as Kafka's does.
    pub fn commit_group_offsets(
        &mut self,
        group: &str,
        offsets: &BTreeMap<(String, i32), i64>,
    ) -> Result<(), ClientError> {
        let key = ApiKey::OffsetCommit;
        let coordinator = self.find_group_coordinator(group)?;
        let connection = self.broker(coordinator)?;
        let version = connection.version(key)?;
        let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for ((topic, partition), offset) in offsets {
            topics
                .entry(topic)
                .or_default()
                .push(OffsetCommitRequestPartition {
                    partition_index: *partition,
                    committed_offset: *offset,
                    committed_leader_epoch: -1,
                    commit_timestamp: -1,
                    committed_metadata: Some(String::new()),
                    ..OffsetCommitRequestPartition::default()
                });
        }
        let request = OffsetCommitRequest {
            group_id: group.to_string(),
            generation_id_or_member_epoch: -1,
            member_id: String::new(),
            group_instance_id: None,
            retention_time_ms: -1,
            topics: topics
                .into_iter()
                .map(|(name, partitions)| OffsetCommitRequestTopic {
                    name: name.to_string(),
                    partitions,
                    ..OffsetCommitRequestTopic::default()
                })
                .collect(),
            ..OffsetCommitRequest::default()
        };
        let response: OffsetCommitResponse =
            connection.request(key, version, &request, Duration::ZERO)?;
        for topic in response.topics {
            for p in topic.partitions {
                check(
                    key.name(),
                    || {
                        format!(
                            "group '{group}' topic '{}' partition {}",
                            topic.name, p.partition_index
                        )
                    },
                    p.error_code,
                    None,
                )?;
            }
        }
        Ok(())
    }

    /// Deletes `group` and its offsets (DeleteGroups); NON_EMPTY_GROUP while it has members.
    pub fn delete_group(&mut self, group: &str) -> Result<(), ClientError> {
        let key = ApiKey::DeleteGroups;
        let coordinator = self.find_group_coordinator(group)?;
        let connection = self.broker(coordinator)?;
        let version = connection.version(key)?;
        let request = DeleteGroupsRequest {
            groups_names: vec![group.to_string()],
            ..DeleteGroupsRequest::default()
        };
        let response: DeleteGroupsResponse =
            connection.request(key, version, &request, Duration::ZERO)?;
        let Some(result) = response.results.into_iter().find(|r| r.group_id == group) else {
            return Err(self.missing(key, &format!("group '{group}'")));
        };
        check(
            key.name(),
            || format!("group '{group}'"),
            result.error_code,
            None,
        )
    }
}

pub(crate) fn retriable_coordinator_error(error: &ClientError) -> bool {
    error.kafka().is_some_and(|e: &KafkaError| {
        e.is(ErrorCode::CoordinatorNotAvailable) || e.is(ErrorCode::CoordinatorLoadInProgress)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::consumer_protocol_assignment::TopicPartition;
    use bytes::BufMut;

    fn encoded(version: i16, assignment: &ConsumerProtocolAssignment) -> Bytes {
        let mut out = bytes::BytesMut::new();
        out.put_i16(version);
        let mut body = crate::protocol::Encoder::new();
        assignment.encode(&mut body, version).unwrap();
        out.extend_from_slice(&body.into_single());
        out.freeze()
    }

    #[test]
    fn assignments_decode_at_every_version() {
        let assignment = ConsumerProtocolAssignment {
            assigned_partitions: vec![
                TopicPartition {
                    topic: "page-views".into(),
                    partitions: vec![0, 3, 7],
                    ..TopicPartition::default()
                },
                TopicPartition {
                    topic: "clicks".into(),
                    partitions: vec![1],
                    ..TopicPartition::default()
                },
            ],
            user_data: None,
            ..ConsumerProtocolAssignment::default()
        };
        for version in 0..=3 {
            let decoded = decode_assignment(&encoded(version, &assignment)).unwrap();
            assert_eq!(
                decoded,
                vec![
                    ("page-views".to_string(), vec![0, 3, 7]),
                    ("clicks".to_string(), vec![1])
                ],
                "version {version}"
            );
        }
        assert_eq!(decode_assignment(&Bytes::new()).unwrap(), Vec::new());
    }

    #[test]
    fn malformed_assignments_are_errors_not_panics() {
        assert!(decode_assignment(&Bytes::from_static(&[0])).is_err());
        assert!(decode_assignment(&Bytes::from_static(&[0xff, 0xff])).is_err());
        assert!(decode_assignment(&Bytes::from_static(&[0, 0, 0x7f, 0xff, 0xff, 0xff])).is_err());
    }
}
