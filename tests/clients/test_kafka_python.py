# kafka-python (2.x) against a real Weir broker:
#   KafkaAdminClient — create (partitions, replica assignments, configs, validate_only; refused:
#   duplicates, bad counts/replication/assignments/configs/names, '.'/'_' collisions), list,
#   describe, delete and recreate, grow partitions (shrinking refused), describe/alter topic and
#   broker configs with Kafka's names and defaults, delete_records;
#   KafkaProducer — acks 0/1/all x every codec, read back by kafka-python AND confluent-kafka;
#   murmur2 key placement checked against an independent murmur2; null vs empty keys and values;
#   headers; CreateTime and LogAppendTime timestamps; idempotence; max.message.bytes to the
#   byte; keyless records refused on compacted topics;
#   KafkaConsumer (assign, no group) — seek, seek_to_beginning/end, beginning/end_offsets,
#   offsets_for_times (out-of-order timestamps too), out-of-range resets, tiny fetch limits,
#   long polls woken by appends, reading across rolled segments.

import os
import time

import kafka
import kafka.errors as Errors
import pytest
from kafka import TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic
from kafka.record.memory_records import MemoryRecordsBuilder

from clientlib import (CREATE_TIME, LOG_APPEND_TIME, NODE_ID, assert_same_sequence, by_partition,
                       ck_read,
                       kafka_partition_for, kp_admin, kp_check, kp_create, kp_flush_acks0,
                       kp_producer, kp_read, murmur2, now_ms, payload, unique, wait_for)

# ACKED_AND_VISIBLE: Weir's high watermark covers durable (fdatasynced) data only, so records
# of an acknowledged acks=1 (or 0) produce may stay invisible to ListOffsets, DeleteRecords and
# fetches for a moment (a few ms). Kafka with one replica makes them visible before the ack.
# Tests that read watermarks or offsets right after producing use acks=all, which Weir answers
# only once the high watermark has passed the batch; the others poll until records arrive.
CODECS = [None, "gzip", "snappy", "lz4", "zstd"]
ACKS = [0, 1, "all"]


@pytest.fixture(scope="module")
def admin():
    client = kp_admin()
    yield client
    client.close()


def describe_topic_configs(admin, topic):
    """{name: (value, config_source, read_only)} of a topic, via DescribeConfigs."""
    return describe_configs(admin, ConfigResourceType.TOPIC, topic)


def describe_configs(admin, resource_type, name):
    [response] = admin.describe_configs([ConfigResource(resource_type, name)])
    [resource] = response.resources
    code, message = resource[0], resource[1]
    kp_check(code, what="describing %s (%s)" % (name, message))
    return {entry[0]: (entry[1], entry[3], entry[2]) for entry in resource[4]}


def alter_configs(admin, resource_type, name, configs):
    response = admin.alter_configs([ConfigResource(resource_type, name, configs=configs)])
    [resource] = response.resources
    return resource[0]


def topic_partitions(admin, topic):
    [described] = admin.describe_topics([topic])
    kp_check(described["error_code"], what="describing " + topic)
    return described["partitions"]


def controller_error(call):
    """Runs an admin call that goes to the controller (create/delete topics, create partitions):
    kafka-python raises the first topic error as its error class. Returns that class, or
    NoError."""
    try:
        call()
    except Errors.BrokerResponseError as error:
        return type(error)
    return Errors.NoError


def create_error(admin, topic, partitions=1, replication=1, configs=None, validate_only=False,
                 replica_assignments=None):
    return controller_error(lambda: admin.create_topics(
        [NewTopic(topic, partitions, replication, topic_configs=configs or {},
                  replica_assignments=replica_assignments or {})],
        validate_only=validate_only))


def expect(actual, expected, what):
    assert actual is expected, "%s: expected %s, got %s" % (what, expected.__name__,
                                                           actual.__name__)


def sent_records(topic, count, partitions=None):
    """Distinct keyed records with headers, as KafkaProducer.send kwargs."""
    out = []
    for i in range(count):
        kwargs = dict(topic=topic, key=b"key-%d" % i,
                      value=b"value-%05d-" % i + bytes([i % 256]) * (i % 7),
                      headers=[("seq", b"%d" % i), ("bin", bytes([0, 255, i % 256]))])
        if partitions is not None:
            kwargs["partition"] = i % partitions
        out.append(kwargs)
    return out


def send_all(producer, messages):
    futures = [producer.send(**m) for m in messages]
    producer.flush(timeout=60)
    return [f.get(timeout=60) for f in futures]


# --- topics -----------------------------------------------------------------------------------

