//! What a Kafka user does with librdkafka (the `rdkafka` crate) against a real `weir` process:
//! topic administration, producing with every codec and acks level, keys and partitions,
//! headers, timestamps, consuming from any position, DeleteRecords, idempotence, restarts.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::admin::{
    AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

fn block<F: std::future::Future>(future: F) -> F::Output {
    futures::executor::block_on(future)
}

/// Sends every record (pipelined) and returns (partition, offset) of each, in order.
fn send_all(
    producer: &FutureProducer,
    records: Vec<FutureRecord<'_, [u8], [u8]>>,
) -> Vec<(i32, i64)> {
    let futures: Vec<_> = records
        .into_iter()
        .map(|record| {
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("queued")
        })
        .collect();
    futures
        .into_iter()
        .map(|delivery| {
            block(delivery)
                .expect("delivery future")
                .map_err(|(e, _)| e)
                .expect("delivered")
        })
        .collect()
}

fn topic_names(broker: &Broker) -> Vec<String> {
    let consumer = consumer(broker, &[]);
    let metadata = consumer.fetch_metadata(None, TIMEOUT).expect("metadata");
    let mut names: Vec<String> = metadata
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        // Internal topics aside (as `kafka-topics --exclude-internal`): librdkafka clients with a
        // group.id create __consumer_offsets through FindCoordinator.
        .filter(|name| !weir::metadata::is_internal_topic(name))
        .collect();
    names.sort();
    names
}

fn watermarks(broker: &Broker, topic: &str, partition: i32) -> (i64, i64) {
    consumer(broker, &[])
        .fetch_watermarks(topic, partition, TIMEOUT)
        .expect("watermarks")
}

