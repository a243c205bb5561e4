#!/usr/bin/env bash
# What policy evaluation adds to an apply (issue #24): 100 policies asked about each of the
# registry bench's 12,000 documents, in one process, release build. See
# crates/policy/examples/policy_bench.rs; results in bench/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/meshplane-target}"
cargo run --quiet --release --locked -p meshplane-policy --example policy_bench
