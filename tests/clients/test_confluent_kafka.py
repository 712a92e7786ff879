# confluent-kafka (librdkafka through Python) against a real Weir broker:
#   AdminClient — create (partitions, configs, validate_only, broker defaults; refused:
#   duplicates, 0 partitions, replication 3), list, describe topics and the cluster, create
#   partitions, describe / alter / incrementally alter configs (SET, DELETE, APPEND, SUBTRACT),
#   delete, delete_records, list_offsets (earliest, latest, max timestamp, by timestamp);
#   Producer — every codec x acks 0/1/all, idempotence, headers (null values too), timestamps,
#   MSG_SIZE_TOO_LARGE, records above 1 MB with a topic override;
#   Consumer — assign with explicit offsets (a group.id but no commits), seek, watermarks,
#   offsets_for_times, LogAppendTime;
#   cross-client — records produced by confluent-kafka read by kafka-python and the reverse,
#   with the same key placement.

import confluent_kafka
import kafka
import pytest
from confluent_kafka import (KafkaError, KafkaException, TopicPartition, OFFSET_BEGINNING,
                             OFFSET_END)
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions,
                                   NewTopic, OffsetSpec, ResourceType)

from clientlib import (BOOTSTRAP, CREATE_TIME, LOG_APPEND_TIME, NODE_ID, by_partition, ck_admin,
                       ck_consumer, ck_create, ck_produce_all, ck_producer, ck_read, ck_rec,
                       kafka_partition_for, kp_producer, kp_read, now_ms, payload, unique,
                       wait_for)

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
ACKS = ["0", "1", "all"]
TIMEOUT = 30


@pytest.fixture(scope="module")
def admin():
    return ck_admin()


def error_code_of(future):
    """The KafkaError code a failed admin future carries (or None when it succeeded)."""
    try:
        future.result(timeout=TIMEOUT)
    except KafkaException as exception:
        return exception.args[0].code()
    return None


def topic_configs(admin, topic):
    resource = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([resource])[resource].result(timeout=TIMEOUT)


def list_partitions(admin, topic):
    metadata = admin.list_topics(topic=topic, timeout=TIMEOUT)
    described = metadata.topics[topic]
    assert described.error is None, described.error
    return described.partitions


