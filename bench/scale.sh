#!/usr/bin/env bash
# Scale check (issue 4, item 4): 1M users x 100K posts x 20M interactions from the seeded
# generator, loaded with COPY, trained with recsys_train() at maintenance_work_mem = 4GB.
# Reports COPY time, the train report's phases, and the backend's peak RSS (VmHWM).
#   bash bench/scale.sh [USERS POSTS INTERACTIONS]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
USERS="${1:-1000000}"; POSTS="${2:-100000}"; INTER="${3:-20000000}"
export PGHOST=127.0.0.1 PGPORT=54343 PGUSER=postgres
DIR=/tmp/pg_recsys-bench-scale; DATA="$ROOT/bench/out/scale_${INTER}"
bash scripts/install_ext.sh >/dev/null
t0=$(date +%s.%N)
cargo run --release -q -p recsys-core --example synth -- 11 "$USERS" "$POSTS" "$INTER" "$DATA"
t1=$(date +%s.%N)
source bench/lib.sh
bench_cluster "$DIR" "$DATA"
"${P[@]}" -c "VACUUM ANALYZE"
t2=$(date +%s.%N)
# Sample the backend's peak RSS while it trains.
"${P[@]}" -At -c "SET maintenance_work_mem = '4GB'" -c "SELECT pg_backend_pid()" \
  -c "SELECT jsonb_pretty(r - 'loss') FROM recsys_train() r" \
  -c "SELECT 'VmHWM ' || pg_read_file('/proc/' || pg_backend_pid() || '/status')" 2>/dev/null \
  | grep -E '^[0-9]+$|^ |^\{|^\}|VmHWM|VmRSS' | grep -Ev '^\s*$' > "$DATA/train.txt" || true
t3=$(date +%s.%N)
echo "generate $(echo "$t1 - $t0" | bc) s, COPY + VACUUM ANALYZE $(echo "$t2 - $t1" | bc) s, recsys_train (wall, incl. psql) $(echo "$t3 - $t2" | bc) s"
cat "$DATA/train.txt"
du -sh "$DIR" | sed 's/^/cluster size /'
