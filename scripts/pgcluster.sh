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
    # A fixed port inside Linux's ephemeral range (32768-60999) can be held for up to 60 s by
    # a client socket in TIME_WAIT (a connection to another cluster that the kernel gave that
    # local port): retry while the server says the address is in use, up to 70 s.
    for try in $(seq 1 35); do
      if as_pg "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off$settings" start >/dev/null; then
        exit 0
      fi
      tail -n 8 "$DIR/server.log" 2>/dev/null | grep -q "Address already in use" || exit 1
      echo "pgcluster: port $PORT is in use (try $try of 35), retrying in 2 s" >&2
      sleep 2
    done
    exit 1
    ;;
  stop)
    [ -f "$DIR/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$DIR" -m fast -w stop >/dev/null || true
    ;;
  *) echo "usage: pgcluster.sh start DIR PORT [NAME=VALUE ...] | stop DIR" >&2; exit 2 ;;
esac
