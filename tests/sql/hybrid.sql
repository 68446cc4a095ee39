-- The hybrid: fused components with reasons, social signals, cold start, explain, predict,
-- per-call weights, tuning.
CREATE EXTENSION pg_recsys;
SET client_min_messages = warning;
\pset footer off
\i scripts/schema.sql

-- Two interest groups: dancers (users 1-20, like dance posts 1-10) and cooks (users 21-40,
-- food posts 11-20). Demographics follow the group. Posts 21 (dance) and 22 (food) are new.
INSERT INTO users (id, username, age, gender, location)
SELECT u, 'user' || u, CASE WHEN u <= 20 THEN 19 ELSE 41 END, CASE WHEN u <= 20 THEN 'female' ELSE 'male' END,
       CASE WHEN u <= 20 THEN 'Lagos' ELSE 'Lyon' END
FROM generate_series(1, 60) u;
INSERT INTO posts (id, owner_id, title, tags, category, created_at)
SELECT p, CASE WHEN p <= 10 THEN 1 + p % 5 ELSE 21 + p % 5 END,
       CASE WHEN p <= 10 THEN 'Dance battle ' || p ELSE 'Pasta recipe ' || p END,
       CASE WHEN p <= 10 THEN ARRAY['dance', 'hiphop'] ELSE ARRAY['food', 'pasta'] END,
       CASE WHEN p <= 10 THEN 'dance' ELSE 'food' END,
       '2026-01-01'::timestamptz + (p || ' hours')::interval
FROM generate_series(1, 20) p;
INSERT INTO posts (id, owner_id, title, tags, category, created_at) VALUES
 (21, 3, 'New dance battle moves', ARRAY['dance', 'hiphop'], 'dance', '2026-01-03'),
 (22, 23, 'New pasta recipe', ARRAY['food', 'pasta'], 'food', '2026-01-03');
INSERT INTO interactions (user_id, post_id, kind, created_at)
SELECT u, p, CASE WHEN (u + p) % 3 = 0 THEN 'like' ELSE 'view' END,
       '2026-01-02'::timestamptz + ((u * 7 + p) % 48 || ' hours')::interval
FROM generate_series(1, 40) u, generate_series(1, 20) p
WHERE (u <= 20) = (p <= 10) AND (u + 2 * p) % 4 <> 0;
-- Follows inside each group; 1 and 2 follow each other.
INSERT INTO follows (follower_id, followee_id)
SELECT u, v FROM generate_series(1, 60) u, generate_series(1, 40) v
WHERE u <> v AND ((u <= 20 OR u > 40) = (v <= 20)) AND (u + v) % 6 = 0
ON CONFLICT DO NOTHING;
INSERT INTO follows VALUES (1, 2), (2, 1) ON CONFLICT DO NOTHING;

SELECT r->'users' AS users, r->'posts' AS posts, (r->'segments')::int > 0 AS has_segments,
       (r->'followed_users')::int > 0 AS has_followers, r->'fusion' AS fusion
FROM recsys_train('{"factors": 8, "iterations": 8}') r;

-- A warm dancer has seen most dance posts: the new dance post comes first, with a reason that
-- names a dance post they liked; score = als + graph + content + social + popularity.
SELECT post_id, reason LIKE 'because you liked "Dance battle %"' AS reason_ok FROM recsys_recommend(5, 1);
SELECT bool_and(abs(score - (als + graph + content + social + popularity)) < 1e-5) AS parts_add_up, count(*) AS n,
       bool_and(reason <> '') AS all_have_reasons
