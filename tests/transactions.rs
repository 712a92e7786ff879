//! Transactions (KIP-98) through librdkafka (the `rdkafka` crate) against a real `weir` process:
//! a transactional producer commits and aborts over several topics and partitions, and a
//! `read_committed` consumer sees exactly the committed records, in order, stopping before an
//! open transaction; consume-transform-produce commits outputs and the group's input offsets
//! together; a second producer with the same transactional id fences the first; a transaction
//! left open past its timeout is aborted by the broker; and a `kill -9` in the middle of commits
//! keeps every transaction the client saw committed, whole, and leaves no stuck last stable
//! offset. DescribeTransactions / ListTransactions are checked on the wire.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::raw::Raw;
use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};
use weir::protocol::messages::*;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Few internal partitions (faster start), and a quick timeout checker.
const SETTINGS: &[&str] = &[
    "offsets.topic.num.partitions=3",
    "transaction.state.log.num.partitions=5",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms=200",
    "group.initial.rebalance.delay.ms=0",
];

type TxnProducer = ThreadedProducer<DefaultProducerContext>;

fn txn_producer(broker: &Broker, id: &str, settings: &[(&str, &str)]) -> TxnProducer {
    let mut config = client_config(broker);
    config
        .set("transactional.id", id)
        .set("message.timeout.ms", "30000")
        .set("linger.ms", "1");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    let producer: TxnProducer = config.create().expect("transactional producer");
    producer
        .init_transactions(TIMEOUT)
        .expect("init_transactions");
    producer
}

fn send(producer: &TxnProducer, topic: &str, partition: i32, key: &str, value: &str) {
    let mut record = BaseRecord::to(topic)
        .key(key)
        .payload(value)
        .partition(partition);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                r,
            )) => {
                record = r;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((error, _)) => panic!("send: {error}"),
        }
    }
}

/// Every record of `topics` (all partitions) a consumer with `isolation` reads until nothing new
/// arrives for `quiet`: (topic, partition, offset, value).
fn read_all(
    broker: &Broker,
    topics: &[(&str, i32)],
    isolation: &str,
    quiet: Duration,
) -> Vec<(String, i32, i64, String)> {
    let consumer = consumer(broker, &[("isolation.level", isolation)]);
    let mut assignment = TopicPartitionList::new();
    for (topic, partitions) in topics {
        for p in 0..*partitions {
            assignment
                .add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
    }
    consumer.assign(&assignment).unwrap();
    let mut seen = Vec::new();
    let mut last = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while last.elapsed() < quiet && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                seen.push((
                    m.topic().to_string(),
                    m.partition(),
                    m.offset(),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                ));
                last = Instant::now();
            }
            Some(Err(error)) => panic!("consume: {error}"),
            None => {}
        }
    }
    seen
}

fn values(seen: &[(String, i32, i64, String)]) -> BTreeSet<String> {
    seen.iter().map(|(_, _, _, v)| v.clone()).collect()
}

/// Offsets increase within each partition (the consumer saw the log in order).
fn assert_in_order(seen: &[(String, i32, i64, String)]) {
    let mut last: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (topic, partition, offset, _) in seen {
        if let Some(previous) = last.insert((topic.clone(), *partition), *offset) {
            assert!(
                *offset > previous,
                "{topic}-{partition}: {offset} after {previous}"
            );
        }
    }
}

fn describe_transaction(
    broker: &Broker,
    id: &str,
) -> describe_transactions_response::TransactionState {
    let mut raw = Raw::connect(broker);
    let response: DescribeTransactionsResponse = raw.request(
        65,
        0,
        &DescribeTransactionsRequest {
            transactional_ids: vec![id.to_string()],
            ..Default::default()
        },
    );
    response.transaction_states.into_iter().next().unwrap()
}

