#!/usr/bin/env bash
# Benchmark: `meshplane test` against `datacontract test` (datacontract-cli 1.2.8) on the
# same contract (bench/orders.odcs.yaml, 25+ checks) and the same data, side by side:
#   - a 10,000,000-row Parquet file from bench/gen_orders.py (deterministic);
#   - a 1,000,000-row PostgreSQL table with the same generator.
# Reports wall time and peak memory (RSS) of each tool, whether every verdict agrees
# (bench/compare.py), and the time of one hand-written single-statement query computing the
# same aggregates (DuckDB on the file, PostgreSQL on the table) as the general-engine reference.
# Usage: bench/test.sh [ROWS] [PG_ROWS]   (defaults 10000000 and 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/meshplane-target}"
rows="${1:-10000000}"
pg_rows="${2:-1000000}"
out="$(pwd)/bench/out/test"
mkdir -p "$out/data"

if [ ! -x bench/out/venv/bin/datacontract ]; then
  python3 -m venv bench/out/venv
  bench/out/venv/bin/pip install -q -r bench/requirements.txt
fi
py=bench/out/venv/bin/python
datacontract="$(pwd)/bench/out/venv/bin/datacontract"

cargo build --release -q -p meshplane
meshplane="$CARGO_TARGET_DIR/release/meshplane"

[ -f "$out/data/orders.parquet.$rows" ] || { $py bench/gen_orders.py "$out/data" "$rows" > /dev/null; touch "$out/data/orders.parquet.$rows"; }
[ -f "$out/data/orders-shuffled.parquet.$rows" ] || {
  $py bench/gen_orders.py "$out/data" "$rows" --shuffled > /dev/null; touch "$out/data/orders-shuffled.parquet.$rows"; }
cp bench/orders.odcs.yaml "$out/"

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "meshplane: $($meshplane --version)"
echo "datacontract-cli: $($datacontract --version 2>/dev/null | tail -1)"
echo "duckdb: $($py -c 'import duckdb; print(duckdb.__version__)')"

# Runs a command 3 times (nothing is cached between runs by either tool); prints the best
# wall time and the peak RSS of that run.
measure() {
  local label=$1; shift
  local best="" rss=""
  for _ in 1 2 3; do
    /usr/bin/time -f "%e %M" -o "$out/time" "$@" > /dev/null 2>&1 || true
    read -r t m < <(tail -n1 "$out/time")
    if [ -z "$best" ] || (( $(echo "$t < $best" | bc) )); then best=$t; rss=$m; fi
  done
  printf "%-44s %8.2f s %8d MiB\n" "$label" "$best" "$((rss / 1024))"
}

run_pair() {
  local server=$1 rows=$2
  local -n reference=$3
  echo
  echo "== server $server, $rows rows =="
  printf "%-44s %10s %12s\n" "what" "wall" "peak RSS"
  (cd "$out" && measure "meshplane test" "$meshplane" test orders.odcs.yaml --server "$server" -o json)
  (cd "$out" && measure "datacontract test (1.2.8)" "$datacontract" test orders.odcs.yaml --server "$server" --output-format json --output dcli.json)
  measure "reference: one hand-written statement" "${reference[@]}"
  (cd "$out" && "$meshplane" test orders.odcs.yaml --server "$server" -o json > mp.json || true)
  $py bench/compare.py "$out/mp.json" "$out/dcli.json" | tail -1
}

reference_duckdb=($py bench/reference.py duckdb "$out/data/orders.parquet")
run_pair local "$rows" reference_duckdb
reference_shuffled=($py bench/reference.py duckdb "$out/data/orders-shuffled.parquet")
run_pair shuffled "$rows" reference_shuffled

# PostgreSQL: a database of its own, loaded from the generator's CSV.
# Trust authentication: any password is accepted; datacontract-cli insists on one.
export MESHPLANE_POSTGRES_USER=postgres DATACONTRACT_POSTGRES_USERNAME=postgres DATACONTRACT_POSTGRES_PASSWORD=unused
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS meshplane_bench" -c "CREATE DATABASE meshplane_bench"
$py bench/gen_orders.py "$out/pg" "$pg_rows" --formats csv > /dev/null
psql -q -h 127.0.0.1 -U postgres -d meshplane_bench <<SQL
CREATE TABLE orders (order_id text, customer_id bigint, customer_email text, status text, amount numeric(12,2),
  currency text, quantity integer, country text, created_at timestamptz);
\copy orders FROM '$out/pg/orders.csv' WITH (FORMAT csv, HEADER true)
ANALYZE orders;
SQL
reference_pg=($py bench/reference.py postgres meshplane_bench)
run_pair pg "$pg_rows" reference_pg
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE meshplane_bench"
