//! Tests of the group state machine (driven without I/O: waiters are plain tokens, time is a
//! number) and of the record format and replay.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;

use super::records::{GroupRecord, GroupStore};
use super::state::*;
use super::{java_string_hash, partition_for};
use crate::protocol::error::ErrorCode;

/// A waiter token: which request of the test it answers.
type Token = u64;

fn config() -> GroupConfig {
    GroupConfig {
        min_session_timeout_ms: 1_000,
        max_session_timeout_ms: 60_000,
        initial_rebalance_delay_ms: 100,
        max_size: 8,
        new_member_join_timeout_ms: 30_000,
    }
}

fn join_request(member_id: &str, instance: Option<&str>, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_string(),
        instance_id: instance.map(str::to_string),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        rebalance_timeout_ms: 5_000,
        session_timeout_ms: 3_000,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| Protocol {
                name: p.to_string(),
                metadata: Bytes::from(format!("meta-{p}")),
            })
            .collect(),
        require_known_member_id: false,
    }
}

/// A little harness: a group, a clock, and the replies collected per token.
struct Harness {
    group: ClassicGroup<Token>,
    now: i64,
    next_token: Token,
    next_member: u32,
    replies: BTreeMap<Token, GroupReply>,
    generations_seen: Vec<i32>,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            group: ClassicGroup::new("g".into(), 0),
            now: 1_000,
            next_token: 0,
            next_member: 0,
            replies: BTreeMap::new(),
            generations_seen: vec![0],
        }
    }

    fn token(&mut self) -> Token {
        self.next_token += 1;
        self.next_token
    }

    /// Applies effects; persists succeed at once (the record is durable).
    fn settle(&mut self, mut fx: Effects<Token>) {
        loop {
            for (token, reply) in fx.replies.drain(..) {
                assert!(
                    self.replies.insert(token, reply).is_none(),
                    "a waiter is answered once"
                );
            }
            let persists: Vec<Persist> = fx.persist.drain(..).collect();
            if persists.is_empty() {
                break;
            }
            for persist in persists {
                let cfg = config();
                self.group
                    .persisted(persist.after, None, self.now, &cfg, &mut fx);
            }
        }
        if *self.generations_seen.last().unwrap() != self.group.generation {
            self.generations_seen.push(self.group.generation);
        }
    }

    fn join(&mut self, request: JoinRequest) -> Token {
        let token = self.token();
        let mut fx = Effects::default();
        self.next_member += 1;
        let n = self.next_member;
        self.group.join(
            request,
            token,
            self.now,
            &config(),
            |client| format!("{client}-{n}"),
            &mut fx,
        );
        self.settle(fx);
        token
    }

    fn sync(&mut self, member: &str, generation: i32, assignment: Vec<(String, Bytes)>) -> Token {
        let token = self.token();
        let mut fx = Effects::default();
        self.group.sync(
            member, None, generation, None, None, assignment, token, self.now, &mut fx,
        );
        self.settle(fx);
        token
    }

    fn advance(&mut self, ms: i64) {
        self.now += ms;
        let mut fx = Effects::default();
        self.group.tick(self.now, &config(), &mut fx);
        self.settle(fx);
    }

    /// Lets time pass until `token`'s join is answered (the initial delay extends while new
    /// members arrive).
    fn advance_until_answered(&mut self, token: Token) {
        for _ in 0..100 {
            if self.replies.contains_key(&token) {
                return;
            }
            self.advance(150);
        }
        panic!("join {token} never answered");
    }

    fn join_reply(&self, token: Token) -> Option<&JoinResult> {
        match self.replies.get(&token) {
            Some(GroupReply::Join(r)) => Some(r),
            Some(other) => panic!("expected a join reply, got {other:?}"),
            None => None,
        }
    }

    fn sync_reply(&self, token: Token) -> Option<&SyncResult> {
        match self.replies.get(&token) {
            Some(GroupReply::Sync(r)) => Some(r),
            Some(other) => panic!("expected a sync reply, got {other:?}"),
            None => None,
        }
    }

    fn check_invariants(&self) {
        let g = &self.group;
        if g.is(GroupState::Stable) {
            assert!(!g.members.is_empty(), "a Stable group has members");
        }
        if g.is(GroupState::Dead) || g.is(GroupState::Empty) {
            assert!(g.members.is_empty(), "{:?} group has no members", g.state);
        }
        for (instance, member) in &g.static_members {
            assert_eq!(
                g.members[member].instance_id.as_deref(),
                Some(instance.as_str())
            );
        }
        if !g.members.is_empty() {
            let leader = g
                .leader
                .as_ref()
                .expect("a group with members has a leader");
            assert!(g.members.contains_key(leader), "the leader is a member");
        }
        for pair in self.generations_seen.windows(2) {
            assert!(pair[1] > pair[0], "generations only grow");
        }
        assert_eq!(
            g.generation as u64, g.stats.rebalances_total,
            "the generation grows by one per completed rebalance"
        );
    }
}