def test_admin_creates_describes_and_deletes_topics(admin):
    topic = unique("ck-admin")
    ck_create(admin, topic, 4, {"retention.ms": "7200000", "segment.bytes": "104857600"})
    partitions = list_partitions(admin, topic)
    assert sorted(partitions) == [0, 1, 2, 3]
    for p in partitions.values():
        assert p.leader == NODE_ID and p.replicas == [NODE_ID] and p.isrs == [NODE_ID]

    # Duplicates, bad partition counts and replication factors are refused.
    futures = admin.create_topics([NewTopic(topic, 4, 1)])
    assert error_code_of(futures[topic]) == KafkaError.TOPIC_ALREADY_EXISTS
    zero = unique("ck-zero")
    futures = admin.create_topics([NewTopic(zero, 0, 1)])
    assert error_code_of(futures[zero]) == KafkaError.INVALID_PARTITIONS
    replicated = unique("ck-rf3")
    futures = admin.create_topics([NewTopic(replicated, 1, 3)])
    assert error_code_of(futures[replicated]) == KafkaError.INVALID_REPLICATION_FACTOR
    # validate_only checks but creates nothing.
    validated = unique("ck-validate")
    futures = admin.create_topics([NewTopic(validated, 2, 1)], validate_only=True)
    assert error_code_of(futures[validated]) is None
    listed = admin.list_topics(timeout=TIMEOUT).topics
    assert topic in listed
    assert not {zero, replicated, validated} & set(listed)

    # describe_topics (Metadata with topic ids) and describe_cluster.
    described = admin.describe_topics(
        confluent_kafka.TopicCollection([topic]))[topic].result(timeout=TIMEOUT)
    assert described.name == topic
    assert [p.id for p in described.partitions] == [0, 1, 2, 3]
    assert all(p.leader.id == NODE_ID for p in described.partitions)
    cluster = admin.describe_cluster().result(timeout=TIMEOUT)
    assert [n.id for n in cluster.nodes] == [NODE_ID]
    assert cluster.controller.id == NODE_ID
    assert cluster.cluster_id

    # Grow (never shrink).
    futures = admin.create_partitions([NewPartitions(topic, 6)])
    assert error_code_of(futures[topic]) is None
    assert sorted(list_partitions(admin, topic)) == list(range(6))
    futures = admin.create_partitions([NewPartitions(topic, 2)])
    assert error_code_of(futures[topic]) == KafkaError.INVALID_PARTITIONS

    futures = admin.delete_topics([topic], operation_timeout=TIMEOUT)
    assert error_code_of(futures[topic]) is None
    wait_for(lambda: topic not in admin.list_topics(timeout=TIMEOUT).topics, "deletion")
    futures = admin.delete_topics([topic], operation_timeout=TIMEOUT)
    assert error_code_of(futures[topic]) == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_configs_are_described_altered_and_incrementally_altered(admin):
    topic = unique("ck-configs")
    ck_create(admin, topic, 1, {"cleanup.policy": "compact"})
    configs = topic_configs(admin, topic)
    expected = {"retention.ms": "604800000", "segment.bytes": "1073741824",
                "max.message.bytes": "1048588", "cleanup.policy": "compact",
                "message.timestamp.type": "CreateTime"}
    for name, value in expected.items():
        assert configs[name].value == value, name
    assert configs["retention.ms"].is_default
    assert configs["retention.ms"].source == confluent_kafka.admin.ConfigSource.DEFAULT_CONFIG.value
    assert not configs["cleanup.policy"].is_default
    assert configs["cleanup.policy"].source == \
        confluent_kafka.admin.ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    # Incremental: SET one, DELETE another (back to its default), APPEND to a list.
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "3600000",
                    incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    admin.incremental_alter_configs([resource])[resource].result(timeout=TIMEOUT)
    configs = topic_configs(admin, topic)
    assert configs["retention.ms"].value == "3600000"
    assert configs["cleanup.policy"].value == "delete" and configs["cleanup.policy"].is_default
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND)])
    admin.incremental_alter_configs([resource])[resource].result(timeout=TIMEOUT)
    assert topic_configs(admin, topic)["cleanup.policy"].value == "delete,compact"
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SUBTRACT)])
    admin.incremental_alter_configs([resource])[resource].result(timeout=TIMEOUT)
    assert topic_configs(admin, topic)["cleanup.policy"].value == "compact"

    # An invalid value is refused and changes nothing.
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "tomorrow", incremental_operation=AlterConfigOpType.SET)])
    future = admin.incremental_alter_configs([resource])[resource]
    assert error_code_of(future) == KafkaError.INVALID_CONFIG
    assert topic_configs(admin, topic)["retention.ms"].value == "3600000"

    # The broker: Kafka's names and defaults.
    broker = ConfigResource(ResourceType.BROKER, str(NODE_ID))
    configs = admin.describe_configs([broker])[broker].result(timeout=TIMEOUT)
    assert configs["log.retention.ms"].value == "604800000"
    assert configs["num.partitions"].value == "1"
    assert configs["auto.create.topics.enable"].value == "true"


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("acks", ACKS, ids=["acks0", "acks1", "acksall"])
def test_every_codec_and_acks_round_trips(admin, codec, acks):
    topic = unique("ck-codec-%s-%s" % (codec, acks))
    ck_create(admin, topic, 3)
    producer = ck_producer(**{"acks": acks, "compression.type": codec, "linger.ms": 5})
    sent = [dict(topic=topic, key=b"key-%d" % i, value=b"value-%d-" % i + b"z" * (i % 50),
                 headers=[("i", b"%d" % i), ("dup", b"a"), ("dup", b"b")]) for i in range(150)]
    before = now_ms()
    reports = ck_produce_all(producer, sent)
    after = now_ms()
    if acks != "0":
        for p in range(3):
            offsets = [r.offset() for r in reports if r.partition() == p]
            assert offsets == list(range(len(offsets))), (p, offsets)
    expected = {m["key"]: (r.partition(), m["key"], m["value"], m["headers"])
                for m, r in zip(sent, reports)}
    for read in (ck_read, kp_read):
        records = read(topic, 3, len(sent))
        assert {r.key: (r.partition,) + payload(r) for r in records} == expected, read.__name__
        assert all(r.timestamp_type == CREATE_TIME and before <= r.timestamp <= after
                   for r in records)