#[test]
fn topics_are_created_validated_listed_and_deleted() {
    let broker = Broker::start(&[]);
    let admin = admin(&broker);
    create_topic(&broker, "orders", 3, &[("retention.ms", "3600000")]);

    let again = block(admin.create_topics(
        &[NewTopic::new("orders", 3, TopicReplication::Fixed(1))],
        &AdminOptions::new(),
    ))
    .unwrap();
    assert_eq!(
        again[0],
        Err(("orders".to_string(), RDKafkaErrorCode::TopicAlreadyExists))
    );

    let zero = block(admin.create_topics(
        &[NewTopic::new("zero", 0, TopicReplication::Fixed(1))],
        &AdminOptions::new(),
    ))
    .unwrap();
    assert_eq!(
        zero[0],
        Err(("zero".to_string(), RDKafkaErrorCode::InvalidPartitions))
    );

    let bad_config =
        NewTopic::new("badcfg", 1, TopicReplication::Fixed(1)).set("retention.ms", "soon");
    let bad = block(admin.create_topics(&[bad_config], &AdminOptions::new())).unwrap();
    assert_eq!(
        bad[0],
        Err(("badcfg".to_string(), RDKafkaErrorCode::InvalidConfig))
    );

    let dry = block(admin.create_topics(
        &[NewTopic::new("dry", 2, TopicReplication::Fixed(1))],
        &AdminOptions::new().validate_only(true),
    ))
    .unwrap();
    assert_eq!(dry[0], Ok("dry".to_string()));
    assert_eq!(
        topic_names(&broker),
        vec!["orders".to_string()],
        "validate_only created nothing"
    );

    let metadata = consumer(&broker, &[])
        .fetch_metadata(Some("orders"), TIMEOUT)
        .unwrap();
    assert_eq!(metadata.topics()[0].partitions().len(), 3);
    assert_eq!(metadata.brokers().len(), 1);

    let producer = common::producer(&broker, &[]);
    send_all(
        &producer,
        vec![FutureRecord::to("orders")
            .partition(1)
            .payload(&b"before delete"[..])],
    );
    assert_eq!(watermarks(&broker, "orders", 1), (0, 1));

    let deleted = block(admin.delete_topics(&["orders"], &AdminOptions::new())).unwrap();
    assert_eq!(deleted[0], Ok("orders".to_string()));
    assert!(topic_names(&broker).is_empty());
    let missing = block(admin.delete_topics(&["orders"], &AdminOptions::new())).unwrap();
    assert_eq!(
        missing[0],
        Err((
            "orders".to_string(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))
    );

    create_topic(&broker, "orders", 3, &[]);
    assert_eq!(
        watermarks(&broker, "orders", 1),
        (0, 0),
        "a recreated topic starts empty"
    );
}

#[test]
fn partitions_grow_but_never_shrink() {
    let broker = Broker::start(&[]);
    let admin = admin(&broker);
    create_topic(&broker, "grow", 2, &[]);
    let grown =
        block(admin.create_partitions(&[NewPartitions::new("grow", 5)], &AdminOptions::new()))
            .unwrap();
    assert_eq!(grown[0], Ok("grow".to_string()));
    let metadata = consumer(&broker, &[])
        .fetch_metadata(Some("grow"), TIMEOUT)
        .unwrap();
    assert_eq!(metadata.topics()[0].partitions().len(), 5);
    let shrink =
        block(admin.create_partitions(&[NewPartitions::new("grow", 3)], &AdminOptions::new()))
            .unwrap();
    assert_eq!(
        shrink[0],
        Err(("grow".to_string(), RDKafkaErrorCode::InvalidPartitions))
    );
    // The new partitions take writes.
    let producer = common::producer(&broker, &[]);
    let delivered = send_all(
        &producer,
        vec![FutureRecord::to("grow").partition(4).payload(&b"x"[..])],
    );
    assert_eq!(delivered, vec![(4, 0)]);
}

#[test]
fn topic_and_broker_configs_are_described_and_altered() {
    let broker = Broker::start(&[]);
    let admin = admin(&broker);
    create_topic(&broker, "configured", 1, &[("cleanup.policy", "compact")]);
    let described = block(admin.describe_configs(
        &[ResourceSpecifier::Topic("configured")],
        &AdminOptions::new(),
    ))
    .unwrap();
    let resource = described[0].as_ref().expect("topic described");
    assert_eq!(
        resource
            .get("retention.ms")
            .and_then(|e| e.value.clone())
            .as_deref(),
        Some("604800000")
    );
    assert_eq!(
        resource
            .get("segment.bytes")
            .and_then(|e| e.value.clone())
            .as_deref(),
        Some("1073741824")
    );
    assert_eq!(
        resource
            .get("cleanup.policy")
            .and_then(|e| e.value.clone())
            .as_deref(),
        Some("compact")
    );
    assert_eq!(
        resource
            .get("max.message.bytes")
            .and_then(|e| e.value.clone())
            .as_deref(),
        Some("1048588")
    );
    assert!(resource.get("retention.ms").unwrap().is_default);
    assert!(!resource.get("cleanup.policy").unwrap().is_default);

    let altered = block(
        admin.alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic("configured"))
                .set("retention.ms", "60000")
                .set("message.timestamp.type", "LogAppendTime")],
            &AdminOptions::new(),
        ),
    )
    .unwrap();
    assert!(altered[0].is_ok(), "{:?}", altered[0]);
    let described = block(admin.describe_configs(
        &[ResourceSpecifier::Topic("configured")],
        &AdminOptions::new(),
    ))
    .unwrap();
    let resource = described[0].as_ref().unwrap();
    assert_eq!(
        resource
            .get("retention.ms")
            .and_then(|e| e.value.clone())
            .as_deref(),
        Some("60000")
    );
    // AlterConfigs replaces the set of overrides: cleanup.policy went back to its default.
    assert_eq!(
        resource
            .get("cleanup.policy")
            .and_then(|e| e.value.clone())
            .as_deref(),
        Some("delete")
    );

    // (The rdkafka crate drops per-resource AlterConfigs errors, so check the effect instead.)
    block(admin.alter_configs(
        &[AlterConfig::new(ResourceSpecifier::Topic("configured")).set("retention.ms", "later")],
        &AdminOptions::new(),
    ))
    .unwrap();
    let described = block(admin.describe_configs(
        &[ResourceSpecifier::Topic("configured")],
        &AdminOptions::new(),
    ))
    .unwrap();
    assert_eq!(
        described[0]
            .as_ref()
            .unwrap()
            .get("retention.ms")
            .and_then(|e| e.value.clone())
            .as_deref(),
        Some("60000"),
        "an invalid value changes nothing"
    );

    let broker_resource =
        block(admin.describe_configs(&[ResourceSpecifier::Broker(1)], &AdminOptions::new()))
            .unwrap();
    let entries = broker_resource[0].as_ref().expect("broker described");
    assert_eq!(
        entries
            .get("num.partitions")
            .and_then(|e| e.value.clone())
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        entries
            .get("log.retention.ms")
            .and_then(|e| e.value.clone())
            .as_deref(),
        Some("604800000")
    );
    let altered = block(admin.alter_configs(
        &[AlterConfig::new(ResourceSpecifier::Broker(1)).set("log.retention.ms", "120000")],
        &AdminOptions::new(),
    ))
    .unwrap();
    assert!(altered[0].is_ok(), "{:?}", altered[0]);
    create_topic(&broker, "inherits", 1, &[]);
    let described = block(admin.describe_configs(
        &[ResourceSpecifier::Topic("inherits")],
        &AdminOptions::new(),
    ))
    .unwrap();
    assert_eq!(
        described[0]
            .as_ref()
            .unwrap()
            .get("retention.ms")
            .and_then(|e| e.value.clone())
            .as_deref(),
        Some("120000")
    );
}

