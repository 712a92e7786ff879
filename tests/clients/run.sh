#!/usr/bin/env bash
# Drives a real Weir broker with clients other than the rdkafka crate: kafka-python and
# confluent-kafka (pytest files beside this script) and kcat (kcat.sh).
#
# Creates or reuses a venv at target/pyenv with the pinned clients of requirements.txt, builds
# the broker if target/debug/weir is missing, starts one broker on free ports with its data under
# target/test-data/ (O_DIRECT needs a real filesystem, not tmpfs), runs the tests, then stops the
# broker with SIGTERM and requires a clean exit (status 0). Prints the broker log when anything
# fails; always stops the broker and removes its data directory.
#
# Needs python3 with venv, kcat, curl and a C toolchain (tests/run.sh installs them on Debian);
# the Python packages come from PyPI. Extra arguments go to pytest (e.g. -k codec -x).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
here="$root/tests/clients"

step() { printf '\n--- %s (%s)\n' "$1" "$(date +%H:%M:%S)"; }
die() {
  echo "tests/clients/run.sh: $*" >&2
  exit 1
}

for tool in python3 kcat curl; do
  command -v "$tool" >/dev/null || die "$tool is missing (tests/run.sh installs it)"
done
python3 -c 'import venv, ensurepip' 2>/dev/null ||
  die "python3-venv is missing (apt-get install python3-venv)"

# --- Python clients ---------------------------------------------------------------------------
venv="$root/target/pyenv"
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$here/requirements.txt" "$stamp"; then
  step "installing Python clients into target/pyenv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$stamp"
fi
"$venv/bin/python" - <<'PY'
import confluent_kafka, kafka, kafka.codec as codec
missing = [name for name, ok in [("snappy", codec.has_snappy()), ("lz4", codec.has_lz4()),
                                 ("zstd", codec.has_zstd())] if not ok]
assert not missing, "kafka-python lacks codecs: %s" % missing
print("kafka-python %s, confluent-kafka %s (librdkafka %s)"
      % (kafka.__version__, confluent_kafka.__version__, confluent_kafka.libversion()[0]))
PY

# --- The broker -------------------------------------------------------------------------------
if [ ! -x target/debug/weir ]; then
  step "building the broker"
  cargo build
fi

free_port() {
  "$venv/bin/python" -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

mkdir -p target/test-data
work=$(mktemp -d "$root/target/test-data/clients-XXXXXX")
log="$work/broker.log"
broker_pid=""
passed=0

cleanup() {
  local status=$?
  if [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null; then
    kill -KILL "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
  fi
  if [ "$passed" != 1 ]; then
    echo "=== broker log ($log) ===" >&2
    cat "$log" >&2 2>/dev/null || true
    echo "=== end of broker log ===" >&2
    [ "$status" -ne 0 ] || status=1
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$(free_port)
admin_port=$(free_port)
while [ "$admin_port" = "$port" ]; do admin_port=$(free_port); done
bootstrap="127.0.0.1:$port"

step "starting weir on $bootstrap (data in ${work#"$root"/})"
WEIR_LOG=info target/debug/weir start \
  --listen "$bootstrap" \
  --data-dir "$work/data" \
  --smp 2 \
  --set "weir.admin.listen=127.0.0.1:$admin_port" \
  >"$log" 2>&1 &
broker_pid=$!
deadline=$((SECONDS + 60))
until curl -fs -o /dev/null "http://127.0.0.1:$admin_port/ready"; do
  kill -0 "$broker_pid" 2>/dev/null || die "weir exited during startup"
  [ "$SECONDS" -lt "$deadline" ] || die "weir was not ready within 60 s"
  sleep 0.1
done

export WEIR_BOOTSTRAP="$bootstrap"
export WEIR_ADMIN="127.0.0.1:$admin_port"
export PYTHONDONTWRITEBYTECODE=1

# --- The clients ------------------------------------------------------------------------------
step "kafka-python and confluent-kafka (pytest)"
"$venv/bin/python" -m pytest -p no:cacheprovider -q -ra "$here" "$@"

step "kcat"
bash "$here/kcat.sh"

# --- Clean stop -------------------------------------------------------------------------------
step "stopping weir with SIGTERM"
kill -TERM "$broker_pid"
exited=0
for _ in $(seq 600); do
  # Exited means gone or a zombie (kill -0 still succeeds on a zombie until it is reaped).
  state=$(awk '{print $3}' "/proc/$broker_pid/stat" 2>/dev/null || echo gone)
  if [ "$state" = Z ] || [ "$state" = gone ]; then
    exited=1
    break
  fi
  sleep 0.1
done
[ "$exited" = 1 ] || die "weir did not stop within 60 s of SIGTERM"
set +e
wait "$broker_pid"
stop_status=$?
set -e
broker_pid=""
[ "$stop_status" -eq 0 ] || die "weir exited with status $stop_status on SIGTERM"
if grep -qE 'panicked|ERROR' "$log"; then
  die "the broker log has errors or panics"
fi
passed=1
echo "clients: all passed; weir stopped cleanly"