/// Runs a full rebalance for members that all rejoin, the leader assigning `member → id bytes`.
fn rebalance(h: &mut Harness, members: &[String]) -> i32 {
    let tokens: Vec<Token> = members
        .iter()
        .map(|m| h.join(join_request(m, None, &["range"])))
        .collect();
    h.advance_until_answered(tokens[0]);
    let first = h.join_reply(tokens[0]).expect("join completed").clone();
    let leader = first.leader.clone();
    let generation = first.generation_id;
    let assignment: Vec<(String, Bytes)> = members
        .iter()
        .map(|m| (m.clone(), Bytes::from(m.clone())))
        .collect();
    h.sync(&leader, generation, assignment);
    for m in members {
        if *m != leader {
            h.sync(m, generation, Vec::new());
        }
    }
    generation
}

#[test]
fn java_hash_and_partition_match_kafka() {
    // Values of Java's "…".hashCode().
    assert_eq!(java_string_hash(""), 0);
    assert_eq!(java_string_hash("a"), 97);
    assert_eq!(java_string_hash("hello"), 99162322);
    assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
    // Utils.abs(Integer.MIN_VALUE) is 0, so that group lands on partition 0.
    assert_eq!(partition_for("polygenelubricants", 50), 0);
    assert_eq!(partition_for("hello", 50), 99162322 % 50);
    assert_eq!(partition_for("group", 1), 0);
}

#[test]
fn given_two_members_when_both_join_and_sync_should_become_stable_with_the_leaders_assignment() {
    let mut h = Harness::new();
    let a = h.join(join_request("", None, &["range", "roundrobin"]));
    // The initial rebalance delay holds the first join.
    assert!(h.join_reply(a).is_none());
    let b = h.join(join_request("", None, &["roundrobin", "range"]));
    h.advance_until_answered(a);
    let ra = h.join_reply(a).expect("a joined").clone();
    let rb = h.join_reply(b).expect("b joined").clone();
    assert_eq!(ra.error, ErrorCode::None);
    assert_eq!(ra.generation_id, 1);
    assert_eq!(rb.generation_id, 1);
    assert_eq!(ra.leader, rb.leader);
    // Tie of votes: the first member's preference wins; both support both.
    assert!(ra.protocol_name.is_some());
    let (leader, follower) = if ra.member_id == ra.leader {
        (ra.clone(), rb.clone())
    } else {
        (rb.clone(), ra.clone())
    };
    assert_eq!(leader.members.len(), 2, "the leader gets the member list");
    assert!(follower.members.is_empty());
    assert!(h.group.is(GroupState::CompletingRebalance));
    let sf = h.sync(&follower.member_id, 1, Vec::new());
    assert!(h.sync_reply(sf).is_none(), "followers wait for the leader");
    let sl = h.sync(
        &leader.member_id,
        1,
        vec![
            (leader.member_id.clone(), Bytes::from_static(b"L")),
            (follower.member_id.clone(), Bytes::from_static(b"F")),
        ],
    );
    assert_eq!(
        h.sync_reply(sl).unwrap().assignment,
        Bytes::from_static(b"L")
    );
    assert_eq!(
        h.sync_reply(sf).unwrap().assignment,
        Bytes::from_static(b"F")
    );
    assert!(h.group.is(GroupState::Stable));
    assert_eq!(
        h.group.heartbeat(&follower.member_id, None, 1, h.now),
        ErrorCode::None
    );
    assert_eq!(
        h.group.heartbeat(&follower.member_id, None, 0, h.now),
        ErrorCode::IllegalGeneration
    );
    assert_eq!(
        h.group.heartbeat("stranger", None, 1, h.now),
        ErrorCode::UnknownMemberId
    );
    h.check_invariants();
}

