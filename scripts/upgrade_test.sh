#!/usr/bin/env bash
# Upgrade test: install pg_recsys 0.1.0 as released (built from its commit), train and serve
# under it, install this build, ALTER EXTENSION pg_recsys UPDATE, then serve the model trained
# under 0.1.0 and train again; the updated schema must equal a fresh install's. Also checks that
# the committed install scripts (sql/pg_recsys--<version>.sql, 0.1.0 and this one) are exactly
# what the builds generate. Ends with a `test result:` line. Leaves this build installed.
#   bash scripts/upgrade_test.sh
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export USER="${USER:-$(id -un)}"
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
OLD_VERSION=0.1.0
OLD_COMMIT=8ca9810469edad7dbaf25d142e1290def937fcb2
WORK="$ROOT/target/upgrade"
SRC="$WORK/src-$OLD_VERSION"
passed=0; failed=0
ok() { echo "  ok: $*"; passed=$((passed + 1)); }
bad() { echo "  FAILED: $*"; failed=$((failed + 1)); }
finish() {
  bash "$ROOT/scripts/install_ext.sh" >/dev/null 2>&1 || bad "reinstalling this build"
  bash "$ROOT/scripts/pgcluster.sh" stop "$DIR" >/dev/null 2>&1
  echo "test result: $([ "$failed" -eq 0 ] && echo ok || echo FAILED). $passed passed; $failed failed; 0 ignored (upgrade from $OLD_VERSION)"
  [ "$failed" -eq 0 ]
  exit $?
}
DIR=/tmp/pg_recsys-upgrade
trap finish EXIT

# 1. 0.1.0 exactly as released: its sources from git, built (in its own target directory: a
#    shared one would leave its library where this build's is picked up) and installed.
if ! git -C "$ROOT" cat-file -e "$OLD_COMMIT^{commit}" 2>/dev/null; then
  # A shallow clone: fetch the rest of main's history (0.1.0 is an ancestor of every later commit).
  git -C "$ROOT" fetch -q --unshallow 2>/dev/null || true
fi
if [ ! -f "$SRC/Cargo.toml" ]; then
  rm -rf "$SRC"; mkdir -p "$SRC"
  git -C "$ROOT" archive "$OLD_COMMIT" | tar -x -C "$SRC" || { bad "extracting $OLD_COMMIT (is the full history cloned?)"; exit 1; }
fi
echo "upgrade: building and installing pg_recsys $OLD_VERSION from $OLD_COMMIT"
(cd "$SRC" && CARGO_TARGET_DIR="$WORK/target" cargo pgrx install --release --pg-config "$PG_CONFIG" >"$WORK/install-old.log" 2>&1) \
  || { tail -20 "$WORK/install-old.log"; bad "installing $OLD_VERSION"; exit 1; }
SHARE="$($PG_CONFIG --sharedir)/extension"
if cmp -s "$SHARE/pg_recsys--$OLD_VERSION.sql" "$ROOT/sql/pg_recsys--$OLD_VERSION.sql"; then
  ok "sql/pg_recsys--$OLD_VERSION.sql is the schema $OLD_VERSION generates"
else
  bad "sql/pg_recsys--$OLD_VERSION.sql differs from the generated one (diff $SHARE/pg_recsys--$OLD_VERSION.sql sql/)"
fi

# 2. A cluster, data, a model trained and served under 0.1.0.
bash scripts/pgcluster.sh stop "$DIR" >/dev/null 2>&1; rm -rf "$DIR"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
bash scripts/pgcluster.sh start "$DIR" "$PORT" >/dev/null || { bad "starting a cluster"; exit 1; }
P=(psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres)
"${P[@]}" -c "CREATE EXTENSION pg_recsys VERSION '$OLD_VERSION'" -f scripts/schema.sql >/dev/null \
  && "${P[@]}" -c "INSERT INTO posts (id, owner_id, title, category)
        SELECT p, 100 + p % 10, 'post ' || p || ' about ' || (ARRAY['dance','food','pets','music'])[1 + p % 4],
               (ARRAY['dance','food','pets','music'])[1 + p % 4] FROM generate_series(1, 60) p;
      INSERT INTO interactions (user_id, post_id, kind)
        SELECT u, p, 'like' FROM generate_series(1, 200) u, generate_series(1, 60) p WHERE p % 4 = u % 4 AND (u + p) % 3 = 0;
      INSERT INTO follows (follower_id, followee_id) SELECT u, u + 4 FROM generate_series(1, 150) u;" \
  && ok "created $OLD_VERSION and loaded data" || bad "creating $OLD_VERSION"
