#!/usr/bin/env bash
# Benchmark: `meshplane lint` over 1,000 generated contracts, and per file against
# `datacontract lint` (datacontract-cli 1.2.8) on the same 20 files.
# Usage: bench/lint.sh   (needs python3; installs datacontract-cli into bench/out/venv)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/meshplane-target}"
out=bench/out
mkdir -p "$out"

python3 bench/gen_contracts.py "$out/contracts" 1000
cargo build --release -q -p meshplane
meshplane="$CARGO_TARGET_DIR/release/meshplane"

if [ ! -x "$out/venv/bin/datacontract" ]; then
  python3 -m venv "$out/venv"
  "$out/venv/bin/pip" install -q -r bench/requirements.txt
fi
datacontract="$out/venv/bin/datacontract"

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr)"
echo "meshplane: $($meshplane --version)"
echo "datacontract-cli: $($datacontract --version 2>/dev/null | tail -1)"
echo "files: $(ls "$out/contracts" | wc -l), $(du -sh "$out/contracts" | cut -f1)"

# Whole directory, best of 5.
best=""
for _ in 1 2 3 4 5; do
  start=$(date +%s.%N)
  "$meshplane" lint "$out/contracts" > /dev/null || { echo "meshplane found problems in generated contracts"; exit 1; }
  end=$(date +%s.%N)
  t=$(echo "$end - $start" | bc)
  if [ -z "$best" ] || (( $(echo "$t < $best" | bc) )); then best=$t; fi
done
echo "meshplane lint, 1000 files in one run: best of 5 = ${best}s"

# Per file, 20 files, each tool started once per file (as a CI job or pre-commit hook would).
files=$(ls "$out/contracts"/*.yaml | head -20)
time_each() {
  local start end
  start=$(date +%s.%N)
  for f in $files; do "$@" "$f" > /dev/null 2>&1 || true; done
  end=$(date +%s.%N)
  echo "scale=4; ($end - $start) / 20" | bc
}
m=$(time_each "$meshplane" lint)
d=$(time_each "$datacontract" lint)
echo "per file (mean of 20, process start included): meshplane ${m}s, datacontract lint ${d}s"
echo "speed-up: $(echo "scale=1; $d / $m" | bc)x"
