# Helpers shared by the kafka-python and confluent-kafka tests: where the broker is (run.sh
# exports WEIR_BOOTSTRAP), unique topic names, an independent murmur2, and "create / read back"
# helpers for both client families that return records in one normalized shape, so a test can
# compare what one client wrote with what the other read.

import os
import time
import uuid
from collections import namedtuple

import confluent_kafka
import kafka
import kafka.errors
from confluent_kafka.admin import AdminClient, NewTopic as CkNewTopic
from kafka.admin import NewTopic as KpNewTopic

BOOTSTRAP = os.environ.get("WEIR_BOOTSTRAP", "127.0.0.1:9092")
NODE_ID = 1
READ_TIMEOUT_S = 30

# Kafka's record-batch timestamp types (attribute bit 3): what both clients are normalized to.
CREATE_TIME = 0
LOG_APPEND_TIME = 1

# A record as a consumer saw it. headers: list of (str, bytes or None) in record order.
Rec = namedtuple("Rec", "partition offset key value headers timestamp timestamp_type")


def unique(prefix):
    """A topic name no other test (or earlier run against the same broker) uses."""
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def now_ms():
    return int(time.time() * 1000)


def wait_for(predicate, what, timeout=READ_TIMEOUT_S, interval=0.05):
    """Polls predicate() until it returns something truthy; fails the test after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


# --- murmur2, written from Kafka's Utils.murmur2 (not kafka-python's) ---------------------------

def murmur2(data):
    """Kafka's murmur2 (seed 0x9747b28c) as a signed 32-bit int, like Java's Utils.murmur2."""
    length = len(data)
    m = 0x5BD1E995
    r = 24
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = data[whole:]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if len(tail) >= 1:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def kafka_partition_for(key, partitions):
    """The Java client's (and kafka-python's) default partition for a non-null key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


# --- kafka-python -----------------------------------------------------------------------------

def kp_admin():
    return kafka.KafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=30000)


def kp_check(code, expected=kafka.errors.NoError, what=""):
    """Asserts a protocol error code maps to the expected kafka-python error class."""
    actual = kafka.errors.for_code(code)
    assert actual is expected, "%s: expected %s, got %s (code %d)" % (
        what, expected.__name__, actual.__name__, code)


def kp_create(admin, name, partitions=1, configs=None):
    response = admin.create_topics(
        [KpNewTopic(name, partitions, 1, topic_configs=configs or {})])
    (topic, code, message) = response.topic_errors[0][:3]
    assert topic == name
    kp_check(code, what="creating %s (%s)" % (name, message))


def kp_producer(**config):
    settings = dict(bootstrap_servers=BOOTSTRAP, linger_ms=0, request_timeout_ms=30000,
                    retries=5, max_block_ms=30000)
    settings.update(config)
    return kafka.KafkaProducer(**settings)


def kp_flush_acks0(producer):
    """Pushes out kafka-python 2.x acks=0 produce requests.

    kafka-python 2.x (KafkaClient.send) only marks a connection for sending when the request
    expects a response, so an acks=0 ProduceRequest stays in the connection's buffer until some
    other request goes out on it. A metadata refresh is such a request (it goes to the only
    broker connection), and the buffered produce bytes leave first, in order.
    """
    future = producer._metadata.request_update()
    producer._sender.wakeup()
    wait_for(lambda: future.is_done, "kafka-python metadata refresh", timeout=30)
    assert future.succeeded(), future.exception


def kp_consumer(**config):
    settings = dict(bootstrap_servers=BOOTSTRAP, group_id=None, enable_auto_commit=False,
                    request_timeout_ms=30000)
    settings.update(config)
    return kafka.KafkaConsumer(**settings)


def kp_rec(message):
    return Rec(message.partition, message.offset, message.key, message.value,
               list(message.headers or []), message.timestamp, message.timestamp_type)