#[test]
fn unknown_topics_are_auto_created_unless_disabled() {
    let broker = Broker::start(&["num.partitions=3"]);
    let producer = common::producer(&broker, &[]);
    let delivered = send_all(
        &producer,
        vec![FutureRecord::to("auto").key(&b"k"[..]).payload(&b"v"[..])],
    );
    assert_eq!(delivered.len(), 1);
    let metadata = consumer(&broker, &[])
        .fetch_metadata(Some("auto"), TIMEOUT)
        .unwrap();
    assert_eq!(
        metadata.topics()[0].partitions().len(),
        3,
        "num.partitions applies to auto-created topics"
    );

    let strict = Broker::start(&["auto.create.topics.enable=false"]);
    let metadata = consumer(&strict, &[])
        .fetch_metadata(Some("nope"), TIMEOUT)
        .unwrap();
    assert_eq!(
        metadata.topics()[0].error(),
        Some(rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
    );
    assert!(topic_names(&strict).is_empty());
}

#[test]
fn every_codec_and_acks_level_round_trips() {
    let broker = Broker::start(&[]);
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        for acks in ["0", "1", "all"] {
            let topic = format!("codec-{codec}-{acks}");
            create_topic(&broker, &topic, 2, &[]);
            let producer = common::producer(
                &broker,
                &[
                    ("compression.codec", codec),
                    ("acks", acks),
                    ("linger.ms", "5"),
                ],
            );
            let payloads: Vec<Vec<u8>> = (0..200)
                .map(|i| format!("{codec}/{acks}/record {i} {}", "x".repeat(i % 50)).into_bytes())
                .collect();
            let keys: Vec<Vec<u8>> = (0..200)
                .map(|i| format!("key-{}", i % 7).into_bytes())
                .collect();
            let records = payloads
                .iter()
                .zip(&keys)
                .map(|(p, k)| FutureRecord::to(&topic).key(&k[..]).payload(&p[..]))
                .collect();
            send_all(&producer, records);
            let seen = consume(&broker, &topic, 2, Offset::Beginning, 200, &[]);
            assert_eq!(seen.len(), 200, "{codec} acks={acks}");
            let mut values: Vec<Vec<u8>> = seen.iter().map(|s| s.value.clone().unwrap()).collect();
            values.sort();
            let mut expected = payloads.clone();
            expected.sort();
            assert_eq!(values, expected, "{codec} acks={acks}");
        }
    }
}

