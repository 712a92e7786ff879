//! The consumer group protocol of KIP-848 (`group.protocol=consumer`) through librdkafka (the
//! `rdkafka` crate, librdkafka 2.12) against a real `weir` process: three consumers share a
//! 6-partition topic with one owner per partition and every record once; a member that leaves
//! hands its partitions over with nothing lost; commits survive a broker restart; the uniform and
//! range assignors split partitions as they should; a classic and a consumer-protocol member
//! cannot share a group id. At the wire: ConsumerGroupDescribe's members, epochs and assignments.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::raw::Raw;
use common::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use weir::protocol::error::ErrorCode;
use weir::protocol::messages::*;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Fast heartbeats so assignments converge in well under a second per step.
const SETTINGS: &[&str] = &[
    "offsets.topic.num.partitions=4",
    "group.consumer.heartbeat.interval.ms=300",
    "group.consumer.session.timeout.ms=10000",
    "group.initial.rebalance.delay.ms=100",
    "group.min.session.timeout.ms=1000",
];

const FIND_COORDINATOR: i16 = 10;
const JOIN_GROUP: i16 = 11;
const CONSUMER_GROUP_HEARTBEAT: i16 = 68;
const CONSUMER_GROUP_DESCRIBE: i16 = 69;
const LIST_GROUPS: i16 = 16;
const METADATA: i16 = 3;

fn block<F: std::future::Future>(future: F) -> F::Output {
    futures::executor::block_on(future)
}

