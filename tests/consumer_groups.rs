//! Consumer groups through librdkafka (the `rdkafka` crate) against a real `weir` process: the
//! page-views scenario (three groups of different sizes over a 12-partition topic), clean
//! leaves and joins, committed offsets across consumer and broker restarts, auto.offset.reset,
//! cooperative-sticky, static membership, and a consumer killed without leaving.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Broker settings for fast groups: short initial delay, small offsets topic, short sessions.
const GROUP_SETTINGS: &[&str] = &[
    "group.initial.rebalance.delay.ms=200",
    "offsets.topic.num.partitions=6",
    "group.min.session.timeout.ms=1000",
];

fn block<F: std::future::Future>(future: F) -> F::Output {
    futures::executor::block_on(future)
}

/// Produces `count` page views keyed by user id (`user-<n % users>`), numbered from `first`.
fn produce_page_views(broker: &Broker, topic: &str, first: usize, count: usize) {
    let producer: FutureProducer = producer(broker, &[("acks", "all")]);
    let pending: Vec<_> = (first..first + count)
        .map(|n| {
            let key = format!("user-{}", n % 97);
            let value = format!("view-{n}");
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

/// Counts rebalances a consumer goes through.
#[derive(Default)]
struct Counting {
    assigns: AtomicUsize,
    revokes: AtomicUsize,
}

impl ClientContext for Counting {}
impl ConsumerContext for Counting {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(_) => self.assigns.fetch_add(1, Ordering::SeqCst),
            Rebalance::Revoke(_) => self.revokes.fetch_add(1, Ordering::SeqCst),
            Rebalance::Error(_) => 0,
        };
    }
}

/// A record a group member processed: (member, partition, offset, value).
type Processed = (usize, i32, i64, String);

/// A consumer running in its own thread: polls, processes, commits each record synchronously
/// after processing it (at-least-once; exactly once when nothing fails).
struct Member {
    index: usize,
    stop: Arc<AtomicBool>,
    assignment: Arc<Mutex<BTreeSet<i32>>>,
    context: Arc<Mutex<Option<Arc<Counting>>>>,
    thread: Option<JoinHandle<()>>,
}

impl Member {
    fn start(
        broker: &Broker,
        index: usize,
        group: &str,
        topic: &str,
        settings: &[(&str, &str)],
        processed: Arc<Mutex<Vec<Processed>>>,
    ) -> Member {
        let mut config: ClientConfig = client_config(broker);
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .set("topic.metadata.refresh.interval.ms", "1000");
        for (k, v) in settings {
            config.set(*k, *v);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let assignment = Arc::new(Mutex::new(BTreeSet::new()));
        let context_slot = Arc::new(Mutex::new(None));
        let topic = topic.to_string();
        let thread = {
            let (stop, assignment, context_slot) =
                (stop.clone(), assignment.clone(), context_slot.clone());
            std::thread::spawn(move || {
                let context = Counting::default();
                let consumer: BaseConsumer<Counting> =
                    config.create_with_context(context).expect("consumer");
                consumer.subscribe(&[&topic]).expect("subscribe");
                *context_slot.lock().unwrap() = Some(consumer.context().clone());
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
                        // A commit refused by a rebalance is fine: the record comes again.
                        let _ = consumer.commit_message(&message, CommitMode::Sync);
                    }
                    let now: BTreeSet<i32> = consumer
                        .assignment()
                        .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
                        .unwrap_or_default();
                    *assignment.lock().unwrap() = now;
                }
                // Dropping the consumer closes it: it leaves the group (unless static).
            })
        };
        Member {
            index,
            stop,
            assignment,
            context: context_slot,
            thread: Some(thread),
        }
    }

    fn assignment(&self) -> BTreeSet<i32> {
        self.assignment.lock().unwrap().clone()
    }

    fn assigns(&self) -> usize {
        self.context
            .lock()
            .unwrap()
            .as_ref()
            .map(|c| c.assigns.load(Ordering::SeqCst))
            .unwrap_or(0)
    }

    /// Stops polling and closes the consumer (a clean leave for dynamic members).
    fn close(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("consumer thread");
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

/// A group of [`Member`]s sharing one record of what they processed.
struct Group {
    name: String,
    topic: String,
    members: Vec<Member>,
    processed: Arc<Mutex<Vec<Processed>>>,
    next_index: usize,
}

impl Group {
    fn new(name: &str, topic: &str) -> Group {
        Group {
            name: name.to_string(),
            topic: topic.to_string(),
            members: Vec::new(),
            processed: Arc::new(Mutex::new(Vec::new())),
            next_index: 0,
        }
    }

    fn add(&mut self, broker: &Broker, settings: &[(&str, &str)]) {
        let member = Member::start(
            broker,
            self.next_index,
            &self.name,
            &self.topic,
            settings,
            self.processed.clone(),
        );
        self.next_index += 1;
        self.members.push(member);
    }

    fn assignments(&self) -> Vec<BTreeSet<i32>> {
        self.members.iter().map(Member::assignment).collect()
    }

    /// Waits until the members' assignments are disjoint and cover `0..partitions`.
    fn wait_until_covering(&self, partitions: i32) {
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            let assignments = self.assignments();
            let total: usize = assignments.iter().map(BTreeSet::len).sum();
            let union: BTreeSet<i32> = assignments.iter().flatten().copied().collect();
            if total == partitions as usize && union.len() == partitions as usize {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "group {} never covered {partitions} partitions exactly once: {assignments:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the assignments satisfy `done` (and cover the partitions exactly once).
    fn wait_until_balanced(&self, partitions: i32, done: impl Fn(&[BTreeSet<i32>]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(45);
        while !done(&self.assignments()) {
            assert!(
                Instant::now() < deadline,
                "group {} never got there: {:?}",
                self.name,
                self.assignments()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.wait_until_covering(partitions);
    }

    /// Waits until the values `view-first..view-(first+count)` were all processed; returns how
    /// many times each was.
    fn wait_for_values(&self, first: usize, count: usize) -> BTreeMap<String, usize> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut times: BTreeMap<String, usize> = BTreeMap::new();
            for (_, _, _, value) in self.processed.lock().unwrap().iter() {
                *times.entry(value.clone()).or_default() += 1;
            }
            let missing = (first..first + count)
                .filter(|n| !times.contains_key(&format!("view-{n}")))
                .count();
            if missing == 0 {
                return times;
            }
            assert!(
                Instant::now() < deadline,
                "group {}: {missing} of {count} records never arrived",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn close_all(self) {
        for member in self.members {
            member.close();
        }
    }
}

#[test]
fn page_views_are_shared_by_three_groups_each_partition_owned_once_with_leaves_and_joins() {
    let broker = Broker::start(GROUP_SETTINGS);
    let topic = "page-views";
    create_topic(&broker, topic, 12, &[]);
    let mut a = Group::new("group-a", topic);
    let mut b = Group::new("group-b", topic);
    let mut c = Group::new("group-c", topic);
    for _ in 0..4 {
        a.add(&broker, &[]);
    }
    for _ in 0..13 {
        b.add(&broker, &[]);
    }
    for _ in 0..6 {
        c.add(&broker, &[]);
    }
    a.wait_until_covering(12);
    b.wait_until_covering(12);
    c.wait_until_covering(12);
    // Group B has 13 members for 12 partitions: exactly one of them has nothing.
    let idle: Vec<usize> = b
        .members
        .iter()
        .filter(|m| m.assignment().is_empty())
        .map(|m| m.index)
        .collect();
    assert_eq!(idle.len(), 1, "{:?}", b.assignments());
    assert!(a.assignments().iter().all(|s| s.len() == 3));
    assert!(c.assignments().iter().all(|s| s.len() == 2));

    produce_page_views(&broker, topic, 0, 1200);
    for group in [&a, &b, &c] {
        let times = group.wait_for_values(0, 1200);
        assert!(
            times.values().all(|&n| n == 1),
            "group {} processed some records more than once",
            group.name
        );
        // Every partition's records went to exactly one member.
        let mut owners: BTreeMap<i32, BTreeSet<usize>> = BTreeMap::new();
        for (member, partition, _, _) in group.processed.lock().unwrap().iter() {
            owners.entry(*partition).or_default().insert(*member);
        }
        assert_eq!(owners.len(), 12, "group {}", group.name);
        assert!(owners.values().all(|o| o.len() == 1), "{owners:?}");
        assert!(
            owners
                .values()
                .all(|o| !o.contains(&idle[0]) || group.name != "group-b"),
            "the idle member of group B got records"
        );
    }

    // A clean leave in group A hands its partitions to the survivors; nothing is lost.
    let leaving = a.members.remove(1);
    let leaving_partitions = leaving.assignment();
    leaving.close();
    a.wait_until_balanced(12, |a| a.iter().all(|s| s.len() == 4));
    // A new member in group C takes some partitions.
    c.add(&broker, &[]);
    c.wait_until_balanced(12, |a| a.last().is_some_and(|s| !s.is_empty()));
    produce_page_views(&broker, topic, 1200, 600);
    a.wait_for_values(1200, 600);
    c.wait_for_values(1200, 600);
    b.wait_for_values(1200, 600);
    let takers: BTreeSet<usize> = a
        .processed
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, p, o, _)| leaving_partitions.contains(p) && *o >= 0)
        .filter(|(_, _, _, v)| v.trim_start_matches("view-").parse::<usize>().unwrap() >= 1200)
        .map(|(m, _, _, _)| *m)
        .collect();
    assert!(!takers.is_empty() && !takers.contains(&1), "{takers:?}");

    // The metrics show the groups and their lag.
    let metrics = broker.metrics();
    assert!(
        metrics.contains("weir_group_members{group=\"group-b\"} 13"),
        "{metrics}"
    );
    assert!(metrics.contains("weir_group_state{group=\"group-a\",state=\"Stable\"} 1"));
    assert!(metrics.contains("weir_group_lag{group=\"group-a\",topic=\"page-views\""));
    a.close_all();
    b.close_all();
    c.close_all();
}

fn committed(broker: &Broker, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer = consumer(broker, &[("group.id", group)]);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, TIMEOUT)
        .expect("committed offsets");
    committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => -1,
        })
        .collect()
}

#[test]
fn committed_offsets_survive_consumer_and_broker_restarts_and_reset_policies_apply() {
    let mut broker = Broker::start(GROUP_SETTINGS);
    let topic = "orders";
    create_topic(&broker, topic, 3, &[]);
    produce_page_views(&broker, topic, 0, 300);

    // earliest on a new group replays from 0.
    let mut g = Group::new("billing", topic);
    g.add(&broker, &[]);
    g.wait_until_covering(3);
    let times = g.wait_for_values(0, 300);
    assert!(times.values().all(|&n| n == 1));
    g.close_all();
    let before = committed(&broker, "billing", topic, 3);
    assert_eq!(before.iter().sum::<i64>(), 300, "{before:?}");

    // A new consumer of the same group resumes after the committed offsets.
    produce_page_views(&broker, topic, 300, 30);
    let mut g = Group::new("billing", topic);
    g.add(&broker, &[]);
    g.wait_until_covering(3);
    g.wait_for_values(300, 30);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        g.processed.lock().unwrap().len(),
        30,
        "only the new records"
    );
    g.close_all();

    // latest on a new group sees only records produced after it joined.
    let mut late = Group::new("late-joiner", topic);
    late.add(&broker, &[("auto.offset.reset", "latest")]);
    late.wait_until_covering(3);
    std::thread::sleep(Duration::from_millis(1500));
    produce_page_views(&broker, topic, 330, 9);
    late.wait_for_values(330, 9);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(late.processed.lock().unwrap().len(), 9);
    late.close_all();

    // The broker restarts (cleanly, then after a kill -9): offsets come back from the log.
    let expected = committed(&broker, "billing", topic, 3);
    assert_eq!(expected.iter().sum::<i64>(), 330);

    // Clients cannot write __consumer_offsets (as Kafka: INVALID_TOPIC_EXCEPTION).
    let writer = producer(&broker, &[("message.send.max.retries", "0")]);
    let refused = block(
        writer.send(
            FutureRecord::to("__consumer_offsets")
                .partition(0)
                .key("forged")
                .payload("offset"),
            TIMEOUT,
        ),
    );
    match refused {
        Err((error, _)) => assert_eq!(
            error.rdkafka_error_code(),
            Some(rdkafka::types::RDKafkaErrorCode::InvalidTopic),
            "{error}"
        ),
        Ok(delivered) => panic!("a client appended to __consumer_offsets: {delivered:?}"),
    }
    assert_eq!(committed(&broker, "billing", topic, 3), expected);
    broker.stop();
    broker.restart();
    assert_eq!(committed(&broker, "billing", topic, 3), expected);
    broker.kill9();
    broker.restart();
    assert_eq!(committed(&broker, "billing", topic, 3), expected);
    produce_page_views(&broker, topic, 339, 6);
    let mut g = Group::new("billing", topic);
    g.add(&broker, &[]);
    g.wait_until_covering(3);
    g.wait_for_values(339, 6);
    std::thread::sleep(Duration::from_millis(300));
    let values: BTreeSet<String> = g
        .processed
        .lock()
        .unwrap()
        .iter()
        .map(|(_, _, _, v)| v.clone())
        .collect();
    // 330..339 were consumed by "late-joiner", not by billing: billing resumes at 330.
    let expected_values: BTreeSet<String> = (330..345).map(|n| format!("view-{n}")).collect();
    assert_eq!(values, expected_values);
    g.close_all();
}

#[test]
fn cooperative_sticky_members_share_partitions_and_keep_them_when_another_joins() {
    let broker = Broker::start(GROUP_SETTINGS);
    let topic = "clicks";
    create_topic(&broker, topic, 6, &[]);
    let settings = [("partition.assignment.strategy", "cooperative-sticky")];
    let mut g = Group::new("coop", topic);
    g.add(&broker, &settings);
    g.add(&broker, &settings);
    g.wait_until_covering(6);
    let first_two = g.assignments();
    g.add(&broker, &settings);
    g.wait_until_balanced(6, |a| a.iter().all(|s| s.len() == 2));
    let after = g.assignments();
    assert!(after.iter().all(|s| s.len() == 2), "{after:?}");
    // Sticky: the first members kept a subset of what they had.
    for (before, now) in first_two.iter().zip(&after) {
        assert!(now.is_subset(before), "{before:?} -> {now:?}");
    }
    produce_page_views(&broker, topic, 0, 120);
    let times = g.wait_for_values(0, 120);
    assert!(times.values().all(|&n| n == 1));
    g.close_all();
}

#[test]
fn a_static_member_restarting_within_its_session_keeps_its_assignment_without_a_rebalance() {
    let broker = Broker::start(GROUP_SETTINGS);
    let topic = "static-topic";
    create_topic(&broker, topic, 4, &[]);
    let mut g = Group::new("static-group", topic);
    g.add(
        &broker,
        &[
            ("group.instance.id", "node-1"),
            ("session.timeout.ms", "10000"),
        ],
    );
    g.add(
        &broker,
        &[
            ("group.instance.id", "node-2"),
            ("session.timeout.ms", "10000"),
        ],
    );
    g.wait_until_covering(4);
    let before = g.assignments();
    let other_assigns = g.members[0].assigns();
    // node-2 goes away (a static member sends no LeaveGroup) and comes back.
    let gone = g.members.remove(1);
    gone.close();
    g.add(
        &broker,
        &[
            ("group.instance.id", "node-2"),
            ("session.timeout.ms", "10000"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while g.members[1].assignment() != before[1] {
        assert!(
            Instant::now() < deadline,
            "node-2 did not get its partitions back: {:?} vs {:?}",
            g.assignments(),
            before
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(g.members[0].assignment(), before[0]);
    assert_eq!(
        g.members[0].assigns(),
        other_assigns,
        "the other member went through no rebalance"
    );
    produce_page_views(&broker, topic, 0, 40);
    g.wait_for_values(0, 40);
    g.close_all();
}

/// Run by `a_consumer_killed_without_leaving_loses_its_partitions_after_the_session_timeout` in
/// a child process (this test binary again): a group member to be killed with SIGKILL.
#[test]
#[ignore = "helper process of another test"]
fn child_consumer_process() {
    let Ok(bootstrap) = std::env::var("WEIR_CHILD_BOOTSTRAP") else {
        return;
    };
    let group = std::env::var("WEIR_CHILD_GROUP").unwrap();
    let topic = std::env::var("WEIR_CHILD_TOPIC").unwrap();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "3000")
        .set("heartbeat.interval.ms", "300")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut announced = false;
    loop {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
            let _ = consumer.commit_message(&message, CommitMode::Sync);
        }
        let assigned = consumer.assignment().map(|t| t.count()).unwrap_or_default();
        if assigned > 0 && !announced {
            println!("ASSIGNED {assigned}");
            announced = true;
        }
    }
}

#[test]
fn a_consumer_killed_without_leaving_loses_its_partitions_after_the_session_timeout() {
    let broker = Broker::start(GROUP_SETTINGS);
    let topic = "crashy";
    create_topic(&broker, topic, 4, &[]);
    let mut g = Group::new("crash-group", topic);
    g.add(
        &broker,
        &[
            ("session.timeout.ms", "3000"),
            ("heartbeat.interval.ms", "300"),
        ],
    );
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_consumer_process",
            "--nocapture",
        ])
        .env("WEIR_CHILD_BOOTSTRAP", broker.bootstrap())
        .env("WEIR_CHILD_GROUP", "crash-group")
        .env("WEIR_CHILD_TOPIC", topic)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("child consumer");
    // Both members share the partitions.
    let deadline = Instant::now() + Duration::from_secs(30);
    while g.members[0].assignment().len() != 2 {
        assert!(
            Instant::now() < deadline,
            "never shared: {:?}",
            g.assignments()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed_at = Instant::now();
    child.kill().unwrap();
    child.wait().unwrap();
    produce_page_views(&broker, topic, 0, 80);
    // After the child's session expires the survivor owns everything, and reads everything.
    g.wait_until_covering(4);
    assert!(
        killed_at.elapsed() >= Duration::from_millis(2500),
        "the partitions moved before the session timeout"
    );
    let times = g.wait_for_values(0, 80);
    assert_eq!(times.len(), 80);
    g.close_all();
}