/// With Weir's cache off every fetch reads segment files (O_DIRECT through glommio). On a fresh
/// data directory those reads failed with EOPNOTSUPP on devices without polled I/O (glommio
/// took the device for pollable after probing an empty new segment), which failed the partition.
#[test]
fn records_are_read_back_from_disk_with_the_cache_off() {
    let broker = Broker::start(&["weir.cache.bytes=0"]);
    create_topic(&broker, "uncached", 2, &[("segment.bytes", "1048576")]);
    let producer = common::producer(&broker, &[("linger.ms", "5")]);
    let payloads: Vec<Vec<u8>> = (0..3000)
        .map(|i| format!("record {i:05} {}", "x".repeat(1000)).into_bytes())
        .collect();
    let records = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            FutureRecord::to("uncached")
                .partition(i as i32 % 2)
                .payload(&p[..])
        })
        .collect();
    send_all(&producer, records);
    let seen = consume(&broker, "uncached", 2, Offset::Beginning, 3000, &[]);
    assert_eq!(seen.len(), 3000);
    for partition in 0..2 {
        let values: Vec<&Vec<u8>> = seen
            .iter()
            .filter(|s| s.partition == partition)
            .map(|s| s.value.as_ref().unwrap())
            .collect();
        let expected: Vec<&Vec<u8>> = payloads
            .iter()
            .skip(partition as usize)
            .step_by(2)
            .collect();
        assert!(
            values == expected,
            "partition {partition} read back differently"
        );
    }
    assert!(!broker.log().contains("storage error"), "{}", broker.log());
}

#[test]
fn keyed_records_land_on_murmur2_partitions_in_order_and_null_keys_spread() {
    let broker = Broker::start(&[]);
    create_topic(&broker, "keyed", 12, &[]);
    let producer = common::producer(
        &broker,
        &[("partitioner", "murmur2_random"), ("linger.ms", "2")],
    );
    let keys: Vec<String> = (0..600).map(|i| format!("user-{}", i % 40)).collect();
    let values: Vec<String> = (0..600).map(|i| format!("{i}")).collect();
    let records = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| {
            FutureRecord::to("keyed")
                .key(k.as_bytes())
                .payload(v.as_bytes())
        })
        .collect();
    send_all(&producer, records);
    let seen = consume(&broker, "keyed", 12, Offset::Beginning, 600, &[]);
    assert_eq!(seen.len(), 600);
    let mut last_per_key: std::collections::HashMap<Vec<u8>, i64> = Default::default();
    for record in &seen {
        let key = record.key.clone().unwrap();
        let expected = weir::records::murmur2::partition_for_key(&key, 12);
        assert_eq!(
            record.partition,
            expected,
            "key {:?}",
            String::from_utf8_lossy(&key)
        );
        let value: i64 = String::from_utf8(record.value.clone().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        if let Some(previous) = last_per_key.insert(key, value) {
            assert!(value > previous, "per-key order kept");
        }
    }

    let nulls: Vec<String> = (0..120).map(|i| format!("n{i}")).collect();
    let spreading = common::producer(
        &broker,
        &[
            ("partitioner", "murmur2_random"),
            ("linger.ms", "0"),
            ("sticky.partitioning.linger.ms", "0"),
        ],
    );
    let delivered = send_all(
        &spreading,
        nulls
            .iter()
            .map(|v| FutureRecord::to("keyed").payload(v.as_bytes()))
            .collect(),
    );
    let partitions: std::collections::HashSet<i32> = delivered.iter().map(|(p, _)| *p).collect();
    assert!(
        partitions.len() > 3,
        "null keys spread over partitions: {partitions:?}"
    );
}

