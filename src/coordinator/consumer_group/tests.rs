use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

fn topics(list: &[(&str, i32)]) -> BTreeMap<String, i32> {
    list.iter().map(|(t, c)| (t.to_string(), *c)).collect()
}

fn subs(list: &[&str]) -> Option<BTreeSet<String>> {
    Some(list.iter().map(|t| t.to_string()).collect())
}

fn config() -> ConsumerGroupConfig {
    ConsumerGroupConfig {
        session_timeout_ms: 45_000,
        heartbeat_interval_ms: 5_000,
        max_size: 100,
        default_assignor: "uniform".into(),
    }
}

/// A consumer as librdkafka behaves: adopts every assignment it is sent at once (revoking what
/// it lost), reports what it owns on every heartbeat, and rejoins from scratch when fenced.
#[derive(Clone, Debug)]
struct Client {
    id: String,
    epoch: i32,
    owned: Assignment,
    joined: bool,
    topics: Vec<&'static str>,
    instance: Option<String>,
}

impl Client {
    fn new(id: &str, topics: &[&'static str]) -> Client {
        Client {
            id: id.into(),
            epoch: 0,
            owned: Assignment::new(),
            joined: false,
            topics: topics.to_vec(),
            instance: None,
        }
    }

    fn heartbeat(
        &mut self,
        group: &mut ConsumerGroup,
        now: i64,
        metadata: &BTreeMap<String, i32>,
    ) -> Result<HeartbeatReply, ErrorCode> {
        let request = Heartbeat {
            member_id: self.id.clone(),
            member_epoch: if self.joined { self.epoch } else { JOIN_EPOCH },
            instance_id: self.instance.clone(),
            rebalance_timeout_ms: 60_000,
            subscriptions: if self.joined {
                None
            } else {
                subs(&self.topics)
            },
            owned: Some(self.owned.clone()),
            client_id: "test".into(),
            client_host: "/127.0.0.1".into(),
            ..Heartbeat::default()
        };
        let mut changes = Changes::default();
        let id = self.id.clone();
        match group.heartbeat(request, now, metadata, &config(), || id, &mut changes) {
            Ok(reply) => {
                self.joined = true;
                self.epoch = reply.member_epoch;
                if let Some(assignment) = &reply.assignment {
                    self.owned = assignment.clone();
                }
                Ok(reply)
            }
            Err(error) => {
                if matches!(
                    error,
                    ErrorCode::FencedMemberEpoch | ErrorCode::UnknownMemberId
                ) {
                    self.joined = false;
                    self.owned.clear();
                }
                Err(error)
            }
        }
    }

    fn leave(&mut self, group: &mut ConsumerGroup, now: i64, metadata: &BTreeMap<String, i32>) {
        let request = Heartbeat {
            member_id: self.id.clone(),
            member_epoch: LEAVE_EPOCH,
            ..Heartbeat::default()
        };
        let mut changes = Changes::default();
        let _ = group.heartbeat(request, now, metadata, &config(), String::new, &mut changes);
        self.joined = false;
        self.owned.clear();
    }
}

fn count(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

fn assert_disjoint<'a>(sets: impl Iterator<Item = &'a Assignment>) {
    let mut seen = BTreeSet::new();
    for set in sets {
        for (topic, partitions) in set {
            for p in partitions {
                assert!(seen.insert((topic.clone(), *p)), "{topic}-{p} owned twice");
            }
        }
    }
}

fn settle(clients: &mut [Client], group: &mut ConsumerGroup, metadata: &BTreeMap<String, i32>) {
    for _ in 0..8 {
        for index in 0..clients.len() {
            if clients[index].joined {
                let _ = clients[index].heartbeat(group, 0, metadata);
                assert_disjoint(clients.iter().map(|c| &c.owned));
            }
        }
        if group.state() == "stable" {
            return;
        }
    }
    panic!("the group did not settle: {}", group.state());
}

#[test]
fn a_third_member_gets_partitions_only_after_the_others_release_them() {
    let metadata = topics(&[("views", 12)]);
    let mut group = ConsumerGroup::new("g".into());
    let mut clients = vec![Client::new("a", &["views"]), Client::new("b", &["views"])];
    for client in clients.iter_mut() {
        client.heartbeat(&mut group, 0, &metadata).unwrap();
    }
    settle(&mut clients, &mut group, &metadata);
    let (mut a, mut b) = (clients[0].clone(), clients[1].clone());
    assert_eq!((count(&a.owned), count(&b.owned)), (6, 6));
    let epoch = group.group_epoch;

    let mut c = Client::new("c", &["views"]);
    let reply = c.heartbeat(&mut group, 0, &metadata).unwrap();
    assert_eq!(group.group_epoch, epoch + 1);
    // c is at the new epoch but everything is still owned by a or b.
    assert_eq!(reply.member_epoch, group.assignment_epoch);
    assert_eq!(count(&c.owned), 0);
    assert_eq!(group.members["c"].state, MemberState::UnreleasedPartitions);
    // a is told to give two up; it stays at its old epoch until it confirms.
    let before = a.epoch;
    a.heartbeat(&mut group, 0, &metadata).unwrap();
    assert_eq!(count(&a.owned), 4);
    assert_eq!(a.epoch, before);
    assert_eq!(group.members["a"].state, MemberState::UnrevokedPartitions);
    assert_disjoint([&a.owned, &b.owned, &c.owned].into_iter());
    // Next heartbeat confirms the revocation: a moves to the new epoch.
    a.heartbeat(&mut group, 0, &metadata).unwrap();
    assert_eq!(a.epoch, group.assignment_epoch);
    // c gets what a released; b's two follow once b has revoked them.
    c.heartbeat(&mut group, 0, &metadata).unwrap();
    assert_eq!(count(&c.owned), 2);
    b.heartbeat(&mut group, 0, &metadata).unwrap();
    b.heartbeat(&mut group, 0, &metadata).unwrap();
    c.heartbeat(&mut group, 0, &metadata).unwrap();
    assert_eq!(
        (count(&a.owned), count(&b.owned), count(&c.owned)),
        (4, 4, 4)
    );
    assert_eq!(group.state(), "stable");
    assert_disjoint([&a.owned, &b.owned, &c.owned].into_iter());
}

#[test]
fn stale_epochs_are_fenced_and_unknown_members_refused() {
    let metadata = topics(&[("views", 4)]);
    let mut group = ConsumerGroup::new("g".into());
    let mut a = Client::new("a", &["views"]);
    a.heartbeat(&mut group, 0, &metadata).unwrap();
    let mut changes = Changes::default();
    let stale = Heartbeat {
        member_id: "a".into(),
        member_epoch: a.epoch + 5,
        ..Heartbeat::default()
    };
    assert_eq!(
        group.heartbeat(stale, 0, &metadata, &config(), String::new, &mut changes),
        Err(ErrorCode::FencedMemberEpoch)
    );
    let unknown = Heartbeat {
        member_id: "zz".into(),
        member_epoch: 3,
        ..Heartbeat::default()
    };
    assert_eq!(
        group.heartbeat(unknown, 0, &metadata, &config(), String::new, &mut changes),
        Err(ErrorCode::UnknownMemberId)
    );
    let bad_assignor = Heartbeat {
        member_id: "a".into(),
        member_epoch: a.epoch,
        server_assignor: Some("sticky".into()),
        ..Heartbeat::default()
    };
    assert_eq!(
        group.heartbeat(
            bad_assignor,
            0,
            &metadata,
            &config(),
            String::new,
            &mut changes
        ),
        Err(ErrorCode::UnsupportedAssignor)
    );
}

#[test]
fn a_joining_member_without_an_id_gets_one() {
    let metadata = topics(&[("views", 2)]);
    let mut group = ConsumerGroup::new("g".into());
    let mut changes = Changes::default();
    let reply = group
        .heartbeat(
            Heartbeat {
                member_epoch: 0,
                subscriptions: subs(&["views"]),
                ..Heartbeat::default()
            },
            0,
            &metadata,
            &config(),
            || "generated".to_string(),
            &mut changes,
        )
        .unwrap();
    assert_eq!(reply.member_id, "generated");
    assert_eq!(count(reply.assignment.as_ref().unwrap()), 2);
}

#[test]
fn a_silent_member_expires_and_its_partitions_move() {
    let metadata = topics(&[("views", 6)]);
    let mut group = ConsumerGroup::new("g".into());
    let mut a = Client::new("a", &["views"]);
    let mut b = Client::new("b", &["views"]);
    a.heartbeat(&mut group, 0, &metadata).unwrap();
    b.heartbeat(&mut group, 0, &metadata).unwrap();
    let mut clients = vec![a, b];
    settle(&mut clients, &mut group, &metadata);
    let mut changes = Changes::default();
    assert!(!group.expire(44_000, &mut changes));
    // Only b heartbeats from now on.
    clients[1].heartbeat(&mut group, 40_000, &metadata).unwrap();
    assert!(group.expire(46_000, &mut changes));
    assert!(changes.members_removed.contains("a"));
    clients[1].heartbeat(&mut group, 46_000, &metadata).unwrap();
    assert_eq!(count(&clients[1].owned), 6);
}

#[test]
fn a_static_member_that_comes_back_in_time_keeps_its_assignment_without_a_rebalance() {
    let metadata = topics(&[("views", 6)]);
    let mut group = ConsumerGroup::new("g".into());
    let mut a = Client::new("a1", &["views"]);
    a.instance = Some("pod-a".into());
    let mut b = Client::new("b", &["views"]);
    a.heartbeat(&mut group, 0, &metadata).unwrap();
    b.heartbeat(&mut group, 0, &metadata).unwrap();
    let mut clients = vec![a, b];
    settle(&mut clients, &mut group, &metadata);
    let owned = clients[0].owned.clone();
    let epoch = group.group_epoch;
    let mut changes = Changes::default();
    group
        .heartbeat(
            Heartbeat {
                member_id: "a1".into(),
                member_epoch: STATIC_LEAVE_EPOCH,
                instance_id: Some("pod-a".into()),
                ..Heartbeat::default()
            },
            1_000,
            &metadata,
            &config(),
            String::new,
            &mut changes,
        )
        .unwrap();
    // The restarted process has a new member id and the same instance id.
    let mut again = Client::new("a2", &["views"]);
    again.instance = Some("pod-a".into());
    again.heartbeat(&mut group, 2_000, &metadata).unwrap();
    assert_eq!(again.owned, owned);
    assert_eq!(group.group_epoch, epoch);
    assert!(!group.members.contains_key("a1"));
    // While the first incarnation is active, a second one is refused.
    let mut twin = Client::new("a3", &["views"]);
    twin.instance = Some("pod-a".into());
    assert_eq!(
        twin.heartbeat(&mut group, 3_000, &metadata),
        Err(ErrorCode::UnreleasedInstanceId)
    );
}

#[test]
fn range_is_used_when_members_ask_for_it() {
    let metadata = topics(&[("t", 4)]);
    let mut group = ConsumerGroup::new("g".into());
    for id in ["m1", "m2"] {
        // One Changes per operation: it also says whether the group epoch already moved.
        let mut changes = Changes::default();
        group
            .heartbeat(
                Heartbeat {
                    member_id: id.into(),
                    member_epoch: 0,
                    subscriptions: subs(&["t"]),
                    server_assignor: Some("range".into()),
                    ..Heartbeat::default()
                },
                0,
                &metadata,
                &config(),
                String::new,
                &mut changes,
            )
            .unwrap();
    }
    let expected: BTreeSet<i32> = [0, 1].into_iter().collect();
    assert_eq!(group.target["m1"]["t"], expected);
}

#[derive(Clone, Debug)]
enum Op {
    Heartbeat(usize),
    Leave(usize),
    Grow(i32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..6).prop_map(Op::Heartbeat),
        1 => (0usize..6).prop_map(Op::Leave),
        1 => (1i32..4).prop_map(Op::Grow),
    ]
}

