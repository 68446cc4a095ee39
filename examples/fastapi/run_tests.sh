#!/usr/bin/env bash
# Tests of the example service against a real database: installs its requirements into
# examples/fastapi/.venv (PyPI), runs pytest (the API over HTTP and the demo page in headless
# Chromium, both against the service started with uvicorn) and prints a `test result:` line.
#
# Default (DATABASE_URL unset): starts a throwaway cluster, loads seeded synthetic data plus a
# known user with no history, trains, and stops the cluster at the end.
# DATABASE_URL set: uses that database as it is (pg_recsys installed, the default schema with
# data, a trained model); no cluster, no loading, no training. The tests record a few
# interactions and delete them again. See README.md, "Tests".
# RECSYS_SCREENSHOT=FILE saves the page (docs/demo.png).
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
# A failed set-up still ends with the `test result:` line the project's test command reads.
setup_failed() {
  echo "examples/fastapi: set-up failed: $1" >&2
  echo "test result: FAILED. 0 passed; 1 failed; 0 ignored (examples/fastapi)"
  exit 1
}
[ -x "$HERE/.venv/bin/python" ] || python3 -m venv "$HERE/.venv" || setup_failed "python3 -m venv"
"$HERE/.venv/bin/python" -c "import fastapi, psycopg, psycopg_pool, httpx, pytest, selenium, prometheus_client" 2>/dev/null \
  || "$HERE/.venv/bin/pip" install -q -r "$HERE/requirements.txt" || setup_failed "pip install -r requirements.txt"
if [ -n "${DATABASE_URL:-}" ]; then
  echo "examples/fastapi: testing against the existing database in DATABASE_URL (no throwaway cluster)"
else
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  DIR=/tmp/pg_recsys-fastapi; DATA="$ROOT/bench/out/fastapi_data"
  log=$(cargo run --release -q -p recsys-core --example synth -- 9 500 300 8000 "$DATA" 2>&1) \
    || { echo "$log" | tail -20 >&2; setup_failed "generating the seeded data (cargo run --example synth)"; }
  bash scripts/pgcluster.sh stop "$DIR"; rm -rf "$DIR"
  bash scripts/pgcluster.sh start "$DIR" "$PORT" || setup_failed "starting the throwaway cluster"
  trap 'bash "$ROOT/scripts/pgcluster.sh" stop "$DIR"' EXIT
  export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
  P=(psql -X -q -v ON_ERROR_STOP=1 -d postgres)
  "${P[@]}" -c "CREATE EXTENSION pg_recsys" -f scripts/schema.sql >/dev/null || setup_failed "CREATE EXTENSION pg_recsys"
  for t in users posts interactions follows; do
    "${P[@]}" -c "\\copy $t FROM '$DATA/$t.csv' WITH (FORMAT csv, HEADER true)" || setup_failed "loading $t"
  done
  "${P[@]}" -c "INSERT INTO users (id, username, age, gender, location) VALUES (100000, 'newcomer', 22, 'female', 'Lagos')" \
    -c "INSERT INTO follows (follower_id, followee_id) VALUES (100000, 1), (100000, 2)" \
    -c "SELECT recsys_train('{\"factors\": 16, \"iterations\": 8}')" >/dev/null 2>&1 || setup_failed "recsys_train"
  export DATABASE_URL="postgresql://postgres@127.0.0.1:$PORT/postgres"
fi
export RECSYS_REQUIRE_BROWSER="${RECSYS_REQUIRE_BROWSER:-1}"
cd "$HERE"
out=$(.venv/bin/python -m pytest -q -p no:cacheprovider tests 2>&1); rc=$?
echo "$out" | grep -v "^E       #" | tail -40
passed=$(echo "$out" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' | tail -1)
failed=$(echo "$out" | grep -oE '[0-9]+ (failed|error)' | grep -oE '[0-9]+' | awk '{s+=$1} END {print s+0}')
skipped=$(echo "$out" | grep -oE '[0-9]+ skipped' | grep -oE '[0-9]+' | tail -1)
[ $rc -eq 0 ] || [ "${failed:-0}" -gt 0 ] || failed=1
echo "test result: $([ $rc -eq 0 ] && echo ok || echo FAILED). ${passed:-0} passed; ${failed:-0} failed; ${skipped:-0} ignored (examples/fastapi)"
exit $rc
