# Shared by bench/serving.sh, bench/load.sh and bench/scale.sh (sourced from the repository root).
# bench_cluster DIR DATA: a fresh throwaway cluster in DIR on $PGPORT (stopped when the script
# exits) with the extension, the default schema, and the synthetic generator's CSVs from DATA
# (users, posts, interactions, follows) loaded with COPY. Leaves P=(psql ...) for the caller.
bench_cluster() {
  local dir="$1" data="$2"
  bash "$ROOT/scripts/pgcluster.sh" stop "$dir"; rm -rf "$dir"
  # The library preloaded, as the README recommends: a new connection does not load it.
  bash "$ROOT/scripts/pgcluster.sh" start "$dir" "$PGPORT" shared_preload_libraries=pg_recsys
  # shellcheck disable=SC2064  # the directory is fixed now, on purpose
  trap "bash '$ROOT/scripts/pgcluster.sh' stop '$dir'" EXIT
  P=(psql -X -q -v ON_ERROR_STOP=1 -d postgres)
  "${P[@]}" -c "CREATE EXTENSION pg_recsys" -f "$ROOT/scripts/schema.sql"
  local t
  for t in users posts interactions follows; do
    "${P[@]}" -c "\\copy $t FROM '$data/$t.csv' WITH (FORMAT csv, HEADER true)"
  done
}
