//! The `weir` tool subcommands against a real broker process: every `topic` subcommand with its
//! error cases, `produce` read back by librdkafka and librdkafka's records read back by
//! `consume` (keys, values, headers, null versus empty, every codec), consume positions and
//! limits, `cluster info`, and what the user is told when the broker cannot be reached.
//! Each test checks stdout, stderr and the exit status as a script would.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::Offset;
use weir::records::murmur2::partition_for_key;

/// A record's key and value, `None` for null.
type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

/// What one `weir` invocation did.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts success and returns stdout.
    fn ok(self) -> String {
        assert_eq!(self.code, Some(0), "expected success: {self:#?}");
        self.stdout
    }

    /// Asserts exit status 1 with `expected` in stderr; returns stderr.
    fn fails_with(self, expected: &str) -> String {
        assert_eq!(self.code, Some(1), "expected failure: {self:#?}");
        assert!(
            self.stderr.contains(expected),
            "stderr lacks {expected:?}: {self:#?}"
        );
        self.stderr
    }

    /// Asserts a usage error (clap's exit status 2) with `expected` in stderr.
    fn rejected_with(self, expected: &str) {
        assert_eq!(self.code, Some(2), "expected a usage error: {self:#?}");
        assert!(
            self.stderr.contains(expected),
            "stderr lacks {expected:?}: {self:#?}"
        );
    }
}

fn command(bootstrap: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command
        .args(args)
        .arg("--bootstrap")
        .arg(bootstrap)
        .env_remove("WEIR_BOOTSTRAP")
        .env("WEIR_LOG", "warn");
    command
}

/// Runs `weir ARGS --bootstrap BROKER` with empty stdin.
fn weir(broker: &Broker, args: &[&str]) -> Run {
    weir_at(&broker.bootstrap(), args)
}

fn weir_at(bootstrap: &str, args: &[&str]) -> Run {
    let output = command(bootstrap, args)
        .stdin(Stdio::null())
        .output()
        .expect("running weir");
    Run::from(output)
}

/// Runs `weir ARGS` with `input` on stdin.
fn weir_with_input(broker: &Broker, args: &[&str], input: &[u8]) -> Run {
    let mut child = command(&broker.bootstrap(), args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning weir");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input).expect("writing stdin");
    drop(stdin);
    Run::from(child.wait_with_output().expect("waiting for weir"))
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// The cells of the table row whose first cell is `first`.
fn row<'a>(text: &'a str, first: &str) -> Vec<&'a str> {
    text.lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&first))
        .unwrap_or_else(|| panic!("no row {first:?} in:\n{text}"))
}

/// Partition counts as librdkafka sees them.
fn partition_count(broker: &Broker, topic: &str) -> usize {
    let consumer = consumer(broker, &[]);
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .expect("metadata");
    metadata.topics()[0].partitions().len()
}

