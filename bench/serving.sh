#!/usr/bin/env bash
# Serving benchmark under pgbench (issue 4, item 3.4; issue 12, item 6): recsys_recommend / similar /
# trending against pgvector over the same factors (exact and HNSW; see bench/serving.py).
#   bash bench/serving.sh [POSTS] [SECONDS] [CLIENTS...]     (defaults: 100000 30 1 2 8 16)
# Needs pgvector installed in the system PostgreSQL 15 (scripts/setup.sh builds it).
# BENCH_SKIP_INSTALL=1 skips scripts/install_ext.sh (uses the extension already installed).
# Seeded synthetic data (seed 3: POSTS/5 users, 10 × POSTS interactions, follows), timestamps
# shifted to end now (so trending's 7-day window has data), in a throwaway cluster on port 54342,
# trained with default options. Prints markdown tables.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
POSTS="${1:-100000}"; SECS="${2:-30}"
if [ $# -gt 2 ]; then shift 2; CLIENTS=("$@"); else CLIENTS=(1 2 8 16); fi
USERS=$(( POSTS / 5 )); INTER=$(( POSTS * 10 ))
export PGHOST=127.0.0.1 PGPORT=54342 PGUSER=postgres
DIR=/tmp/pg_recsys-bench-serving; DATA="$ROOT/bench/out/serving_$POSTS"
[ -n "${BENCH_SKIP_INSTALL:-}" ] || bash scripts/install_ext.sh >/dev/null
cargo run --release -q -p recsys-core --example synth -- 3 "$USERS" "$POSTS" "$INTER" "$DATA" 2>/dev/null
source bench/lib.sh
bench_cluster "$DIR" "$DATA"
# The shift's UPDATE leaves each row's old version behind: VACUUM FULL rewrites the tables and
# their indexes as a load of the shifted rows would have them (interactions' (user_id,
# created_at) index was 147 MB instead of 56 MB at 100K posts, more than the default
# shared_buffers), then VACUUM sets the visibility map that index-only reads need.
"${P[@]}" -c "UPDATE interactions SET created_at = created_at + (now() - timestamptz '2026-01-01 00:00:00+00')" \
          -c "UPDATE posts SET created_at = created_at + (now() - timestamptz '2026-01-01 00:00:00+00')" \
          -c "VACUUM FULL interactions" -c "VACUUM FULL posts" -c "VACUUM ANALYZE"
"${P[@]}" -c "SET maintenance_work_mem = '2GB'" -c "SELECT recsys_train()" >/dev/null 2>&1
python3 bench/serving.py "$POSTS" "$SECS" "${CLIENTS[@]}"