fn produce(broker: &Broker, topic: &str, first: usize, count: usize) {
    let producer: FutureProducer = producer(broker, &[("acks", "all")]);
    let pending: Vec<_> = (first..first + count)
        .map(|n| {
            let key = format!("key-{n}");
            let value = format!("record-{n}");
            producer
                .send_result(FutureRecord::to(topic).key(&key).payload(&value))
                .map_err(|(e, _)| e)
                .expect("queued")
        })
        .collect();
    for delivery in pending {
        block(delivery)
            .expect("delivery future")
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
}

fn consumer_config(broker: &Broker, group: &str, settings: &[(&str, &str)]) -> ClientConfig {
    let mut config = client_config(broker);
    config
        .set("group.id", group)
        .set("group.protocol", "consumer")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("topic.metadata.refresh.interval.ms", "1000");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    config
}

/// A record a member processed: (member, partition, offset, value).
type Processed = (usize, i32, i64, String);

/// A consumer-protocol member polling in its own thread; it commits each record synchronously
/// after processing it.
struct Member {
    stop: Arc<AtomicBool>,
    assignment: Arc<Mutex<BTreeSet<(String, i32)>>>,
    thread: Option<JoinHandle<()>>,
}

impl Member {
    fn start(
        broker: &Broker,
        index: usize,
        group: &str,
        topics: &[&str],
        settings: &[(&str, &str)],
        processed: Arc<Mutex<Vec<Processed>>>,
    ) -> Member {
        let config = consumer_config(broker, group, settings);
        let stop = Arc::new(AtomicBool::new(false));
        let assignment = Arc::new(Mutex::new(BTreeSet::new()));
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let thread = {
            let (stop, assignment) = (stop.clone(), assignment.clone());
            std::thread::spawn(move || {
                let consumer: BaseConsumer = config.create().expect("consumer");
                let names: Vec<&str> = topics.iter().map(String::as_str).collect();
                consumer.subscribe(&names).expect("subscribe");
                while !stop.load(Ordering::SeqCst) {
                    if let Some(result) = consumer.poll(Duration::from_millis(50)) {
                        let message = result.expect("consume");
                        let value = String::from_utf8_lossy(message.payload().unwrap_or_default())
                            .to_string();
                        processed.lock().unwrap().push((
                            index,
                            message.partition(),
                            message.offset(),
                            value,
                        ));
                        consumer
                            .commit_message(&message, CommitMode::Sync)
                            .expect("commit");
                    }
                    if let Ok(list) = consumer.assignment() {
                        *assignment.lock().unwrap() = list
                            .elements()
                            .iter()
                            .map(|e| (e.topic().to_string(), e.partition()))
                            .collect();
                    }
                }
                consumer.unsubscribe();
                // Closing (drop) sends the leave heartbeat.
                drop(consumer);
            })
        };
        Member {
            stop,
            assignment,
            thread: Some(thread),
        }
    }

    fn assignment(&self) -> BTreeSet<(String, i32)> {
        self.assignment.lock().unwrap().clone()
    }

    fn close(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("member thread");
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits until the members own disjoint partitions covering `expected` partitions in all.
fn wait_for_split(members: &[&Member], expected: usize) -> Vec<BTreeSet<(String, i32)>> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let split: Vec<BTreeSet<(String, i32)>> = members.iter().map(|m| m.assignment()).collect();
        let total: usize = split.iter().map(BTreeSet::len).sum();
        let union: BTreeSet<&(String, i32)> = split.iter().flatten().collect();
        if total == expected && union.len() == expected && split.iter().all(|s| !s.is_empty()) {
            return split;
        }
        assert!(
            Instant::now() < deadline,
            "no settled assignment of {expected} partitions: {split:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_for_count(processed: &Arc<Mutex<Vec<Processed>>>, count: usize) {
    let deadline = Instant::now() + TIMEOUT;
    while processed.lock().unwrap().len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} records processed",
            processed.lock().unwrap().len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every value `record-<first..first+count>` exactly once.
fn assert_exactly_once(processed: &[Processed], first: usize, count: usize) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (_, _, _, value) in processed {
        *seen.entry(value.clone()).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = (first..first + count)
        .map(|n| (format!("record-{n}"), 1))
        .collect();
    assert_eq!(seen, expected);
}

#[test]
fn three_members_share_six_partitions_and_take_over_when_one_leaves() {
    let broker = Broker::start(SETTINGS);
    create_topic(&broker, "views", 6, &[]);
    let processed = Arc::new(Mutex::new(Vec::new()));
    let members: Vec<Member> = (0..3)
        .map(|i| Member::start(&broker, i, "kip848", &["views"], &[], processed.clone()))
        .collect();
    let split = wait_for_split(&members.iter().collect::<Vec<_>>(), 6);
    assert!(split.iter().all(|s| s.len() == 2), "uniform: {split:?}");

    produce(&broker, "views", 0, 600);
    wait_for_count(&processed, 600);
    {
        let seen = processed.lock().unwrap();
        assert_exactly_once(&seen, 0, 600);
        // One owner per partition: every record of a partition went to the same member.
        let mut owners: BTreeMap<i32, BTreeSet<usize>> = BTreeMap::new();
        for (member, partition, _, _) in seen.iter() {
            owners.entry(*partition).or_default().insert(*member);
        }
        assert_eq!(owners.len(), 6);
        for (partition, who) in &owners {
            assert_eq!(who.len(), 1, "partition {partition} had owners {who:?}");
            let owner = *who.iter().next().unwrap();
            assert!(split[owner].contains(&("views".to_string(), *partition)));
        }
    }

    // Member 2 leaves: the other two take its partitions; nothing is lost or repeated.
    let mut members = members;
    let leaving = members.pop().unwrap();
    leaving.close();
    let split = wait_for_split(&members.iter().collect::<Vec<_>>(), 6);
    assert_eq!(split.iter().map(BTreeSet::len).collect::<Vec<_>>(), [3, 3]);
    produce(&broker, "views", 600, 600);
    wait_for_count(&processed, 1200);
    std::thread::sleep(Duration::from_millis(500));
    assert_exactly_once(&processed.lock().unwrap(), 0, 1200);

    // Metrics show the group as a consumer-protocol group.
    let metrics = broker.metrics();
    assert!(
        metrics.contains("weir_group_members{group=\"kip848\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("weir_group_state{group=\"kip848\",state=\"Stable\"} 1"));
    assert!(metrics.contains("weir_group_epoch{group=\"kip848\"}"));

    // `weir group` sees the consumer-protocol group (through ConsumerGroupDescribe): its two
    // members with three partitions each, and refuses to reset its offsets while it is active.
    let described = weir_cli(&broker, &["group", "describe", "kip848"]);
    assert!(described.contains("state:     Stable"), "{described}");
    assert!(described.contains("members:   2"), "{described}");
    assert!(
        described.contains("protocol:  consumer (uniform)"),
        "{described}"
    );
    assert_eq!(
        described.matches("views:").count(),
        2,
        "each member's assignment: {described}"
    );
    let reset = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "group",
            "reset-offsets",
            "kip848",
            "--all-topics",
            "--to",
            "earliest",
        ])
        .args(["--execute", "--bootstrap", &broker.bootstrap()])
        .output()
        .expect("running weir");
    assert_eq!(reset.status.code(), Some(1), "{reset:?}");
    assert!(
        String::from_utf8_lossy(&reset.stderr).contains("is active"),
        "{reset:?}"
    );
    for member in members {
        member.close();
    }
}

/// `weir ARGS --bootstrap BROKER`, which must succeed; its stdout.
fn weir_cli(broker: &Broker, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .args(["--bootstrap", &broker.bootstrap()])
        .output()
        .expect("running weir");
    assert!(output.status.success(), "weir {args:?}: {output:?}");
    String::from_utf8(output.stdout).expect("utf-8")
}

#[test]
fn committed_offsets_and_the_group_survive_a_broker_restart() {
    let mut broker = Broker::start(SETTINGS);
    create_topic(&broker, "orders", 3, &[]);
    produce(&broker, "orders", 0, 300);
    let processed = Arc::new(Mutex::new(Vec::new()));
    let member = Member::start(&broker, 0, "restart", &["orders"], &[], processed.clone());
    wait_for_count(&processed, 300);
    member.close();
    assert_exactly_once(&processed.lock().unwrap(), 0, 300);

    // A member (at the wire) that stays in its group across the restart.
    let mut raw = Raw::connect(&broker);
    let joined = heartbeat(&mut raw, join_request("kept", "member-k", &["orders"]));
    assert_eq!((joined.error_code, joined.member_epoch), (0, 1));
    let before = describe(&mut raw, "kept");
    assert_eq!(before.group_state, "Stable");

    broker.stop();
    broker.restart();
    let mut raw = Raw::connect(&broker);
    wait_for_coordinator(&mut raw, "restart");
    let after = describe(&mut raw, "kept");
    assert_eq!(
        after, before,
        "epochs, members and assignments come back as they were"
    );
    let again = heartbeat(
        &mut raw,
        ConsumerGroupHeartbeatRequest {
            group_id: "kept".into(),
            member_id: "member-k".into(),
            member_epoch: 1,
            ..Default::default()
        },
    );
    assert_eq!((again.error_code, again.member_epoch), (0, 1));
    let listed: ListGroupsResponse = raw.request(
        LIST_GROUPS,
        5,
        &ListGroupsRequest {
            types_filter: vec!["consumer".into()],
            ..Default::default()
        },
    );
    let group = listed
        .groups
        .iter()
        .find(|g| g.group_id == "restart")
        .expect("the consumer group is back after the restart");
    assert_eq!(
        (group.group_type.as_str(), group.group_state.as_str()),
        ("consumer", "Empty")
    );

    // A new member resumes from the committed offsets: only the new records.
    produce(&broker, "orders", 300, 90);
    let after = Arc::new(Mutex::new(Vec::new()));
    let member = Member::start(&broker, 1, "restart", &["orders"], &[], after.clone());
    wait_for_count(&after, 90);
    std::thread::sleep(Duration::from_millis(500));
    assert_exactly_once(&after.lock().unwrap(), 300, 90);
    member.close();
}

#[test]
fn members_that_stop_heartbeating_expire_and_the_others_get_their_partitions() {
    let broker = Broker::start(&[
        "offsets.topic.num.partitions=4",
        "group.consumer.heartbeat.interval.ms=200",
        "group.consumer.session.timeout.ms=1500",
    ]);
    create_topic(&broker, "expiry", 4, &[]);
    let mut raw = Raw::connect(&broker);
    wait_for_coordinator(&mut raw, "expiring");
    for member in ["silent", "alive"] {
        let joined = heartbeat(&mut raw, join_request("expiring", member, &["expiry"]));
        assert_eq!(joined.error_code, 0);
    }
    let group_epoch = describe(&mut raw, "expiring").group_epoch;
    // "alive" keeps heartbeating past "silent"'s session timeout.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut epoch = 2;
    let mut owned: Vec<i32> = Vec::new();
    let id = topic_id(&mut raw, "expiry");
    loop {
        let beat = heartbeat(
            &mut raw,
            ConsumerGroupHeartbeatRequest {
                group_id: "expiring".into(),
                member_id: "alive".into(),
                member_epoch: epoch,
                topic_partitions: Some(vec![consumer_group_heartbeat_request::TopicPartitions {
                    topic_id: id,
                    partitions: owned.clone(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
        );
        assert_eq!(beat.error_code, 0, "{:?}", beat.error_message);
        epoch = beat.member_epoch;
        if let Some(assignment) = beat.assignment {
            owned = assignment
                .topic_partitions
                .iter()
                .flat_map(|t| t.partitions.clone())
                .collect();
        }
        if owned.len() == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alive never got every partition: {owned:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let described = describe(&mut raw, "expiring");
    let members: Vec<&str> = described
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    assert_eq!(members, ["alive"]);
    assert!(described.group_epoch > group_epoch);
}

#[test]
fn uniform_and_range_assignors_split_partitions_as_they_should() {
    let broker = Broker::start(SETTINGS);
    create_topic(&broker, "left", 3, &[]);
    create_topic(&broker, "right", 3, &[]);
    let topics = ["left", "right"];
    for (assignor, expected) in [("uniform", [3, 3]), ("range", [4, 2])] {
        let group = format!("assignor-{assignor}");
        let settings = [("group.remote.assignor", assignor)];
        let sink = Arc::new(Mutex::new(Vec::new()));
        let members: Vec<Member> = (0..2)
            .map(|i| Member::start(&broker, i, &group, &topics, &settings, sink.clone()))
            .collect();
        let split = wait_for_split(&members.iter().collect::<Vec<_>>(), 6);
        let mut sizes: Vec<usize> = split.iter().map(BTreeSet::len).collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(sizes, expected, "{assignor}: {split:?}");
        if assignor == "range" {
            // Range: per topic, contiguous ranges; the bigger share has 2 of each topic.
            let big = split.iter().find(|s| s.len() == 4).unwrap();
            for topic in topics {
                let mine: Vec<i32> = big
                    .iter()
                    .filter(|(t, _)| t == topic)
                    .map(|(_, p)| *p)
                    .collect();
                assert_eq!(mine.len(), 2, "{split:?}");
                assert_eq!(mine[1] - mine[0], 1, "contiguous: {split:?}");
            }
        }
        let mut raw = Raw::connect(&broker);
        let described = describe(&mut raw, &group);
        assert_eq!(described.assignor_name, assignor);
        for member in members {
            member.close();
        }
    }
}

fn wait_for_coordinator(raw: &mut Raw, group: &str) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let found: FindCoordinatorResponse = raw.request(
            FIND_COORDINATOR,
            0,
            &FindCoordinatorRequest {
                key: group.into(),
                ..Default::default()
            },
        );
        let described: ConsumerGroupDescribeResponse = raw.request(
            CONSUMER_GROUP_DESCRIBE,
            0,
            &ConsumerGroupDescribeRequest {
                group_ids: vec![group.into()],
                ..Default::default()
            },
        );
        let error = described.groups[0].error_code;
        if found.error_code == 0
            && error != ErrorCode::CoordinatorLoadInProgress.code()
            && error != ErrorCode::NotCoordinator.code()
        {
            return;
        }
        assert!(Instant::now() < deadline, "coordinator never loaded");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn describe(raw: &mut Raw, group: &str) -> consumer_group_describe_response::DescribedGroup {
    let response: ConsumerGroupDescribeResponse = raw.request(
        CONSUMER_GROUP_DESCRIBE,
        0,
        &ConsumerGroupDescribeRequest {
            group_ids: vec![group.into()],
            include_authorized_operations: true,
            ..Default::default()
        },
    );
    response.groups.into_iter().next().expect("one group")
}

fn topic_id(raw: &mut Raw, topic: &str) -> weir::protocol::wire::Uuid {
    let metadata: MetadataResponse = raw.request(
        METADATA,
        12,
        &MetadataRequest {
            topics: Some(vec![metadata_request::MetadataRequestTopic {
                name: Some(topic.into()),
                ..Default::default()
            }]),
            ..Default::default()
        },
    );
    metadata.topics[0].topic_id
}

fn heartbeat(
    raw: &mut Raw,
    request: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    raw.request(CONSUMER_GROUP_HEARTBEAT, 1, &request)
}

fn join_request(group: &str, member: &str, topics: &[&str]) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest {
        group_id: group.into(),
        member_id: member.into(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: Some(topics.iter().map(|t| t.to_string()).collect()),
        topic_partitions: Some(Vec::new()),
        ..Default::default()
    }
}

/// ConsumerGroupHeartbeat and ConsumerGroupDescribe at the wire: two members join, the second
/// waits for partitions the first must revoke, and Describe shows the epochs, the current and
/// the target assignments of each step.
#[test]
fn describe_shows_members_epochs_and_assignments_at_the_wire() {
    use consumer_group_heartbeat_request::TopicPartitions as Owned;
    let broker = Broker::start(SETTINGS);
    create_topic(&broker, "wire", 4, &[]);
    let mut raw = Raw::connect(&broker);
    wait_for_coordinator(&mut raw, "wire-group");
    let id = topic_id(&mut raw, "wire");

    // Bad requests are INVALID_REQUEST, not a closed connection.
    let bad = heartbeat(&mut raw, join_request("wire-group", "", &["wire"]));
    assert_eq!(bad.error_code, ErrorCode::InvalidRequest.code());
    let mut no_topics = join_request("wire-group", "a", &[]);
    no_topics.subscribed_topic_names = None;
    let bad = heartbeat(&mut raw, no_topics);
    assert_eq!(bad.error_code, ErrorCode::InvalidRequest.code());
    let mut unknown_assignor = join_request("wire-group", "a", &["wire"]);
    unknown_assignor.server_assignor = Some("sticky".into());
    let bad = heartbeat(&mut raw, unknown_assignor);
    assert_eq!(bad.error_code, ErrorCode::UnsupportedAssignor.code());
    // An unknown group is GROUP_ID_NOT_FOUND for Describe.
    let missing = describe(&mut raw, "nobody");
    assert_eq!(missing.error_code, ErrorCode::GroupIdNotFound.code());

    let a = heartbeat(&mut raw, join_request("wire-group", "member-a", &["wire"]));
    assert_eq!(a.error_code, 0, "{:?}", a.error_message);
    assert_eq!(a.member_epoch, 1);
    let a_parts = &a.assignment.as_ref().expect("assignment").topic_partitions;
    assert_eq!(a_parts.len(), 1);
    assert_eq!(a_parts[0].topic_id, id);
    assert_eq!(a_parts[0].partitions, [0, 1, 2, 3]);

    let b = heartbeat(&mut raw, join_request("wire-group", "member-b", &["wire"]));
    assert_eq!(b.member_epoch, 2);
    // b's target partitions are still a's: it gets none yet.
    let b_parts = &b.assignment.as_ref().expect("assignment").topic_partitions;
    assert!(
        b_parts.iter().all(|t| t.partitions.is_empty()),
        "{b_parts:?}"
    );

    let described = describe(&mut raw, "wire-group");
    assert_eq!(described.error_code, 0);
    assert_eq!(described.group_state, "Reconciling");
    assert_eq!((described.group_epoch, described.assignment_epoch), (2, 2));
    assert_eq!(described.assignor_name, "uniform");
    let by_id: BTreeMap<&str, &consumer_group_describe_response::Member> = described
        .members
        .iter()
        .map(|m| (m.member_id.as_str(), m))
        .collect();
    let partitions = |a: &consumer_group_describe_response::Assignment| -> Vec<i32> {
        a.topic_partitions
            .iter()
            .inspect(|t| assert_eq!((t.topic_id, t.topic_name.as_str()), (id, "wire")))
            .flat_map(|t| t.partitions.clone())
            .collect()
    };
    assert_eq!(by_id["member-a"].member_epoch, 1);
    assert_eq!(partitions(&by_id["member-a"].assignment), [0, 1, 2, 3]);
    assert_eq!(partitions(&by_id["member-a"].target_assignment).len(), 2);
    assert_eq!(by_id["member-b"].member_epoch, 2);
    assert!(partitions(&by_id["member-b"].assignment).is_empty());
    let b_target = partitions(&by_id["member-b"].target_assignment);
    assert_eq!(b_target.len(), 2);
    assert_eq!(by_id["member-b"].subscribed_topic_names, ["wire"]);

    // a heartbeats: it is told to give up b's partitions (its epoch stays until it does).
    let mut beat = ConsumerGroupHeartbeatRequest {
        group_id: "wire-group".into(),
        member_id: "member-a".into(),
        member_epoch: 1,
        topic_partitions: Some(vec![Owned {
            topic_id: id,
            partitions: vec![0, 1, 2, 3],
            ..Default::default()
        }]),
        ..Default::default()
    };
    let a = heartbeat(&mut raw, beat.clone());
    assert_eq!(a.error_code, 0);
    let keep: Vec<i32> = a.assignment.expect("revocation").topic_partitions[0]
        .partitions
        .clone();
    assert_eq!(keep.len(), 2);
    assert!(keep.iter().all(|p| !b_target.contains(p)));
    // a confirms the revocation: it moves to epoch 2.
    beat.topic_partitions = Some(vec![Owned {
        topic_id: id,
        partitions: keep.clone(),
        ..Default::default()
    }]);
    let a = heartbeat(&mut raw, beat.clone());
    assert_eq!(a.member_epoch, 2);
    // A commit from a's old epoch is stale now; from its current epoch it is accepted.
    let commit = |epoch: i32| OffsetCommitRequest {
        group_id: "wire-group".into(),
        generation_id_or_member_epoch: epoch,
        member_id: "member-a".into(),
        topics: vec![offset_commit_request::OffsetCommitRequestTopic {
            name: "wire".into(),
            partitions: vec![offset_commit_request::OffsetCommitRequestPartition {
                partition_index: keep[0],
                committed_offset: 7,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let stale: OffsetCommitResponse = raw.request(8, 9, &commit(1));
    assert_eq!(
        stale.topics[0].partitions[0].error_code,
        ErrorCode::StaleMemberEpoch.code()
    );
    let fenced: OffsetCommitResponse = raw.request(8, 9, &commit(3));
    assert_eq!(
        fenced.topics[0].partitions[0].error_code,
        ErrorCode::FencedMemberEpoch.code()
    );
    let ok: OffsetCommitResponse = raw.request(8, 9, &commit(2));
    assert_eq!(ok.topics[0].partitions[0].error_code, 0);
    let fetch = |member: &str, epoch: i32| OffsetFetchRequest {
        groups: vec![offset_fetch_request::OffsetFetchRequestGroup {
            group_id: "wire-group".into(),
            member_id: Some(member.into()),
            member_epoch: epoch,
            topics: None,
            ..Default::default()
        }],
        ..Default::default()
    };
    let fetched: OffsetFetchResponse = raw.request(9, 9, &fetch("member-a", 2));
    assert_eq!(fetched.groups[0].error_code, 0);
    assert_eq!(
        fetched.groups[0].topics[0].partitions[0].committed_offset,
        7
    );
    let unknown: OffsetFetchResponse = raw.request(9, 9, &fetch("member-z", 2));
    assert_eq!(
        unknown.groups[0].error_code,
        ErrorCode::UnknownMemberId.code()
    );

    // b heartbeats: the partitions a released are its now; the group is Stable.
    let b = heartbeat(
        &mut raw,
        ConsumerGroupHeartbeatRequest {
            group_id: "wire-group".into(),
            member_id: "member-b".into(),
            member_epoch: 2,
            topic_partitions: Some(Vec::new()),
            ..Default::default()
        },
    );
    let got: Vec<i32> = b.assignment.expect("assignment").topic_partitions[0]
        .partitions
        .clone();
    assert_eq!(got, b_target);
    let described = describe(&mut raw, "wire-group");
    assert_eq!(described.group_state, "Stable");
    assert!(described
        .members
        .iter()
        .all(|m| m.member_epoch == 2
            && partitions(&m.assignment) == partitions(&m.target_assignment)));

    // A classic JoinGroup on this consumer group is refused; a consumer heartbeat on a classic
    // group with members is GROUP_ID_NOT_FOUND.
    let join: JoinGroupResponse = raw.request(JOIN_GROUP, 5, &classic_join("wire-group", ""));
    assert_eq!(join.error_code, ErrorCode::InconsistentGroupProtocol.code());

    // Both leave: the group is Empty and can be deleted.
    for member in ["member-a", "member-b"] {
        let left = heartbeat(
            &mut raw,
            ConsumerGroupHeartbeatRequest {
                group_id: "wire-group".into(),
                member_id: member.into(),
                member_epoch: -1,
                ..Default::default()
            },
        );
        assert_eq!((left.error_code, left.member_epoch), (0, -1));
    }
    assert_eq!(describe(&mut raw, "wire-group").group_state, "Empty");
    let deleted: DeleteGroupsResponse = raw.request(
        42,
        2,
        &DeleteGroupsRequest {
            groups_names: vec!["wire-group".into()],
            ..Default::default()
        },
    );
    assert_eq!(deleted.results[0].error_code, 0);
    assert_eq!(
        describe(&mut raw, "wire-group").error_code,
        ErrorCode::GroupIdNotFound.code()
    );
}

fn classic_join(group: &str, member: &str) -> JoinGroupRequest {
    JoinGroupRequest {
        group_id: group.into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        member_id: member.into(),
        protocol_type: "consumer".into(),
        protocols: vec![join_group_request::JoinGroupRequestProtocol {
            name: "range".into(),
            metadata: bytes::Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A classic librdkafka consumer holds the group: a consumer-protocol member of the same group
/// id gets GROUP_ID_NOT_FOUND (Kafka's answer when the group is not a consumer group).
#[test]
fn a_classic_group_with_members_refuses_consumer_protocol_members() {
    let broker = Broker::start(SETTINGS);
    create_topic(&broker, "mixed", 2, &[]);
    let mut classic_config = client_config(&broker);
    classic_config
        .set("group.id", "mixed-group")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500");
    let classic: BaseConsumer = classic_config.create().expect("classic consumer");
    classic.subscribe(&["mixed"]).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while classic.assignment().map(|a| a.count()).unwrap_or(0) != 2 {
        assert!(
            Instant::now() < deadline,
            "classic consumer got no assignment"
        );
        classic.poll(Duration::from_millis(100));
    }

    let mut raw = Raw::connect(&broker);
    let refused = heartbeat(
        &mut raw,
        join_request("mixed-group", "newcomer", &["mixed"]),
    );
    assert_eq!(refused.error_code, ErrorCode::GroupIdNotFound.code());

    // librdkafka's consumer-protocol member sees the same error and never gets partitions.
    let modern: BaseConsumer = consumer_config(&broker, "mixed-group", &[])
        .create()
        .expect("consumer");
    modern.subscribe(&["mixed"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut error = None;
    while Instant::now() < deadline && error.is_none() {
        classic.poll(Duration::from_millis(50));
        if let Some(Err(e)) = modern.poll(Duration::from_millis(50)) {
            error = Some(e);
        }
    }
    assert_eq!(modern.assignment().unwrap().count(), 0);
    assert_eq!(classic.assignment().unwrap().count(), 2);
    if let Some(error) = error {
        assert_eq!(
            error.rdkafka_error_code(),
            Some(rdkafka::types::RDKafkaErrorCode::GroupIdNotFound),
            "{error}"
        );
    }
    drop(modern);

    // Once the classic member is gone the empty classic group converts on the next join.
    drop(classic);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let joined = heartbeat(
            &mut raw,
            join_request("mixed-group", "newcomer", &["mixed"]),
        );
        if joined.error_code == 0 {
            assert!(joined.member_epoch > 0);
            break;
        }
        assert!(Instant::now() < deadline, "classic group never emptied");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(describe(&mut raw, "mixed-group").error_code, 0);
}

/// Growing a subscribed topic moves the group epoch: the next heartbeat brings the new
/// partitions.
#[test]
fn new_partitions_of_a_subscribed_topic_are_assigned_at_the_next_heartbeat() {
    use rdkafka::admin::{AdminOptions, NewPartitions};
    let broker = Broker::start(SETTINGS);
    create_topic(&broker, "growing", 2, &[]);
    let mut raw = Raw::connect(&broker);
    wait_for_coordinator(&mut raw, "growers");
    let joined = heartbeat(&mut raw, join_request("growers", "g-1", &["growing"]));
    assert_eq!(joined.member_epoch, 1);
    let count = |r: &ConsumerGroupHeartbeatResponse| -> usize {
        r.assignment
            .as_ref()
            .map(|a| a.topic_partitions.iter().map(|t| t.partitions.len()).sum())
            .unwrap_or(0)
    };
    assert_eq!(count(&joined), 2);
    let grown = block(
        admin(&broker).create_partitions(&[NewPartitions::new("growing", 5)], &AdminOptions::new()),
    )
    .expect("create_partitions");
    assert!(grown.iter().all(Result::is_ok), "{grown:?}");
    let id = topic_id(&mut raw, "growing");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let beat = heartbeat(
            &mut raw,
            ConsumerGroupHeartbeatRequest {
                group_id: "growers".into(),
                member_id: "g-1".into(),
                member_epoch: 1,
                topic_partitions: Some(vec![consumer_group_heartbeat_request::TopicPartitions {
                    topic_id: id,
                    partitions: vec![0, 1],
                    ..Default::default()
                }]),
                ..Default::default()
            },
        );
        assert_eq!(beat.error_code, 0, "{:?}", beat.error_message);
        if beat.member_epoch == 2 {
            assert_eq!(count(&beat), 5);
            break;
        }
        // The coordinator's shard sees the new partition count once its image has it.
        assert!(Instant::now() < deadline, "the group epoch never moved");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(describe(&mut raw, "growers").group_epoch, 2);
}