#[test]
fn topics_are_created_listed_described_altered_grown_and_deleted() {
    let broker = Broker::start(&[]);

    let created = weir(
        &broker,
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention.ms=100000",
        ],
    )
    .ok();
    assert!(
        created.starts_with("created topic 'orders' with 3 partitions, replication factor 1"),
        "{created}"
    );
    weir(&broker, &["topic", "create", "orders", "--partitions", "3"])
        .fails_with("topic 'orders' already exists (use --if-not-exists");
    let again = weir(&broker, &["topic", "create", "orders", "--if-not-exists"]).ok();
    assert!(again.contains("already exists; nothing to do"), "{again}");

    let validated = weir(
        &broker,
        &["topic", "create", "dry", "-p", "2", "--validate-only"],
    )
    .ok();
    assert!(validated.contains("would be created with 2 partitions"));
    weir(&broker, &["topic", "create", "bad", "--partitions", "0"])
        .fails_with("--partitions must be at least 1, not 0");
    weir(&broker, &["topic", "create", "bad name"]).fails_with("is not a valid topic name");
    weir(
        &broker,
        &["topic", "create", "bad", "--config", "retention.ms=soon"],
    )
    .fails_with("INVALID_CONFIG");
    weir(&broker, &["topic", "create", "bad", "-r", "3"]).fails_with("INVALID_REPLICATION_FACTOR");
    weir(
        &broker,
        &["topic", "create", "bad", "--config", "retention.ms"],
    )
    .rejected_with("expected NAME=VALUE");

    assert_eq!(
        lines(&weir(&broker, &["topic", "list"]).ok()),
        vec!["orders"]
    );
    let long = weir(&broker, &["topic", "list", "--long"]).ok();
    assert_eq!(
        row(&long, "TOPIC"),
        vec!["TOPIC", "PARTITIONS", "REPLICATION", "ID"]
    );
    assert_eq!(row(&long, "orders")[1..3], ["3", "1"]);

    let described = weir(&broker, &["topic", "describe", "orders"]).ok();
    assert!(described.contains("partitions:   3"), "{described}");
    assert_eq!(
        row(&described, "PARTITION"),
        vec![
            "PARTITION",
            "LEADER",
            "EPOCH",
            "REPLICAS",
            "ISR",
            "LOW",
            "HIGH"
        ]
    );
    for partition in ["0", "1", "2"] {
        assert_eq!(
            row(&described, partition),
            vec![partition, "1", "0", "1", "1", "0", "0"]
        );
    }
    assert_eq!(
        row(&described, "retention.ms"),
        vec!["retention.ms", "100000", "topic"]
    );
    assert_eq!(
        row(&described, "cleanup.policy"),
        vec!["cleanup.policy", "delete", "default"]
    );

    let altered = weir(
        &broker,
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "retention.ms=5000",
            "--set",
            "max.message.bytes=2000",
            "--append",
            "cleanup.policy=compact",
        ],
    )
    .ok();
    assert!(altered.contains("set retention.ms=5000"), "{altered}");
    let overrides = weir(&broker, &["topic", "describe", "orders", "--overrides"]).ok();
    let config_rows: Vec<Vec<&str>> = overrides
        .lines()
        .skip_while(|l| !l.starts_with("CONFIG"))
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        config_rows,
        vec![
            vec!["cleanup.policy", "delete,compact", "topic"],
            vec!["max.message.bytes", "2000", "topic"],
            vec!["retention.ms", "5000", "topic"],
        ]
    );
    weir(
        &broker,
        &[
            "topic",
            "alter-config",
            "orders",
            "--delete",
            "retention.ms",
        ],
    )
    .ok();
    let described = weir(&broker, &["topic", "describe", "orders"]).ok();
    assert_eq!(
        row(&described, "retention.ms"),
        vec!["retention.ms", "604800000", "default"]
    );
    weir(
        &broker,
        &["topic", "alter-config", "orders", "--set", "retention.ms=x"],
    )
    .fails_with("invalid config");
    weir(&broker, &["topic", "alter-config", "orders"]).fails_with("nothing to change");
    weir(
        &broker,
        &["topic", "alter-config", "ghost", "--set", "retention.ms=1"],
    )
    .fails_with("topic 'ghost' does not exist; `weir topic list` shows the topics");

    let grown = weir(
        &broker,
        &["topic", "add-partitions", "orders", "--total", "5"],
    )
    .ok();
    assert_eq!(grown, "topic 'orders' now has 5 partitions (was 3)\n");
    assert_eq!(partition_count(&broker, "orders"), 5);
    weir(
        &broker,
        &["topic", "add-partitions", "orders", "--total", "2"],
    )
    .fails_with("topic 'orders' has 5 partitions; cannot reduce to 2");
    weir(
        &broker,
        &["topic", "add-partitions", "orders", "--total", "5"],
    )
    .fails_with("topic 'orders' already has 5 partitions");
    weir(
        &broker,
        &["topic", "add-partitions", "ghost", "--total", "5"],
    )
    .fails_with("topic 'ghost' does not exist");
    assert_eq!(partition_count(&broker, "orders"), 5);

    weir(&broker, &["topic", "describe", "ghost"])
        .fails_with("topic 'ghost' does not exist; `weir topic list` shows the topics");
    assert_eq!(
        weir(&broker, &["topic", "delete", "orders"]).ok(),
        "deleted topic 'orders'\n"
    );
    // Only __consumer_offsets is left (librdkafka clients with a group.id created it).
    let left = weir(&broker, &["topic", "list"]).ok();
    assert!(left.lines().all(|l| l == "__consumer_offsets"), "{left}");
    weir(&broker, &["topic", "delete", "orders"]).fails_with("topic 'orders' does not exist");
    let tolerated = weir(&broker, &["topic", "delete", "orders", "--if-exists"]).ok();
    assert!(tolerated.contains("nothing to delete"));
}