/// Kafka refuses records without a key on compacted topics (INVALID_RECORD), whole batches at a
/// time, compressed or not.
#[test]
fn compacted_topics_refuse_records_without_keys() {
    let broker = Broker::start(&[]);
    create_topic(&broker, "compacted", 1, &[("cleanup.policy", "compact")]);
    create_topic(&broker, "deleted", 1, &[]);
    for codec in ["none", "zstd"] {
        let producer = common::producer(
            &broker,
            &[
                ("compression.codec", codec),
                ("message.send.max.retries", "0"),
            ],
        );
        let keyless = block(producer.send(
            FutureRecord::<[u8], [u8]>::to("compacted").payload(&b"no key"[..]),
            TIMEOUT,
        ));
        match keyless {
            Err((KafkaError::MessageProduction(code), _)) => {
                assert_eq!(code, RDKafkaErrorCode::InvalidRecord, "{codec}")
            }
            other => panic!("{codec}: a keyless record was not refused: {other:?}"),
        }
        let keyed = FutureRecord::to("compacted")
            .key(&b"k"[..])
            .payload(&b"kept"[..]);
        send_all(&producer, vec![keyed]);
        let elsewhere = FutureRecord::<[u8], [u8]>::to("deleted").payload(&b"fine"[..]);
        send_all(&producer, vec![elsewhere]);
    }
    let seen = consume(&broker, "compacted", 1, Offset::Beginning, 2, &[]);
    assert_eq!(
        seen.iter().map(|s| s.offset).collect::<Vec<_>>(),
        vec![0, 1],
        "only the keyed records were stored"
    );
    assert!(seen.iter().all(|s| s.key.as_deref() == Some(&b"k"[..])));
    assert_eq!(watermarks(&broker, "deleted", 0), (0, 2));
}

#[test]
fn headers_nulls_empties_large_records_and_timestamps_survive() {
    let broker = Broker::start(&[]);
    create_topic(&broker, "exact", 1, &[]);
    let producer = common::producer(&broker, &[("message.max.bytes", "1048588")]);
    let big = vec![0xabu8; 1_000_000];
    let binary: Vec<u8> = (0..=255u8).collect();
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "dup",
            value: Some(&b"one"[..]),
        })
        .insert(Header {
            key: "dup",
            value: Some(&b"two"[..]),
        })
        .insert(Header {
            key: "bin",
            value: Some(&binary[..]),
        })
        .insert(Header {
            key: "none",
            value: None::<&[u8]>,
        });
    let created = 1_600_000_000_123i64;
    send_all(
        &producer,
        vec![
            FutureRecord::to("exact")
                .key(&b""[..])
                .payload(&b""[..])
                .timestamp(created)
                .headers(headers),
            FutureRecord::<[u8], [u8]>::to("exact").timestamp(created + 1),
            FutureRecord::to("exact")
                .key(&b"big"[..])
                .payload(&big[..])
                .timestamp(created + 2),
        ],
    );
    let seen = consume(&broker, "exact", 1, Offset::Beginning, 3, &[]);
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].key, Some(Vec::new()), "empty key is not null");
    assert_eq!(seen[0].value, Some(Vec::new()), "empty value is not null");
    assert_eq!(seen[0].timestamp, Some(created), "CreateTime kept");
    assert_eq!(
        seen[0].headers,
        vec![
            ("dup".to_string(), Some(b"one".to_vec())),
            ("dup".to_string(), Some(b"two".to_vec())),
            ("bin".to_string(), Some(binary.clone())),
            ("none".to_string(), None),
        ]
    );
    assert_eq!(seen[1].key, None, "null key");
    assert_eq!(seen[1].value, None, "null value (tombstone)");
    assert_eq!(
        seen[2].value.as_deref(),
        Some(&big[..]),
        "1 MB record intact"
    );

    // Over max.message.bytes: refused with MESSAGE_TOO_LARGE, not stored.
    create_topic(&broker, "small", 1, &[("max.message.bytes", "2000")]);
    let plain = common::producer(&broker, &[("compression.codec", "none")]);
    let result = block(
        plain.send(
            FutureRecord::to("small")
                .payload(&vec![1u8; 5000][..])
                .key(&b"k"[..]),
            TIMEOUT,
        ),
    );
    match result {
        Err((KafkaError::MessageProduction(code), _)) => {
            assert_eq!(code, RDKafkaErrorCode::MessageSizeTooLarge)
        }
        other => panic!("expected MESSAGE_TOO_LARGE, got {other:?}"),
    }
    assert_eq!(watermarks(&broker, "small", 0), (0, 0));
}

