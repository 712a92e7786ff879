//! The group APIs at the wire, at the old versions kafka-python and other simple clients send
//! (FindCoordinator v0, JoinGroup v0/v1, SyncGroup v0, Heartbeat v0, OffsetCommit v2,
//! OffsetFetch v1, LeaveGroup v0) and the newer ones (MEMBER_ID_REQUIRED, batched leave,
//! DeleteGroups, OffsetDelete), with Kafka's error codes; and `__consumer_offsets` itself.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::raw::Raw;
use common::*;
use weir::protocol::error::ErrorCode;
use weir::protocol::messages::join_group_request::JoinGroupRequestProtocol;
use weir::protocol::messages::leave_group_request::MemberIdentity;
use weir::protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use weir::protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use weir::protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use weir::protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use weir::protocol::messages::*;

const FIND_COORDINATOR: i16 = 10;
const JOIN_GROUP: i16 = 11;
const HEARTBEAT: i16 = 12;
const LEAVE_GROUP: i16 = 13;
const SYNC_GROUP: i16 = 14;
const DESCRIBE_GROUPS: i16 = 15;
const LIST_GROUPS: i16 = 16;
const OFFSET_COMMIT: i16 = 8;
const OFFSET_FETCH: i16 = 9;
const DELETE_GROUPS: i16 = 42;
const OFFSET_DELETE: i16 = 47;
const METADATA: i16 = 3;
const DELETE_TOPICS: i16 = 20;

fn subscription(topics: &[&str]) -> Bytes {
    let body = weir::protocol::wire::encode_to_bytes(
        &ConsumerProtocolSubscription {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        },
        0,
    )
    .unwrap();
    let mut out = BytesMut::new();
    out.put_i16(0);
    out.put_slice(&body);
    out.freeze()
}

