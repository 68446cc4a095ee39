-- The bad-input catalogue: every case is a clear ERROR (SQLSTATE, message, hint) or a
-- documented result, and never a crash; the last statement shows the server still answers.
CREATE EXTENSION pg_recsys;
SET client_min_messages = warning;
\pset footer off
\i scripts/schema.sql
INSERT INTO posts (id, title, tags, category) VALUES
 (1, 'Cat dance', '{cats,dance}', 'pets'), (2, 'Dog dance', '{dogs,dance}', 'pets'),
 (3, '東京 ダンス バトル', '{ダンス}', 'dance'), (4, repeat('very long title ', 20000), NULL, NULL),
 (5, '', '{}', '');
INSERT INTO interactions (user_id, post_id, kind, value)
SELECT u, p, 'like', NULL FROM generate_series(1, 30) u, generate_series(1, 5) p WHERE (u + p) % 3 <> 0;
-- NaN, infinite, negative and duplicate values: NaN/inf rows are skipped and counted; a pair
-- whose summed weight is not positive is dropped; duplicates are summed.
INSERT INTO interactions (user_id, post_id, kind, value) VALUES
 (1, 1, 'view', 'NaN'), (1, 2, 'view', 'Infinity'), (2, 1, 'view', '-Infinity'),
 (3, 1, 'rate', -50), (4, 2, 'like', NULL), (4, 2, 'like', NULL), (4, 2, 'like', NULL);
SELECT r->'skipped_rows' AS skipped_rows, r->'interactions' AS rows_read, r->'posts' AS posts
FROM recsys_train('{"factors": 4, "iterations": 3}') r;

-- 1-8: NULLs, k and offset.
SELECT count(*) AS null_user FROM recsys_recommend(NULL, 5);
SELECT count(*) AS null_k FROM recsys_recommend(1, NULL);
-- NULL offset, diversity, weights and reasons mean their defaults: the same rows, scores and reasons.
WITH n AS (SELECT array_agg(post_id || ' ' || score || ' ' || coalesce(reason, '-') ORDER BY score DESC, post_id) a,
                  bool_and(reason IS NOT NULL) r
           FROM recsys_recommend(1, 5, false, "offset" => NULL, diversity => NULL, weights => NULL, reasons => NULL)),
     d AS (SELECT array_agg(post_id || ' ' || score || ' ' || coalesce(reason, '-') ORDER BY score DESC, post_id) a
           FROM recsys_recommend(1, 5, false))
SELECT n.a = d.a AS null_feed_arguments_are_defaults, array_length(n.a, 1) AS rows, n.r AS every_row_has_a_reason FROM n, d;
SELECT * FROM recsys_recommend(1, 0);
SELECT * FROM recsys_recommend(1, -1);
SELECT * FROM recsys_recommend(1, 2147483647);
SELECT * FROM recsys_recommend(1, 5, "offset" => -1);
SELECT * FROM recsys_recommend(1, 5, diversity => 'NaN');
SELECT * FROM recsys_recommend(1, 5, diversity => -0.1);
-- 9-10: ids outside the int32 range and negative ids are just unknown users (cold-start feed).
SELECT count(*) AS huge_id FROM recsys_recommend(9223372036854775807, 3);
SELECT count(*) AS negative_id FROM recsys_recommend(-5, 3);
-- 11-13: recsys_similar.
SELECT count(*) AS null_post FROM recsys_similar(NULL);
SELECT * FROM recsys_similar(999999);
SELECT * FROM recsys_similar(1, 0);
-- 14-18: text that is NULL, empty, very long, non-Latin, control characters.
SELECT count(*) AS null_query FROM recsys_search(NULL);
SELECT count(*) AS empty_query FROM recsys_search('');
-- A query above recsys.max_query_bytes is an error (54000), not minutes of work.
SELECT count(*) AS long_query FROM recsys_search(repeat('quantum ', 100000));
SELECT post_id AS japanese FROM recsys_search('ダンス');
SELECT count(*) AS control_chars FROM recsys_search(E'\x01\x02\x7f');
-- 19-21: recsys_trending.
SELECT count(*) AS null_k FROM recsys_trending(NULL);
SELECT * FROM recsys_trending(5, since => '-1 day');
SELECT * FROM recsys_trending(5, "offset" => -3);
-- 22-30: options JSON that is not an object, has wrong types, bad values or unknown keys.
SELECT recsys_train('"factors"');
SELECT recsys_train('{"factors": 1.5}');
SELECT recsys_train('{"factors": 100000}');
SELECT recsys_train('{"alpha": -1}');
SELECT recsys_train('{"weights": {"like": "x"}}');
SELECT recsys_train('{"weights": [1, 2]}');
SELECT recsys_train('{"interactions": "events"}');
SELECT recsys_train('{"iterations": null}');
SELECT recsys_train('{"seed": -1}');
-- 31-36: table and column names: injection attempts, missing objects, wrong types.
SELECT recsys_train('{"interactions": {"table": "interactions; DROP TABLE users"}}');
SELECT recsys_train('{"interactions": {"table": "nope"}}');
SELECT recsys_train('{"interactions": {"user": "nope"}}');
SELECT recsys_train('{"interactions": {"user": "kind"}}');
SELECT recsys_train('{"interactions": {"user": "user_id; DROP TABLE users"}}');
SELECT recsys_train('{"interactions": {"time": "kind"}}');
-- 37-38: empty tables, and a table with one user and one post.
CREATE TABLE empty_events (user_id bigint, post_id bigint);
SELECT recsys_train('{"interactions": {"table": "empty_events", "kind": null, "value": null, "time": null}}');
CREATE TABLE one_event (user_id bigint, post_id bigint);
INSERT INTO one_event VALUES (7, 70);
SELECT r->'users' AS users, r->'posts' AS posts
FROM recsys_train('{"interactions": {"table": "one_event", "kind": null, "value": null, "time": null}, "posts": {"table": "posts"}, "factors": 2, "iterations": 2}') r;
SELECT count(*) AS only_post_is_seen FROM recsys_recommend(7, 5);
-- Post 70 has interactions but no row in the posts table: it does not exist, so it is never served.
SELECT count(*) AS with_seen FROM recsys_recommend(7, 5, exclude_seen => false, weights => '{"content": 0}');
-- 39-40: names that exist with odd characters work.
CREATE TABLE "My Events" ("User Id" bigint, "Post.Id" int, "Kind!" text);
INSERT INTO "My Events" SELECT user_id, post_id::int, kind FROM interactions;
SELECT (recsys_train('{"interactions": {"table": "\"My Events\"", "user": "User Id", "post": "Post.Id", "kind": "Kind!", "value": null, "time": null}, "factors": 4, "iterations": 2}'))->'users' AS odd_names_users;
-- 41-44: predict / explain / evaluate with NULLs and bad options.
SELECT recsys_predict(1, NULL) IS NULL AS null_post, recsys_predict(NULL, 1) IS NULL AS null_user;
SELECT count(*) AS null_explain FROM recsys_explain(NULL, 1);
SELECT * FROM recsys_evaluate('{"folds": "3"}');
SELECT * FROM recsys_evaluate('{"min_value": "high"}');
-- The data is intact and the server still answers.
SELECT count(*) AS users_table_still_there FROM users;
SELECT 1 AS alive;