#[test]
fn given_v4_join_without_member_id_should_require_it_then_accept_the_rejoin() {
    let mut h = Harness::new();
    let mut request = join_request("", None, &["range"]);
    request.require_known_member_id = true;
    let t = h.join(request.clone());
    let reply = h.join_reply(t).unwrap().clone();
    assert_eq!(reply.error, ErrorCode::MemberIdRequired);
    assert!(!reply.member_id.is_empty());
    request.member_id = reply.member_id.clone();
    let t2 = h.join(request);
    h.advance(150);
    let joined = h.join_reply(t2).unwrap();
    assert_eq!(joined.error, ErrorCode::None);
    assert_eq!(joined.member_id, reply.member_id);
    assert_eq!(joined.leader, reply.member_id);
}

#[test]
fn protocol_errors_are_kafkas() {
    let mut h = Harness::new();
    let mut bad = join_request("", None, &["range"]);
    bad.session_timeout_ms = 10;
    let t = h.join(bad);
    assert_eq!(
        h.join_reply(t).unwrap().error,
        ErrorCode::InvalidSessionTimeout
    );
    let members = vec!["m1".to_string()];
    // A known member id on an empty group is unknown.
    let t = h.join(join_request("m1", None, &["range"]));
    assert_eq!(h.join_reply(t).unwrap().error, ErrorCode::UnknownMemberId);
    let a = h.join(join_request("", None, &["range"]));
    h.advance(150);
    let id = h.join_reply(a).unwrap().member_id.clone();
    let _ = members;
    // A protocol nobody else supports is inconsistent.
    let t = h.join(join_request("", None, &["sticky"]));
    assert_eq!(
        h.join_reply(t).unwrap().error,
        ErrorCode::InconsistentGroupProtocol
    );
    let s = h.sync(&id, 7, Vec::new());
    assert_eq!(h.sync_reply(s).unwrap().error, ErrorCode::IllegalGeneration);
    // Commits: wrong generation, unknown member, simple commit refused on a live group.
    assert_eq!(
        h.group.validate_commit(&id, None, 9, h.now),
        Err(ErrorCode::RebalanceInProgress),
        "CompletingRebalance answers REBALANCE_IN_PROGRESS first"
    );
    h.sync(&id, 1, vec![(id.clone(), Bytes::new())]);
    assert_eq!(
        h.group.validate_commit(&id, None, 9, h.now),
        Err(ErrorCode::IllegalGeneration)
    );
    assert_eq!(
        h.group.validate_commit("x", None, 1, h.now),
        Err(ErrorCode::UnknownMemberId)
    );
    assert_eq!(h.group.validate_commit(&id, None, 1, h.now), Ok(()));
    assert_eq!(
        h.group.validate_commit("", None, -1, h.now),
        Err(ErrorCode::UnknownMemberId)
    );
}

#[test]
fn given_group_max_size_when_exceeded_should_refuse_the_extra_member() {
    let mut h = Harness::new();
    let members: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    let _ = rebalance_new(&mut h, 8);
    assert_eq!(h.group.members.len(), 8);
    let t = h.join(join_request("", None, &["range"]));
    assert_eq!(
        h.join_reply(t).unwrap().error,
        ErrorCode::GroupMaxSizeReached
    );
    let _ = members;
}

/// Joins `count` new members and completes the rebalance; returns their ids.
fn rebalance_new(h: &mut Harness, count: usize) -> Vec<String> {
    let tokens: Vec<Token> = (0..count)
        .map(|_| h.join(join_request("", None, &["range"])))
        .collect();
    h.advance_until_answered(tokens[0]);
    let ids: Vec<String> = tokens
        .iter()
        .map(|t| h.join_reply(*t).unwrap().member_id.clone())
        .collect();
    rebalance(h, &ids);
    assert!(h.group.is(GroupState::Stable));
    ids
}

#[test]
fn given_a_stable_group_when_a_member_stops_heartbeating_should_evict_it_and_rebalance() {
    let mut h = Harness::new();
    let ids = rebalance_new(&mut h, 2);
    let generation = h.group.generation;
    // Only ids[0] heartbeats.
    for _ in 0..4 {
        h.advance(1_000);
        let e = h.group.heartbeat(&ids[0], None, generation, h.now);
        if e == ErrorCode::RebalanceInProgress {
            break;
        }
    }
    assert!(h.group.is(GroupState::PreparingRebalance));
    assert!(!h.group.members.contains_key(&ids[1]));
    let t = h.join(join_request(&ids[0], None, &["range"]));
    let reply = h.join_reply(t).unwrap();
    assert_eq!(reply.generation_id, generation + 1);
    assert_eq!(reply.members.len(), 1);
    h.check_invariants();
}