fn join(member_id: &str, topics: &[&str]) -> JoinGroupRequest {
    JoinGroupRequest {
        group_id: "py-group".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        member_id: member_id.into(),
        protocol_type: "consumer".into(),
        protocols: vec![JoinGroupRequestProtocol {
            name: "range".into(),
            metadata: subscription(topics),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn commit(
    generation: i32,
    member: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> OffsetCommitRequest {
    OffsetCommitRequest {
        group_id: "py-group".into(),
        generation_id_or_member_epoch: generation,
        member_id: member.into(),
        retention_time_ms: -1,
        topics: vec![OffsetCommitRequestTopic {
            name: topic.into(),
            partitions: vec![OffsetCommitRequestPartition {
                partition_index: partition,
                committed_offset: offset,
                committed_metadata: Some("meta".into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn fetch_v1(raw: &mut Raw, topic: &str, partition: i32) -> (i64, Option<String>, i16) {
    let response: OffsetFetchResponse = raw.request(
        OFFSET_FETCH,
        1,
        &OffsetFetchRequest {
            group_id: "py-group".into(),
            topics: Some(vec![OffsetFetchRequestTopic {
                name: topic.into(),
                partition_indexes: vec![partition],
                ..Default::default()
            }]),
            ..Default::default()
        },
    );
    let p = &response.topics[0].partitions[0];
    (p.committed_offset, p.metadata.clone(), p.error_code)
}

#[test]
fn kafka_python_versions_run_a_group_and_its_offsets_end_to_end() {
    let broker = Broker::start(&[
        "group.initial.rebalance.delay.ms=100",
        "offsets.topic.num.partitions=4",
    ]);
    create_topic(&broker, "events", 2, &[]);
    let mut raw = Raw::connect(&broker);

    // Before any FindCoordinator there is no __consumer_offsets: NOT_COORDINATOR.
    let early: HeartbeatResponse = raw.request(
        HEARTBEAT,
        0,
        &HeartbeatRequest {
            group_id: "py-group".into(),
            generation_id: 1,
            member_id: "x".into(),
            ..Default::default()
        },
    );
    assert_eq!(early.error_code, ErrorCode::NotCoordinator.code());

    let found: FindCoordinatorResponse = raw.request(
        FIND_COORDINATOR,
        0,
        &FindCoordinatorRequest {
            key: "py-group".into(),
            ..Default::default()
        },
    );
    assert_eq!(found.error_code, 0);
    assert_eq!(found.port as u16, broker.port);
    let txn: FindCoordinatorResponse = raw.request(
        FIND_COORDINATOR,
        4,
        &FindCoordinatorRequest {
            key_type: 1,
            coordinator_keys: vec!["tx".into()],
            ..Default::default()
        },
    );
    // Transactional ids have a coordinator too (this broker; `__transaction_state` is created).
    assert_eq!(txn.coordinators[0].error_code, 0);
    assert_eq!(txn.coordinators[0].key, "tx");
    assert_eq!(txn.coordinators[0].port as u16, broker.port);

    // __consumer_offsets exists now: internal, compacted, and not deletable.
    let metadata: MetadataResponse = raw.request(
        METADATA,
        1,
        &MetadataRequest {
            topics: None,
            ..Default::default()
        },
    );
    let offsets_topic = metadata
        .topics
        .iter()
        .find(|t| t.name.as_deref() == Some("__consumer_offsets"))
        .expect("__consumer_offsets is listed");
    assert!(offsets_topic.is_internal);
    assert_eq!(offsets_topic.partitions.len(), 4);
    let deleted: DeleteTopicsResponse = raw.request(
        DELETE_TOPICS,
        1,
        &DeleteTopicsRequest {
            topic_names: vec!["__consumer_offsets".into()],
            timeout_ms: 5000,
            ..Default::default()
        },
    );
    assert_eq!(
        deleted.responses[0].error_code,
        ErrorCode::InvalidRequest.code()
    );

    // JoinGroup v0 (kafka-python's oldest): the only member becomes the leader.
    let joined: JoinGroupResponse = raw.request(JOIN_GROUP, 0, &join("", &["events"]));
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader, joined.member_id);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    assert_eq!(joined.members.len(), 1);
    let member = joined.member_id.clone();
    assert!(member.starts_with("weir-raw-test-"), "{member}");

    // SyncGroup v0 from the leader: its assignment comes back.
    let synced: SyncGroupResponse = raw.request(
        SYNC_GROUP,
        0,
        &SyncGroupRequest {
            group_id: "py-group".into(),
            generation_id: 1,
            member_id: member.clone(),
            assignments: vec![SyncGroupRequestAssignment {
                member_id: member.clone(),
                assignment: Bytes::from_static(b"both partitions"),
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    assert_eq!(synced.error_code, 0);
    assert_eq!(&synced.assignment[..], b"both partitions");

    let beat = |raw: &mut Raw, generation: i32, member: &str| -> i16 {
        let response: HeartbeatResponse = raw.request(
            HEARTBEAT,
            0,
            &HeartbeatRequest {
                group_id: "py-group".into(),
                generation_id: generation,
                member_id: member.into(),
                ..Default::default()
            },
        );
        response.error_code
    };
    assert_eq!(beat(&mut raw, 1, &member), 0);
    assert_eq!(
        beat(&mut raw, 2, &member),
        ErrorCode::IllegalGeneration.code()
    );
    assert_eq!(
        beat(&mut raw, 1, "stranger"),
        ErrorCode::UnknownMemberId.code()
    );

    // OffsetCommit v2 / OffsetFetch v1.
    let committed: OffsetCommitResponse =
        raw.request(OFFSET_COMMIT, 2, &commit(1, &member, "events", 1, 17));
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);
    assert_eq!(
        fetch_v1(&mut raw, "events", 1),
        (17, Some("meta".into()), 0)
    );
    assert_eq!(fetch_v1(&mut raw, "events", 0).0, -1, "nothing committed");
    let stale: OffsetCommitResponse =
        raw.request(OFFSET_COMMIT, 2, &commit(0, &member, "events", 1, 18));
    assert_eq!(
        stale.topics[0].partitions[0].error_code,
        ErrorCode::IllegalGeneration.code()
    );
    let unknown: OffsetCommitResponse =
        raw.request(OFFSET_COMMIT, 2, &commit(1, &member, "no-such-topic", 0, 1));
    assert_eq!(
        unknown.topics[0].partitions[0].error_code,
        ErrorCode::UnknownTopicOrPartition.code()
    );

    // DescribeGroups and ListGroups see a Stable consumer group with its member.
    let described: DescribeGroupsResponse = raw.request(
        DESCRIBE_GROUPS,
        0,
        &DescribeGroupsRequest {
            groups: vec!["py-group".into(), "nobody".into()],
            ..Default::default()
        },
    );
    assert_eq!(described.groups[0].group_state, "Stable");
    assert_eq!(described.groups[0].protocol_type, "consumer");
    assert_eq!(described.groups[0].protocol_data, "range");
    assert_eq!(described.groups[0].members[0].member_id, member);
    assert_eq!(
        &described.groups[0].members[0].member_assignment[..],
        b"both partitions"
    );
    assert_eq!(described.groups[1].group_state, "Dead");
    let listed: ListGroupsResponse = raw.request(LIST_GROUPS, 0, &ListGroupsRequest::default());
    assert!(listed
        .groups
        .iter()
        .any(|g| g.group_id == "py-group" && g.protocol_type == "consumer"));
    let filtered: ListGroupsResponse = raw.request(
        LIST_GROUPS,
        4,
        &ListGroupsRequest {
            states_filter: vec!["Empty".into()],
            ..Default::default()
        },
    );
    assert!(filtered.groups.iter().all(|g| g.group_id != "py-group"));

    // OffsetDelete refuses a topic the live group subscribes to; DeleteGroups a live group.
    let offset_delete = |raw: &mut Raw| -> OffsetDeleteResponse {
        raw.request(
            OFFSET_DELETE,
            0,
            &OffsetDeleteRequest {
                group_id: "py-group".into(),
                topics: vec![OffsetDeleteRequestTopic {
                    name: "events".into(),
                    partitions: vec![OffsetDeleteRequestPartition {
                        partition_index: 1,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
    };
    let refused = offset_delete(&mut raw);
    assert_eq!(
        refused.topics[0].partitions[0].error_code,
        ErrorCode::GroupSubscribedToTopic.code()
    );
    let delete_groups = |raw: &mut Raw| -> i16 {
        let response: DeleteGroupsResponse = raw.request(
            DELETE_GROUPS,
            0,
            &DeleteGroupsRequest {
                groups_names: vec!["py-group".into()],
                ..Default::default()
            },
        );
        response.results[0].error_code
    };
    assert_eq!(delete_groups(&mut raw), ErrorCode::NonEmptyGroup.code());

    // LeaveGroup v0: the group is Empty; then offsets can be deleted, and the group.
    let left: LeaveGroupResponse = raw.request(
        LEAVE_GROUP,
        0,
        &LeaveGroupRequest {
            group_id: "py-group".into(),
            member_id: member.clone(),
            ..Default::default()
        },
    );
    assert_eq!(left.error_code, 0);
    assert_eq!(
        beat(&mut raw, 1, &member),
        ErrorCode::UnknownMemberId.code()
    );
    // A simple (generation -1) commit is allowed on an Empty group.
    let simple: OffsetCommitResponse =
        raw.request(OFFSET_COMMIT, 2, &commit(-1, "", "events", 0, 5));
    assert_eq!(simple.topics[0].partitions[0].error_code, 0);
    let deleted = offset_delete(&mut raw);
    assert_eq!(deleted.error_code, 0);
    assert_eq!(deleted.topics[0].partitions[0].error_code, 0);
    assert_eq!(fetch_v1(&mut raw, "events", 1).0, -1);
    assert_eq!(fetch_v1(&mut raw, "events", 0).0, 5);
    assert_eq!(delete_groups(&mut raw), 0);
    assert_eq!(delete_groups(&mut raw), ErrorCode::GroupIdNotFound.code());
    assert_eq!(fetch_v1(&mut raw, "events", 0).0, -1);
}

#[test]
fn new_versions_require_a_member_id_check_bounds_and_leave_in_batches() {
    let broker = Broker::start(&[
        "group.initial.rebalance.delay.ms=0",
        "offsets.topic.num.partitions=2",
    ]);
    let mut raw = Raw::connect(&broker);
    let _: FindCoordinatorResponse = raw.request(
        FIND_COORDINATOR,
        3,
        &FindCoordinatorRequest {
            key: "py-group".into(),
            ..Default::default()
        },
    );
    // JoinGroup v5 without a member id: MEMBER_ID_REQUIRED carrying the id to use.
    let mut request = join("", &["t"]);
    request.group_instance_id = None;
    let first: JoinGroupResponse = raw.request(JOIN_GROUP, 5, &request);
    assert_eq!(first.error_code, ErrorCode::MemberIdRequired.code());
    assert!(!first.member_id.is_empty());
    request.member_id = first.member_id.clone();
    let joined: JoinGroupResponse = raw.request(JOIN_GROUP, 5, &request);
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.member_id, first.member_id);

    // Session timeouts outside the broker's bounds are refused.
    let mut bad = join("", &["t"]);
    bad.session_timeout_ms = 10;
    let refused: JoinGroupResponse = raw.request(JOIN_GROUP, 5, &bad);
    assert_eq!(refused.error_code, ErrorCode::InvalidSessionTimeout.code());
    // An empty group id is invalid.
    let mut nameless = join("", &["t"]);
    nameless.group_id = String::new();
    let refused: JoinGroupResponse = raw.request(JOIN_GROUP, 5, &nameless);
    assert_eq!(refused.error_code, ErrorCode::InvalidGroupId.code());

    // Batched LeaveGroup (v3+): one known member, one unknown.
    let left: LeaveGroupResponse = raw.request(
        LEAVE_GROUP,
        3,
        &LeaveGroupRequest {
            group_id: "py-group".into(),
            members: vec![
                MemberIdentity {
                    member_id: joined.member_id.clone(),
                    ..Default::default()
                },
                MemberIdentity {
                    member_id: "ghost".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        },
    );
    assert_eq!(left.error_code, 0);
    assert_eq!(left.members[0].error_code, 0);
    assert_eq!(
        left.members[1].error_code,
        ErrorCode::UnknownMemberId.code()
    );

    // OffsetFetch v8: several groups at once; unknown groups have nothing committed.
    let fetched: OffsetFetchResponse = raw.request(
        OFFSET_FETCH,
        8,
        &OffsetFetchRequest {
            groups: vec![
                offset_fetch_request::OffsetFetchRequestGroup {
                    group_id: "py-group".into(),
                    topics: None,
                    ..Default::default()
                },
                offset_fetch_request::OffsetFetchRequestGroup {
                    group_id: "other".into(),
                    topics: None,
                    ..Default::default()
                },
            ],
            ..Default::default()
        },
    );
    assert_eq!(fetched.groups.len(), 2);
    assert!(fetched.groups.iter().all(|g| g.error_code == 0));
}
