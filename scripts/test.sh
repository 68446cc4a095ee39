#!/usr/bin/env bash
# Runs every test layer and ends with one summary line:
#   0. the module graph of src/ has no cycle (scripts/modgraph.py), cargo fmt --check, and
#      cargo clippy -D warnings (each reported as one test)
#   1. core unit tests + ML-100K quality test (crates/recsys-core, no Postgres)
#   2. #[pg_test]s inside a pgrx-managed PostgreSQL 15 (cargo pgrx test)
#   3. SQL golden files and end-to-end tests against a throwaway cluster (tests/e2e), and the
#      upgrade from 0.1.0 (built from its commit) with ALTER EXTENSION UPDATE (scripts/upgrade_test.sh)
#   4. the FastAPI example service against a real cluster (examples/fastapi/run_tests.sh), and
#      Spark MLlib ALS imported and served (examples/spark/run_tests.sh)
#   5. bounded fuzzing of the options parser and the tokenizer (scripts/fuzz.sh, 20 s each)
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export USER="${USER:-$(id -un)}"
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
bash scripts/setup.sh || exit 1
export RECSYS_ML100K_DIR="$(bash scripts/fetch_ml100k.sh)" || exit 1
status=0
step() { echo "==> $*"; "$@" 2>&1 | tee -a "$LOG"; local s=${PIPESTATUS[0]}; [ "$s" -eq 0 ] || status=1; return 0; }

# Checks that are not tests still report as one: `check NAME CMD...` prints a test result line.
check() {
  local name="$1" r; shift
  echo "==> $*"
  if "$@" 2>&1 | tail -40; [ "${PIPESTATUS[0]}" -eq 0 ]; then r="ok. 1 passed; 0 failed"; else r="FAILED. 0 passed; 1 failed"; status=1; fi
  echo "test result: $r; 0 ignored ($name)" | tee -a "$LOG"
}
check "module graph has no cycle" python3 scripts/modgraph.py
check "cargo fmt --check" cargo fmt --all --check
check "cargo clippy -D warnings" cargo clippy --workspace --all-targets -- -D warnings
step cargo test --release -p recsys-core -- --include-ignored
install -d -o postgres -g postgres -m 700 /tmp/pg_recsys-pgrx-test 2>/dev/null || install -d -m 700 /tmp/pg_recsys-pgrx-test
if [ "$(id -u)" -eq 0 ]; then
  step cargo pgrx test pg15 --runas postgres --pgdata /tmp/pg_recsys-pgrx-test
else
  step cargo pgrx test pg15
fi
# pgrx test leaves its debug build installed: install the release build for the e2e layer.
step bash scripts/install_ext.sh
step cargo test --no-fail-fast -p pg_recsys_e2e -- --test-threads=1
step bash scripts/upgrade_test.sh
step bash examples/fastapi/run_tests.sh
step bash examples/spark/run_tests.sh
step bash scripts/fuzz.sh 20

count() { grep -E '^test result:' "$LOG" | sed -nE "s/.* ([0-9]+) $1.*/\\1/p" | awk '{s+=$1} END {print s+0}'; }
passed=$(count passed); failed=$(count failed)
[ "${failed:-0}" -eq 0 ] || status=1
echo "summary: ${passed:-0} passed, ${failed:-0} failed"
exit $status