#[test]
fn log_append_time_topics_stamp_the_broker_clock() {
    let broker = Broker::start(&[]);
    create_topic(
        &broker,
        "stamped",
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    );
    let producer = common::producer(&broker, &[("compression.codec", "lz4")]);
    let before = weir::event::now_ms();
    send_all(
        &producer,
        (0..10)
            .map(|_| {
                FutureRecord::to("stamped")
                    .payload(&b"v"[..])
                    .timestamp(1000)
            })
            .collect(),
    );
    let after = weir::event::now_ms();
    let consumer = consumer(&broker, &[]);
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("stamped", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut stamped = 0;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while stamped < 10 && std::time::Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            use rdkafka::Message;
            let message = message.unwrap();
            match message.timestamp() {
                rdkafka::Timestamp::LogAppendTime(t) => assert!(
                    (before..=after).contains(&t),
                    "{t} not in {before}..{after}"
                ),
                other => panic!("expected LogAppendTime, got {other:?}"),
            }
            stamped += 1;
        }
    }
    assert_eq!(stamped, 10);
}

#[test]
fn consumers_start_at_beginning_end_offset_or_timestamp_and_delete_records_moves_the_start() {
    let broker = Broker::start(&[]);
    create_topic(&broker, "positions", 1, &[]);
    let producer = common::producer(&broker, &[("linger.ms", "0")]);
    let base = 1_700_000_000_000i64;
    let values: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    for chunk in values.chunks(10) {
        send_all(
            &producer,
            chunk
                .iter()
                .map(|v| {
                    FutureRecord::to("positions")
                        .payload(v.as_bytes())
                        .timestamp(base + v.parse::<i64>().unwrap() * 1000)
                })
                .collect(),
        );
    }
    assert_eq!(watermarks(&broker, "positions", 0), (0, 100));
    let from_42 = consume(&broker, "positions", 1, Offset::Offset(42), 5, &[]);
    assert_eq!(
        from_42.iter().map(|s| s.offset).collect::<Vec<_>>(),
        vec![42, 43, 44, 45, 46]
    );

    let consumer = consumer(&broker, &[]);
    let mut query = TopicPartitionList::new();
    query
        .add_partition_offset("positions", 0, Offset::Offset(base + 50_500))
        .unwrap();
    let found = consumer.offsets_for_times(query, TIMEOUT).unwrap();
    assert_eq!(
        found.find_partition("positions", 0).unwrap().offset(),
        Offset::Offset(51)
    );
    let mut beyond = TopicPartitionList::new();
    beyond
        .add_partition_offset("positions", 0, Offset::Offset(base + 10_000_000))
        .unwrap();
    let found = consumer.offsets_for_times(beyond, TIMEOUT).unwrap();
    assert_eq!(
        found.find_partition("positions", 0).unwrap().offset(),
        Offset::End
    );

    // From the end: only what is produced afterwards.
    let tail = std::thread::spawn({
        let bootstrap = broker.bootstrap();
        move || {
            std::thread::sleep(Duration::from_secs(2));
            let producer: FutureProducer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .create()
                .unwrap();
            block(producer.send(
                FutureRecord::<[u8], [u8]>::to("positions").payload(&b"late"[..]),
                TIMEOUT,
            ))
            .unwrap();
        }
    });
    let late = consume(&broker, "positions", 1, Offset::End, 1, &[]);
    tail.join().unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!(
        (late[0].offset, late[0].value.as_deref()),
        (100, Some(&b"late"[..]))
    );

    let mut cut = TopicPartitionList::new();
    cut.add_partition_offset("positions", 0, Offset::Offset(30))
        .unwrap();
    let result = block(admin(&broker).delete_records(&cut, &AdminOptions::new())).unwrap();
    assert_eq!(
        result.find_partition("positions", 0).unwrap().offset(),
        Offset::Offset(30)
    );
    assert_eq!(watermarks(&broker, "positions", 0), (30, 101));
    let first = consume(&broker, "positions", 1, Offset::Beginning, 1, &[]);
    assert_eq!(first[0].offset, 30);
}