def test_murmur2_matches_kafkas_reference_values():
    # Kafka's UtilsTest.testMurmur2 vectors: keeps the independent implementation honest.
    cases = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
             b"a-little-bit-longer-string": -1486304829,
             b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
             b"abc": 479470107}
    for data, expected in cases.items():
        assert murmur2(data) == expected, data


def test_create_with_partitions_and_configs_then_list_and_describe(admin):
    topic = unique("kp-create")
    kp_create(admin, topic, 3, {"retention.ms": "3600000", "cleanup.policy": "compact"})
    assert topic in admin.list_topics()
    partitions = topic_partitions(admin, topic)
    assert sorted(p["partition"] for p in partitions) == [0, 1, 2]
    for p in partitions:
        kp_check(p["error_code"])
        assert p["leader"] == NODE_ID
        assert p["replicas"] == [NODE_ID] and p["isr"] == [NODE_ID]
    configs = describe_topic_configs(admin, topic)
    assert configs["retention.ms"][:2] == ("3600000", 1)  # 1: DYNAMIC_TOPIC_CONFIG
    assert configs["cleanup.policy"][:2] == ("compact", 1)
    assert configs["segment.bytes"][:2] == ("1073741824", 5)  # 5: DEFAULT_CONFIG


def test_create_refusals(admin):
    topic = unique("kp-dup")
    kp_create(admin, topic, 2)
    expect(create_error(admin, topic, 2), Errors.TopicAlreadyExistsError, "duplicate")
    refused = {
        unique("kp-zero"): (dict(partitions=0), Errors.InvalidPartitionsError),
        unique("kp-neg"): (dict(partitions=-5), Errors.InvalidPartitionsError),
        unique("kp-rf"): (dict(replication=3), Errors.InvalidReplicationFactorError),
        unique("kp-badcfg"): (dict(configs={"retention.ms": "soon"}),
                              Errors.InvalidConfigurationError),
        unique("kp-unknowncfg"): (dict(configs={"no.such.config": "1"}),
                                  Errors.InvalidConfigurationError),
        unique("kp-badassign"): (dict(partitions=-1, replication=-1,
                                      replica_assignments={0: [1], 1: [2]}),
                                 Errors.InvalidReplicationAssignmentError),
        "kp-bad/name": (dict(), Errors.InvalidTopicError),
        "kp-" + "x" * 250: (dict(), Errors.InvalidTopicError),
    }
    for name, (kwargs, error) in refused.items():
        expect(create_error(admin, name, **kwargs), error, "%s %s" % (name[:40], kwargs))
    # The refused ones were not created; the duplicate still has its 2 partitions.
    assert not set(refused) & set(admin.list_topics())
    assert len(topic_partitions(admin, topic)) == 2


def test_names_colliding_on_dots_and_underscores_are_refused(admin):
    base = unique("kp-collide")
    kp_create(admin, base + ".eu_west", 1)
    for colliding in (base + "_eu_west", base + ".eu.west", base + "_eu.west"):
        expect(create_error(admin, colliding), Errors.InvalidTopicError, colliding)
    kp_create(admin, base + "-eu-west", 1)
    assert base + "_eu_west" not in admin.list_topics()


def test_validate_only_creates_nothing(admin):
    topic = unique("kp-validate")
    expect(create_error(admin, topic, 4, validate_only=True), Errors.NoError, "validate_only")
    expect(create_error(admin, topic, 0, validate_only=True), Errors.InvalidPartitionsError,
           "validate_only with 0 partitions")
    assert topic not in admin.list_topics()
    # It really was only validated: creating it for real now succeeds, with 4 partitions.
    kp_create(admin, topic, 4)
    assert len(topic_partitions(admin, topic)) == 4
    # Explicit replica assignments decide the partition count.
    assigned = unique("kp-assigned")
    expect(create_error(admin, assigned, -1, -1, replica_assignments={0: [1], 1: [1], 2: [1]}),
           Errors.NoError, "create with assignments")
    assert len(topic_partitions(admin, assigned)) == 3


