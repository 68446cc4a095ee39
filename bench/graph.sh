#!/usr/bin/env bash
# The item graphs (EASE, RP3beta) against their numpy/scipy peers on ML-100K rating >= 4, the
# same per-user 80/20 split (seed 42; both print the split fingerprint), 2 threads.
#   bash bench/graph.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
[ -x bench/.venv/bin/python ] || python3 -m venv bench/.venv
bench/.venv/bin/python -c "import numpy, scipy" 2>/dev/null || bench/.venv/bin/pip install -q numpy scipy
ML="$(bash scripts/fetch_ml100k.sh | tail -1)"
echo "pg_recsys core (cargo test --release -p recsys-core --test graph_quality):"
RECSYS_ML100K_DIR="$ML" cargo test --release -q -p recsys-core --test graph_quality -- --ignored --nocapture 2>&1 \
  | grep -E "^ML-100K|fingerprint"
echo "numpy/scipy (bench/graph_peers.py):"
RECSYS_ML100K_DIR="$ML" bench/.venv/bin/python bench/graph_peers.py
