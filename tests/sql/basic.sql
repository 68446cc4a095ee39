-- pg_recsys golden test: tiny fixture, fixed seed, rounded scores, error cases included.
CREATE EXTENSION pg_recsys;
SET client_min_messages = warning;
\pset footer off

-- Before any training: a clear error with a hint.
SELECT * FROM recsys_recommend(1);

\i scripts/schema.sql
-- Posts exist in the posts table (only posts that exist are served); no text here.
INSERT INTO posts (id) SELECT generate_series(1, 12);
-- Two taste groups: users 1-6 like odd posts, users 7-12 even posts (posts 1-12).
INSERT INTO interactions (user_id, post_id, kind, value)
SELECT u, p, CASE WHEN (u + p) % 4 = 0 THEN 'like' ELSE 'view' END, NULL
FROM generate_series(1, 12) u, generate_series(1, 12) p
WHERE (u <= 6) = (p % 2 = 1) AND (u * 5 + p * 3) % 7 <> 0;
-- Repeated rows on one (user, post) are summed; a NaN value is skipped, not fatal.
INSERT INTO interactions VALUES (1, 1, 'view', 0.5), (1, 1, 'view', 'NaN');

SELECT r->'users' AS users, r->'posts' AS posts, r->'interactions' AS interactions,
       r->'skipped_rows' AS skipped, r->'nonzeros' AS nonzeros, r->'iterations' AS iterations,
       jsonb_array_length(r->'loss') AS losses, r->'model_id' AS model_id
FROM recsys_train('{"factors": 4, "iterations": 10, "seed": 1, "regularization": 0.1}') r;

-- Same seed, same model: retraining gives byte-identical factors.
SELECT (recsys_train('{"factors": 4, "iterations": 10, "seed": 1, "regularization": 0.1}'))->'model_id' AS model_id;
SELECT count(DISTINCT data) AS distinct_factor_sets, count(*) AS models
FROM _recsys_model_data WHERE part = 'item_factors';

-- User 1 (odd group) has one unseen odd post, 3: it comes first, then the other group.
SELECT array_agg(post_id % 2 = 1 ORDER BY ordinality) AS odd_group, (array_agg(post_id ORDER BY ordinality))[1] AS first
FROM recsys_recommend(1, 3) WITH ORDINALITY;
SELECT count(*) AS seen_returned FROM recsys_recommend(1, 20) r
WHERE EXISTS (SELECT 1 FROM interactions i WHERE i.user_id = 1 AND i.post_id = r.post_id);
SELECT count(*) AS with_seen FROM recsys_recommend(1, 20, exclude_seen => false);
-- Neighbours of an even post are even; never the post itself.
SELECT count(*) AS n, bool_and(post_id % 2 = 0) AS all_even, bool_or(post_id = 4) AS has_itself FROM recsys_similar(4, 4);
-- Scores come best first with a deterministic order.
SELECT bool_and(ok) AS ordered FROM (
  SELECT score <= lag(score, 1, 'Infinity') OVER (ORDER BY ordinality) AS ok
  FROM recsys_recommend(3, 10) WITH ORDINALITY) s;

-- Unknown user: the popularity fallback, most-interacted posts first.
SELECT post_id, round(score::numeric, 3) AS score FROM recsys_recommend(424242, 3);
-- A like inserted now is folded in at the next call, no retrain.
INSERT INTO interactions VALUES (424242, 2, 'like', NULL), (424242, 4, 'like', NULL), (424242, 6, 'like', NULL);
SELECT count(*) FILTER (WHERE post_id % 2 = 0) AS even_of_3 FROM recsys_recommend(424242, 3);

-- ROLLBACK leaves the previous model in service.
SELECT factors FROM _recsys_model ORDER BY id DESC LIMIT 1;
BEGIN;
SELECT (recsys_train('{"factors": 2, "iterations": 1}'))->'factors' AS factors_in_tx;
ROLLBACK;
SELECT factors FROM _recsys_model ORDER BY id DESC LIMIT 1;
SELECT count(*) AS recs FROM recsys_recommend(1, 5);

-- NULL arguments: recsys_recommend/similar are STRICT (no rows); NULL options mean '{}'.
SELECT count(*) AS null_user FROM recsys_recommend(NULL, 5);
SELECT count(*) AS null_k FROM recsys_recommend(1, NULL);
SELECT count(*) AS null_post FROM recsys_similar(NULL);

-- Bad arguments.
SELECT * FROM recsys_recommend(1, 0);
SELECT * FROM recsys_recommend(1, -5);
SELECT * FROM recsys_recommend(1, 2000000);
SET recsys.max_k = 5;
SELECT * FROM recsys_recommend(1, 6);
RESET recsys.max_k;
-- The recsys. prefix is reserved: a misspelt setting is an error, not a silent placeholder.
SET recsys.max_kk = 5;
SELECT * FROM recsys_similar(999);

-- Bad options.
SELECT recsys_train('{"factor": 8}');
SELECT recsys_train('{"factors": "eight"}');
SELECT recsys_train('{"factors": 0}');
SELECT recsys_train('{"alpha": -1}');
SELECT recsys_train('{"kind_weights": {"like": "lots"}}');
-- The former name, "weights", is still accepted (with a deprecation NOTICE) and checked the same way.
SELECT recsys_train('{"weights": {"like": "lots"}}');
SELECT recsys_train('[1, 2]');
SELECT recsys_train('{"interactions": {"usr": "user_id"}}');

-- Missing tables and columns, wrong types.
SELECT recsys_train('{"interactions": {"table": "events"}}');
SELECT recsys_train('{"interactions": {"post": "video_id"}}');
SELECT recsys_train('{"interactions": {"user": "kind"}}');
SELECT recsys_train('{"posts": {"table": "posts", "title": "headline"}}');
CREATE TABLE no_rows (user_id bigint, post_id bigint);
SELECT recsys_train('{"interactions": {"table": "no_rows"}}');

-- Identifiers are resolved by the server, never spliced: hostile names are just missing tables.
SELECT recsys_train('{"interactions": {"table": "interactions; DROP TABLE users"}}');
SELECT recsys_train('{"interactions": {"user": "user_id) FROM users; --"}}');
SELECT to_regclass('users') IS NOT NULL AS users_table_intact;
-- Odd but real names work when quoted as SQL names.
CREATE TABLE "My Events" ("User Id" int, "Video" bigint, "What" text);
INSERT INTO "My Events" SELECT user_id, post_id, kind FROM interactions;
SELECT (recsys_train('{"factors": 4, "iterations": 2, "interactions": {"table": "\"My Events\"", "user": "User Id", "post": "Video", "kind": "What", "value": null}}'))->'nonzeros' AS nonzeros;

-- The memory budget is checked before large allocations.
SET maintenance_work_mem = '1MB';
INSERT INTO interactions SELECT g % 5000, g % 3000, 'view', 1 FROM generate_series(1, 100000) g;
SELECT recsys_train();
RESET maintenance_work_mem;

-- Every public function is documented.
SELECT p.proname, length(obj_description(p.oid, 'pg_proc')) > 50 AS documented
FROM pg_proc p WHERE p.proname LIKE 'recsys\_%' ORDER BY 1;