def test_delete_then_recreate_is_empty(admin):
    topic = unique("kp-recreate")
    kp_create(admin, topic, 2)
    producer = kp_producer(acks=1)
    send_all(producer, sent_records(topic, 20, partitions=2))
    producer.close()
    assert len(kp_read(topic, 2, 20)) == 20
    response = admin.delete_topics([topic])
    [(name, code)] = [e[:2] for e in response.topic_error_codes]
    assert name == topic
    kp_check(code, what="deleting")
    wait_for(lambda: topic not in admin.list_topics(), "the topic to disappear")
    [gone] = admin.describe_topics([topic])
    kp_check(gone["error_code"], Errors.UnknownTopicOrPartitionError, "describing a deleted topic")
    expect(controller_error(lambda: admin.delete_topics([topic])),
           Errors.UnknownTopicOrPartitionError, "deleting twice")

    kp_create(admin, topic, 3)
    assert len(topic_partitions(admin, topic)) == 3
    consumer = kafka.KafkaConsumer(bootstrap_servers=admin.config["bootstrap_servers"])
    tps = [TopicPartition(topic, p) for p in range(3)]
    assert consumer.beginning_offsets(tps) == {tp: 0 for tp in tps}
    assert consumer.end_offsets(tps) == {tp: 0 for tp in tps}
    consumer.close()
    producer = kp_producer(acks=1)
    [metadata] = send_all(producer, [dict(topic=topic, partition=1, value=b"fresh")])
    producer.close()
    assert metadata.offset == 0
    assert [r.value for r in kp_read(topic, 3, 1)] == [b"fresh"]


def test_partitions_grow_but_never_shrink(admin):
    topic = unique("kp-grow")
    kp_create(admin, topic, 2)
    response = admin.create_partitions({topic: NewPartitions(5)})
    [(name, code, message)] = [e[:3] for e in response.topic_errors]
    assert name == topic
    kp_check(code, what="growing to 5 (%s)" % message)
    assert len(topic_partitions(admin, topic)) == 5
    for count in (3, 5):
        expect(controller_error(lambda: admin.create_partitions({topic: NewPartitions(count)})),
               Errors.InvalidPartitionsError, "going from 5 to %d partitions" % count)
    expect(controller_error(lambda: admin.create_partitions({topic: NewPartitions(8)},
                                                            validate_only=True)),
           Errors.NoError, "validate_only growth")
    expect(controller_error(lambda: admin.create_partitions(
        {topic: NewPartitions(6, new_assignments=[[2]])})),
        Errors.InvalidReplicationAssignmentError, "a new partition on broker 2")
    expect(controller_error(lambda: admin.create_partitions({unique("kp-nosuch"):
                                                             NewPartitions(3)})),
           Errors.UnknownTopicOrPartitionError, "growing an unknown topic")
    assert len(topic_partitions(admin, topic)) == 5
    # With explicit replica assignments for the new ones.
    expect(controller_error(lambda: admin.create_partitions(
        {topic: NewPartitions(7, new_assignments=[[NODE_ID], [NODE_ID]])})),
        Errors.NoError, "growing to 7 with assignments")
    assert len(topic_partitions(admin, topic)) == 7
    # The new partitions take records.
    producer = kp_producer(acks="all")
    metadata = send_all(producer, [dict(topic=topic, partition=p, value=b"p%d" % p)
                                   for p in range(7)])
    producer.close()
    assert [(m.partition, m.offset) for m in metadata] == [(p, 0) for p in range(7)]
    assert sorted((r.partition, r.value) for r in kp_read(topic, 7, 7)) == [
        (p, b"p%d" % p) for p in range(7)]


def test_topic_configs_use_kafkas_names_and_defaults(admin):
    topic = unique("kp-configs")
    kp_create(admin, topic, 1)
    configs = describe_topic_configs(admin, topic)
    defaults = {"retention.ms": "604800000", "segment.bytes": "1073741824",
                "max.message.bytes": "1048588", "cleanup.policy": "delete",
                "retention.bytes": "-1", "message.timestamp.type": "CreateTime",
                "compression.type": "producer", "min.insync.replicas": "1",
                "segment.ms": "604800000"}
    for name, value in defaults.items():
        assert name in configs, name
        assert configs[name][:2] == (value, 5), (name, configs[name])

    code = alter_configs(admin, ConfigResourceType.TOPIC, topic,
                         {"retention.ms": "86400000", "max.message.bytes": "2097152"})
    kp_check(code, what="altering topic configs")
    configs = describe_topic_configs(admin, topic)
    assert configs["retention.ms"][:2] == ("86400000", 1)
    assert configs["max.message.bytes"][:2] == ("2097152", 1)

    # AlterConfigs replaces the whole set of overrides.
    kp_check(alter_configs(admin, ConfigResourceType.TOPIC, topic, {"retention.ms": "1000"}))
    configs = describe_topic_configs(admin, topic)
    assert configs["retention.ms"][:2] == ("1000", 1)
    assert configs["max.message.bytes"][:2] == ("1048588", 5)

    # Invalid values and names are refused and change nothing.
    kp_check(alter_configs(admin, ConfigResourceType.TOPIC, topic, {"retention.ms": "never"}),
             Errors.InvalidConfigurationError, "retention.ms=never")
    kp_check(alter_configs(admin, ConfigResourceType.TOPIC, topic, {"cleanup.policy": "shred"}),
             Errors.InvalidConfigurationError, "cleanup.policy=shred")
    kp_check(alter_configs(admin, ConfigResourceType.TOPIC, topic, {"no.such.thing": "1"}),
             Errors.InvalidConfigurationError, "unknown name")
    assert describe_topic_configs(admin, topic)["retention.ms"][:2] == ("1000", 1)
    kp_check(alter_configs(admin, ConfigResourceType.TOPIC, unique("kp-nosuch"),
                           {"retention.ms": "1000"}),
             Errors.UnknownTopicOrPartitionError, "altering an unknown topic")

    [response] = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC,
                                                        unique("kp-nosuch"))])
    kp_check(response.resources[0][0], Errors.UnknownTopicOrPartitionError,
             "describing an unknown topic")
    # Asking for named configs returns just those.
    [response] = admin.describe_configs([ConfigResource(
        ConfigResourceType.TOPIC, topic, configs={"cleanup.policy": None, "retention.ms": None})])
    assert sorted(e[0] for e in response.resources[0][4]) == ["cleanup.policy", "retention.ms"]


