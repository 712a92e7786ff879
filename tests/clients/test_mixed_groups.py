# A consumer group whose members are kafka-python and librdkafka (confluent-kafka) consumers at
# once: they agree on a protocol, share every partition with exactly one owner, receive every
# record exactly once when they commit after processing, and the group's committed offsets are
# what both clients and `weir group` then report. `weir group` is also driven here against the
# live group (refusals while active, reset and delete once empty).

import os
import subprocess
import threading
import time

import confluent_kafka
import kafka
from kafka.structs import TopicPartition

from clientlib import BOOTSTRAP, ck_admin, ck_config, ck_create, ck_producer, unique, wait_for

PARTITIONS = 12
RECORDS = 1200
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WEIR = os.environ.get("WEIR_BIN", os.path.join(ROOT, "target", "debug", "weir"))


def weir(*args):
    return subprocess.run([WEIR, *args, "-b", BOOTSTRAP], capture_output=True, text=True,
                          timeout=60)


class Member(threading.Thread):
    """Polls its consumer, records (partition, offset, key) per record and commits after each
    batch it processed, until stopped."""

    def __init__(self, name, make_consumer, kind):
        super().__init__(daemon=True)
        self.name = name
        self.kind = kind
        self.make_consumer = make_consumer
        self.received = []
        self.assignment = set()
        self.stop = threading.Event()
        self.error = None

    def run(self):
        try:
            consumer = self.make_consumer()
            while not self.stop.is_set():
                if self.kind == "kafka-python":
                    batches = consumer.poll(timeout_ms=200)
                    got = [(m.partition, m.offset, m.key) for ms in batches.values() for m in ms]
                    self.assignment = {tp.partition for tp in consumer.assignment()}
                    if got:
                        consumer.commit()
                else:
                    messages = consumer.consume(num_messages=500, timeout=0.2)
                    got = []
                    for m in messages:
                        assert m.error() is None, m.error()
                        got.append((m.partition(), m.offset(), m.key()))
                    self.assignment = {tp.partition for tp in consumer.assignment()}
                    if got:
                        consumer.commit(asynchronous=False)
                self.received.extend(got)
            consumer.close()
        except Exception as error:  # surfaced by the test
            self.error = error