fn wait_for_state(
    broker: &Broker,
    id: &str,
    state: &str,
) -> describe_transactions_response::TransactionState {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let described = describe_transaction(broker, id);
        if described.transaction_state == state || Instant::now() > deadline {
            return described;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn read_committed_sees_only_committed_transactions_in_order() {
    let broker = Broker::start(SETTINGS);
    create_topic(&broker, "orders", 3, &[]);
    create_topic(&broker, "audit", 2, &[]);
    let producer = txn_producer(&broker, "orders-app", &[]);

    // 1: committed, over both topics and every partition.
    producer.begin_transaction().unwrap();
    for n in 0..30 {
        send(
            &producer,
            "orders",
            n % 3,
            &format!("k{n}"),
            &format!("c1-{n}"),
        );
    }
    for n in 0..10 {
        send(&producer, "audit", n % 2, "a", &format!("c1-audit-{n}"));
    }
    producer.commit_transaction(TIMEOUT).unwrap();
    // 2: aborted.
    producer.begin_transaction().unwrap();
    for n in 0..20 {
        send(
            &producer,
            "orders",
            n % 3,
            &format!("k{n}"),
            &format!("aborted-{n}"),
        );
    }
    send(&producer, "audit", 0, "a", "aborted-audit");
    producer.flush(TIMEOUT).unwrap();
    producer.abort_transaction(TIMEOUT).unwrap();
    // 3: committed, fewer partitions.
    producer.begin_transaction().unwrap();
    for n in 0..15 {
        send(
            &producer,
            "orders",
            n % 2,
            &format!("k{n}"),
            &format!("c3-{n}"),
        );
    }
    producer.commit_transaction(TIMEOUT).unwrap();
    // 4: left open, its records flushed to the partitions.
    producer.begin_transaction().unwrap();
    for n in 0..6 {
        send(
            &producer,
            "orders",
            n % 3,
            &format!("k{n}"),
            &format!("open-{n}"),
        );
    }
    producer.flush(TIMEOUT).unwrap();

    // /metrics shows the open transaction holding back the last stable offset.
    let lso_lag = |metrics: &str| -> i64 {
        let gauge = |name: &str, p: i32| -> i64 {
            let prefix = format!("{name}{{");
            let label = format!("topic=\"orders\",partition=\"{p}\"}}");
            metrics
                .lines()
                .find(|l| l.starts_with(&prefix) && l.contains(&label))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("{name} of orders-{p} in /metrics")) as i64
        };
        (0..3)
            .map(|p| {
                gauge("weir_partition_high_watermark", p)
                    - gauge("weir_partition_last_stable_offset", p)
            })
            .sum()
    };
    assert!(
        lso_lag(&broker.metrics()) >= 6,
        "the open transaction's 6 records are unstable"
    );

    let described = describe_transaction(&broker, "orders-app");
    assert_eq!(described.error_code, 0);
    assert_eq!(described.transaction_state, "Ongoing");
    assert_eq!(described.topics.len(), 1);
    assert_eq!(described.topics[0].topic, "orders");

    let topics = [("orders", 3), ("audit", 2)];
    let committed = read_all(&broker, &topics, "read_committed", Duration::from_secs(2));
    assert_in_order(&committed);
    let expected: BTreeSet<String> = (0..30)
        .map(|n| format!("c1-{n}"))
        .chain((0..10).map(|n| format!("c1-audit-{n}")))
        .chain((0..15).map(|n| format!("c3-{n}")))
        .collect();
    assert_eq!(
        committed.len(),
        expected.len(),
        "each committed record once"
    );
    assert_eq!(values(&committed), expected, "committed transactions only");

    let everything = read_all(&broker, &topics, "read_uncommitted", Duration::from_secs(2));
    assert_in_order(&everything);
    assert_eq!(
        everything.len(),
        30 + 10 + 21 + 15 + 6,
        "read_uncommitted sees every record"
    );

    // The open transaction commits: read_committed moves past it.
    producer.commit_transaction(TIMEOUT).unwrap();
    let after = read_all(&broker, &topics, "read_committed", Duration::from_secs(2));
    let open: BTreeSet<String> = (0..6).map(|n| format!("open-{n}")).collect();
    assert!(
        open.is_subset(&values(&after)),
        "the last transaction became visible"
    );
    assert_eq!(after.len(), expected.len() + 6);
    assert_eq!(
        wait_for_state(&broker, "orders-app", "CompleteCommit").transaction_state,
        "CompleteCommit"
    );
    assert_eq!(
        lso_lag(&broker.metrics()),
        0,
        "every partition is stable again"
    );
    assert_eq!(
        metric_sum(&broker, "weir_transactions_committed_total"),
        3.0
    );
    assert_eq!(metric_sum(&broker, "weir_transactions_aborted_total"), 1.0);
}

/// A counter summed over the shards.
fn metric_sum(broker: &Broker, name: &str) -> f64 {
    broker
        .metrics()
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn consume_transform_produce_commits_outputs_and_offsets_together() {
    let broker = Broker::start(SETTINGS);
    create_topic(&broker, "input", 2, &[]);
    create_topic(&broker, "output", 2, &[]);
    {
        let plain = producer(&broker, &[("acks", "all")]);
        for n in 0..100 {
            let key = format!("k{n}");
            let value = format!("in-{n}");
            futures::executor::block_on(
                plain
                    .send_result(
                        rdkafka::producer::FutureRecord::to("input")
                            .key(&key)
                            .payload(&value)
                            .partition(n % 2),
                    )
                    .unwrap(),
            )
            .unwrap()
            .unwrap();
        }
    }
    let group = "etl";
    let consumer: BaseConsumer = consumer(
        &broker,
        &[
            ("group.id", group),
            ("isolation.level", "read_committed"),
            ("auto.offset.reset", "earliest"),
        ],
    );
    consumer.subscribe(&["input"]).unwrap();
    let producer = txn_producer(&broker, "etl-app", &[]);
    let mut processed = 0usize;
    let mut round = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    while processed < 100 && Instant::now() < deadline {
        let mut batch = Vec::new();
        while batch.len() < 15 {
            match consumer.poll(Duration::from_millis(300)) {
                Some(Ok(m)) => batch.push((
                    m.partition(),
                    m.offset(),
                    String::from_utf8_lossy(m.payload().unwrap()).into_owned(),
                )),
                Some(Err(error)) => panic!("consume: {error}"),
                None => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        round += 1;
        producer.begin_transaction().unwrap();
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for (partition, offset, value) in &batch {
            send(
                &producer,
                "output",
                *partition,
                "k",
                &value.replace("in-", "out-"),
            );
            next.insert(*partition, offset + 1);
        }
        let mut offsets = TopicPartitionList::new();
        for (p, o) in &next {
            offsets
                .add_partition_offset("input", *p, Offset::Offset(*o))
                .unwrap();
        }
        producer
            .send_offsets_to_transaction(&offsets, &consumer.group_metadata().unwrap(), TIMEOUT)
            .unwrap();
        if round == 2 {
            // Aborted: neither the outputs nor the offsets count; rewind to the committed ones.
            producer.abort_transaction(TIMEOUT).unwrap();
            let committed = consumer.committed(TIMEOUT).unwrap();
            for element in committed.elements() {
                let offset = match element.offset() {
                    Offset::Offset(o) => Offset::Offset(o),
                    _ => Offset::Beginning,
                };
                consumer
                    .seek(element.topic(), element.partition(), offset, TIMEOUT)
                    .unwrap();
            }
        } else {
            producer.commit_transaction(TIMEOUT).unwrap();
            processed += batch.len();
        }
    }
    assert_eq!(processed, 100, "every input processed (rounds: {round})");

    let outputs = read_all(
        &broker,
        &[("output", 2)],
        "read_committed",
        Duration::from_secs(2),
    );
    let expected: BTreeSet<String> = (0..100).map(|n| format!("out-{n}")).collect();
    assert_eq!(values(&outputs), expected);
    assert_eq!(
        outputs.len(),
        100,
        "each output exactly once, the aborted round's not at all"
    );
    // The group's committed offsets are the end of the input.
    let committed = consumer.committed(TIMEOUT).unwrap();
    let mut ends = BTreeMap::new();
    for e in committed.elements() {
        ends.insert(e.partition(), e.offset());
    }
    assert_eq!(ends.get(&0), Some(&Offset::Offset(50)));
    assert_eq!(ends.get(&1), Some(&Offset::Offset(50)));
}

#[test]
fn a_second_producer_with_the_same_id_fences_the_first() {
    let broker = Broker::start(SETTINGS);
    create_topic(&broker, "fenced", 1, &[]);
    let zombie = txn_producer(&broker, "shared-id", &[]);
    zombie.begin_transaction().unwrap();
    for n in 0..5 {
        send(&zombie, "fenced", 0, "z", &format!("zombie-{n}"));
    }
    zombie.flush(TIMEOUT).unwrap();
    let first = describe_transaction(&broker, "shared-id");

    // The new instance's init aborts the zombie's open transaction and bumps the epoch.
    let current = txn_producer(&broker, "shared-id", &[]);
    let second = describe_transaction(&broker, "shared-id");
    assert_eq!(second.producer_id, first.producer_id);
    assert!(second.producer_epoch > first.producer_epoch);

    let error = zombie
        .commit_transaction(TIMEOUT)
        .expect_err("the fenced producer cannot commit");
    match &error {
        KafkaError::Transaction(e) => assert!(e.is_fatal(), "fencing is fatal: {e}"),
        other => panic!("unexpected error {other}"),
    }

    current.begin_transaction().unwrap();
    for n in 0..3 {
        send(&current, "fenced", 0, "c", &format!("current-{n}"));
    }
    current.commit_transaction(TIMEOUT).unwrap();
    let seen = read_all(
        &broker,
        &[("fenced", 1)],
        "read_committed",
        Duration::from_secs(2),
    );
    let expected: BTreeSet<String> = (0..3).map(|n| format!("current-{n}")).collect();
    assert_eq!(
        values(&seen),
        expected,
        "only the current producer's records"
    );
    assert_eq!(seen.len(), 3);
}

#[test]
fn a_transaction_open_past_its_timeout_is_aborted_by_the_broker() {
    let broker = Broker::start(SETTINGS);
    create_topic(&broker, "slow", 2, &[]);
    let producer = txn_producer(
        &broker,
        "slow-app",
        &[
            ("transaction.timeout.ms", "1500"),
            ("message.timeout.ms", "1500"),
        ],
    );
    producer.begin_transaction().unwrap();
    for n in 0..8 {
        send(&producer, "slow", n % 2, "k", &format!("late-{n}"));
    }
    producer.flush(TIMEOUT).unwrap();
    let aborted = wait_for_state(&broker, "slow-app", "CompleteAbort");
    assert_eq!(
        aborted.transaction_state, "CompleteAbort",
        "the broker aborted it"
    );
    assert!(
        producer.commit_transaction(TIMEOUT).is_err(),
        "a timed-out transaction cannot commit"
    );
    assert_eq!(
        metric_sum(&broker, "weir_transactions_timed_out_total"),
        1.0
    );

    // Nothing of it is visible, and read_committed is not stuck behind it.
    let plain = producer_plain(&broker);
    for p in 0..2 {
        futures::executor::block_on(
            plain
                .send_result(
                    rdkafka::producer::FutureRecord::to("slow")
                        .key("p")
                        .payload("after")
                        .partition(p),
                )
                .unwrap(),
        )
        .unwrap()
        .unwrap();
    }
    let seen = read_all(
        &broker,
        &[("slow", 2)],
        "read_committed",
        Duration::from_secs(2),
    );
    assert_eq!(values(&seen), BTreeSet::from(["after".to_string()]));
    assert_eq!(seen.len(), 2);

    let mut raw = Raw::connect(&broker);
    let listed: ListTransactionsResponse = raw.request(
        66,
        1,
        &ListTransactionsRequest {
            state_filters: vec!["CompleteAbort".into(), "NoSuchState".into()],
            duration_filter: -1,
            ..Default::default()
        },
    );
    assert_eq!(
        listed.unknown_state_filters,
        vec!["NoSuchState".to_string()]
    );
    assert!(listed
        .transaction_states
        .iter()
        .any(|t| t.transactional_id == "slow-app" && t.transaction_state == "CompleteAbort"));
}

fn producer_plain(broker: &Broker) -> rdkafka::producer::FutureProducer {
    producer(broker, &[("acks", "all")])
}

#[test]
fn kill_9_mid_commit_keeps_every_acknowledged_transaction_whole() {
    const PER_TXN: usize = 12;
    let mut broker = Broker::start(SETTINGS);
    create_topic(&broker, "ledger", 3, &[]);
    let committed: Arc<Mutex<Vec<usize>>> = Arc::default();
    let attempted: Arc<Mutex<Vec<usize>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let bootstrap = broker.bootstrap();
        let (committed, attempted, stop) = (committed.clone(), attempted.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut config = rdkafka::ClientConfig::new();
            config
                .set("bootstrap.servers", &bootstrap)
                .set("broker.address.family", "v4")
                .set("transactional.id", "ledger-app")
                .set("transaction.timeout.ms", "20000")
                .set("message.timeout.ms", "5000")
                .set("linger.ms", "1");
            let producer: TxnProducer = config.create().unwrap();
            producer.init_transactions(TIMEOUT).unwrap();
            for txn in 0.. {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                attempted.lock().unwrap().push(txn);
                if producer.begin_transaction().is_err() {
                    return;
                }
                for n in 0..PER_TXN {
                    let value = format!("t{txn}-{n}");
                    let record = BaseRecord::to("ledger")
                        .key("k")
                        .payload(&value)
                        .partition((n % 3) as i32);
                    if producer.send(record).is_err() {
                        return;
                    }
                }
                match producer.commit_transaction(Duration::from_secs(5)) {
                    Ok(()) => committed.lock().unwrap().push(txn),
                    Err(_) => return,
                }
            }
        })
    };
    let started = Instant::now();
    while committed.lock().unwrap().len() < 20 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    broker.kill9();
    stop.store(true, Ordering::SeqCst);
    worker.join().unwrap();
    let committed = committed.lock().unwrap().clone();
    let attempted = attempted.lock().unwrap().clone();
    assert!(
        committed.len() >= 20,
        "the workload committed ({})",
        committed.len()
    );
    broker.restart();

    // A new instance of the application fences the old one (aborting what it left open) and
    // commits once more: read_committed must reach that.
    let producer = txn_producer(&broker, "ledger-app", &[]);
    producer.begin_transaction().unwrap();
    send(&producer, "ledger", 0, "k", "after-restart");
    producer.commit_transaction(TIMEOUT).unwrap();

    let seen = read_all(
        &broker,
        &[("ledger", 3)],
        "read_committed",
        Duration::from_secs(3),
    );
    assert_in_order(&seen);
    assert!(
        values(&seen).contains("after-restart"),
        "read_committed is not stuck"
    );
    let mut per_txn: BTreeMap<usize, usize> = BTreeMap::new();
    for value in values(&seen) {
        if let Some(rest) = value.strip_prefix('t') {
            let txn: usize = rest.split('-').next().unwrap().parse().unwrap();
            *per_txn.entry(txn).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), values(&seen).len(), "no record twice");
    for txn in &committed {
        assert_eq!(
            per_txn.get(txn),
            Some(&PER_TXN),
            "transaction {txn} was acknowledged as committed"
        );
    }
    for (txn, count) in &per_txn {
        assert!(attempted.contains(txn));
        assert_eq!(*count, PER_TXN, "transaction {txn} is visible only whole");
    }
    let extra: Vec<_> = per_txn.keys().filter(|t| !committed.contains(t)).collect();
    assert!(
        extra.len() <= 1,
        "at most the one in flight at the kill: {extra:?}"
    );
}

/// Runs `weir ARGS --bootstrap BROKER`: (status ok, stdout, stderr).
fn weir_cli(broker: &Broker, args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .arg("--bootstrap")
        .arg(broker.bootstrap())
        .env_remove("WEIR_BOOTSTRAP")
        .env("WEIR_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running weir");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn weir_transactions_list_and_describe_show_the_open_transaction() {
    let broker = Broker::start(SETTINGS);
    create_topic(&broker, "shown", 3, &[]);
    let done = txn_producer(&broker, "finished-app", &[]);
    done.begin_transaction().unwrap();
    send(&done, "shown", 0, "k", "v");
    done.commit_transaction(TIMEOUT).unwrap();
    let open = txn_producer(&broker, "open-app", &[]);
    open.begin_transaction().unwrap();
    send(&open, "shown", 0, "k", "v");
    send(&open, "shown", 2, "k", "v");
    open.flush(TIMEOUT).unwrap();

    let (ok, out, err) = weir_cli(&broker, &["transactions", "list"]);
    assert!(ok, "{err}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["TRANSACTIONAL", "ID", "PRODUCER", "ID", "STATE"]);
    let state_of = |id: &str| {
        rows.iter()
            .find(|r| r[0] == id)
            .map(|r| r[2].to_string())
            .unwrap_or_else(|| panic!("{id} not listed:\n{out}"))
    };
    assert_eq!(state_of("open-app"), "Ongoing");
    assert!(state_of("finished-app").starts_with("Complete"), "{out}");

    let (ok, out, _) = weir_cli(&broker, &["transactions", "list", "--state", "Ongoing"]);
    assert!(ok);
    assert!(
        out.contains("open-app") && !out.contains("finished-app"),
        "{out}"
    );

    let (ok, out, err) = weir_cli(&broker, &["transactions", "describe", "open-app"]);
    assert!(ok, "{err}");
    let cells: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(cells[1], "open-app");
    assert_eq!(cells[4], "Ongoing");
    assert!(out.contains("\nPARTITIONS\nshown-0\nshown-2\n"), "{out}");

    let (ok, _, err) = weir_cli(&broker, &["transactions", "describe", "nobody"]);
    assert!(!ok);
    assert!(err.contains("TRANSACTIONAL_ID_NOT_FOUND"), "{err}");
    let (ok, _, err) = weir_cli(&broker, &["transactions", "list", "--state", "Bogus"]);
    assert!(!ok);
    assert!(err.contains("'Bogus' is not a transaction state"), "{err}");
}

#[test]
fn idle_transactional_ids_expire_and_stay_gone_after_a_restart() {
    let mut settings = SETTINGS.to_vec();
    settings.extend([
        "transactional.id.expiration.ms=4000",
        "transaction.remove.expired.transaction.cleanup.interval.ms=200",
    ]);
    let mut broker = Broker::start(&settings);
    create_topic(&broker, "expiring", 1, &[]);
    let producer = txn_producer(&broker, "short-lived", &[]);
    producer.begin_transaction().unwrap();
    send(&producer, "expiring", 0, "k", "v");
    producer.commit_transaction(TIMEOUT).unwrap();
    drop(producer);
    assert_eq!(describe_transaction(&broker, "short-lived").error_code, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while describe_transaction(&broker, "short-lived").error_code == 0 {
        assert!(Instant::now() < deadline, "the idle id never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        describe_transaction(&broker, "short-lived").error_code,
        weir::protocol::error::ErrorCode::TransactionalIdNotFound.code()
    );
    broker.stop();
    broker.restart();
    let loaded = || {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let code = describe_transaction(&broker, "short-lived").error_code;
            let loading = weir::protocol::error::ErrorCode::CoordinatorLoadInProgress.code();
            if code != loading || Instant::now() > deadline {
                return code;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(
        loaded(),
        weir::protocol::error::ErrorCode::TransactionalIdNotFound.code(),
        "the tombstone is replayed"
    );
}

/// The coordinator's refusals on the wire, with the codes Kafka gives, at old and new versions.
#[test]
fn coordinator_errors_on_the_wire() {
    use weir::protocol::error::ErrorCode;
    let broker = Broker::start(SETTINGS);
    create_topic(&broker, "wire", 2, &[]);
    let mut raw = Raw::connect(&broker);
    let find: FindCoordinatorResponse = raw.request(
        10,
        3,
        &FindCoordinatorRequest {
            key: "wire-app".into(),
            key_type: 1,
            ..Default::default()
        },
    );
    assert_eq!(find.error_code, 0);
    let init = |raw: &mut Raw, id: Option<&str>, timeout: i32| -> InitProducerIdResponse {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let response: InitProducerIdResponse = raw.request(
                22,
                4,
                &InitProducerIdRequest {
                    transactional_id: id.map(str::to_string),
                    transaction_timeout_ms: timeout,
                    producer_id: -1,
                    producer_epoch: -1,
                    ..Default::default()
                },
            );
            let retriable = [
                ErrorCode::CoordinatorLoadInProgress.code(),
                ErrorCode::ConcurrentTransactions.code(),
            ];
            if !retriable.contains(&response.error_code) || Instant::now() > deadline {
                return response;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(
        init(&mut raw, Some(""), 1000).error_code,
        ErrorCode::InvalidRequest.code()
    );
    assert_eq!(
        init(&mut raw, Some("wire-app"), 0).error_code,
        ErrorCode::InvalidTransactionTimeout.code()
    );
    assert_eq!(
        init(&mut raw, Some("wire-app"), 900_001).error_code,
        ErrorCode::InvalidTransactionTimeout.code()
    );
    let first = init(&mut raw, Some("wire-app"), 60_000);
    assert_eq!(first.error_code, 0);
    let (pid, epoch) = (first.producer_id, first.producer_epoch);

    let end = |raw: &mut Raw, version: i16, pid: i64, epoch: i16, commit: bool| -> i16 {
        let response: EndTxnResponse = raw.request(
            26,
            version,
            &EndTxnRequest {
                transactional_id: "wire-app".into(),
                producer_id: pid,
                producer_epoch: epoch,
                committed: commit,
                ..Default::default()
            },
        );
        response.error_code
    };
    assert_eq!(
        end(&mut raw, 3, pid, epoch, true),
        ErrorCode::InvalidTxnState.code(),
        "nothing open"
    );
    assert_eq!(
        end(&mut raw, 3, pid + 1, epoch, true),
        ErrorCode::InvalidProducerIdMapping.code()
    );

    let add = |raw: &mut Raw, version: i16, epoch: i16, partitions: Vec<i32>| {
        let response: AddPartitionsToTxnResponse = raw.request(
            24,
            version,
            &AddPartitionsToTxnRequest {
                v3_and_below_transactional_id: "wire-app".into(),
                v3_and_below_producer_id: pid,
                v3_and_below_producer_epoch: epoch,
                v3_and_below_topics: vec![add_partitions_to_txn_request::AddPartitionsToTxnTopic {
                    name: "wire".into(),
                    partitions,
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        response.results_by_topic_v3_and_below[0]
            .results_by_partition
            .iter()
            .map(|p| (p.partition_index, p.partition_error_code))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        add(&mut raw, 0, epoch, vec![0, 7]),
        vec![
            (0, ErrorCode::OperationNotAttempted.code()),
            (7, ErrorCode::UnknownTopicOrPartition.code())
        ]
    );
    assert_eq!(add(&mut raw, 0, epoch, vec![0, 1]), vec![(0, 0), (1, 0)]);
    assert_eq!(
        describe_transaction(&broker, "wire-app").transaction_state,
        "Ongoing"
    );

    // A new instance fences this one: old versions hear INVALID_PRODUCER_EPOCH, new ones
    // PRODUCER_FENCED.
    // One request does it: the coordinator waits for the abort's markers instead of answering
    // CONCURRENT_TRANSACTIONS for the client to retry.
    let second: InitProducerIdResponse = raw.request(
        22,
        4,
        &InitProducerIdRequest {
            transactional_id: Some("wire-app".into()),
            transaction_timeout_ms: 60_000,
            producer_id: -1,
            producer_epoch: -1,
            ..Default::default()
        },
    );
    assert_eq!(second.error_code, 0);
    assert_eq!(second.producer_id, pid);
    assert!(
        second.producer_epoch >= epoch + 2,
        "fenced, then bumped for the new instance"
    );
    assert_eq!(
        add(&mut raw, 1, epoch, vec![0])[0].1,
        ErrorCode::InvalidProducerEpoch.code()
    );
    assert_eq!(
        add(&mut raw, 3, epoch, vec![0])[0].1,
        ErrorCode::ProducerFenced.code()
    );
    assert_eq!(
        end(&mut raw, 1, pid, epoch, true),
        ErrorCode::InvalidProducerEpoch.code()
    );
    assert_eq!(
        end(&mut raw, 3, pid, epoch, true),
        ErrorCode::ProducerFenced.code()
    );
    // The fenced instance's transaction was aborted (the new instance's init waited for that,
    // then bumped the epoch again): nothing is open.
    let now = describe_transaction(&broker, "wire-app");
    assert_eq!(now.transaction_state, "Empty");
    assert_eq!(now.producer_epoch, second.producer_epoch);
    assert!(now.topics.is_empty());
    assert_eq!(metric_sum(&broker, "weir_transactions_aborted_total"), 1.0);
    assert_eq!(
        describe_transaction(&broker, "no-such-id").error_code,
        ErrorCode::TransactionalIdNotFound.code()
    );
}

/// TxnOffsetCommit offsets are pending until the COMMIT marker: OffsetFetch with require_stable
/// answers UNSTABLE_OFFSET_COMMIT meanwhile, and the offset appears once the transaction ends.
#[test]
fn transactional_offsets_are_unstable_until_the_commit() {
    use weir::protocol::error::ErrorCode;
    let broker = Broker::start(SETTINGS);
    create_topic(&broker, "src", 1, &[]);
    let mut raw = Raw::connect(&broker);
    for key_type in [0, 1] {
        let _: FindCoordinatorResponse = raw.request(
            10,
            3,
            &FindCoordinatorRequest {
                key: if key_type == 0 {
                    "g1".into()
                } else {
                    "tx-offsets".into()
                },
                key_type,
                ..Default::default()
            },
        );
    }
    let init: InitProducerIdResponse = retry(&mut raw, |raw| {
        let r: InitProducerIdResponse = raw.request(
            22,
            4,
            &InitProducerIdRequest {
                transactional_id: Some("tx-offsets".into()),
                transaction_timeout_ms: 60_000,
                producer_id: -1,
                producer_epoch: -1,
                ..Default::default()
            },
        );
        (r.error_code, r)
    });
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id, init.producer_epoch);
    let code = retry(&mut raw, |raw| {
        let r: AddOffsetsToTxnResponse = raw.request(
            25,
            1,
            &AddOffsetsToTxnRequest {
                transactional_id: "tx-offsets".into(),
                producer_id: pid,
                producer_epoch: epoch,
                group_id: "g1".into(),
                ..Default::default()
            },
        );
        (r.error_code, r.error_code)
    });
    assert_eq!(code, 0);
    let commit = |raw: &mut Raw| -> (i16, i16) {
        let r: TxnOffsetCommitResponse = raw.request(
            28,
            3,
            &TxnOffsetCommitRequest {
                transactional_id: "tx-offsets".into(),
                group_id: "g1".into(),
                producer_id: pid,
                producer_epoch: epoch,
                generation_id: -1,
                topics: vec![txn_offset_commit_request::TxnOffsetCommitRequestTopic {
                    name: "src".into(),
                    partitions: vec![txn_offset_commit_request::TxnOffsetCommitRequestPartition {
                        partition_index: 0,
                        committed_offset: 42,
                        committed_leader_epoch: -1,
                        committed_metadata: Some("m".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        let code = r.topics[0].partitions[0].error_code;
        (code, code)
    };
    assert_eq!(retry(&mut raw, commit), 0);
    let fetch = |raw: &mut Raw, stable: bool| -> (i16, i64) {
        let r: OffsetFetchResponse = raw.request(
            9,
            7,
            &OffsetFetchRequest {
                group_id: "g1".into(),
                topics: Some(vec![offset_fetch_request::OffsetFetchRequestTopic {
                    name: "src".into(),
                    partition_indexes: vec![0],
                    ..Default::default()
                }]),
                require_stable: stable,
                ..Default::default()
            },
        );
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.committed_offset)
    };
    assert_eq!(
        fetch(&mut raw, true),
        (ErrorCode::UnstableOffsetCommit.code(), -1),
        "a transaction holds the offset"
    );
    assert_eq!(fetch(&mut raw, false), (0, -1), "nothing committed yet");
    let ended: EndTxnResponse = raw.request(
        26,
        3,
        &EndTxnRequest {
            transactional_id: "tx-offsets".into(),
            producer_id: pid,
            producer_epoch: epoch,
            committed: true,
            ..Default::default()
        },
    );
    assert_eq!(ended.error_code, 0);
    wait_for_state(&broker, "tx-offsets", "CompleteCommit");
    assert_eq!(
        fetch(&mut raw, true),
        (0, 42),
        "committed with the transaction"
    );
}

/// Repeats `send` while the coordinator is being created or loaded; its last answer.
fn retry<T>(raw: &mut Raw, mut send: impl FnMut(&mut Raw) -> (i16, T)) -> T {
    use weir::protocol::error::ErrorCode;
    let retriable = [
        ErrorCode::CoordinatorLoadInProgress.code(),
        ErrorCode::NotCoordinator.code(),
        ErrorCode::CoordinatorNotAvailable.code(),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, answer) = send(raw);
        if !retriable.contains(&code) || Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
