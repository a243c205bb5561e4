#!/usr/bin/env bash
# The binary a user gets (issue #21, item 17): its size as built and stripped, and how long
# it takes to start: `meshplane --version` (the process alone) and `meshplane serve` until
# /healthz answers (store opened and migrated, reconcilers started), medians of N runs.
#
# Usage: bench/binary.sh [BINARY] [N]   (default: builds `cargo build --profile dist`)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/meshplane-target}"
binary="${1:-}"
runs="${2:-10}"
if [ -z "$binary" ]; then
  cargo build --locked --profile dist -p meshplane
  binary="$CARGO_TARGET_DIR/dist/meshplane"
fi
binary="$(realpath "$binary")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"   # the embedded lake of `serve` lives in ./data
cp "$binary" "$work/meshplane"
strip -o "$work/stripped" "$work/meshplane"
mib() { echo "scale=1; $(stat -c %s "$1") / 1048576" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now_ms() { date +%s%N | cut -c1-13; }
version_ms=$(for _ in $(seq "$runs"); do
  s=$(date +%s%N); "$work/stripped" --version > /dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000 ))
done | median)
serve_ms=$(for i in $(seq "$runs"); do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  s=$(now_ms)
  "$work/stripped" serve --listen "127.0.0.1:$port" --database-url "sqlite://$work/s$i.db" > /dev/null 2>&1 &
  pid=$!
  until curl -sf "http://127.0.0.1:$port/healthz" > /dev/null; do sleep 0.005; done
  e=$(now_ms)
  kill "$pid"
  wait "$pid" || true
  echo $(( e - s ))
done | median)
echo "binary: $binary"
echo "size: $(mib "$work/meshplane") MiB as built, $(mib "$work/stripped") MiB stripped"
echo "start-up (median of $runs): --version $(echo "scale=1; $version_ms / 1000" | bc) ms; serve until /healthz answers $serve_ms ms (a new SQLite store each time)"