proptest! {
    /// Whatever order members join, heartbeat, leave and topics grow in, no partition is ever
    /// owned by two consumers at once, and once everybody heartbeats the group settles with every
    /// subscribed partition owned.
    #[test]
    fn no_partition_is_ever_owned_twice_and_the_group_converges(ops in proptest::collection::vec(op(), 1..80)) {
        let names = ["a", "b", "c", "d", "e", "f"];
        let mut clients: Vec<Client> = names
            .iter()
            .enumerate()
            .map(|(i, id)| Client::new(id, if i % 3 == 2 { &["x"] } else { &["x", "y"] }))
            .collect();
        let mut metadata = topics(&[("x", 5), ("y", 3)]);
        let mut group = ConsumerGroup::new("g".into());
        for op in ops {
            match op {
                Op::Heartbeat(i) => { let _ = clients[i].heartbeat(&mut group, 0, &metadata); }
                Op::Leave(i) => if clients[i].joined { clients[i].leave(&mut group, 0, &metadata) },
                Op::Grow(n) => { *metadata.get_mut("y").unwrap() += n; }
            }
            assert_disjoint(clients.iter().map(|c| &c.owned));
            assert_disjoint(group.members.values().flat_map(|m| [&m.assigned, &m.pending_revocation]));
        }
        if clients.iter().any(|c| c.joined) {
            for _ in 0..10 {
                for client in clients.iter_mut().filter(|c| c.joined) {
                    let _ = client.heartbeat(&mut group, 0, &metadata);
                }
                assert_disjoint(clients.iter().map(|c| &c.owned));
            }
            prop_assert_eq!(group.state(), "stable");
            let owned: usize = clients.iter().map(|c| count(&c.owned)).sum();
            let subscribed = group.subscribed_topics();
            let total: i32 = metadata.iter().filter(|(t, _)| subscribed.contains(*t)).map(|(_, c)| *c).sum();
            prop_assert_eq!(owned, total as usize);
        }
    }
}