#[test]
fn an_unreachable_broker_or_bad_address_says_what_to_do() {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let invocations: [&[&str]; 5] = [
        &["topic", "list"],
        &["topic", "create", "t"],
        &["produce", "t", "--value", "v"],
        &["consume", "t", "-e"],
        &["cluster", "info"],
    ];
    for args in invocations {
        let stderr = weir_at(&address, args).fails_with(&format!(
            "cannot reach a broker at {address}: connection refused"
        ));
        assert!(
            stderr.contains("is `weir start` running?") && stderr.contains("--bootstrap"),
            "{stderr}"
        );
    }
    // The environment variable is the default address.
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["topic", "list"])
        .env("WEIR_BOOTSTRAP", &address)
        .output()
        .unwrap();
    Run::from(output).fails_with(&format!("cannot reach a broker at {address}"));
    weir_at("no-such-host.invalid:9092", &["topic", "list"])
        .fails_with("cannot use broker address 'no-such-host.invalid:9092'");
    weir_at("127.0.0.1:notaport", &["topic", "list"]).fails_with("check --bootstrap");
}

#[test]
fn records_produced_by_the_cli_are_read_back_by_librdkafka() {
    let broker = Broker::start(&[]);
    for codec in CODECS {
        let topic = format!("cli-to-rdkafka-{codec}");
        weir(&broker, &["topic", "create", &topic, "-p", "4"]).ok();
        let mut input = Vec::new();
        for i in 0..40 {
            writeln!(input, "key-{i}:value {i} {}", "x".repeat(i)).unwrap();
        }
        let report = weir_with_input(
            &broker,
            &[
                "produce",
                &topic,
                "-K",
                ":",
                "-z",
                codec,
                "-H",
                "source=cli",
                "-H",
                "flag",
                "--timestamp",
                "1600000000000",
            ],
            &input,
        )
        .ok();
        let reported: usize = report
            .lines()
            .map(|l| {
                let count = l
                    .strip_prefix("produced ")
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap();
                count.parse::<usize>().unwrap()
            })
            .sum();
        assert_eq!(reported, 40, "{report}");
        let mut seen = consume(&broker, &topic, 4, Offset::Beginning, 40, &[]);
        assert_eq!(seen.len(), 40, "{codec}");
        seen.sort_by_key(|s| s.value.clone());
        for record in &seen {
            let key = record.key.clone().unwrap();
            let i: usize = String::from_utf8(key[4..].to_vec())
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(
                record.value.as_deref(),
                Some(format!("value {i} {}", "x".repeat(i)).as_bytes()),
                "{codec}"
            );
            assert_eq!(
                record.partition,
                partition_for_key(&key, 4),
                "murmur2, {codec}"
            );
            assert_eq!(record.timestamp, Some(1_600_000_000_000));
            assert_eq!(
                record.headers,
                vec![
                    ("source".to_string(), Some(b"cli".to_vec())),
                    ("flag".to_string(), None),
                ]
            );
        }
    }

    // Null versus empty: no separator is a null key; `:` is an empty key and value; -Z turns
    // empties into nulls.
    weir(&broker, &["topic", "create", "nulls", "-p", "1"]).ok();
    weir_with_input(
        &broker,
        &["produce", "nulls", "-K", ":"],
        b"novalue\n:\nk:\n",
    )
    .ok();
    weir_with_input(&broker, &["produce", "nulls", "-K", ":", "-Z"], b":\n").ok();
    weir(
        &broker,
        &[
            "produce", "nulls", "--key", "one", "--value", "single", "-p", "0",
        ],
    )
    .ok();
    let seen = consume(&broker, "nulls", 1, Offset::Beginning, 5, &[]);
    let pairs: Vec<KeyValue> = seen.into_iter().map(|s| (s.key, s.value)).collect();
    assert_eq!(
        pairs,
        vec![
            (None, Some(b"novalue".to_vec())),
            (Some(Vec::new()), Some(Vec::new())),
            (Some(b"k".to_vec()), Some(Vec::new())),
            (None, None),
            (Some(b"one".to_vec()), Some(b"single".to_vec())),
        ]
    );
}

