#!/usr/bin/env bash
# kcat (librdkafka's command-line client) against a running Weir broker at $WEIR_BOOTSTRAP:
# -L metadata (text and JSON), -P keyed records with headers into an auto-created topic, -C
# reading back keys, values, headers, timestamps, partitions and offsets (-f and -J), start
# positions (-o beginning / -2 / <offset> / s@<timestamp>, -c), -Q offsets by timestamp, every
# -z codec and acks level round trip, and null vs empty keys and values (-Z).
# run.sh starts the broker and calls this; by hand: WEIR_BOOTSTRAP=127.0.0.1:9092 bash kcat.sh
set -euo pipefail

bootstrap="${WEIR_BOOTSTRAP:?set WEIR_BOOTSTRAP to the broker address (host:port)}"
run_id="$(date +%s)-$$"
checks=0

fail() {
  echo "kcat.sh: FAILED: $*" >&2
  exit 1
}

# expect_eq WHAT EXPECTED ACTUAL
expect_eq() {
  if [ "$2" != "$3" ]; then
    echo "kcat.sh: FAILED: $1" >&2
    diff <(printf '%s\n' "$2") <(printf '%s\n' "$3") | head -40 >&2 || true
    exit 1
  fi
  checks=$((checks + 1))
}

# Every kcat call is bounded: a broker that stops answering fails the script, not the CI job.
k() {
  timeout 60 kcat -b "$bootstrap" -X broker.address.family=v4 "$@"
}