FROM recsys_recommend(5, 10);
-- Reasons name a liked title, a tag, or the people followed (social off here: it leads this
-- user's feed at the default weights).
SELECT count(*) FILTER (WHERE reason LIKE 'because you liked "%') > 0 AS names_a_title
FROM recsys_recommend(5, 10, exclude_seen => false, weights => '{"social": 0}');

-- A cold user (no interactions) who follows dancers and is a young woman from Lagos: dance.
INSERT INTO users VALUES (100, 'newbie', 20, 'female', 'Lagos');
INSERT INTO follows VALUES (100, 1), (100, 2), (100, 3);
SELECT bool_and(post_id <= 10 OR post_id = 21) AS all_dance, count(*) AS n,
       bool_or(reason LIKE 'liked by % you follow' OR reason = 'posted by someone you follow') AS social_reason,
       bool_and(als = 0 AND content = 0) AS no_personal_history
FROM recsys_recommend(100, 5);
-- The same user with social off and demographics only: still dance (segment popularity).
SELECT bool_and(post_id <= 10 OR post_id = 21) AS all_dance, min(reason) = max(reason) AS one_reason, min(reason) AS reason
FROM recsys_recommend(100, 5, weights => '{"social": 0, "popularity": 0, "freshness": 0}');
-- A user the app has never seen: trending (popularity + freshness), with a reason.
SELECT count(*) AS n, bool_and(reason LIKE 'trending in %' OR reason = 'new post') AS trending_reason, bool_and(als + graph + content + social = 0) AS priors_only
FROM recsys_recommend(999999, 5);
-- The same user under ALS alone: nothing scores, and the reason does not claim a trend.
SELECT count(*) AS n, bool_and(score = 0) AS all_zero, min(reason) = max(reason) AS one_reason, min(reason) AS reason
FROM recsys_recommend(999999, 5, weights => '{"als": 1, "content": 0, "social": 0, "popularity": 0, "freshness": 0, "demographic": 0, "graph": 0}');

-- predict = the fused score recommend gives; explain adds up to it.
SELECT round(recsys_predict(5, r.post_id)::numeric, 5) = round(r.score::numeric, 5) AS predict_matches
FROM recsys_recommend(5, 1) r;
SELECT round((SELECT sum(contribution) FROM recsys_explain(5, r.post_id) WHERE component <> 'total')::numeric, 4)
       = round(r.score::numeric, 4) AS evidence_adds_up,
       (SELECT round(contribution::numeric, 4) FROM recsys_explain(5, r.post_id) WHERE component = 'total') = round(r.score::numeric, 4) AS total_row
FROM recsys_recommend(5, 1) r;
SELECT round((SELECT sum(contribution) FROM recsys_explain(100, r.post_id) WHERE component <> 'total')::numeric, 4)
       = round(r.score::numeric, 4) AS cold_evidence_adds_up
FROM recsys_recommend(100, 1) r;
SELECT component, evidence LIKE 'you interacted with "Dance battle %"' AS names_history, post_id IS NOT NULL AS has_post
FROM recsys_explain(5, 21) WHERE component = 'als' LIMIT 1;
SELECT component, user_id FROM recsys_explain(100, 21) WHERE component = 'social' ORDER BY user_id;
SELECT recsys_predict(5, 424242);
SELECT * FROM recsys_explain(5, 424242);
SELECT recsys_predict(NULL, 1) IS NULL AS null_user, count(*) AS null_post FROM recsys_explain(5, NULL);

-- Per-call weights: partial objects over the model's; bad ones are errors.
SELECT bool_and(social = 0 AND content = 0) AS only_als_and_priors FROM recsys_recommend(5, 5, weights => '{"social": 0, "content": 0}');
SELECT * FROM recsys_recommend(5, 5, weights => '{"socail": 1}');
SELECT * FROM recsys_recommend(5, 5, weights => '{"als": -1}');
SELECT * FROM recsys_recommend(5, 5, weights => '[1]');

-- Similar: filters and reasons; a new post (no interactions) by content.
SELECT post_id <= 10 OR post_id = 21 AS dance, reason ~ '^(shares|liked by the same people)' AS reason_ok FROM recsys_similar(1, 3);
SELECT count(*) AS food_only FROM recsys_similar(1, 5, category => 'food');
SELECT bool_and(post_id BETWEEN 12 AND 20) AS food, bool_and(reason LIKE 'shares %') AS by_content, bool_and(als = 0) AS no_als
FROM recsys_similar(22, 3, exclude => ARRAY[11]::bigint[]);

-- The second hop is an option: followees of followees then count, and explain says so.
SELECT (recsys_train('{"factors": 8, "iterations": 4, "second_hop": 0.2}'))->'fusion'->'social' AS social_weight;
SELECT bool_or(e.evidence = 'followed by people you follow') AS second_hop_used,
       bool_or(e.evidence LIKE 'you follow them;%') AS direct_used
FROM recsys_recommend(100, 5) r, recsys_explain(100, r.post_id) e;
-- A mutual follow: user 2 follows 1 back.
SELECT bool_or(e.evidence LIKE 'you follow each other;%') AS mutual_seen
FROM recsys_recommend(2, 10, exclude_seen => false) r, recsys_explain(2, r.post_id) e WHERE e.user_id = 1;
-- Tuning picks weights on a holdout and stores them.
SELECT r->'tuned'->'users' IS NOT NULL AS tuned, (r->'tuned'->>'ndcg_at_10')::float >= (r->'tuned'->>'ndcg_at_10_start')::float AS not_worse
FROM recsys_train('{"factors": 8, "iterations": 4, "tune": true, "second_hop": 0.2}') r;
SELECT options->'hybrid'->'weights' = report->'tuned'->'weights' AS stored_with_model FROM _recsys_model ORDER BY id DESC LIMIT 1;
SELECT count(*) AS n FROM recsys_recommend(100, 5);
SELECT recsys_train('{"tune": "yes"}');
SELECT recsys_train('{"second_hop": -1}');
SELECT recsys_train('{"fusion": {"als": 0, "content": 0, "social": 0, "popularity": 0, "freshness": 0, "demographic": 0, "graph": 0}}');

-- recsys_evaluate: metrics for the model and a popularity baseline on the same split; k-fold.
SELECT count(*) AS models_before FROM _recsys_model;
SELECT metric, value >= 0 AND value <= 1 AS in_range FROM recsys_evaluate('{"k": 5, "factors": 8, "iterations": 4}')
WHERE metric NOT IN ('users', 'folds') ORDER BY metric;
SELECT metric, value FROM recsys_evaluate('{"k": 5, "factors": 8, "iterations": 4}') WHERE metric IN ('users', 'folds');
SELECT count(*) FILTER (WHERE metric LIKE '% stddev') AS stddev_rows, max(value) FILTER (WHERE metric = 'folds') AS folds
FROM recsys_evaluate('{"folds": 3, "k": 5, "factors": 8, "iterations": 4, "components": ["als", "social"]}');
SELECT count(*) AS models_after FROM _recsys_model;
SELECT * FROM recsys_evaluate('{"test_fraction": 1.5}');
SELECT * FROM recsys_evaluate('{"test_fraction": 0}');
SELECT * FROM recsys_evaluate('{"folds": 1}');
SELECT * FROM recsys_evaluate('{"k": 0}');
SELECT * FROM recsys_evaluate('{"kk": 5}');
SELECT * FROM recsys_evaluate('{"components": ["als", "magic"]}');
SELECT * FROM recsys_evaluate('{"components": []}');
SELECT * FROM recsys_evaluate('[]');

-- Explicit feedback: options and the errors that guard them.
SELECT recsys_train('{"feedback": "explicitly"}');
SELECT recsys_train('{"feedback": "explicit", "rating": {"factor": 3}}');
SELECT recsys_train('{"feedback": "explicit", "rating": {"knn_weight": 2}}');
SELECT recsys_train('{"feedback": "explicit", "rating_kind": "stars"}');
SELECT recsys_train('{"feedback": "explicit", "interactions": {"value": null}}');
SELECT * FROM recsys_evaluate('{"feedback": "explicit", "rating_kind": 5}');

-- Imported factors (e.g. Spark ALS output): served with the fusion, filters and explanations.
CREATE TABLE spark_users (id bigint, features real[]);
CREATE TABLE spark_items (id bigint, features real[]);
INSERT INTO spark_users SELECT u, ARRAY[CASE WHEN u <= 20 THEN 1 ELSE 0 END, CASE WHEN u <= 20 THEN 0 ELSE 1 END, 0.1]::real[] FROM generate_series(1, 40) u;
INSERT INTO spark_items SELECT p, ARRAY[CASE WHEN p <= 10 OR p = 21 THEN 1 ELSE 0 END, CASE WHEN p <= 10 OR p = 21 THEN 0 ELSE 1 END, 0.1]::real[] FROM generate_series(1, 22) p;
SELECT r->'posts' AS posts, r->'factors' AS factors, r->'iterations' AS iterations
FROM recsys_import_factors('spark_users', 'spark_items', '{"regularization": 0.1}') r;
SELECT post_id AS dancer_gets_the_new_dance_post, reason LIKE 'because you liked%' AS als_reason
FROM recsys_recommend(5, 1, weights => '{"content": 0, "social": 0}');
SELECT count(*) AS food_filter FROM recsys_recommend(5, 3, category => 'food');
SELECT count(*) > 0 AS explained FROM recsys_explain(5, 21) WHERE component = 'als';
-- Bad factor tables.
CREATE TABLE ragged (id bigint, features real[]);
INSERT INTO ragged VALUES (1, '{1,2,3}'), (2, '{1,2}');
SELECT recsys_import_factors('spark_users', 'ragged');
CREATE TABLE dup (id bigint, features real[]);
INSERT INTO dup VALUES (1, '{1,2,3}'), (1, '{1,2,3}');
SELECT recsys_import_factors('spark_users', 'dup');
CREATE TABLE nan_f (id bigint, features real[]);
INSERT INTO nan_f VALUES (1, '{1,NaN,3}');
SELECT recsys_import_factors('spark_users', 'nan_f');
CREATE TABLE two_d (id bigint, features real[]);
INSERT INTO two_d VALUES (1, '{1,2}');
SELECT recsys_import_factors('spark_users', 'two_d');
CREATE TABLE no_features (id bigint, name text);
SELECT recsys_import_factors('spark_users', 'no_features');
SELECT recsys_import_factors('spark_users', 'no_such_table');
