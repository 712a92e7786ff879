#!/usr/bin/env bash
# Transactions benchmarks for docs/benchmarks.md ("Transactions"): committed transactions per
# second, read_committed vs read_uncommitted consume on the same transactional data, produce
# with idempotence on and off at acks=all. Ceilings at the start and the end of the session
# (and inside the first transactions command). Raw outputs go to OUT as txn-*.txt|json.
#
#   benches/transactions.sh [OUT=docs/benchmarks] [DATA=./weir-bench-data]
#
# Run it on an otherwise idle machine; on the shared VM it ran under the build lock:
#   flock /tmp/weir-cargo.lock benches/transactions.sh docs/benchmarks target/bench-data/txn
set -u
OUT=${1:-docs/benchmarks}
DATA=${2:-./weir-bench-data}
BIN=${WEIR:-target/release/weir}
ERR=$(mktemp -d)
mkdir -p "$OUT" "$DATA"
SESSION="$OUT/txn-session.log"
: > "$SESSION"

run() {
    local name=$1
    shift
    {
        echo "== $(date -u +%H:%M:%S) $name: weir bench $*"
        echo "   $(uptime)"
    } >> "$SESSION"
    "$BIN" bench "$@" --json "$OUT/txn-$name.json" > "$OUT/txn-$name.txt" 2> "$ERR/$name.err"
    local status=$?
    echo "   exit $status, $(date -u +%H:%M:%S)" >> "$SESSION"
    if [ $status -ne 0 ]; then tail -5 "$ERR/$name.err" >> "$SESSION"; fi
}

run ceilings-start ceilings --data-dir "$DATA" --repeat 3

# Committed transactions per second: 10 records of 1 KiB per transaction.
run 1p-rr transactions --spawn-broker --data-dir "$DATA" --repeat 3
run 4p-rr transactions --spawn-broker --data-dir "$DATA" --repeat 3 --no-ceilings --producers 4
run 1p-sticky transactions --spawn-broker --data-dir "$DATA" --repeat 3 --no-ceilings \
    --partitioning client
run 1p-1part transactions --spawn-broker --data-dir "$DATA" --no-ceilings --topic one \
    --partitions 1
run 1p-abort10 transactions --spawn-broker --data-dir "$DATA" --no-ceilings --abort-every 10
run 1p-100 transactions --spawn-broker --data-dir "$DATA" --no-ceilings --records-per-txn 100
# linger.ms 0 instead of librdkafka's default 5 (the records of a transaction wait out linger).
run 1p-rr-linger0 transactions --spawn-broker --data-dir "$DATA" --repeat 3 --linger-ms 0
run 4p-rr-linger0 transactions --spawn-broker --data-dir "$DATA" --repeat 3 --no-ceilings \
    --producers 4 --linger-ms 0
run 1p-1part-linger0 transactions --spawn-broker --data-dir "$DATA" --no-ceilings --topic one \
    --partitions 1 --linger-ms 0

# read_committed vs read_uncommitted on the same data: one broker, two topics preloaded once.
BROKER_DIR="$DATA/txn-consume-broker"
rm -rf "$BROKER_DIR"
mkdir -p "$BROKER_DIR"
"$BIN" start --listen 127.0.0.1:39092 --data-dir "$BROKER_DIR" --smp 2 \
    --set weir.admin.listen=127.0.0.1:39644 > "$ERR/broker.log" 2>&1 &
BROKER=$!
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/39092) 2>/dev/null && break
    sleep 0.1
done
TARGET=(--bootstrap 127.0.0.1:39092 --broker-pid "$BROKER" --broker-admin 127.0.0.1:39644
    --data-dir "$DATA" --no-ceilings)
run preload-txn1000 transactions "${TARGET[@]}" --topic txdata --records-per-txn 1000 \
    --transactions 2000
run preload-plain produce "${TARGET[@]}" --topic plaindata --acks 1 --records 2000000
for i in 1 2 3; do
    run consume-txn-rc-r$i consume "${TARGET[@]}" --topic txdata --isolation read_committed
    run consume-txn-ru-r$i consume "${TARGET[@]}" --topic txdata --isolation read_uncommitted
    run consume-plain-ru-r$i consume "${TARGET[@]}" --topic plaindata \
        --isolation read_uncommitted
    run consume-plain-rc-r$i consume "${TARGET[@]}" --topic plaindata \
        --isolation read_committed
done
kill "$BROKER"
wait "$BROKER"
rm -rf "$BROKER_DIR"

# Second consume comparison: 5 alternating rounds, and a topic with aborted transactions
# (1 in 10 aborted: read_committed filters them out, read_uncommitted returns them).
BROKER_DIR="$DATA/txn-consume2-broker"
rm -rf "$BROKER_DIR"
mkdir -p "$BROKER_DIR"
"$BIN" start --listen 127.0.0.1:39093 --data-dir "$BROKER_DIR" --smp 2 \
    --set weir.admin.listen=127.0.0.1:39645 > "$ERR/broker2.log" 2>&1 &
BROKER=$!
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/39093) 2>/dev/null && break
    sleep 0.1
done
TARGET=(--bootstrap 127.0.0.1:39093 --broker-pid "$BROKER" --broker-admin 127.0.0.1:39645
    --data-dir "$DATA" --no-ceilings)
run c2-preload-txn transactions "${TARGET[@]}" --topic txdata --records-per-txn 1000 \
    --transactions 2000 --producers 4
run c2-preload-abort transactions "${TARGET[@]}" --topic txabort --records-per-txn 1000 \
    --transactions 2000 --producers 4 --abort-every 10
run c2-preload-plain produce "${TARGET[@]}" --topic plaindata --acks 1 --records 2000000
for i in 1 2 3 4 5; do
    run c2-txn-rc-r$i consume "${TARGET[@]}" --topic txdata --isolation read_committed
    run c2-txn-ru-r$i consume "${TARGET[@]}" --topic txdata --isolation read_uncommitted
    run c2-abort-rc-r$i consume "${TARGET[@]}" --topic txabort --isolation read_committed
    run c2-abort-ru-r$i consume "${TARGET[@]}" --topic txabort --isolation read_uncommitted
    run c2-plain-ru-r$i consume "${TARGET[@]}" --topic plaindata --isolation read_uncommitted
    run c2-plain-rc-r$i consume "${TARGET[@]}" --topic plaindata --isolation read_committed
done
kill "$BROKER"
wait "$BROKER"
rm -rf "$BROKER_DIR"

# Idempotence off vs on at acks=all, maximum rate, alternating.
for i in 1 2 3; do
    run produce-all-idem-off-r$i produce --spawn-broker --data-dir "$DATA" --no-ceilings \
        --acks all --idempotence false
    run produce-all-idem-on-r$i produce --spawn-broker --data-dir "$DATA" --no-ceilings \
        --acks all --idempotence true
done

# Attribution: idempotence off, but librdkafka's in-flight cap that idempotence imposes (5).
run produce-all-inflight5 produce --spawn-broker --data-dir "$DATA" --no-ceilings --acks all \
    --idempotence false --client-set max.in.flight.requests.per.connection=5

run ceilings-end ceilings --data-dir "$DATA" --repeat 3
echo "== done $(date -u +%H:%M:%S)" >> "$SESSION"
rm -rf "$ERR"
