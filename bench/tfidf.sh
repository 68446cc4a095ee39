#!/usr/bin/env bash
# TF-IDF build + all-posts top-10: pg_recsys core vs scikit-learn, same corpus, one run.
#   bash bench/tfidf.sh [POSTS ...]     (default 10000 50000)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/bench/.venv"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import sklearn, numpy" 2>/dev/null || "$VENV/bin/pip" install -q scikit-learn numpy
cargo build --release -q -p recsys-core --example tfidf_bench
"$VENV/bin/python" bench/tfidf_vs_sklearn.py "$@"
