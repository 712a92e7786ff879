# Transactions with both Python clients against a real Weir broker:
#   kafka-python's transactional KafkaProducer commits and aborts; kafka-python's and
#   confluent-kafka's read_committed consumers see exactly the committed records, in order, and
#   read_uncommitted sees everything; confluent-kafka's transactional producer commits a group's
#   offsets with send_offsets_to_transaction (aborted: not committed), and kafka-python's admin
#   client reads the committed offsets back.

import time

import confluent_kafka
import kafka
from kafka import TopicPartition

from clientlib import (BOOTSTRAP, READ_TIMEOUT_S, by_partition, ck_admin, ck_consumer, ck_create,
                       ck_producer, ck_rec, kp_admin, kp_consumer, kp_create, kp_rec, unique)

QUIET_S = 1.5


def kp_read_until_quiet(topic, partitions, **config):
    """Every record kafka-python's consumer returns until nothing new arrives for QUIET_S."""
    consumer = kp_consumer(**config)
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        consumer.seek_to_beginning()
        records, last = [], time.monotonic()
        deadline = last + READ_TIMEOUT_S
        while time.monotonic() - last < QUIET_S and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(kp_rec(m) for m in batch)
                last = time.monotonic()
        return records
    finally:
        consumer.close()


def ck_read_until_quiet(topic, partitions, **config):
    consumer = ck_consumer(**config)
    try:
        consumer.assign([confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                         for p in range(partitions)])
        records, last = [], time.monotonic()
        deadline = last + READ_TIMEOUT_S
        while time.monotonic() - last < QUIET_S and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=1000, timeout=0.2):
                assert message.error() is None, message.error()
                records.append(ck_rec(message))
                last = time.monotonic()
        return records
    finally:
        consumer.close()


def values(records):
    return [r.value for r in records]


def test_kafka_python_transactions_are_read_committed_by_both_clients():
    topic = unique("kp-txn")
    admin = kp_admin()
    kp_create(admin, topic, partitions=3)
    admin.close()
    producer = kafka.KafkaProducer(bootstrap_servers=BOOTSTRAP, transactional_id=unique("kp-app"),
                                   linger_ms=0, request_timeout_ms=30000)
    producer.init_transactions()

    def run(prefix, count, commit):
        producer.begin_transaction()
        for n in range(count):
            producer.send(topic, key=b"k%d" % n, value=b"%s-%d" % (prefix, n), partition=n % 3)
        producer.flush()
        if commit:
            producer.commit_transaction()
        else:
            producer.abort_transaction()

    run(b"first", 20, True)
    run(b"aborted", 10, False)
    run(b"second", 5, True)
    producer.close()

    expected = sorted([b"first-%d" % n for n in range(20)] + [b"second-%d" % n for n in range(5)])
    kp_committed = kp_read_until_quiet(topic, 3, isolation_level="read_committed")
    by_partition(kp_committed)  # offsets increase within each partition
    assert sorted(values(kp_committed)) == expected
    ck_committed = ck_read_until_quiet(topic, 3, **{"isolation.level": "read_committed"})
    by_partition(ck_committed)
    assert sorted(values(ck_committed)) == expected
    # Within a partition the committed records come in the order they were sent.
    for records in (kp_committed, ck_committed):
        for partition, recs in by_partition(records).items():
            firsts = [v for v in values(recs) if v.startswith(b"first-")]
            assert firsts == sorted(firsts, key=lambda v: int(v.split(b"-")[1]))
    everything = ck_read_until_quiet(topic, 3, **{"isolation.level": "read_uncommitted"})
    assert len(everything) == 35
    assert sum(1 for v in values(everything) if v.startswith(b"aborted-")) == 10


def test_confluent_send_offsets_to_transaction_commits_the_group_offsets():
    source, sink, group = unique("ck-src"), unique("ck-sink"), unique("ck-etl")
    admin = ck_admin()
    ck_create(admin, source, partitions=1)
    ck_create(admin, sink, partitions=1)
    plain = ck_producer()
    for n in range(30):
        plain.produce(source, value=b"in-%d" % n)
    assert plain.flush(30) == 0

    producer = ck_producer(**{"transactional.id": unique("ck-app")})
    producer.init_transactions(30)
    consumer = ck_consumer(**{"group.id": group, "isolation.level": "read_committed",
                              "auto.offset.reset": "earliest"})
    consumer.subscribe([source])

    def transform(count, commit):
        batch = []
        deadline = time.monotonic() + READ_TIMEOUT_S
        while len(batch) < count and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=count - len(batch), timeout=0.5):
                assert message.error() is None, message.error()
                batch.append(message)
        assert len(batch) == count
        producer.begin_transaction()
        for message in batch:
            producer.produce(sink, value=message.value().replace(b"in-", b"out-"))
        last = batch[-1]
        offsets = [confluent_kafka.TopicPartition(source, last.partition(), last.offset() + 1)]
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
        return last.offset() + 1

    assert transform(10, True) == 10
    assert transform(10, False) == 20  # aborted: the group stays at 10
    consumer.close()

    kp = kp_admin()
    try:
        committed = kp.list_consumer_group_offsets(group)
    finally:
        kp.close()
    assert committed[TopicPartition(source, 0)].offset == 10
    out = ck_read_until_quiet(sink, 1, **{"isolation.level": "read_committed"})
    assert values(out) == [b"out-%d" % n for n in range(10)]
