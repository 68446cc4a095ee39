#!/usr/bin/env bash
# Per-backend serving memory and first-call latency, shared image vs private copy vs pgvector HNSW over
# the same factors (issue 12). Needs pgvector installed (scripts/setup.sh builds it).
#   bash bench/memory.sh [USERS POSTS INTERACTIONS]     (default 200000 20000 2000000)
# Seeded synthetic data (seed 3), default train options with maintenance_work_mem = 4GB, a
# throwaway cluster on port 54344 (max_connections 100) in /tmp/pg_recsys-bench-memory
# (MEMORY_PORT and MEMORY_DIR choose others); with pgbouncer installed, also the hybrid through
# PgBouncer on PORT + 100. Prints a markdown table.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
USERS="${1:-200000}"; POSTS="${2:-20000}"; INTER="${3:-2000000}"
export PGHOST=127.0.0.1 PGPORT="${MEMORY_PORT:-54344}" PGUSER=postgres
DIR="${MEMORY_DIR:-/tmp/pg_recsys-bench-memory}"; DATA="$ROOT/bench/out/memory_${USERS}_${POSTS}_${INTER}"
bash scripts/install_ext.sh >/dev/null
[ -x bench/.venv/bin/python ] || python3 -m venv bench/.venv
bench/.venv/bin/python -c "import psycopg" 2>/dev/null || bench/.venv/bin/pip install -q "psycopg[binary]"
cargo run --release -q -p recsys-core --example synth -- 3 "$USERS" "$POSTS" "$INTER" "$DATA" 2>/dev/null
source bench/lib.sh
bench_cluster "$DIR" "$DATA"
"${P[@]}" -c "VACUUM ANALYZE" -c "SET maintenance_work_mem = '4GB'" -c "SELECT recsys_train()" >/dev/null 2>&1
"${P[@]}" -At -c "SELECT format('model: %s users, %s posts, graph %s, train %s s', r->>'users', r->>'posts', r->'graph'->>'kind', r->'seconds'->>'total') FROM (SELECT report r FROM _recsys_model ORDER BY id DESC LIMIT 1) t"
du -sh "$DIR/pg_recsys/images" 2>/dev/null || true
bench/.venv/bin/python bench/memory.py "$USERS"
