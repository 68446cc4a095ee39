#!/usr/bin/env bash
# Loads MovieLens 100K into the default schema: users <- ml-100k.user, posts <- movies
# (title "Name (year)", genres as tags, first genre as category), interactions <- ratings
# (kind 'rate', value = stars). Usage: load_ml100k.sh PSQL-ARGS...
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DATA="$(bash "$ROOT/scripts/fetch_ml100k.sh")"
PSQL=(psql -X -q -v ON_ERROR_STOP=1 "$@")
"${PSQL[@]}" -f "$ROOT/scripts/schema.sql"
# One session, so the temp tables survive: feed the three files through COPY FROM STDIN.
{
  echo "CREATE TEMP TABLE s_user(id bigint, age int, gender text, occupation text, zip text);"
  echo "CREATE TEMP TABLE s_item(id bigint, title text, year text, class text);"
  echo "CREATE TEMP TABLE s_inter(user_id bigint, item_id bigint, rating real, ts double precision);"
  for t in user:ml-100k.user item:ml-100k.item inter:ml-100k.inter; do
    echo "COPY s_${t%%:*} FROM STDIN WITH (FORMAT csv, DELIMITER E'\t', HEADER true, QUOTE E'\x01');"
    cat "$DATA/${t#*:}"
    printf '\\.\n'
  done
  cat <<'SQL'
INSERT INTO users (id, username, age, gender, location, created_at)
  SELECT id, 'user' || id, age, gender, zip, timestamptz '1997-09-01' FROM s_user
  ON CONFLICT (id) DO NOTHING;
INSERT INTO posts (id, owner_id, title, description, tags, category, created_at)
  SELECT id, NULL, title || CASE WHEN year ~ '^[0-9]{4}$' THEN ' (' || year || ')' ELSE '' END,
         NULL, string_to_array(lower(class), ' '), lower(split_part(class, ' ', 1)),
         CASE WHEN year ~ '^[0-9]{4}$' THEN make_date(year::int, 1, 1)::timestamptz END
  FROM s_item ON CONFLICT (id) DO NOTHING;
INSERT INTO interactions (user_id, post_id, kind, value, created_at)
  SELECT user_id, item_id, 'rate', rating, to_timestamp(ts) FROM s_inter;
ANALYZE users; ANALYZE posts; ANALYZE interactions;
SQL
} | "${PSQL[@]}"