#[test]
fn records_produced_by_librdkafka_are_read_back_by_the_cli() {
    let broker = Broker::start(&[]);
    for codec in CODECS {
        let topic = format!("rdkafka-to-cli-{codec}");
        weir(&broker, &["topic", "create", &topic, "-p", "2"]).ok();
        let producer = producer(&broker, &[("compression.codec", codec), ("linger.ms", "5")]);
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "h1",
                value: Some(&b"v1"[..]),
            })
            .insert(Header {
                key: "nil",
                value: None::<&[u8]>,
            });
        let deliveries = vec![
            producer.send_result(
                FutureRecord::to(&topic)
                    .partition(0)
                    .key(&b"k0"[..])
                    .payload(&b"hello"[..])
                    .timestamp(1_000)
                    .headers(headers),
            ),
            producer.send_result(
                FutureRecord::<[u8], [u8]>::to(&topic)
                    .partition(0)
                    .timestamp(1_001),
            ),
            producer.send_result(
                FutureRecord::to(&topic)
                    .partition(0)
                    .key(&b""[..])
                    .payload(&b""[..])
                    .timestamp(1_002),
            ),
            producer.send_result(
                FutureRecord::to(&topic)
                    .partition(1)
                    .key(&b"k1"[..])
                    .payload(&b"on one"[..])
                    .timestamp(1_003),
            ),
        ];
        for delivery in deliveries {
            futures::executor::block_on(delivery.map_err(|(e, _)| e).unwrap())
                .unwrap()
                .map_err(|(e, _)| e)
                .unwrap();
        }
        let printed = weir(
            &broker,
            &[
                "consume",
                &topic,
                "-e",
                "--null",
                "<null>",
                "-f",
                "%t %p %o %T key=%k(%K) value=%v(%S) [%h]",
            ],
        )
        .ok();
        let mut printed = lines(&printed);
        printed.sort();
        assert_eq!(
            printed,
            vec![
                format!("{topic} 0 0 1000 key=k0(2) value=hello(5) [h1=v1,nil=<null>]"),
                format!("{topic} 0 1 1001 key=<null>(-1) value=<null>(-1) []"),
                format!("{topic} 0 2 1002 key=(0) value=(0) []"),
                format!("{topic} 1 0 1003 key=k1(2) value=on one(6) []"),
            ],
            "{codec}"
        );
        // One partition only.
        let first = weir(&broker, &["consume", &topic, "-e", "-p", "1"]).ok();
        assert_eq!(first, "on one\n");
    }
}