def sent_by_number(records):
    """{header "n": (key, value, headers, timestamp)} of what was sent."""
    return {h[0][1]: (k, v, h, t) for k, v, h, t in records}


def seen_by_number(records):
    return {r.headers[0][1]: (r.key, r.value, r.headers, r.timestamp) for r in records}


def test_cross_client_records_read_the_same_both_ways(admin):
    partitions = 4
    stamp = now_ms() - 60000
    records = [(b"k%d" % i if i % 5 else None, b"v%d" % i if i % 7 else b"",
                [("n", b"%d" % i), ("bin", bytes([i, 0, 255]))], stamp + i) for i in range(60)]

    # confluent-kafka writes (murmur2_random: the Java client's placement), kafka-python reads.
    topic = unique("ck-to-kp")
    ck_create(admin, topic, partitions)
    producer = ck_producer(**{"partitioner": "murmur2_random", "compression.type": "lz4"})
    reports = ck_produce_all(producer, [
        dict(topic=topic, key=k, value=v, headers=h, timestamp=t) for k, v, h, t in records])
    for (k, _v, _h, _t), report in zip(records, reports):
        if k is not None:
            assert report.partition() == kafka_partition_for(k, partitions), k
    read = kp_read(topic, partitions, len(records))
    assert seen_by_number(read) == sent_by_number(records)

    # kafka-python writes, confluent-kafka reads: same partitions for the same keys.
    topic2 = unique("kp-to-ck")
    ck_create(admin, topic2, partitions)
    producer = kp_producer(acks="all", compression_type="snappy")
    futures = [producer.send(topic2, key=k, value=v, headers=h, timestamp_ms=t)
               for k, v, h, t in records]
    producer.flush()
    metadata = [f.get(timeout=TIMEOUT) for f in futures]
    producer.close()
    read = ck_read(topic2, partitions, len(records))
    assert seen_by_number(read) == sent_by_number(records)
    placed = {r.key: r.partition for r in read if r.key is not None}
    assert placed == {k: report.partition() for (k, _v, _h, _t), report in zip(records, reports)
                      if k is not None}
    assert all(m.partition == placed[k] for (k, _v, _h, _t), m in zip(records, metadata)
               if k is not None)


def test_headers_with_null_values_and_duplicates(admin):
    topic = unique("ck-headers")
    ck_create(admin, topic, 1)
    headers = [("a", b"1"), ("nul", None), ("a", b"2"), ("empty", b""),
               ("bin", bytes(range(255, -1, -1)))]
    producer = ck_producer()
    ck_produce_all(producer, [dict(topic=topic, partition=0, value=b"h", headers=headers),
                              dict(topic=topic, partition=0, value=b"none")])
    records = ck_read(topic, 1, 2)
    assert records[0].headers == headers
    assert records[1].headers == []
    # kafka-python reads a null header value as None too.
    records = kp_read(topic, 1, 2)
    assert records[0].headers == headers