[ "$("${P[@]}" -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_recsys'")" = "$OLD_VERSION" ] && ok "extension is at $OLD_VERSION" || bad "version after CREATE"
"${P[@]}" -c "SELECT recsys_train('{\"factors\": 8, \"iterations\": 4}')" >/dev/null 2>&1 && ok "trained under $OLD_VERSION" || bad "training under $OLD_VERSION"
before="$("${P[@]}" -c "SELECT string_agg(post_id::text, ',' ORDER BY post_id) FROM recsys_recommend(1, 5)")"
[ -n "$before" ] && ok "served under $OLD_VERSION: $before" || bad "serving under $OLD_VERSION"

# 3. This build installed over it (library, new install script, upgrade scripts), then updated.
bash scripts/install_ext.sh >/dev/null || { bad "installing this build"; exit 1; }
NEW_VERSION="$(grep -m1 '^version' Cargo.toml | cut -d'"' -f2)"
# The SQL surface is reviewable: the install script this build generates is committed too
# (RECSYS_BLESS=1 rewrites it after an intended change).
# Source-location comments (-- src/...rs:LINE) are left out: they move with any edit.
surface() { grep -v '^-- src/' "$1"; }
[ "${RECSYS_BLESS:-}" = 1 ] && surface "$SHARE/pg_recsys--$NEW_VERSION.sql" >"sql/pg_recsys--$NEW_VERSION.sql"
if diff -q <(surface "$SHARE/pg_recsys--$NEW_VERSION.sql") "sql/pg_recsys--$NEW_VERSION.sql" >/dev/null; then
  ok "sql/pg_recsys--$NEW_VERSION.sql is the schema this build generates"
else
  bad "sql/pg_recsys--$NEW_VERSION.sql differs from the generated schema (RECSYS_BLESS=1 bash scripts/upgrade_test.sh after an intended change)"
fi
"${P[@]}" -c "ALTER EXTENSION pg_recsys UPDATE" && ok "ALTER EXTENSION pg_recsys UPDATE" || bad "ALTER EXTENSION UPDATE"
[ "$("${P[@]}" -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_recsys'")" = "$NEW_VERSION" ] && ok "extension is at $NEW_VERSION" || bad "version after UPDATE"

# 4. The model trained under 0.1.0 is served as the deployed 'default' version, then a retrain.
[ "$("${P[@]}" -c "SELECT name || ':' || version || ':' || deployed FROM recsys_models")" = "default:1:true" ] \
  && ok "the 0.1.0 model is listed as the deployed default" || bad "recsys_models after the update: $("${P[@]}" -c "SELECT * FROM recsys_models" 2>&1)"
after="$("${P[@]}" -c "SELECT count(*) FROM recsys_recommend(1, 5)" 2>&1)"
[ "$after" = "5" ] && ok "serves the 0.1.0 model after the update" || bad "serving the old model: $after"
"${P[@]}" -c "SELECT count(*) FROM recsys_similar(5, 3); SELECT count(*) FROM recsys_search('dance', 3); SELECT count(*) FROM recsys_trending(3)" >/dev/null 2>&1 \
  && ok "similar, search, trending after the update" || bad "similar/search/trending after the update"
[ "$("${P[@]}" -c "SELECT recsys_train('{\"factors\": 8, \"iterations\": 4}')->>'model_id'" 2>/dev/null)" = "2" ] && ok "trains after the update" || bad "training after the update"
[ "$("${P[@]}" -c "SELECT count(*) FROM recsys_recommend(1, 5, model => 'default')" 2>&1)" = "5" ] && ok "serves the new model" || bad "serving the new model"
# The updated schema is the fresh install's: same functions, views and comments.
dump() { "${P[@]}" -d "$1" -c "SELECT p.oid::regprocedure::text || ' ' || pg_get_function_result(p.oid) || ' ' || coalesce(obj_description(p.oid, 'pg_proc'), '') FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e' JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_recsys' ORDER BY 1; SELECT c.relname || ' ' || coalesce(obj_description(c.oid, 'pg_class'), '') FROM pg_class c JOIN pg_depend d ON d.objid = c.oid AND d.deptype = 'e' JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_recsys' ORDER BY 1; SELECT attname || ' ' || format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = '_recsys_model'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"; }
"${P[@]}" -c "CREATE DATABASE fresh" && "${P[@]}" -d fresh -c "CREATE EXTENSION pg_recsys" || bad "fresh install"
if diff <(dump postgres) <(dump fresh) >"$WORK/schema.diff"; then ok "updated schema = fresh $NEW_VERSION schema"; else bad "updated schema differs from a fresh install:"; head -40 "$WORK/schema.diff"; fi
