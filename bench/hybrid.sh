#!/usr/bin/env bash
# The hybrid vs ALS alone, its other components and popularity, on seeded synthetic data and
# ML-100K (NDCG@10, 2 threads); prints a markdown table for BENCHMARKS.md.
#   bash bench/hybrid.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
ML="$(bash scripts/fetch_ml100k.sh | tail -1)"
cargo run --release -q -p recsys-core --example hybrid_eval -- "$ML"
