#!/usr/bin/env bash
# Load test (issue 6, item 8): pgbench with 16 clients for 60 s on a mix of recommend (50%),
# similar (20%), trending (10%) and interaction inserts (20%), with a recsys_train() started in
# the middle. Prints errors and p50/p99 per statement; exits non-zero on any failed transaction.
#   bash bench/load.sh [POSTS] [SECONDS] [CLIENTS]      (defaults: 10000 60 16)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
POSTS="${1:-10000}"; SECS="${2:-60}"; CLIENTS="${3:-16}"
USERS=$(( POSTS / 5 )); INTER=$(( POSTS * 10 ))
export PGHOST=127.0.0.1 PGPORT=54344 PGUSER=postgres
DIR=/tmp/pg_recsys-bench-load; DATA="$ROOT/bench/out/serving_$POSTS"; W="$ROOT/bench/out/load"
bash scripts/install_ext.sh >/dev/null
cargo run --release -q -p recsys-core --example synth -- 3 "$USERS" "$POSTS" "$INTER" "$DATA" 2>/dev/null
source bench/lib.sh
bench_cluster "$DIR" "$DATA"
# VACUUM FULL: the shift's UPDATE would otherwise leave half of the table and its indexes dead
# (see bench/serving.sh).
"${P[@]}" -c "UPDATE interactions SET created_at = created_at + (now() - timestamptz '2026-01-01 00:00:00+00')" \
          -c "VACUUM FULL interactions" -c "VACUUM ANALYZE"
"${P[@]}" -c "SELECT recsys_train()" >/dev/null 2>&1
rm -rf "$W"; mkdir -p "$W"
cat > "$W/recommend.sql" <<SQL
\set uid random(1, $USERS)
SELECT count(*) FROM recsys_recommend(:uid, 20);
SQL
cat > "$W/similar.sql" <<SQL
\set pid random(1, $POSTS)
SELECT count(*) FROM recsys_similar(:pid, 20);
SQL
cat > "$W/trending.sql" <<SQL
SELECT count(*) FROM recsys_trending(20);
SQL
cat > "$W/insert.sql" <<SQL
\set uid random(1, $USERS)
\set pid random(1, $POSTS)
INSERT INTO interactions (user_id, post_id, kind) VALUES (:uid, :pid, 'like');
SQL
# The retrain starts at a third of the run.
( sleep $(( SECS / 3 )); s=$(date +%s.%N); PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "SELECT recsys_train()" >/dev/null 2>"$W/train.err"; \
  echo "retrain: started at $(( SECS / 3 )) s, took $(echo "$(date +%s.%N) - $s" | bc) s, exit $?" > "$W/train.txt" ) &
cd "$W"
pgbench -n -c "$CLIENTS" -j 2 -T "$SECS" --log --log-prefix "$W/log" \
  -f recommend.sql@50 -f similar.sql@20 -f trending.sql@10 -f insert.sql@20 postgres > "$W/pgbench.txt" 2>&1 || true
wait
cd "$ROOT"
cat "$W/train.txt"
grep -E "number of failed|number of transactions actually|tps|latency average" "$W/pgbench.txt" || cat "$W/pgbench.txt"
python3 - "$W" <<'PY'
import glob, sys
names = ["recsys_recommend(k=20)", "recsys_similar(k=20)", "recsys_trending(k=20)", "INSERT interaction"]
lat = {i: [] for i in range(4)}
for f in glob.glob(sys.argv[1] + "/log*"):
    for line in open(f):
        p = line.split()
        if len(p) >= 4 and p[2] != "failed":
            lat[int(p[3])].append(int(p[2]) / 1000.0)
print("\n| statement | transactions | p50 ms | p99 ms |\n|---|---|---|---|")
for i, name in enumerate(names):
    v = sorted(lat[i])
    if v:
        print(f"| {name} | {len(v):,} | {v[len(v) // 2]:.2f} | {v[min(len(v) - 1, int(0.99 * len(v)))]:.2f} |")
PY
failed=$(grep -oP '^number of failed transactions: \K[0-9]+' "$W/pgbench.txt" || echo 0)
newmodel=$(psql -X -At -d postgres -c "SELECT max(id) FROM _recsys_model")
echo "failed transactions: $failed; models after the run: $newmodel (2 = the retrain committed)"
[ "$failed" = "0" ] && [ -s "$W/train.err" ] && { echo "retrain errors:"; cat "$W/train.err"; exit 1; }
[ "$failed" = "0" ]
