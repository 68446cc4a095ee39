#!/usr/bin/env bash
# ALS vs implicit 0.7.3 on the same data, same settings, 2 threads; prints a markdown table.
#   bash bench/als.sh [--quick]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
[ -x bench/.venv/bin/python ] || python3 -m venv bench/.venv
bench/.venv/bin/python -c "import implicit, scipy, numpy" 2>/dev/null || \
  bench/.venv/bin/pip install -q implicit==0.7.3 numpy scipy threadpoolctl
cargo build --release -q -p recsys-core --example bench_als
# recsys_train end to end needs the installed extension and a throwaway cluster.
PORT=54341; DIR=/tmp/pg_recsys-bench-e2e
bash scripts/install_ext.sh
bash scripts/pgcluster.sh stop "$DIR"; rm -rf "$DIR"
bash scripts/pgcluster.sh start "$DIR" "$PORT"
trap 'bash scripts/pgcluster.sh stop "$DIR"' EXIT
bench/.venv/bin/python bench/als_vs_implicit.py --e2e=$PORT "$@"