#[test]
fn consume_starts_where_asked_and_stops_at_the_end_or_the_limit() {
    let broker = Broker::start(&[]);
    weir(&broker, &["topic", "create", "log", "-p", "1"]).ok();
    for (i, timestamp) in (0..10).zip((1_000..).step_by(100)) {
        weir(
            &broker,
            &[
                "produce",
                "log",
                "--value",
                &format!("r{i}"),
                "--timestamp",
                &timestamp.to_string(),
            ],
        )
        .ok();
    }
    let from = |start: &str| {
        lines(&weir(&broker, &["consume", "log", "-e", "--from", start]).ok())
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(from("beginning").len(), 10);
    assert_eq!(from("7"), vec!["r7", "r8", "r9"]);
    assert_eq!(from("-2"), vec!["r8", "r9"]);
    assert_eq!(from("-50").len(), 10);
    assert_eq!(from("@1450"), vec!["r5", "r6", "r7", "r8", "r9"]);
    assert!(from("@99999").is_empty());
    assert!(from("end").is_empty());
    assert_eq!(from("10"), Vec::<String>::new());
    // One batch of ten records: a fetch from the middle returns the whole batch, and the
    // records before the asked-for offset must not be printed.
    weir(&broker, &["topic", "create", "batched", "-p", "1"]).ok();
    let input: Vec<u8> = (0..10)
        .flat_map(|i| format!("b{i}\n").into_bytes())
        .collect();
    for codec in CODECS {
        weir_with_input(&broker, &["produce", "batched", "-z", codec], &input).ok();
    }
    let middle = weir(
        &broker,
        &["consume", "batched", "-e", "--from", "13", "--max", "4"],
    )
    .ok();
    assert_eq!(middle, "b3\nb4\nb5\nb6\n");
    let tail = weir(
        &broker,
        &["consume", "batched", "-e", "--from", "-3", "-f", "%o %v"],
    )
    .ok();
    assert_eq!(tail, "47 b7\n48 b8\n49 b9\n");
    let limited = weir(&broker, &["consume", "log", "--max", "3", "-f", "%o"]).ok();
    assert_eq!(limited, "0\n1\n2\n");
    weir(&broker, &["consume", "log", "-e", "--from", "11"])
        .fails_with("offset 11 is outside the partition's offsets 0-10");
    weir(&broker, &["consume", "log", "-e", "-p", "4"])
        .fails_with("topic 'log' partition 4 does not exist: the topic has 1 partitions (0-0)");
    weir(&broker, &["consume", "ghost", "-e"])
        .fails_with("topic 'ghost' does not exist; `weir topic list` shows the topics");
    weir(&broker, &["consume", "log", "-e", "-f", "%x"]).fails_with("unknown format specifier %x");
    weir(&broker, &["consume", "log", "--from", "soon"]).rejected_with("expected beginning, end");

    // Without --exit-at-end the consumer follows the topic: it sees a record produced later.
    let follower = command(
        &broker.bootstrap(),
        &["consume", "log", "--from", "10", "--max", "1"],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    weir(&broker, &["produce", "log", "--value", "late"]).ok();
    let output = follower.wait_with_output().unwrap();
    assert_eq!(Run::from(output).ok(), "late\n");
}

#[test]
fn large_inputs_are_batched_and_large_records_fetched_whole() {
    let broker = Broker::start(&[]);
    weir(&broker, &["topic", "create", "bulk", "-p", "3"]).ok();
    let input: Vec<u8> = (0..30_000)
        .flat_map(|i| format!("record number {i}\n").into_bytes())
        .collect();
    let report = weir_with_input(
        &broker,
        &["produce", "bulk", "-z", "lz4", "--acks", "all"],
        &input,
    )
    .ok();
    assert!(
        report.lines().all(|l| l.starts_with("produced ")),
        "{report}"
    );
    let printed = weir(&broker, &["consume", "bulk", "-e"]).ok();
    let mut values: Vec<&str> = printed.lines().collect();
    assert_eq!(values.len(), 30_000);
    values.sort_unstable();
    values.dedup();
    assert_eq!(values.len(), 30_000, "no duplicates");

    // Records of ~400 KB: a 1 MiB partition fetch limit cuts batches, which must be refetched.
    weir(&broker, &["topic", "create", "wide", "-p", "1"]).ok();
    let big: Vec<u8> = (0..5)
        .flat_map(|i| {
            let mut line = vec![b'a' + i as u8; 400_000];
            line.push(b'\n');
            line
        })
        .collect();
    weir_with_input(
        &broker,
        &["produce", "wide", "--batch-bytes", "900000"],
        &big,
    )
    .ok();
    let printed = weir(&broker, &["consume", "wide", "-e", "-f", "%o %S"]).ok();
    assert_eq!(
        printed,
        "0 400000\n1 400000\n2 400000\n3 400000\n4 400000\n"
    );

    // Over the topic's max.message.bytes: refused with a hint.
    weir(
        &broker,
        &[
            "topic",
            "create",
            "small",
            "--config",
            "max.message.bytes=2000",
        ],
    )
    .ok();
    weir(&broker, &["produce", "small", "--value", &"x".repeat(5000)])
        .fails_with("max.message.bytes");
    weir_with_input(
        &broker,
        &["produce", "small", "--max-line-bytes", "10"],
        b"short\nmuch too long\n",
    )
    .fails_with("line 2 is longer than 10 bytes");
}

#[test]
fn every_acks_level_reports_what_it_knows() {
    let broker = Broker::start(&[]);
    weir(&broker, &["topic", "create", "acks", "-p", "1"]).ok();
    let all = weir_with_input(
        &broker,
        &["produce", "acks", "--acks", "all", "-v"],
        b"a\nb\n",
    )
    .ok();
    assert_eq!(
        all,
        "partition 0 offset 0\npartition 0 offset 1\nproduced 2 records to 'acks' partition 0, offsets 0-1\n"
    );
    let one = weir(&broker, &["produce", "acks", "--acks", "1", "--value", "c"]).ok();
    assert_eq!(
        one,
        "produced 1 records to 'acks' partition 0, offsets 2-2\n"
    );
    let none = weir(&broker, &["produce", "acks", "--acks", "0", "--value", "d"]).ok();
    assert!(none.contains("acks=0: offsets unknown"), "{none}");
    weir(&broker, &["produce", "acks", "--acks", "2", "--value", "e"])
        .rejected_with("acks must be 0, 1 or all");
    weir(&broker, &["produce", "acks", "-p", "3", "--value", "e"])
        .fails_with("topic 'acks' partition 3 does not exist");
    // acks=0 has no answer to wait for: poll until the record is visible.
    let mut printed = String::new();
    for _ in 0..50 {
        printed = weir(&broker, &["consume", "acks", "-e"]).ok();
        if printed.lines().count() == 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(printed, "a\nb\nc\nd\n");
}

#[test]
fn cluster_info_names_the_broker_and_counts_topics() {
    let broker = Broker::start(&["num.partitions=4", "auto.create.topics.enable=false"]);
    let created = weir(&broker, &["topic", "create", "defaulted"]).ok();
    assert!(created.contains("with 4 partitions"), "{created}");
    weir(&broker, &["topic", "create", "two", "-p", "2"]).ok();
    let info = weir(&broker, &["cluster", "info"]).ok();
    assert!(info.contains("controller:  1\n"), "{info}");
    assert!(info.contains("brokers:     1\n"), "{info}");
    assert!(info.contains("topics:      2\n"), "{info}");
    assert!(info.contains("partitions:  6\n"), "{info}");
    let bootstrap = broker.bootstrap();
    assert_eq!(row(&info, "1"), vec!["1", &bootstrap, "-", "controller"]);
    assert_eq!(
        row(&info, "num.partitions"),
        vec!["num.partitions", "4", "static"]
    );
    assert_eq!(
        row(&info, "auto.create.topics.enable"),
        vec!["auto.create.topics.enable", "false", "static"]
    );
    assert!(
        !info.contains("fetch.max.bytes"),
        "defaults are hidden: {info}"
    );
    let everything = weir(&broker, &["cluster", "info", "--all-configs"]).ok();
    assert_eq!(
        row(&everything, "fetch.max.bytes"),
        vec!["fetch.max.bytes", "57671680", "default"]
    );

    // With auto-creation off, producing to an unknown topic says how to create it.
    weir(&broker, &["produce", "ghost", "--value", "v"])
        .fails_with("create it with `weir topic create ghost`");
}

#[test]
fn the_groups_bench_joins_rebalances_commits_and_cleans_up() {
    let broker = Broker::start(&["group.initial.rebalance.delay.ms=0"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("groups.json");
    let run = weir(
        &broker,
        &[
            "bench",
            "groups",
            "--members",
            "4",
            "--commit-duration",
            "1s",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    let printed = run.ok();
    assert!(
        printed.contains("member 4 joins a stable group"),
        "{printed}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON report"))
            .expect("valid JSON");
    assert_eq!(report["members"], 4);
    assert!(report["commits"].as_u64().unwrap() > 0, "{report}");
    assert!(
        report["join_to_stable_ms"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(
        report["commit_latency"]["p99_us"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    // The bench removes its group and topic.
    let groups = weir(&broker, &["group", "list"]).ok();
    assert!(!groups.contains("weir-bench-group"), "{groups}");
    let topics = weir(&broker, &["topic", "list"]).ok();
    assert!(!topics.contains("weir-bench-groups"), "{topics}");
}
