#!/usr/bin/env bash
# Cost of serving posts created after training (issue 10 item 3), in one session that has the
# model cached: the median recsys_recommend call with nothing new (the per-call probe for new
# posts included), then the first call after inserting N posts (absorbing them: TF-IDF, the
# postings rebuilt, placement), for N = 1, 100, 1000, then the median again.
#   bash bench/new_posts.sh [POSTS]        (default 100000; seeded synthetic data, seed 3)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
POSTS="${1:-100000}"
USERS=$(( POSTS / 5 )); INTER=$(( POSTS * 10 ))
export PGHOST=127.0.0.1 PGPORT=54343 PGUSER=postgres
DIR=/tmp/pg_recsys-bench-new-posts; DATA="$ROOT/bench/out/serving_$POSTS"
bash scripts/install_ext.sh >/dev/null
cargo run --release -q -p recsys-core --example synth -- 3 "$USERS" "$POSTS" "$INTER" "$DATA" 2>/dev/null
source bench/lib.sh
bench_cluster "$DIR" "$DATA"
"${P[@]}" -c "VACUUM ANALYZE" -c "SET maintenance_work_mem = '2GB'" -c "SELECT recsys_train()" >/dev/null 2>&1
# One session: warm-up calls, then timed calls via clock_timestamp() for users spread over all
# ids (the synthetic ids 1..1000 are the power-law head, with 10-18K interactions each).
"${P[@]}" -At -v users="$USERS" <<'SQL'
CREATE TEMP TABLE t (seq serial, what text, ms float8);
CREATE TEMP TABLE cfg AS SELECT :users::int AS users;
CREATE FUNCTION pg_temp.timed(what text, n int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; users int := (SELECT users FROM cfg); BEGIN
  FOR i IN 1..n LOOP
    t0 := clock_timestamp();
    PERFORM count(*) FROM recsys_recommend(1 + (i * 7919) % users, 20);
    INSERT INTO t (what, ms) VALUES (what, extract(epoch FROM clock_timestamp() - t0) * 1000);
  END LOOP; END $$;
CREATE FUNCTION pg_temp.add(n int) RETURNS void LANGUAGE sql AS $$
  INSERT INTO posts (id, owner_id, title, description, tags, category, project_code, mood)
  SELECT m.mx + g, p.owner_id, p.title, p.description, p.tags, p.category, p.project_code, p.mood
  FROM (SELECT max(id) AS mx FROM posts) m, generate_series(1, n) g
  JOIN posts p ON p.id = 1 + (g * 104729) % 1000 $$;
SELECT pg_temp.timed('warm-up', 20);
SELECT pg_temp.timed('nothing new (median of 200)', 200);
SELECT pg_temp.add(1);    SELECT pg_temp.timed('first call after 1 new post', 1);
SELECT pg_temp.add(100);  SELECT pg_temp.timed('first call after 100 new posts', 1);
SELECT pg_temp.add(1000); SELECT pg_temp.timed('first call after 1000 new posts', 1);
SELECT pg_temp.timed('after absorbing 1101 posts (median of 200)', 200);
\echo | call | ms |
\echo |---|---|
SELECT format('| %s | %s |', what, round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 3))
FROM t WHERE what <> 'warm-up' GROUP BY what ORDER BY min(seq);
SQL