#[test]
fn idempotent_producer_writes_each_record_once_in_order() {
    let broker = Broker::start(&[]);
    create_topic(&broker, "exactly", 3, &[]);
    let producer = common::producer(
        &broker,
        &[
            ("enable.idempotence", "true"),
            ("linger.ms", "1"),
            ("max.in.flight.requests.per.connection", "5"),
        ],
    );
    let values: Vec<String> = (0..3000).map(|i| format!("{i:05}")).collect();
    let records = values
        .iter()
        .map(|v| {
            FutureRecord::to("exactly")
                .key(&v.as_bytes()[4..])
                .payload(v.as_bytes())
        })
        .collect();
    send_all(&producer, records);
    let seen = consume(&broker, "exactly", 3, Offset::Beginning, 3000, &[]);
    assert_eq!(seen.len(), 3000);
    let unique: std::collections::HashSet<_> = seen.iter().map(|s| s.value.clone()).collect();
    assert_eq!(unique.len(), 3000, "no duplicates");
    for partition in 0..3 {
        let in_partition: Vec<&Seen> = seen.iter().filter(|s| s.partition == partition).collect();
        assert!(
            in_partition.windows(2).all(|w| w[0].value < w[1].value),
            "partition {partition} in send order"
        );
    }
    assert!(
        broker.metrics().contains("weir_partition_producers"),
        "producer state is exported"
    );
}

#[test]
fn topics_configs_and_records_survive_restarts() {
    let mut broker = Broker::start(&[]);
    create_topic(&broker, "durable", 2, &[("retention.ms", "86400000")]);
    let producer = common::producer(&broker, &[("acks", "all")]);
    let values: Vec<String> = (0..500).map(|i| format!("v{i}")).collect();
    send_all(
        &producer,
        values
            .iter()
            .map(|v| {
                FutureRecord::to("durable")
                    .key(v.as_bytes())
                    .payload(v.as_bytes())
            })
            .collect(),
    );
    drop(producer);
    broker.stop();
    assert!(
        broker.data_dir.join(".weir_clean_shutdown").exists(),
        "clean shutdown marker written"
    );
    broker.restart();
    let seen = consume(&broker, "durable", 2, Offset::Beginning, 500, &[]);
    assert_eq!(seen.len(), 500);
    let described = block(
        admin(&broker)
            .describe_configs(&[ResourceSpecifier::Topic("durable")], &AdminOptions::new()),
    )
    .unwrap();
    assert_eq!(
        described[0]
            .as_ref()
            .unwrap()
            .get("retention.ms")
            .and_then(|e| e.value.clone())
            .as_deref(),
        Some("86400000")
    );

    // Appends continue after a restart, and a kill -9 keeps everything acknowledged.
    let again = common::producer(&broker, &[("acks", "all")]);
    send_all(
        &again,
        values
            .iter()
            .map(|v| {
                FutureRecord::to("durable")
                    .key(v.as_bytes())
                    .payload(v.as_bytes())
            })
            .collect(),
    );
    drop(again);
    broker.kill9();
    broker.restart();
    let seen = consume(&broker, "durable", 2, Offset::Beginning, 1000, &[]);
    assert_eq!(seen.len(), 1000);
    let (low0, high0) = watermarks(&broker, "durable", 0);
    let (low1, high1) = watermarks(&broker, "durable", 1);
    assert_eq!((low0, low1, high0 + high1), (0, 0, 1000));
}