def test_broker_configs_are_described_and_dynamic_defaults_altered(admin):
    broker = str(NODE_ID)
    configs = describe_configs(admin, ConfigResourceType.BROKER, broker)
    for name, value in {"num.partitions": "1", "log.retention.ms": "604800000",
                        "auto.create.topics.enable": "true",
                        "message.max.bytes": "1048588",
                        "log.segment.bytes": "1073741824"}.items():
        assert name in configs, name
        assert configs[name][0] == value, (name, configs[name])
    try:
        code = alter_configs(admin, ConfigResourceType.BROKER, broker,
                             {"log.retention.ms": "7200000"})
        kp_check(code, what="altering log.retention.ms")
        assert describe_configs(admin, ConfigResourceType.BROKER, broker)[
            "log.retention.ms"][0] == "7200000"
        topic = unique("kp-inherits")
        kp_create(admin, topic, 1)
        assert describe_topic_configs(admin, topic)["retention.ms"][0] == "7200000"
        code = alter_configs(admin, ConfigResourceType.BROKER, broker,
                             {"log.retention.ms": "not-a-number"})
        kp_check(code, Errors.InvalidConfigurationError, "log.retention.ms=not-a-number")
        code = alter_configs(admin, ConfigResourceType.BROKER, "42", {"log.retention.ms": "1"})
        assert code != 0, "altering a broker that does not exist"
    finally:
        # AlterConfigs replaces the overrides: an empty set restores the defaults.
        kp_check(alter_configs(admin, ConfigResourceType.BROKER, broker, {}))
    assert describe_configs(admin, ConfigResourceType.BROKER, broker)[
        "log.retention.ms"][0] == "604800000"


# --- producing and consuming ------------------------------------------------------------------

@pytest.mark.parametrize("codec", CODECS, ids=[str(c) for c in CODECS])
@pytest.mark.parametrize("acks", ACKS, ids=["acks0", "acks1", "acksall"])
def test_every_codec_and_acks_round_trips_to_both_clients(admin, codec, acks):
    topic = unique("kp-codec-%s-%s" % (codec, acks))
    kp_create(admin, topic, 3)
    messages = sent_records(topic, 120)
    before = now_ms()
    producer = kp_producer(acks=acks, compression_type=codec, linger_ms=5)
    metadata = send_all(producer, messages)
    if acks == 0:
        kp_flush_acks0(producer)
        assert all(m.offset == -1 for m in metadata), "acks=0 has no offsets to report"
    else:
        per_partition = {}
        for m in metadata:
            per_partition.setdefault(m.partition, []).append(m.offset)
        for offsets in per_partition.values():
            assert offsets == list(range(len(offsets))), offsets
    producer.close()
    after = now_ms()

    expected = {}
    for m, sent in zip(metadata, messages):
        expected[sent["key"]] = (m.partition, sent["key"], sent["value"], sent["headers"])
    for read in (kp_read, ck_read):
        records = read(topic, 3, len(messages))
        got = {r.key: (r.partition,) + payload(r) for r in records}
        assert got == expected, read.__name__
        for r in records:
            assert r.timestamp_type == CREATE_TIME
            assert before <= r.timestamp <= after, (r.timestamp, before, after)
        if acks != 0:
            offsets = {(m.partition, m.offset) for m in metadata}
            assert {(r.partition, r.offset) for r in records} == offsets