#[test]
fn given_a_static_member_when_it_rejoins_a_stable_group_should_keep_its_assignment_without_rebalance(
) {
    let mut h = Harness::new();
    let t = h.join(join_request("", Some("instance-1"), &["range"]));
    let u = h.join(join_request("", Some("instance-2"), &["range"]));
    h.advance_until_answered(t);
    let a = h.join_reply(t).unwrap().member_id.clone();
    let b = h.join_reply(u).unwrap().member_id.clone();
    rebalance(&mut h, &[a.clone(), b.clone()]);
    let generation = h.group.generation;
    let old_assignment = h.group.members[&b].assignment.clone();
    // instance-2 restarts: a new JoinGroup with an empty member id.
    let t = h.join(join_request("", Some("instance-2"), &["range"]));
    let reply = h.join_reply(t).unwrap().clone();
    assert_eq!(reply.error, ErrorCode::None);
    assert_eq!(reply.generation_id, generation, "no rebalance");
    assert_ne!(reply.member_id, b);
    assert!(h.group.is(GroupState::Stable));
    let s = h.sync(&reply.member_id, generation, Vec::new());
    assert_eq!(h.sync_reply(s).unwrap().assignment, old_assignment);
    // The old incarnation is fenced.
    assert_eq!(
        h.group.heartbeat(&b, Some("instance-2"), generation, h.now),
        ErrorCode::FencedInstanceId
    );
    h.check_invariants();
}

#[test]
fn given_a_member_that_leaves_when_the_group_is_stable_should_rebalance_the_rest() {
    let mut h = Harness::new();
    let ids = rebalance_new(&mut h, 3);
    let mut fx = Effects::default();
    let cfg = config();
    assert_eq!(
        h.group.leave(&ids[1], None, h.now, &cfg, &mut fx),
        ErrorCode::None
    );
    h.settle(fx);
    assert!(h.group.is(GroupState::PreparingRebalance));
    let mut fx = Effects::default();
    assert_eq!(
        h.group.leave(&ids[1], None, h.now, &cfg, &mut fx),
        ErrorCode::UnknownMemberId
    );
    h.settle(fx);
    let survivors = vec![ids[0].clone(), ids[2].clone()];
    rebalance(&mut h, &survivors);
    assert!(h.group.is(GroupState::Stable));
    assert_eq!(h.group.members.len(), 2);
    // Everybody leaves: the group becomes Empty with a new generation.
    for id in &survivors {
        let mut fx = Effects::default();
        h.group.leave(id, None, h.now, &cfg, &mut fx);
        h.settle(fx);
    }
    assert!(h.group.is(GroupState::Empty));
    h.check_invariants();
}

#[derive(Clone, Debug)]
enum Op {
    JoinNew,
    Rejoin(usize),
    SyncAll,
    Heartbeat(usize),
    Leave(usize),
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::JoinNew),
        3 => (0usize..6).prop_map(Op::Rejoin),
        3 => Just(Op::SyncAll),
        3 => (0usize..6).prop_map(Op::Heartbeat),
        1 => (0usize..6).prop_map(Op::Leave),
        3 => (1i64..4_000).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_operations_keep_the_group_invariants(ops in proptest::collection::vec(op(), 1..80)) {
        let mut h = Harness::new();
        let cfg = config();
        for op in ops {
            let known: Vec<String> = h.group.member_ids();
            match op {
                Op::JoinNew => { h.join(join_request("", None, &["range"])); }
                Op::Rejoin(i) => {
                    if let Some(id) = known.get(i % known.len().max(1)).cloned() {
                        h.join(join_request(&id, None, &["range"]));
                    }
                }
                Op::SyncAll => {
                    let generation = h.group.generation;
                    let leader = h.group.leader.clone();
                    let assignment: Vec<(String, Bytes)> = known
                        .iter()
                        .map(|m| (m.clone(), Bytes::from(format!("{m}@{generation}"))))
                        .collect();
                    for id in &known {
                        let a = if Some(id) == leader.as_ref() { assignment.clone() } else { Vec::new() };
                        h.sync(id, generation, a);
                    }
                }
                Op::Heartbeat(i) => {
                    if let Some(id) = known.get(i % known.len().max(1)) {
                        let generation = h.group.generation;
                        h.group.heartbeat(id, None, generation, h.now);
                    }
                }
                Op::Leave(i) => {
                    if let Some(id) = known.get(i % known.len().max(1)).cloned() {
                        let mut fx = Effects::default();
                        h.group.leave(&id, None, h.now, &cfg, &mut fx);
                        h.settle(fx);
                    }
                }
                Op::Advance(ms) => h.advance(ms),
            }
            h.check_invariants();
            if h.group.is(GroupState::Stable) {
                // Every member holds an assignment of the current generation.
                let generation = h.group.generation;
                for m in h.group.members.values() {
                    prop_assert_eq!(
                        &m.assignment,
                        &Bytes::from(format!("{}@{generation}", m.id)),
                        "member {} in generation {}", m.id, generation
                    );
                }
            }
        }
    }
}

