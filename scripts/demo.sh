#!/usr/bin/env bash
# The demo: build + install pg_recsys, start a throwaway cluster in .demo/ on port 54329, load
# MovieLens 100K into the default schema, train, and print recommendations with titles.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export USER="${USER:-$(id -un)}"
PORT="${RECSYS_DEMO_PORT:-54329}"
DIR="$ROOT/.demo/pgdata"
bash "$ROOT/scripts/setup.sh"
bash "$ROOT/scripts/fetch_ml100k.sh" >/dev/null
bash "$ROOT/scripts/install_ext.sh"
# postgres must reach the data directory; fall back to /tmp when the checkout is private.
if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$ROOT"; then DIR="/tmp/pg_recsys-demo/pgdata"; fi
bash "$ROOT/scripts/pgcluster.sh" stop "$DIR"
rm -rf "$DIR"
bash "$ROOT/scripts/pgcluster.sh" start "$DIR" "$PORT" shared_preload_libraries=pg_recsys
trap 'bash "$ROOT/scripts/pgcluster.sh" stop "$DIR"' EXIT
PSQL=(psql -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres)
echo "demo: cluster on port $PORT in $DIR; loading MovieLens 100K"
"${PSQL[@]}" -q -c "CREATE EXTENSION pg_recsys"
bash "$ROOT/scripts/load_ml100k.sh" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres
"${PSQL[@]}" -f "$ROOT/scripts/demo.sql"