def test_kafka_python_and_librdkafka_members_share_a_group_exactly_once():
    topic = unique("page-views")
    group = unique("mixed")
    ck_create(ck_admin(), topic, partitions=PARTITIONS)

    def kp_member():
        return kafka.KafkaConsumer(
            topic, bootstrap_servers=BOOTSTRAP, group_id=group, enable_auto_commit=False,
            auto_offset_reset="earliest", session_timeout_ms=10000, heartbeat_interval_ms=500,
            request_timeout_ms=30000, client_id="kafka-python-member")

    def ck_member():
        consumer = confluent_kafka.Consumer(ck_config(**{
            "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000, "heartbeat.interval.ms": 500,
            "partition.assignment.strategy": "range,roundrobin",
            "client.id": "librdkafka-member", "fetch.wait.max.ms": 100}))
        consumer.subscribe([topic])
        return consumer

    members = [Member("kp-%d" % i, kp_member, "kafka-python") for i in range(2)]
    members += [Member("ck-%d" % i, ck_member, "librdkafka") for i in range(2)]
    for member in members:
        member.start()
    try:
        def settled():
            for m in members:
                assert m.error is None, "%s: %r" % (m.name, m.error)
            owned = [m.assignment for m in members]
            union = set().union(*owned)
            return all(owned) and len(union) == PARTITIONS and sum(map(len, owned)) == PARTITIONS
        wait_for(settled, "all four members own a share of the 12 partitions", timeout=60)
        owners = {p: m.name for m in members for p in m.assignment}

        described = weir("group", "describe", group)
        assert described.returncode == 0, described.stderr
        assert "members:   4" in described.stdout, described.stdout
        assert "kafka-python-member" in described.stdout and "librdkafka-member" in described.stdout
        refused = weir("group", "reset-offsets", group, "--topic", topic, "--to", "earliest",
                       "--execute")
        assert refused.returncode == 1 and "is active" in refused.stderr, refused.stderr
        refused = weir("group", "delete", group)
        assert refused.returncode == 1 and "still has members" in refused.stderr, refused.stderr

        producer = ck_producer()
        expected = []
        for i in range(RECORDS):
            key = ("user-%d" % (i % 97)).encode()
            producer.produce(topic, key=key, value=b"view-%d" % i)
            expected.append(key)
        producer.flush(30)

        wait_for(lambda: sum(len(m.received) for m in members) >= RECORDS,
                 "every record consumed by the group", timeout=60)
        time.sleep(1)  # anything extra (a duplicate) would arrive now
        received = [r for m in members for r in m.received]
        assert len(received) == RECORDS, "%d records received, %d produced" % (
            len(received), RECORDS)
        assert len({(p, o) for p, o, _ in received}) == RECORDS
        assert sorted(k for _, _, k in received) == sorted(expected)
        for member in members:
            for partition, _, _ in member.received:
                assert owners[partition] == member.name, "partition %d read by %s and %s" % (
                    partition, owners[partition], member.name)
        # Every member took part: both client families consumed.
        assert all(m.received for m in members), [len(m.received) for m in members]

        def committed_everything():
            out = weir("group", "describe", group)
            return out.returncode == 0 and "lag:       0" in out.stdout
        wait_for(committed_everything, "the group's lag reaches 0 in `weir group describe`")
    finally:
        for member in members:
            member.stop.set()
        for member in members:
            member.join(30)

    # Both clients read the same committed offsets: each partition's end.
    kp_admin = kafka.KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    wait_for(lambda: any(g[0] == group for g in kp_admin.list_consumer_groups()),
             "kafka-python lists the group")
    offsets = kp_admin.list_consumer_group_offsets(group)
    ends = kafka.KafkaConsumer(bootstrap_servers=BOOTSTRAP).end_offsets(
        [TopicPartition(topic, p) for p in range(PARTITIONS)])
    assert {tp.partition: meta.offset for tp, meta in offsets.items()} == {
        tp.partition: end for tp, end in ends.items()}
    ck = confluent_kafka.Consumer(ck_config(**{"group.id": group}))
    committed = ck.committed([confluent_kafka.TopicPartition(topic, p) for p in range(PARTITIONS)],
                             timeout=10)
    assert sum(tp.offset for tp in committed) == RECORDS
    ck.close()

    # The group is empty now: reset is allowed (dry run first), then delete.
    wait_for(lambda: "members:   0" in weir("group", "describe", group).stdout,
             "the members' leave is visible")
    dry = weir("group", "reset-offsets", group, "--all-topics", "--to", "earliest")
    assert dry.returncode == 0 and "dry run" in dry.stdout, dry.stdout + dry.stderr
    assert sum(meta.offset for meta in kp_admin.list_consumer_group_offsets(group).values()) \
        == RECORDS
    done = weir("group", "reset-offsets", group, "--all-topics", "--to", "earliest", "--execute")
    assert done.returncode == 0, done.stderr
    assert all(meta.offset == 0 for meta in kp_admin.list_consumer_group_offsets(group).values())
    listed = weir("group", "list")
    assert group in listed.stdout, listed.stdout
    deleted = weir("group", "delete", group)
    assert deleted.returncode == 0, deleted.stderr
    assert group not in weir("group", "list").stdout
    kp_admin.close()


def kp_group_member(topic, group, name):
    def make():
        return kafka.KafkaConsumer(
            topic, bootstrap_servers=BOOTSTRAP, group_id=group, enable_auto_commit=False,
            auto_offset_reset="earliest", session_timeout_ms=10000, heartbeat_interval_ms=500,
            request_timeout_ms=30000, client_id="kafka-python-" + name)
    return Member(name, make, "kafka-python")


def ck_group_member(topic, group, name):
    def make():
        consumer = confluent_kafka.Consumer(ck_config(**{
            "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000, "heartbeat.interval.ms": 500,
            "partition.assignment.strategy": "range,roundrobin",
            "client.id": "librdkafka-" + name, "fetch.wait.max.ms": 100}))
        consumer.subscribe([topic])
        return consumer
    return Member(name, make, "librdkafka")


