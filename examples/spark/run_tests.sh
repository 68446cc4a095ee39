#!/usr/bin/env bash
# Spark MLlib ALS -> recsys_import_factors on MovieLens 100K: needs Java 17 (Debian's
# openjdk-17-jre-headless, installed with apt-get when `java -version` is not 17), installs
# requirements.txt into examples/spark/.venv (PyPI), starts a throwaway cluster, runs pytest
# (Spark local[2] trains; pg_recsys serves the imported factors; NDCG@10 compared) and prints the
# figures and a `test result:` line.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
START=$(date +%s)
java_major() { java -version 2>&1 | sed -nE 's/.*version "([0-9]+).*/\1/p' | head -1; }
if [ "$(java_major)" != 17 ]; then
  J=$(ls -d /usr/lib/jvm/java-17-openjdk-* 2>/dev/null | head -1)
  if [ -z "$J" ]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless; } >/dev/null \
      || { echo "examples/spark: Java 17 is needed: apt-get install openjdk-17-jre-headless" >&2; exit 1; }
    J=$(ls -d /usr/lib/jvm/java-17-openjdk-* | head -1)
  fi
  export JAVA_HOME="$J" PATH="$J/bin:$PATH"
fi
[ -x "$HERE/.venv/bin/python" ] || python3 -m venv "$HERE/.venv"
if ! cmp -s "$HERE/requirements.txt" "$HERE/.venv/requirements.txt"; then
  "$HERE/.venv/bin/pip" install -q -r "$HERE/requirements.txt" && cp "$HERE/requirements.txt" "$HERE/.venv/requirements.txt" || exit 1
fi
export RECSYS_ML100K_DIR="${RECSYS_ML100K_DIR:-$(bash scripts/fetch_ml100k.sh)}" || exit 1
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DIR=/tmp/pg_recsys-spark
bash scripts/pgcluster.sh stop "$DIR"; rm -rf "$DIR"
bash scripts/pgcluster.sh start "$DIR" "$PORT" || exit 1
SUMMARY="$(mktemp)"
trap 'bash "$ROOT/scripts/pgcluster.sh" stop "$DIR"; rm -f "$SUMMARY"' EXIT
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE EXTENSION pg_recsys" -f scripts/schema.sql >/dev/null || exit 1
export DATABASE_URL="postgresql://postgres@127.0.0.1:$PORT/postgres" RECSYS_SPARK_SUMMARY="$SUMMARY"
export SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON="$HERE/.venv/bin/python"
cd "$HERE"
out=$(.venv/bin/python -m pytest -q -p no:cacheprovider tests 2>&1); rc=$?
echo "$out" | tail -40
cat "$SUMMARY"; echo
echo "examples/spark: $(( $(date +%s) - START )) s"
passed=$(echo "$out" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' | tail -1)
failed=$(echo "$out" | grep -oE '[0-9]+ (failed|error)' | grep -oE '[0-9]+' | awk '{s+=$1} END {print s+0}')
[ $rc -eq 0 ] || [ "${failed:-0}" -gt 0 ] || failed=1
echo "test result: $([ $rc -eq 0 ] && echo ok || echo FAILED). ${passed:-0} passed; ${failed:-0} failed; 0 ignored (examples/spark)"
exit $rc
