#!/usr/bin/env bash
# Bounded libFuzzer run of the request decoder (fuzz/fuzz_targets/request_decode.rs) on stable
# Rust (no sanitizer: `-s none`). Usage: tests/fuzz.sh [seconds]. Installs cargo-fuzz if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet
fi
mkdir -p fuzz/corpus/request_decode
cargo fuzz run request_decode -s none -- -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1