def test_keys_land_on_their_murmur2_partition_in_order(admin):
    topic = unique("kp-murmur")
    partitions = 7
    kp_create(admin, topic, partitions)
    producer = kp_producer(acks="all")
    keys = [b"user-%d" % (i % 40) for i in range(400)]
    metadata = send_all(producer, [dict(topic=topic, key=k, value=b"%d" % i)
                                   for i, k in enumerate(keys)])
    producer.close()
    for key, m in zip(keys, metadata):
        assert m.partition == kafka_partition_for(key, partitions), key
    assert len({m.partition for m in metadata}) == partitions, "40 keys cover all 7 partitions"

    records = kp_read(topic, partitions, len(keys))
    for partition, recs in by_partition(records).items():
        for r in recs:
            assert kafka_partition_for(r.key, partitions) == partition
    # Per key, values arrive in the order they were sent.
    for key in set(keys):
        sent = [b"%d" % i for i, k in enumerate(keys) if k == key]
        assert [r.value for r in records if r.key == key] == sent


def test_null_and_empty_keys_and_values_stay_distinct(admin):
    topic = unique("kp-nulls")
    kp_create(admin, topic, 1)
    cases = [(None, b"v"), (b"", b"v"), (b"k", None), (b"k", b""), (b"", b""), (b"k2", b"v2")]
    producer = kp_producer(acks=1)
    send_all(producer, [dict(topic=topic, key=k, value=v, partition=0) for k, v in cases])
    producer.close()
    for read in (kp_read, ck_read):
        assert [(r.key, r.value) for r in read(topic, 1, len(cases))] == cases, read.__name__


def test_headers_keep_order_duplicates_and_binary_values(admin):
    topic = unique("kp-headers")
    kp_create(admin, topic, 1)
    headers = [("dup", b"first"), ("bin", bytes(range(256))), ("dup", b"second"),
               ("empty", b""), ("unicode-\u00e9\u6f22", b"\x00\x00"), ("dup", b"third")]
    producer = kp_producer(acks=1, compression_type="zstd")
    send_all(producer, [dict(topic=topic, partition=0, key=b"h", value=b"with", headers=headers),
                        dict(topic=topic, partition=0, key=b"h", value=b"without")])
    producer.close()
    for read in (kp_read, ck_read):
        with_headers, without = read(topic, 1, 2)
        assert with_headers.headers == headers, read.__name__
        assert without.headers == [], read.__name__


def test_create_time_is_kept_and_far_future_refused(admin):
    topic = unique("kp-createtime")
    kp_create(admin, topic, 1)
    base = now_ms() - 3 * 24 * 3600 * 1000
    stamps = [base, base + 1, base - 5000, 0, now_ms() + 60 * 1000]
    producer = kp_producer(acks=1)
    metadata = send_all(producer, [dict(topic=topic, partition=0, value=b"%d" % i, timestamp_ms=t)
                                   for i, t in enumerate(stamps)])
    assert [m.timestamp for m in metadata] == stamps
    for read in (kp_read, ck_read):
        records = read(topic, 1, len(stamps))
        assert [(r.timestamp, r.timestamp_type) for r in records] == [
            (t, CREATE_TIME) for t in stamps], read.__name__
    # message.timestamp.after.max.ms defaults to one hour: a day ahead is refused.
    future = producer.send(topic, partition=0, value=b"future",
                           timestamp_ms=now_ms() + 24 * 3600 * 1000)
    with pytest.raises(Errors.InvalidTimestampError):
        future.get(timeout=60)
    producer.close()


def test_log_append_time_topic_stamps_broker_time(admin):
    topic = unique("kp-logappend")
    kp_create(admin, topic, 2, {"message.timestamp.type": "LogAppendTime"})
    producer = kp_producer(acks="all", compression_type="lz4")
    before = now_ms()
    metadata = send_all(producer, [dict(topic=topic, partition=i % 2, value=b"%d" % i,
                                        timestamp_ms=1000 + i) for i in range(10)])
    after = now_ms()
    producer.close()
    for m in metadata:
        assert before <= m.timestamp <= after, "RecordMetadata carries the log append time"
    for read in (kp_read, ck_read):
        records = read(topic, 2, 10)
        for r in records:
            assert r.timestamp_type == LOG_APPEND_TIME, read.__name__
            assert before <= r.timestamp <= after, (read.__name__, r.timestamp)
        # Every record of a batch gets the batch's append time.
        for p, recs in by_partition(records).items():
            appended = {m.timestamp for m in metadata if m.partition == p}
            assert {r.timestamp for r in recs} <= appended