def test_consumer_positions_watermarks_and_offsets_for_times(admin):
    topic = unique("ck-positions")
    ck_create(admin, topic, 2)
    base = now_ms() - 7200 * 1000
    producer = ck_producer(**{"acks": "all"})
    ck_produce_all(producer, [dict(topic=topic, partition=0, value=b"%d" % i,
                                   timestamp=base + 1000 * i) for i in range(20)])
    consumer = ck_consumer()
    try:
        tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
        assert consumer.get_watermark_offsets(tp0, timeout=TIMEOUT) == (0, 20)
        assert consumer.get_watermark_offsets(tp1, timeout=TIMEOUT) == (0, 0)
        found = consumer.offsets_for_times(
            [TopicPartition(topic, 0, base + 4500), TopicPartition(topic, 1, base)],
            timeout=TIMEOUT)
        assert [(f.partition, f.offset) for f in found] == [(0, 5), (1, -1)]
        found = consumer.offsets_for_times([TopicPartition(topic, 0, base + 60000)],
                                           timeout=TIMEOUT)
        assert found[0].offset == -1, "after the last record: end (-1)"

        consumer.assign([TopicPartition(topic, 0, 12)])
        first = wait_for(lambda: consumer.poll(0.2), "a record at offset 12")
        assert (first.offset(), first.value(), first.timestamp()) == (
            12, b"12", (confluent_kafka.TIMESTAMP_CREATE_TIME, base + 12000))
        consumer.seek(TopicPartition(topic, 0, 3))
        again = wait_for(lambda: consumer.poll(0.2), "a record at offset 3")
        assert (again.offset(), again.value()) == (3, b"3")
        consumer.assign([TopicPartition(topic, 0, OFFSET_END)])
        producer = ck_producer()
        ck_produce_all(producer, [dict(topic=topic, partition=0, value=b"tail")])
        tail = wait_for(lambda: consumer.poll(0.2), "the record after the end")
        assert (tail.offset(), tail.value()) == (20, b"tail")
    finally:
        consumer.close()
    # kafka-python, from the beginning, sees the same 21 records.
    assert [r.value for r in kp_read(topic, 2, 21)] == [b"%d" % i for i in range(20)] + [b"tail"]


def test_delete_records_and_list_offsets(admin):
    topic = unique("ck-delete")
    ck_create(admin, topic, 1)
    ck_produce_all(ck_producer(), [dict(topic=topic, partition=0, value=b"%d" % i,
                                        timestamp=1_700_000_000_000 + i) for i in range(10)])
    result = admin.delete_records([TopicPartition(topic, 0, 7)])
    [(_tp, future)] = result.items()
    deleted = future.result(timeout=TIMEOUT)
    assert deleted.low_watermark == 7
    offsets = admin.list_offsets({TopicPartition(topic, 0): OffsetSpec.earliest()})
    assert list(offsets.values())[0].result(timeout=TIMEOUT).offset == 7
    offsets = admin.list_offsets({TopicPartition(topic, 0): OffsetSpec.latest()})
    assert list(offsets.values())[0].result(timeout=TIMEOUT).offset == 10
    offsets = admin.list_offsets({TopicPartition(topic, 0): OffsetSpec.max_timestamp()})
    latest = list(offsets.values())[0].result(timeout=TIMEOUT)
    assert (latest.offset, latest.timestamp) == (9, 1_700_000_000_009)
    records = ck_read(topic, 1, 3)
    assert [(r.offset, r.value) for r in records] == [(7, b"7"), (8, b"8"), (9, b"9")]
    consumer = ck_consumer()
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT) == (7, 10)
    finally:
        consumer.close()


def test_more_admin_paths(admin):
    # Partition count and replication factor left to the broker (-1): num.partitions = 1.
    topic = unique("ck-defaults")
    admin.create_topics([NewTopic(topic)])[topic].result(timeout=TIMEOUT)
    assert sorted(list_partitions(admin, topic)) == [0]
    # The non-incremental AlterConfigs (deprecated in the client, still served).
    resource = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.ms": "12345"})
    with pytest.warns(DeprecationWarning):
        futures = admin.alter_configs([resource])
    futures[resource].result(timeout=TIMEOUT)
    configs = topic_configs(admin, topic)
    assert configs["retention.ms"].value == "12345"
    assert set(configs["segment.bytes"].synonyms) == {"log.segment.bytes"}
    # ListOffsets by timestamp; DeleteRecords past the high watermark is out of range.
    ck_produce_all(ck_producer(), [dict(topic=topic, value=b"%d" % i,
                                        timestamp=1_700_000_000_000 + 10 * i) for i in range(10)])
    tp = TopicPartition(topic, 0)
    offsets = admin.list_offsets({tp: OffsetSpec.for_timestamp(1_700_000_000_035)})
    assert offsets[tp].result(timeout=TIMEOUT).offset == 4
    futures = admin.delete_records([TopicPartition(topic, 0, 11)])
    assert error_code_of(list(futures.values())[0]) == KafkaError.OFFSET_OUT_OF_RANGE


