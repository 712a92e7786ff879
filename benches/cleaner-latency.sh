#!/usr/bin/env bash
# Produce latency with and without the log cleaner running (docs/benchmarks.md, "Compaction").
#
# Three runs on a fresh broker each, identical but for the cleaner: off, on (unthrottled, the
# default), and on with log.cleaner.io.max.bytes.per.second=10 MB/s:
#   background  `weir bench produce` keyed records (20 000 keys) at 30 MB/s acks=1 into a
#               compacted topic with 1 MiB segments, so segments roll every ~70 ms and, with the
#               cleaner on (backoff 1 s, dirty ratio 0.1), there is always something to clean;
#   foreground  `weir bench e2e` at 20 MB/s acks=all on its own topic: produce → consume latency
#               percentiles, and the acknowledgement latency of its producer.
# The cleaner's bytes read during the foreground window come from /metrics, so a run where it
# did not actually work is visible.
#
# Usage: benches/cleaner-latency.sh [OUT_DIR]   (WEIR=path/to/weir, default target/release/weir;
# data under target/bench-data, which must be a real filesystem for O_DIRECT)
set -euo pipefail
cd "$(dirname "$0")/.."
weir=${WEIR:-target/release/weir}
out=${1:-docs/benchmarks}
data=target/bench-data/cleaner-latency
[ -x "$weir" ] || { echo "build first: cargo build --release ($weir missing)" >&2; exit 1; }
mkdir -p "$out"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cleaner_read() { curl -sf "http://$admin/metrics" | awk '/^weir_cleaner_bytes_read_total/ {s+=$NF} END {printf "%d\n", s}'; }

for run in off on on-10MBps; do
  case $run in
    off) cleaner=(--set log.cleaner.enable=false) ;;
    on) cleaner=(--set log.cleaner.enable=true) ;;
    on-10MBps) cleaner=(--set log.cleaner.enable=true --set log.cleaner.io.max.bytes.per.second=10000000) ;;
  esac
  rm -rf "$data" && mkdir -p "$data"
  port=$(free_port) admin=127.0.0.1:$(free_port)
  "$weir" start --listen "127.0.0.1:$port" --data-dir "$data" --smp 2 \
    --set "weir.admin.listen=$admin" "${cleaner[@]}" \
    --set log.cleaner.backoff.ms=1000 >"$data.log" 2>&1 &
  broker=$!
  for _ in $(seq 100); do curl -sf "http://$admin/metrics" >/dev/null && break; sleep 0.1; done
  echo "== cleaner $run (broker pid $broker)"
  "$weir" bench produce --bootstrap "127.0.0.1:$port" --no-ceilings --data-dir "$data-bench" \
    --topic changelog --partitions 2 --topic-config cleanup.policy=compact \
    --topic-config segment.bytes=1048576 --topic-config min.cleanable.dirty.ratio=0.1 \
    --keys 20000 --record-size 1KiB --rate 30MB/s --acks 1 --warmup 0s --duration 50s \
    >"$out/cleaner-latency-background-$run.txt" 2>&1 &
  background=$!
  sleep 10
  before=$(cleaner_read)
  "$weir" bench e2e --bootstrap "127.0.0.1:$port" --broker-pid "$broker" --broker-admin "$admin" \
    --no-ceilings --data-dir "$data-bench" --duration 30s \
    --json "$out/cleaner-latency-$run.json" | tee "$out/cleaner-latency-$run.txt"
  after=$(cleaner_read)
  echo "cleaner read $(( (after - before) / 1048576 )) MiB during the e2e window" \
    | tee -a "$out/cleaner-latency-$run.txt"
  wait "$background" || echo "background producer failed: see $out/cleaner-latency-background-$run.txt"
  kill -TERM "$broker"; wait "$broker" || true
done
rm -rf "$data" "$data-bench"
