#!/usr/bin/env bash
# Throwaway PostgreSQL 15 cluster, no system service touched.
#   pgcluster.sh start DIR PORT [NAME=VALUE ...]   (initdb if needed, start with those server
#                                                  settings; as user postgres when run by root)
#   pgcluster.sh stop DIR
set -euo pipefail
BIN=/usr/lib/postgresql/15/bin
cmd="$1"; DIR="$2"
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$cmd" in
  start)
    PORT="$3"; shift 3
    settings=""
    for kv in "$@"; do settings+=" -c $kv"; done
    if [ "$(id -u)" -eq 0 ]; then install -d -o postgres -g postgres -m 700 "$DIR"; else install -d -m 700 "$DIR"; fi
    if ! as_pg test -w "$DIR"; then echo "pgcluster: postgres cannot write $DIR" >&2; exit 1; fi
    [ -f "$DIR/PG_VERSION" ] || as_pg "$BIN/initdb" -D "$DIR" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
    unset RUST_BACKTRACE RUST_LIB_BACKTRACE
    as_pg "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off$settings" start >/dev/null
    ;;
  stop)
    [ -f "$DIR/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$DIR" -m fast -w stop >/dev/null || true
    ;;
  *) echo "usage: pgcluster.sh start DIR PORT [NAME=VALUE ...] | stop DIR" >&2; exit 2 ;;
esac