def test_records_above_one_megabyte_with_a_topic_override(admin):
    topic = unique("ck-big")
    ck_create(admin, topic, 1, {"max.message.bytes": "3000000"})
    value = bytes(range(256)) * 9766  # 2.5 MB, in one batch larger than any fetch limit
    ck_produce_all(ck_producer(**{"message.max.bytes": 4000000}),
                   [dict(topic=topic, partition=0, value=value)])
    for read in (ck_read, kp_read):
        [record] = read(topic, 1, 1)
        assert record.value == value, read.__name__


def test_log_append_time_topic(admin):
    topic = unique("ck-logappend")
    ck_create(admin, topic, 1, {"message.timestamp.type": "LogAppendTime"})
    before = now_ms()
    reports = ck_produce_all(ck_producer(**{"compression.type": "gzip"}), [
        dict(topic=topic, value=b"%d" % i, timestamp=1000 + i) for i in range(5)])
    after = now_ms()
    for report in reports:
        kind, ts = report.timestamp()
        assert kind == confluent_kafka.TIMESTAMP_LOG_APPEND_TIME and before <= ts <= after
    for r in ck_read(topic, 1, 5):
        assert r.timestamp_type == LOG_APPEND_TIME and before <= r.timestamp <= after


def test_idempotent_producer_exactly_once_in_order(admin):
    topic = unique("ck-idempotent")
    ck_create(admin, topic, 3)
    producer = ck_producer(**{"enable.idempotence": True, "linger.ms": 2,
                              "batch.num.messages": 100, "max.in.flight": 5})
    count = 6000
    reports = ck_produce_all(producer, [dict(topic=topic, partition=i % 3, value=b"%06d" % i)
                                        for i in range(count)])
    for p in range(3):
        assert [r.offset() for r in reports if r.partition() == p] == list(range(count // 3))
    for p, recs in by_partition(ck_read(topic, 3, count)).items():
        assert [r.value for r in recs] == [b"%06d" % i for i in range(p, count, 3)]


def test_message_too_large_is_refused(admin):
    topic = unique("ck-too-large")
    ck_create(admin, topic, 1, {"max.message.bytes": "10000"})
    producer = ck_producer(**{"compression.type": "none", "message.max.bytes": 2000000})
    # One at a time: a batch holding both would be refused whole.
    reports = []
    for size in (20000, 9000, 10001):
        producer.produce(topic, value=b"x" * size,
                         on_delivery=lambda error, message: reports.append(error))
        assert producer.flush(TIMEOUT) == 0
    assert [e.code() if e else None for e in reports] == [
        KafkaError.MSG_SIZE_TOO_LARGE, None, KafkaError.MSG_SIZE_TOO_LARGE]
    [record] = ck_read(topic, 1, 1)
    assert record.value == b"x" * 9000


def test_kafka_python_consumer_sees_record_metadata_of_confluent_producer(admin):
    # The offsets confluent-kafka's delivery reports give are the ones kafka-python reads at.
    topic = unique("ck-offsets")
    ck_create(admin, topic, 2)
    reports = ck_produce_all(ck_producer(**{"acks": "1"}),
                             [dict(topic=topic, partition=i % 2, value=b"%d" % i)
                              for i in range(10)])
    read = {(r.partition, r.offset): r.value for r in kp_read(topic, 2, 10)}
    assert read == {(r.partition(), r.offset()): r.value() for r in reports}
    consumer = kafka.KafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
    try:
        tps = [kafka.TopicPartition(topic, p) for p in range(2)]
        assert consumer.end_offsets(tps) == {tp: 5 for tp in tps}
    finally:
        consumer.close()


def test_ck_rec_normalizes_offsets(admin):
    # ck_rec is what every comparison above relies on: a sanity check on a known record.
    topic = unique("ck-rec")
    ck_create(admin, topic, 1)
    ck_produce_all(ck_producer(), [dict(topic=topic, key=b"k", value=b"v", timestamp=12345)])
    consumer = ck_consumer()
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        message = wait_for(lambda: consumer.poll(0.2), "the record")
        assert ck_rec(message) == (0, 0, b"k", b"v", [], 12345, CREATE_TIME)
    finally:
        consumer.close()
