#!/usr/bin/env bash
# Explicit-rating RMSE: pg_recsys vs scikit-surprise 1.1.5 on the same 5 folds of ML-100K.
#   bash bench/ratings.sh [--no-svdpp]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/bench/.venv"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import surprise, pandas" 2>/dev/null || "$VENV/bin/pip" install -q "scikit-surprise==1.1.5" pandas numpy
cargo build --release -q -p recsys-core --example explicit_eval
"$VENV/bin/python" bench/ratings_vs_surprise.py "$@"