def kp_read(topic, partitions, count, start=None, exact=True, **config):
    """Reads `count` records of `topic` with kafka-python (manual assignment, no group), from the
    beginning or from `start` {partition: offset}. With exact, also asserts that the partitions
    hold no other records past the start (nothing duplicated or extra)."""
    consumer = kp_consumer(**config)
    try:
        tps = [kafka.TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        if start is None:
            consumer.seek_to_beginning()
        else:
            for tp in tps:
                if tp.partition in start:
                    consumer.seek(tp, start[tp.partition])
                else:
                    consumer.seek_to_beginning(tp)
        records = []
        deadline = time.monotonic() + READ_TIMEOUT_S
        while len(records) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(kp_rec(m) for m in batch)
        assert len(records) >= count, "kafka-python read %d of %d records of %s" % (
            len(records), count, topic)
        if exact:
            ends = consumer.end_offsets(tps)
            begins = consumer.beginning_offsets(tps)
            if start:
                begins.update({tp: start[tp.partition] for tp in tps if tp.partition in start})
            held = sum(ends[tp] - begins[tp] for tp in tps)
            assert len(records) == count == held, (
                "read %d records, expected %d; the partitions hold %d (%s to %s)"
                % (len(records), count, held, begins, ends))
        return records
    finally:
        consumer.close()


# --- confluent-kafka --------------------------------------------------------------------------

def ck_config(**config):
    settings = {"bootstrap.servers": BOOTSTRAP, "broker.address.family": "v4"}
    settings.update(config)
    return settings


def ck_admin():
    return AdminClient(ck_config())


def ck_create(admin, name, partitions=1, configs=None):
    futures = admin.create_topics(
        [CkNewTopic(name, num_partitions=partitions, replication_factor=1, config=configs or {})],
        operation_timeout=30)
    futures[name].result(timeout=30)


def ck_producer(**config):
    settings = {"linger.ms": 0, "message.timeout.ms": 30000}
    settings.update(config)
    return confluent_kafka.Producer(ck_config(**settings))


def ck_produce_all(producer, messages):
    """Produces (kwargs for Producer.produce) and returns the delivery reports in send order;
    fails on any delivery error."""
    reports = [None] * len(messages)

    def on_delivery(index):
        def report(error, message):
            reports[index] = (error, message)
        return report

    for index, kwargs in enumerate(messages):
        while True:
            try:
                producer.produce(on_delivery=on_delivery(index), **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(60)
    assert remaining == 0, "%d messages still queued after flush" % remaining
    for index, (error, _message) in enumerate(reports):
        assert error is None, "message %d: %s" % (index, error)
    return [message for _error, message in reports]


def ck_consumer(**config):
    # A short fetch wait: a watermark query on the same connection queues behind a long poll.
    settings = {"group.id": "weir-clients-no-commits", "enable.auto.commit": False,
                "enable.auto.offset.store": False, "enable.partition.eof": False,
                "fetch.wait.max.ms": 50}
    settings.update(config)
    return confluent_kafka.Consumer(ck_config(**settings))


def ck_timestamp(message):
    kind, ts = message.timestamp()
    types = {confluent_kafka.TIMESTAMP_CREATE_TIME: CREATE_TIME,
             confluent_kafka.TIMESTAMP_LOG_APPEND_TIME: LOG_APPEND_TIME}
    assert kind in types, "no timestamp on %s" % message
    return ts, types[kind]


def ck_rec(message):
    ts, kind = ck_timestamp(message)
    return Rec(message.partition(), message.offset(), message.key(), message.value(),
               list(message.headers() or []), ts, kind)


def ck_read(topic, partitions, count, start=None, exact=True, **config):
    """Reads `count` records with confluent-kafka (assign with explicit offsets, no commits),
    from the beginning or `start` {partition: offset}. With exact, also asserts the partitions
    hold nothing past what was read."""
    consumer = ck_consumer(**config)
    try:
        begin = start or {}
        assignment = [
            confluent_kafka.TopicPartition(topic, p, begin.get(p, confluent_kafka.OFFSET_BEGINNING))
            for p in range(partitions)]
        consumer.assign(assignment)
        records = []
        deadline = time.monotonic() + READ_TIMEOUT_S
        while len(records) < count and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=1000, timeout=0.2):
                assert message.error() is None, message.error()
                records.append(ck_rec(message))
        assert len(records) >= count, "confluent-kafka read %d of %d records of %s" % (
            len(records), count, topic)
        if exact:
            held = 0
            for p in range(partitions):
                low, high = consumer.get_watermark_offsets(
                    confluent_kafka.TopicPartition(topic, p), timeout=10)
                held += high - begin.get(p, low)
            assert len(records) == count == held, (
                "read %d records, expected %d; the partitions hold %d"
                % (len(records), count, held))
        return records
    finally:
        consumer.close()


def by_partition(records):
    """{partition: [records in offset order]}, asserting offsets strictly increase."""
    out = {}
    for record in records:
        out.setdefault(record.partition, []).append(record)
    for partition, recs in out.items():
        offsets = [r.offset for r in recs]
        assert offsets == sorted(set(offsets)), "partition %d offsets %s" % (partition, offsets)
    return out


def payload(record):
    """What a producer controls: (key, value, headers)."""
    return (record.key, record.value, [(k, v) for k, v in record.headers])


def assert_same_sequence(got, want, what):
    """Compares two long sequences and, when they differ, says where and how (the first differing
    index, the lengths, whether it is only a reordering) instead of printing both in full."""
    got, want = list(got), list(want)
    if got == want:
        return
    first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    reordered = len(got) == len(want) and sorted(got) == sorted(want)
    def short(items):
        return repr(items[first])[:80] if first < len(items) else "nothing"
    raise AssertionError(
        "%s: %d items, expected %d; first difference at index %d (got %s, expected %s)%s"
        % (what, len(got), len(want), first, short(got), short(want),
           "; the same items in another order" if reordered else ""))