def test_page_views_groups_of_mixed_clients_each_get_every_view_once():
    """The page-views scenario of the seeds with kafka-python and librdkafka members in every
    group: a 12-partition topic keyed by user id, group A of 4, group B of 12 plus a 13th that
    gets nothing, group C of 6. Each group receives every view exactly once with one owner per
    partition at a time; a member leaving (group A) and a member joining (group C) hand
    partitions over without losing or repeating a view. (kill -9 of a member is covered with
    librdkafka in tests/consumer_groups.rs.)"""
    topic = unique("page-views")
    ck_create(ck_admin(), topic, partitions=PARTITIONS)
    sizes = {"A": 4, "B": 13, "C": 6}
    groups, group_ids = {}, {}
    for label, size in sizes.items():
        group = group_ids[label] = unique("views-" + label)
        # Alternate the client families, so every group has both.
        groups[label] = [
            (kp_group_member if i % 2 == 0 else ck_group_member)(topic, group, "%s%d" % (label, i))
            for i in range(size)]
    everyone = [m for members in groups.values() for m in members]
    for member in everyone:
        member.start()

    def check_errors():
        for m in everyone:
            assert m.error is None, "%s: %r" % (m.name, m.error)

    def owns_all(members, owners_expected):
        check_errors()
        owned = [m.assignment for m in members if m.is_alive() and not m.stop.is_set()]
        with_partitions = [o for o in owned if o]
        union = set().union(*owned)
        return (len(union) == PARTITIONS and sum(map(len, owned)) == PARTITIONS
                and len(with_partitions) == owners_expected)

    producer = ck_producer()
    produced = []

    def produce(count):
        for _ in range(count):
            i = len(produced)
            key = ("user-%d" % (i % 211)).encode()
            producer.produce(topic, key=key, value=b"view-%d" % i)
            produced.append(key)
        producer.flush(30)

    def received(members):
        return [r for m in members for r in m.received]

    def each_view_once(label):
        views = received(groups[label])
        return len(views) == len(produced)

    try:
        wait_for(lambda: owns_all(groups["A"], 4) and owns_all(groups["B"], 12)
                 and owns_all(groups["C"], 6),
                 "every group owns the 12 partitions (13th member of B idle)", timeout=90)
        idle = [m for m in groups["B"] if not m.assignment]
        assert len(idle) == 1, [sorted(m.assignment) for m in groups["B"]]
        produce(1200)
        for label in groups:
            wait_for(lambda: each_view_once(label), "group %s consumed every view" % label,
                     timeout=60)

        # A member of group A leaves cleanly; the three others take its partitions.
        leaving = groups["A"][0]
        leaving.stop.set()
        leaving.join(30)
        wait_for(lambda: owns_all(groups["A"][1:], 3), "group A rebalanced over 3 members",
                 timeout=60)
        # One more member joins group C.
        newcomer = kp_group_member(topic, group_ids["C"], "C6")
        groups["C"].append(newcomer)
        everyone.append(newcomer)
        newcomer.start()
        wait_for(lambda: owns_all(groups["C"], 7), "group C rebalanced over 7 members",
                 timeout=60)
        produce(1200)
        for label in groups:
            wait_for(lambda: each_view_once(label), "group %s consumed every view" % label,
                     timeout=60)
        time.sleep(1)  # a duplicate would arrive now
        check_errors()
        assert idle[0].received == [], "the 13th member of B got views"
        for label, members in groups.items():
            views = received(members)
            assert len(views) == len(produced), "group %s: %d views, %d produced" % (
                label, len(views), len(produced))
            assert len({(p, o) for p, o, _ in views}) == len(produced), label
            assert sorted(k for _, _, k in views) == sorted(produced), label
            kinds = {m.kind for m in members if m.received}
            assert kinds == {"kafka-python", "librdkafka"}, (label, kinds)
    finally:
        for member in everyone:
            member.stop.set()
        for member in everyone:
            member.join(30)