#[test]
fn retention_deletes_old_segments_and_write_caching_topics_serve_acks_all() {
    let broker = Broker::start(&["log.retention.check.interval.ms=200"]);
    create_topic(
        &broker,
        "short",
        1,
        &[("segment.bytes", "1048576"), ("retention.bytes", "1048576")],
    );
    let producer = common::producer(
        &broker,
        &[
            ("acks", "all"),
            ("linger.ms", "5"),
            ("compression.codec", "none"),
        ],
    );
    let value = vec![b'r'; 1000];
    for _ in 0..4 {
        send_all(
            &producer,
            (0..1000)
                .map(|_| FutureRecord::to("short").key(&b"k"[..]).payload(&value[..]))
                .collect(),
        );
    }
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut low = 0;
    while low == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        low = watermarks(&broker, "short", 0).0;
    }
    assert!(low > 0, "retention moved the log start");
    let (_, high) = watermarks(&broker, "short", 0);
    assert_eq!(high, 4000);
    assert!(
        high - low >= 1000,
        "at least retention.bytes worth of records stay"
    );
    let first = consume(&broker, "short", 1, Offset::Beginning, 1, &[]);
    assert_eq!(first[0].offset, low, "consumers start at the new log start");
    let segments = std::fs::read_dir(broker.data_dir.join("short-0"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count();
    assert!(
        segments <= 3,
        "old segment files are gone ({segments} left)"
    );

    create_topic(&broker, "cached", 2, &[("write.caching", "true")]);
    let values: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    send_all(
        &producer,
        values
            .iter()
            .map(|v| {
                FutureRecord::to("cached")
                    .key(v.as_bytes())
                    .payload(v.as_bytes())
            })
            .collect(),
    );
    assert_eq!(
        consume(&broker, "cached", 2, Offset::Beginning, 1000, &[]).len(),
        1000
    );
}

#[test]
fn a_fresh_broker_without_cache_serves_every_record_from_disk() {
    // No batch cache: every fetch is a cold O_DIRECT read on a data directory whose first files
    // were empty (the poll-ring probe case), and batches of ~100-400 KiB make the 1 MiB
    // read-ahead windows end inside batches.
    let broker = Broker::start(&["weir.cache.bytes=0"]);
    create_topic(&broker, "cold", 3, &[]);
    let producer = common::producer(
        &broker,
        &[
            ("linger.ms", "50"),
            ("batch.size", "400000"),
            ("acks", "all"),
        ],
    );
    let payloads: Vec<Vec<u8>> = (0..6000u32)
        .map(|i| {
            let mut value = vec![(i % 251) as u8; 1000];
            value[..4].copy_from_slice(&i.to_be_bytes());
            value
        })
        .collect();
    let records = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            FutureRecord::<[u8], [u8]>::to("cold")
                .partition((i % 3) as i32)
                .payload(&p[..])
        })
        .collect();
    send_all(&producer, records);
    let seen = consume(&broker, "cold", 3, Offset::Beginning, 6000, &[]);
    assert_eq!(seen.len(), 6000, "stalled: {}", broker.log());
    let mut numbers: Vec<u32> = seen
        .iter()
        .map(|s| u32::from_be_bytes(s.value.as_ref().unwrap()[..4].try_into().unwrap()))
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..6000).collect::<Vec<_>>());
    assert!(!broker.log().contains("storage error"), "{}", broker.log());
}

/// The request latency in /metrics covers a deferred reply until it is ready: a consumer
/// long-polling an empty partition (fetch.wait.max.ms 400) shows Fetch requests of ~400 ms, not
/// the microseconds of their first phase.
#[test]
fn request_latency_includes_the_long_poll_of_a_fetch() {
    let broker = Broker::start(&[]);
    create_topic(&broker, "quiet", 1, &[]);
    let consumer = common::consumer(&broker, &[("fetch.wait.max.ms", "400")]);
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("quiet", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        assert!(consumer.poll(Duration::from_millis(100)).is_none());
    }
    let metrics = broker.metrics();
    let median: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("weir_request_latency_seconds{")
                && l.contains("api=\"Fetch\"")
                && l.contains("quantile=\"0.5\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .fold(0.0, f64::max);
    assert!(
        (0.3..1.0).contains(&median),
        "Fetch median latency {median} s: {metrics}"
    );
}