#[test]
fn records_round_trip_in_kafkas_format() {
    let offset = GroupRecord::Offset {
        group: "g".into(),
        topic: "t".into(),
        partition: 3,
        value: Some(CommittedOffset {
            offset: 42,
            leader_epoch: 7,
            metadata: "meta".into(),
            commit_timestamp_ms: 1_700_000_000_000,
            expire_timestamp_ms: None,
        }),
    };
    let (key, value) = offset.encode();
    // Key version 1, then group "g", topic "t", partition 3.
    assert_eq!(&key[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 3]);
    let value = value.unwrap();
    assert_eq!(&value[..2], &[0, 3], "OffsetCommitValue version 3");
    assert_eq!(GroupRecord::decode(&key, Some(&value)), Some(offset));
    let tombstone = GroupRecord::Metadata {
        group: "g".into(),
        value: None,
    };
    let (key, value) = tombstone.encode();
    assert_eq!(&key[..2], &[0, 2], "GroupMetadataKey version 2");
    assert!(value.is_none());
    assert_eq!(GroupRecord::decode(&key, None), Some(tombstone));
}

#[test]
fn given_group_records_when_replayed_should_rebuild_the_state_that_wrote_them() {
    let mut h = Harness::new();
    let ids = rebalance_new(&mut h, 3);
    h.group.offsets.insert(
        ("orders".into(), 0),
        CommittedOffset {
            offset: 10,
            leader_epoch: 0,
            metadata: String::new(),
            commit_timestamp_ms: h.now,
            expire_timestamp_ms: None,
        },
    );
    let mut log: Vec<(Bytes, Option<Bytes>)> = Vec::new();
    for ((topic, partition), value) in &h.group.offsets {
        log.push(
            GroupRecord::Offset {
                group: "g".into(),
                topic: topic.clone(),
                partition: *partition,
                value: Some(value.clone()),
            }
            .encode(),
        );
    }
    log.push(
        GroupRecord::Metadata {
            group: "g".into(),
            value: Some(h.group.metadata_value(h.now, None)),
        }
        .encode(),
    );
    let mut store: GroupStore<Token> = GroupStore::default();
    for (key, value) in &log {
        store.apply(GroupRecord::decode(key, value.as_ref()).unwrap(), h.now);
    }
    let replayed = &store.groups["g"];
    assert_eq!(
        replayed.metadata_value(h.now, None),
        h.group.metadata_value(h.now, None)
    );
    assert_eq!(replayed.offsets, h.group.offsets);
    assert!(replayed.is(GroupState::Stable));
    assert_eq!(replayed.member_ids(), ids);
    // A loaded member keeps heartbeating with the generation it knew.
    let mut replayed_group = store.groups.remove("g").unwrap();
    assert_eq!(
        replayed_group.heartbeat(&ids[0], None, h.group.generation, h.now),
        ErrorCode::None
    );
    // Tombstones delete.
    let mut store: GroupStore<Token> = GroupStore::default();
    for (key, value) in &log {
        store.apply(GroupRecord::decode(key, value.as_ref()).unwrap(), h.now);
    }
    store.apply(
        GroupRecord::Offset {
            group: "g".into(),
            topic: "orders".into(),
            partition: 0,
            value: None,
        },
        h.now,
    );
    store.apply(
        GroupRecord::Metadata {
            group: "g".into(),
            value: None,
        },
        h.now,
    );
    assert!(store.groups.is_empty());
}

#[test]
fn empty_groups_lose_their_offsets_after_retention() {
    let mut group: ClassicGroup<Token> = ClassicGroup::new("g".into(), 0);
    group.offsets.insert(
        ("t".into(), 0),
        CommittedOffset {
            offset: 1,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 1_000,
            expire_timestamp_ms: None,
        },
    );
    assert!(group.expired_offsets(1_500, 1_000).is_empty());
    assert_eq!(
        group.expired_offsets(2_000, 1_000),
        vec![("t".to_string(), 0)]
    );
}