def test_seek_offsets_for_times_and_watermarks(admin):
    topic = unique("kp-seek")
    kp_create(admin, topic, 2)
    base = now_ms() - 3600 * 1000
    producer = kp_producer(acks="all")  # see ACKED_AND_VISIBLE
    # Partition 0: ten records one second apart; partition 1: nothing.
    send_all(producer, [dict(topic=topic, partition=0, value=b"%d" % i,
                             timestamp_ms=base + 1000 * i) for i in range(10)])
    producer.close()
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    consumer = kafka.KafkaConsumer(bootstrap_servers=admin.config["bootstrap_servers"],
                                   enable_auto_commit=False)
    try:
        assert consumer.beginning_offsets([tp0, tp1]) == {tp0: 0, tp1: 0}
        assert consumer.end_offsets([tp0, tp1]) == {tp0: 10, tp1: 0}
        found = consumer.offsets_for_times({tp0: base + 3500, tp1: base})
        assert found[tp0].offset == 4 and found[tp0].timestamp == base + 4000
        assert found[tp1] is None, "an empty partition has no offset for any time"
        found = consumer.offsets_for_times({tp0: base})
        assert (found[tp0].offset, found[tp0].timestamp) == (0, base)
        found = consumer.offsets_for_times({tp0: base + 9000})
        assert (found[tp0].offset, found[tp0].timestamp) == (9, base + 9000)
        assert consumer.offsets_for_times({tp0: base + 9001})[tp0] is None

        consumer.assign([tp0])
        consumer.seek(tp0, 6)
        assert consumer.position(tp0) == 6
        records = []
        wait_for(lambda: records.extend(m for batch in consumer.poll(200).values()
                                        for m in batch) or len(records) >= 4, "records from 6")
        assert [(m.offset, m.value) for m in records] == [(i, b"%d" % i) for i in range(6, 10)]
        consumer.seek_to_end(tp0)
        assert consumer.position(tp0) == 10
        consumer.seek_to_beginning(tp0)
        assert consumer.position(tp0) == 0
    finally:
        consumer.close()


def test_offsets_for_times_with_out_of_order_timestamps(admin):
    # CreateTime need not increase: the answer is the first offset whose timestamp is >= the
    # target, as Kafka's time index search gives.
    topic = unique("kp-unordered")
    kp_create(admin, topic, 1)
    base = now_ms() - 60000
    stamps = [base + 100, base + 50, base + 200, base + 150]
    producer = kp_producer(acks="all", linger_ms=20)  # see ACKED_AND_VISIBLE
    send_all(producer, [dict(topic=topic, partition=0, value=b"%d" % i, timestamp_ms=t)
                        for i, t in enumerate(stamps)])
    producer.close()
    tp = TopicPartition(topic, 0)
    consumer = kafka.KafkaConsumer(bootstrap_servers=admin.config["bootstrap_servers"])
    try:
        for target, expected in ((base + 60, (0, base + 100)), (base + 120, (2, base + 200)),
                                 (base + 160, (2, base + 200)), (base + 200, (2, base + 200))):
            found = consumer.offsets_for_times({tp: target})[tp]
            assert (found.offset, found.timestamp) == expected, target - base
        assert consumer.offsets_for_times({tp: base + 201})[tp] is None
    finally:
        consumer.close()


def test_out_of_range_positions_reset_by_policy(admin):
    topic = unique("kp-reset")
    kp_create(admin, topic, 1)
    producer = kp_producer(acks="all")  # see ACKED_AND_VISIBLE
    send_all(producer, [dict(topic=topic, partition=0, value=b"%d" % i) for i in range(10)])
    producer.close()
    tp = TopicPartition(topic, 0)
    admin.delete_records({tp: 3})
    cases = (("earliest", 5000, range(3, 10)), ("latest", 5000, []),
             ("earliest", 1, range(3, 10)))
    for policy, start, expected in cases:
        consumer = kafka.KafkaConsumer(bootstrap_servers=admin.config["bootstrap_servers"],
                                       auto_offset_reset=policy, enable_auto_commit=False)
        try:
            consumer.assign([tp])
            consumer.seek(tp, start)
            records = []

            def drained():
                records.extend(m for batch in consumer.poll(100).values() for m in batch)
                return consumer.position(tp) == 10

            wait_for(drained, "the %s reset from offset %d" % (policy, start))
            assert [r.offset for r in records] == list(expected), (policy, start)
        finally:
            consumer.close()


