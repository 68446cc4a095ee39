#!/usr/bin/env bash
# Tests of the example service against a real cluster: installs its requirements into
# examples/fastapi/.venv (PyPI), starts a throwaway cluster, loads seeded synthetic data plus a
# known user with no history, trains, runs pytest (API tests and the demo page in headless
# Chromium), and prints a `test result:` line. RECSYS_SCREENSHOT=FILE saves the page (docs/demo.png).
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
[ -x "$HERE/.venv/bin/python" ] || python3 -m venv "$HERE/.venv"
"$HERE/.venv/bin/python" -c "import fastapi, psycopg, psycopg_pool, httpx, pytest, selenium" 2>/dev/null \
  || "$HERE/.venv/bin/pip" install -q -r "$HERE/requirements.txt" || exit 1
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DIR=/tmp/pg_recsys-fastapi; DATA="$ROOT/bench/out/fastapi_data"
cargo run --release -q -p recsys-core --example synth -- 9 500 300 8000 "$DATA" 2>/dev/null || exit 1
bash scripts/pgcluster.sh stop "$DIR"; rm -rf "$DIR"
bash scripts/pgcluster.sh start "$DIR" "$PORT" || exit 1
trap 'bash "$ROOT/scripts/pgcluster.sh" stop "$DIR"' EXIT
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
P=(psql -X -q -v ON_ERROR_STOP=1 -d postgres)
"${P[@]}" -c "CREATE EXTENSION pg_recsys" -f scripts/schema.sql >/dev/null || exit 1
for t in users posts interactions follows; do
  "${P[@]}" -c "\\copy $t FROM '$DATA/$t.csv' WITH (FORMAT csv, HEADER true)" || exit 1
done
"${P[@]}" -c "INSERT INTO users (id, username, age, gender, location) VALUES (100000, 'newcomer', 22, 'female', 'Lagos')" \
  -c "INSERT INTO follows (follower_id, followee_id) VALUES (100000, 1), (100000, 2)" \
  -c "SELECT recsys_train('{\"factors\": 16, \"iterations\": 8}')" >/dev/null 2>&1 || exit 1
export RECSYS_REQUIRE_BROWSER=1
export DATABASE_URL="postgresql://postgres@127.0.0.1:$PORT/postgres"
cd "$HERE"
out=$(.venv/bin/python -m pytest -q -p no:cacheprovider tests 2>&1); rc=$?
echo "$out" | grep -v "^E       #" | tail -40
passed=$(echo "$out" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' | tail -1)
failed=$(echo "$out" | grep -oE '[0-9]+ (failed|error)' | grep -oE '[0-9]+' | awk '{s+=$1} END {print s+0}')
[ $rc -eq 0 ] || [ "${failed:-0}" -gt 0 ] || failed=1
echo "test result: $([ $rc -eq 0 ] && echo ok || echo FAILED). ${passed:-0} passed; ${failed:-0} failed; 0 ignored (examples/fastapi)"
exit $rc
