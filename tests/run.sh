#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this script):
#   the gate (rustfmt, clippy -D warnings), unit/property tests, integration tests that start the
#   real broker and drive it with librdkafka (rdkafka crate), the kafka-python, confluent-kafka
#   and kcat client scripts, the tuning self-test, and a bounded fuzz run of request decoding.
# Installs what it needs when missing (Debian packages as root, Python clients into a venv under
# target/, cargo-fuzz with cargo). WEIR_FUZZ_SECONDS (default 60) bounds the fuzz run; 0 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n=== %s (%s)\n' "$1" "$(date +%H:%M:%S)"; }

missing=()
command -v gcc >/dev/null || missing+=(gcc)
command -v g++ >/dev/null || missing+=(g++)
command -v make >/dev/null || missing+=(make)
command -v kcat >/dev/null || missing+=(kcat)
command -v curl >/dev/null || missing+=(curl)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing ${missing[*]}: install them (apt-get install ${missing[*]}) or run as root" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# O_DIRECT needs a real filesystem: keep test data under target/, not a tmpfs /tmp.
export WEIR_TEST_DIR="${WEIR_TEST_DIR:-$root/target/test-data}"
mkdir -p "$WEIR_TEST_DIR"

step "rustfmt"
cargo fmt --check

step "clippy"
cargo clippy --all-targets -- -D warnings

step "unit, property and integration tests (librdkafka)"
cargo test --all-targets

step "tuning scripts"
bash tuning/selftest.sh

if [ -x tests/clients/run.sh ]; then
  step "kafka-python, confluent-kafka and kcat against a real broker"
  tests/clients/run.sh
fi

fuzz_seconds="${WEIR_FUZZ_SECONDS:-60}"
if [ "$fuzz_seconds" != "0" ]; then
  step "fuzzing request decoding for ${fuzz_seconds}s"
  tests/fuzz.sh "$fuzz_seconds"
fi

step "all tests passed"