def test_tiny_fetch_limits_still_make_progress(admin):
    # Fetches smaller than a batch return one whole batch at a time (KIP-74).
    topic = unique("kp-tinyfetch")
    kp_create(admin, topic, 2)
    producer = kp_producer(acks=1, batch_size=300, linger_ms=2)
    send_all(producer, [dict(topic=topic, partition=i % 2, value=b"%04d" % i + b"x" * 60)
                        for i in range(300)])
    producer.close()
    records = kp_read(topic, 2, 300, max_partition_fetch_bytes=64, fetch_max_bytes=100)
    for p, recs in by_partition(records).items():
        assert [r.value[:4] for r in recs] == [b"%04d" % i for i in range(p, 300, 2)]
    records = ck_read(topic, 2, 300, **{"fetch.message.max.bytes": 64,
                                        "fetch.max.bytes": 1000, "message.max.bytes": 1000})
    assert len(by_partition(records)[0]) == 150


def test_long_poll_waits_for_min_bytes_and_wakes_for_new_records(admin):
    topic = unique("kp-longpoll")
    kp_create(admin, topic, 2)
    producer = kp_producer(acks=1)
    consumer = kafka.KafkaConsumer(bootstrap_servers=admin.config["bootstrap_servers"],
                                   enable_auto_commit=False, fetch_max_wait_ms=5000)
    try:
        tps = [TopicPartition(topic, p) for p in range(2)]
        consumer.assign(tps)
        consumer.seek_to_end()
        assert consumer.poll(300) == {}
        for p in (1, 0, 1):
            started = time.monotonic()
            [m] = send_all(producer, [dict(topic=topic, partition=p, value=b"now")])
            records = wait_for(lambda: [r for b in consumer.poll(50).values() for r in b],
                               "the new record", timeout=10)
            waited = time.monotonic() - started
            assert [(r.partition, r.offset) for r in records] == [(p, m.offset)]
            # A parked fetch (max wait 5 s) is woken by the append, not by its timer.
            assert waited < 2.5, waited
    finally:
        consumer.close()
        producer.close()


def test_delete_records_moves_the_log_start(admin):
    topic = unique("kp-deleterecords")
    kp_create(admin, topic, 2)
    producer = kp_producer(acks="all")
    send_all(producer, [dict(topic=topic, partition=p, value=b"%d-%d" % (p, i))
                        for p in range(2) for i in range(10)])
    producer.close()
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    result = admin.delete_records({tp0: 4, tp1: 10})
    assert result[tp0]["low_watermark"] == 4
    assert result[tp1]["low_watermark"] == 10
    consumer = kafka.KafkaConsumer(bootstrap_servers=admin.config["bootstrap_servers"],
                                   enable_auto_commit=False)
    try:
        assert consumer.beginning_offsets([tp0, tp1]) == {tp0: 4, tp1: 10}
        assert consumer.end_offsets([tp0, tp1]) == {tp0: 10, tp1: 10}
    finally:
        consumer.close()
    for read in (kp_read, ck_read):
        records = read(topic, 2, 6)
        assert [(r.partition, r.offset, r.value) for r in records] == [
            (0, i, b"0-%d" % i) for i in range(4, 10)], read.__name__
    # -1 means "up to the high watermark"; beyond it is out of range.
    assert admin.delete_records({tp0: -1})[tp0]["low_watermark"] == 10
    with pytest.raises(Errors.OffsetOutOfRangeError):
        admin.delete_records({tp1: 11})
    # Deleted records stay deleted for new data: the next record gets the next offset.
    producer = kp_producer(acks=1)
    [m] = send_all(producer, [dict(topic=topic, partition=0, value=b"after")])
    producer.close()
    assert m.offset == 10
    assert [(r.offset, r.value) for r in kp_read(topic, 1, 1)] == [(10, b"after")]


def test_compacted_topics_refuse_records_without_keys(admin):
    topic = unique("kp-compacted")
    kp_create(admin, topic, 1, {"cleanup.policy": "compact"})
    producer = kp_producer(acks=1, retries=0, linger_ms=50, compression_type="gzip")
    # One batch: a keyless record among keyed ones takes the whole batch down.
    futures = [producer.send(topic, partition=0, key=b"a", value=b"1"),
               producer.send(topic, partition=0, value=b"no key"),
               producer.send(topic, partition=0, key=b"b", value=b"2")]
    producer.flush()
    for future in futures:
        with pytest.raises(Errors.InvalidRecordError):
            future.get(timeout=60)
    [m] = send_all(producer, [dict(topic=topic, partition=0, key=b"a", value=b"kept")])
    producer.close()
    assert m.offset == 0
    assert [(r.key, r.value) for r in kp_read(topic, 1, 1)] == [(b"a", b"kept")]