# Reads a whole topic from the beginning and exits at its end, in FORMAT.
consume() {
  local topic=$1 format=$2
  shift 2
  k -C -q -t "$topic" -o beginning -e -f "$format" "$@"
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# --- -L: the broker and its topics -------------------------------------------------------------
topic="kcat-keyed-$run_id"
# Producing to an unknown topic creates it (auto.create.topics.enable, num.partitions=1).
printf 'seed\n' | k -P -t "$topic"
metadata=$(k -L)
grep -qx " 1 brokers:" <<<"$metadata" || fail "kcat -L lists one broker:"$'\n'"$metadata"
grep -qx "  broker 1 at $bootstrap (controller)" <<<"$metadata" ||
  fail "kcat -L shows broker 1 at $bootstrap as controller:"$'\n'"$metadata"
grep -qx "  topic \"$topic\" with 1 partitions:" <<<"$metadata" ||
  fail "the auto-created topic has 1 partition:"$'\n'"$metadata"
grep -qx "    partition 0, leader 1, replicas: 1, isrs: 1" <<<"$metadata" ||
  fail "partition 0 is led by broker 1:"$'\n'"$metadata"
checks=$((checks + 4))

json=$(k -L -J -t "$topic")
summary=$(python3 -c '
import json, sys
m = json.load(sys.stdin)
brokers = [(b["id"], b["name"]) for b in m["brokers"]]
topics = [(t["topic"], [(p["partition"], p["leader"], p.get("error")) for p in t["partitions"]])
          for t in m["topics"]]
print(brokers, topics)' <<<"$json")
expect_eq "kcat -L -J" "[(1, '$bootstrap')] [('$topic', [(0, 1, None)])]" "$summary"

# --- -P -K: -H, then -C -f: keys, values, headers, timestamps, partitions, offsets --------------
before=$(now_ms)
printf 'k1:v1\nk2:value two\nk3:\n:v4\nk5:v5:with:colons\n' |
  k -P -t "$topic" -K: -H a=b -H bin=x -H a=c
after=$(now_ms)

lines=$(consume "$topic" '%k|%s|%h|%T|%p|%o\n' -o 1)
expected="k1|v1|a=b,bin=x,a=c|0|1
k2|value two|a=b,bin=x,a=c|0|2
k3||a=b,bin=x,a=c|0|3
|v4|a=b,bin=x,a=c|0|4
k5|v5:with:colons|a=b,bin=x,a=c|0|5"
# %T is the CreateTime kcat stamped while producing: inside the produce window. Compare the
# rest exactly.
without_timestamps=""
while IFS='|' read -r key value headers ts partition offset; do
  if [ "$ts" -lt "$before" ] || [ "$ts" -gt "$after" ]; then
    fail "offset $offset: timestamp $ts outside the produce window [$before, $after]"
  fi
  without_timestamps+="$key|$value|$headers|$partition|$offset"$'\n'
done <<<"$lines"
expect_eq "kcat -C -f '%k|%s|%h|%T|%p|%o'" "$expected" "${without_timestamps%$'\n'}"
expect_eq "the seed record" "|seed||0|0" "$(consume "$topic" '%k|%s|%h|%p|%o\n' -c 1)"

# The same through -J (key/payload/headers/tstype as JSON).
decoded=$(k -C -q -t "$topic" -o 1 -e -J | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    print(m["key"], m["payload"], m["headers"], m["tstype"], m["partition"], m["offset"])')
expected="k1 v1 ['a', 'b', 'bin', 'x', 'a', 'c'] create 0 1
k2 value two ['a', 'b', 'bin', 'x', 'a', 'c'] create 0 2
k3  ['a', 'b', 'bin', 'x', 'a', 'c'] create 0 3
 v4 ['a', 'b', 'bin', 'x', 'a', 'c'] create 0 4
k5 v5:with:colons ['a', 'b', 'bin', 'x', 'a', 'c'] create 0 5"
expect_eq "kcat -C -J" "$expected" "$decoded"

# --- start positions ---------------------------------------------------------------------------
expect_eq "-o -2 (the last two)" "|4
k5|5" "$(k -C -q -t "$topic" -o -2 -e -f '%k|%o\n')"
expect_eq "-o 3" "3 4 5" "$(k -C -q -t "$topic" -o 3 -e -f '%o ' | xargs)"
expect_eq "-o 1 -c 2" "1 2" "$(k -C -q -t "$topic" -o 1 -c 2 -f '%o ' | xargs)"
expect_eq "-o end -e reads nothing" "" "$(k -C -q -t "$topic" -o end -e -f '%o\n')"

# By timestamp: kcat -P cannot set timestamps, so produce five records a little apart in time
# and position by the timestamps they got.
time_topic="kcat-times-$run_id"
base=$(($(now_ms) - 3600000))
for i in 0 1 2 3 4; do
  printf 'r%d\n' "$i" | k -P -t "$time_topic"
  sleep 0.02
done
read -r -a stamps <<<"$(consume "$time_topic" '%T ')"
expect_eq "five stamped records" 5 "${#stamps[@]}"
for i in 1 2 3 4; do
  [ "${stamps[$i]}" -ge "${stamps[$((i - 1))]}" ] || fail "timestamps go backwards: ${stamps[*]}"
done
[ "${stamps[0]}" -gt "$base" ] || fail "timestamp ${stamps[0]} is not recent"
# -o s@T starts at the first record with timestamp >= T.
expect_eq "-o s@<third timestamp>" "$(printf 'r2\nr3\nr4')" \
  "$(k -C -q -t "$time_topic" -o "s@${stamps[2]}" -e -f '%s\n')"
# -Q: the offset for a timestamp (ListOffsets by time).
expect_eq "kcat -Q" "$time_topic [0] offset 3" \
  "$(k -Q -t "$time_topic:0:${stamps[3]}" | grep -o "$time_topic \[0\] offset [0-9-]*")"
expect_eq "kcat -Q after the last record" "$time_topic [0] offset -1" \
  "$(k -Q -t "$time_topic:0:$((stamps[4] + 1000))" | grep -o "$time_topic \[0\] offset [0-9-]*")"

# --- null vs empty: -Z sends empty keys and values as NULL -------------------------------------
null_topic="kcat-null-$run_id"
printf ':\nk:\n:v\n' | k -P -t "$null_topic" -K: -Z
printf ':\n' | k -P -t "$null_topic" -K:
# %K / %S are key / value lengths: -1 for NULL.
expect_eq "null vs empty (lengths)" "-1 -1
1 -1
-1 1
0 0" "$(consume "$null_topic" '%K %S\n')"

# --- codecs and acks -----------------------------------------------------------------------------
expected_lines=$(seq 1 500 | sed 's/^/line-/')
for codec in none gzip snappy lz4 zstd; do
  for acks in 0 1 all; do
    codec_topic="kcat-$codec-acks$acks-$run_id"
    # acks 1 and all wait for the broker; 0 does not, so the read below waits for the records.
    k -P -t "$codec_topic" -z "$codec" -X "acks=$acks" -X linger.ms=20 <<<"$expected_lines"
    got=""
    for _ in $(seq 50); do
      got=$(consume "$codec_topic" '%s\n' 2>/dev/null || true)
      [ "$(wc -l <<<"$got")" -ge 500 ] && break
      sleep 0.1
    done
    expect_eq "-z $codec acks=$acks round trip" "$expected_lines" "$got"
  done
done

echo "kcat.sh: $checks checks passed"
