//! kill -9 during heavy acks=all production: after a restart, no acknowledged record is missing,
//! the torn tail is gone, the indexes are rebuilt, and every stored batch passes its CRC-32C.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

const PARTITIONS: i32 = 4;

/// Records which ids the broker acknowledged.
struct Acknowledged(Arc<Mutex<HashSet<u64>>>);

impl ClientContext for Acknowledged {}

impl ProducerContext for Acknowledged {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, id: Box<u64>) {
        if result.is_ok() {
            self.0.lock().unwrap().insert(*id);
        }
    }
}

/// Produces acks=all records with unique ids until `stop`; returns the producer so the caller
/// can drop it after the broker died.
fn produce_until(
    broker: &Broker,
    first_id: u64,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<HashSet<u64>>>,
) -> std::thread::JoinHandle<u64> {
    let bootstrap = broker.bootstrap();
    std::thread::spawn(move || {
        let producer: ThreadedProducer<Acknowledged> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("message.timeout.ms", "5000")
            .set("retries", "0")
            .set("queue.buffering.max.messages", "20000")
            .create_with_context(Acknowledged(acked))
            .expect("producer");
        let padding = "p".repeat(400);
        let mut id = first_id;
        while !stop.load(Ordering::Relaxed) {
            let payload = format!("{id}:{padding}");
            let key = (id % 97).to_string();
            match producer.send(
                BaseRecord::with_opaque_to("crash", Box::new(id))
                    .key(&key)
                    .payload(&payload),
            ) {
                Ok(()) => id += 1,
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        let _ = producer.flush(Duration::from_secs(6));
        id
    })
}

/// Every id stored in the topic, read with CRC checks on.
fn stored_ids(broker: &Broker) -> Vec<u64> {
    let consumer = consumer(broker, &[("check.crcs", "true")]);
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0i64;
    for partition in 0..PARTITIONS {
        let (low, high) = consumer
            .fetch_watermarks("crash", partition, Duration::from_secs(10))
            .unwrap();
        remaining += high - low;
        assignment
            .add_partition_offset("crash", partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while remaining > 0 && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(500)) {
            let message = message.expect("a valid record (CRC checked)");
            let payload = std::str::from_utf8(message.payload().unwrap()).unwrap();
            ids.push(payload.split(':').next().unwrap().parse().unwrap());
            remaining -= 1;
        }
    }
    if remaining != 0 {
        let log = broker.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "could not read everything below the high watermarks ({remaining} left); broker log tail:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    ids
}

/// Reads every segment file directly and validates every batch's CRC.
fn validate_segment_files(broker: &Broker) -> usize {
    let mut batches = 0;
    for partition in 0..PARTITIONS {
        let dir = broker.data_dir.join(format!("crash-{partition}"));
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("log") {
                continue;
            }
            let bytes = bytes::Bytes::from(std::fs::read(&path).unwrap());
            for item in weir::records::batch::split(&bytes) {
                let (_, batch) = item.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                weir::records::batch::validate(&batch)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                batches += 1;
            }
        }
    }
    batches
}

#[test]
fn kill_9_during_acks_all_production_loses_no_acknowledged_record() {
    let mut broker = Broker::start(&[]);
    create_topic(
        &broker,
        "crash",
        PARTITIONS,
        &[("segment.bytes", "1048576")],
    );
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let mut next_id = 0;
    for round in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        let producer = produce_until(&broker, next_id, stop.clone(), acked.clone());
        // Let production run hot, then pull the plug mid-stream.
        let started = Instant::now();
        while acked.lock().unwrap().len() < 3000 * (round + 1)
            && started.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        broker.kill9();
        stop.store(true, Ordering::Relaxed);
        next_id = producer.join().unwrap() + 1_000_000;
        broker.restart();
        let log = broker.log();
        assert!(
            log.contains("not clean"),
            "a kill -9 restart recovers:\n{log}"
        );

        let stored: HashSet<u64> = stored_ids(&broker).into_iter().collect();
        let acked_now = acked.lock().unwrap().clone();
        let missing: Vec<&u64> = acked_now
            .iter()
            .filter(|id| !stored.contains(id))
            .take(10)
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} acknowledged records missing, e.g. {missing:?}",
            acked_now.iter().filter(|id| !stored.contains(id)).count()
        );
        assert!(
            acked_now.len() >= 3000 * (round + 1),
            "round {round}: production ran ({} acks)",
            acked_now.len()
        );
    }
    broker.stop();
    assert!(validate_segment_files(&broker) > 0);
}
