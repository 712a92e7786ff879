//! Log compaction through a real client: a `cleanup.policy=compact` topic, rolled by `segment.ms`,
//! cleaned by the broker's cleaner (`log.cleaner.backoff.ms` small), read back from the beginning
//! by an rdkafka consumer: the closed segments hold only the latest value of each key, each at
//! the offset the producer was given, tombstones gone after `delete.retention.ms`; a restart keeps
//! that, and the idempotent producer carries on after it.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{consume, create_topic, Broker, Seen};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Offset;

const TOPIC: &str = "compacted";
const KEYS: usize = 20;
const ROUNDS: usize = 5;
const TOMBSTONED: usize = 5;

fn send(producer: &FutureProducer, key: &str, value: Option<&str>) -> i64 {
    let mut record = FutureRecord::<str, str>::to(TOPIC).key(key);
    if let Some(value) = value {
        record = record.payload(value);
    }
    let (partition, offset) =
        futures::executor::block_on(producer.send(record, Duration::from_secs(30)))
            .unwrap_or_else(|(e, _)| panic!("producing {key}: {e}"));
    assert_eq!(partition, 0);
    offset
}

/// What the log must hold after cleaning: key → (offset, value) of the latest record, keys whose
/// latest record is a tombstone absent.
fn expected(produced: &[(String, Option<String>, i64)]) -> BTreeMap<String, (i64, String)> {
    let mut latest = BTreeMap::new();
    for (key, value, offset) in produced {
        match value {
            Some(value) => latest.insert(key.clone(), (*offset, value.clone())),
            None => latest.remove(key),
        };
    }
    latest
}

fn as_map(seen: &[Seen]) -> BTreeMap<String, (i64, String)> {
    seen.iter()
        .map(|s| {
            (
                String::from_utf8(s.key.clone().unwrap()).unwrap(),
                (
                    s.offset,
                    String::from_utf8(s.value.clone().unwrap_or_default()).unwrap(),
                ),
            )
        })
        .collect()
}

/// Consumes from the beginning until the log reads back as `want` (exactly one record per
/// key), or the deadline; returns the last read.
fn wait_for_compacted(broker: &Broker, want: &BTreeMap<String, (i64, String)>) -> Vec<Seen> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = consume(broker, TOPIC, 1, Offset::Beginning, want.len(), &[]);
        if (seen.len() == want.len() && as_map(&seen) == *want) || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn metric(broker: &Broker, name: &str) -> f64 {
    broker
        .metrics()
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_compacted_topic_reads_back_the_latest_value_per_key_and_keeps_it_across_restarts() {
    let mut broker = Broker::start(&["log.cleaner.backoff.ms=200"]);
    create_topic(
        &broker,
        TOPIC,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "300"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "0"),
        ],
    );
    let producer = common::producer(
        &broker,
        &[("enable.idempotence", "true"), ("compression.codec", "lz4")],
    );
    let mut produced = Vec::new();
    for round in 0..ROUNDS {
        for key in 0..KEYS {
            let key = format!("key-{key}");
            let value = if round == ROUNDS - 2 && key.len() == 5 && produced.len() % 3 == 0 {
                None
            } else {
                Some(format!("{key}-round-{round}"))
            };
            let offset = send(&producer, &key, value.as_deref());
            produced.push((key, value, offset));
        }
        // Past segment.ms: the next round starts a new segment.
        std::thread::sleep(Duration::from_millis(400));
    }
    // Tombstones for some keys in the last closed segment; then one record in a fresh active
    // segment so every round above is in a closed segment.
    for key in 0..TOMBSTONED {
        let key = format!("key-{key}");
        let offset = send(&producer, &key, None);
        produced.push((key, None, offset));
    }
    std::thread::sleep(Duration::from_millis(400));
    let offset = send(&producer, "tail", Some("active"));
    produced.push(("tail".to_string(), Some("active".to_string()), offset));

    let want = expected(&produced);
    assert_eq!(want.len(), KEYS - TOMBSTONED + 1);
    let seen = wait_for_compacted(&broker, &want);
    assert_eq!(
        as_map(&seen),
        want,
        "latest value per key at its original offset\n{}",
        broker.log()
    );
    let offsets: Vec<i64> = seen.iter().map(|s| s.offset).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
    assert!(metric(&broker, "weir_cleaner_segments_cleaned_total") >= 1.0);
    assert!(metric(&broker, "weir_cleaner_bytes_read_total") > 0.0);
    assert!(metric(&broker, "weir_cleaner_records_removed_total") >= (KEYS * 3) as f64);

    // A fetch from an offset compaction removed returns the next kept record.
    let removed = produced[0].2;
    assert!(!want.values().any(|(o, _)| *o == removed));
    let from_removed = consume(&broker, TOPIC, 1, Offset::Offset(removed), 1, &[]);
    assert_eq!(from_removed[0].offset, offsets[0]);

    broker.stop();
    broker.restart();
    let after_restart = consume(&broker, TOPIC, 1, Offset::Beginning, want.len(), &[]);
    assert_eq!(as_map(&after_restart), want, "a restart keeps the result");

    // The idempotent producer's state survived compaction and the restart.
    let next = send(&producer, "key-19", Some("after-restart"));
    assert!(next > offset);
}