def test_rolled_segments_are_read_searched_and_trimmed(admin):
    # 1 MiB segments (the smallest Weir rolls at): ~4 MiB of lz4 batches spans four of them.
    topic = unique("kp-segments")
    kp_create(admin, topic, 1, {"segment.bytes": "1048576"})
    base = now_ms() - 100000
    count = 4000
    producer = kp_producer(acks="all", compression_type="lz4", batch_size=64 * 1024,
                           linger_ms=5)
    values = [bytes([i % 256]) * 7 + os.urandom(993) for i in range(count)]
    send_all(producer, [dict(topic=topic, partition=0, key=b"%d" % i, value=values[i],
                             timestamp_ms=base + 10 * i) for i in range(count)])
    producer.close()
    for read in (kp_read, ck_read):
        records = read(topic, 1, count)
        assert_same_sequence([r.value for r in records], values, read.__name__)
    tp = TopicPartition(topic, 0)
    consumer = kafka.KafkaConsumer(bootstrap_servers=admin.config["bootstrap_servers"])
    try:
        for target, offset in ((base, 0), (base + 12345, 1235), (base + 29995, 3000),
                               (base + 39990, 3999)):
            found = consumer.offsets_for_times({tp: target})[tp]
            assert (found.offset, found.timestamp) == (offset, base + 10 * offset), target
        assert consumer.offsets_for_times({tp: base + 39991})[tp] is None
        assert admin.delete_records({tp: 2500})[tp]["low_watermark"] == 2500
        assert consumer.beginning_offsets([tp]) == {tp: 2500}
        found = consumer.offsets_for_times({tp: base})[tp]
        assert (found.offset, found.timestamp) == (2500, base + 25000), "deleted records skipped"
    finally:
        consumer.close()
    for read in (kp_read, ck_read):
        records = read(topic, 1, count - 2500)
        assert_same_sequence([(r.offset, r.value) for r in records],
                             [(i, values[i]) for i in range(2500, count)], read.__name__)


def test_idempotent_producer_writes_each_record_once_in_order(admin):
    topic = unique("kp-idempotent")
    kp_create(admin, topic, 2)
    # kafka-python 2.x insists on one request in flight for idempotence.
    producer = kp_producer(acks="all", enable_idempotence=True,
                           max_in_flight_requests_per_connection=1, batch_size=4096, linger_ms=2)
    count = 3000
    metadata = send_all(producer, [dict(topic=topic, partition=i % 2, key=b"%d" % i,
                                        value=b"record-%06d" % i) for i in range(count)])
    producer.close()
    for p in range(2):
        assert [m.offset for m in metadata if m.partition == p] == list(range(count // 2))
    records = kp_read(topic, 2, count)
    for p, recs in by_partition(records).items():
        assert [r.value for r in recs] == [b"record-%06d" % i for i in range(p, count, 2)]


def batch_size_for_value(length):
    """Bytes of a one-record v2 batch (log overhead included) with no key, no headers and a
    value of `length` bytes: what the broker compares with max.message.bytes."""
    builder = MemoryRecordsBuilder(magic=2, compression_type=0, batch_size=4 << 20)
    builder.append(timestamp=now_ms(), key=None, value=b"x" * length, headers=[])
    builder.close()
    return len(builder.buffer())


def value_length_for_batch(size):
    length = size - (batch_size_for_value(1000) - 1000)
    while batch_size_for_value(length) > size:
        length -= 1
    while batch_size_for_value(length + 1) <= size:
        length += 1
    assert batch_size_for_value(length) == size
    return length


def test_max_message_bytes_boundary(admin):
    topic = unique("kp-maxbytes")
    kp_create(admin, topic, 1)
    limit = int(describe_topic_configs(admin, topic)["max.message.bytes"][0])
    assert limit == 1048588
    fits = value_length_for_batch(limit)
    producer = kp_producer(acks=1, max_request_size=4 << 20, retries=0)
    value = bytes(i % 251 for i in range(fits))
    [m] = send_all(producer, [dict(topic=topic, partition=0, value=value)])
    assert m.offset == 0
    too_big = producer.send(topic, partition=0, value=b"y" * (fits + 1))
    with pytest.raises(Errors.MessageSizeTooLargeError):
        too_big.get(timeout=60)
    producer.close()
    for read in (kp_read, ck_read):
        [record] = read(topic, 1, 1)
        assert record.value == value, read.__name__
