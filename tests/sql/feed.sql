-- Feed arguments of recsys_recommend: filters, allow/deny lists, paging, diversity.
CREATE EXTENSION pg_recsys;
SET client_min_messages = warning;
\pset footer off
\i scripts/schema.sql
-- 40 posts in 4 categories (post % 4), two moods, two project codes; users like one category.
INSERT INTO posts (id, title, tags, category, project_code, mood)
SELECT p, 'post ' || p, ARRAY['t' || (p % 4)], (ARRAY['dance','food','pets','music'])[1 + p % 4],
       'P0' || (1 + p % 2), CASE WHEN p % 3 = 0 THEN 'calm' ELSE 'happy' END
FROM generate_series(1, 40) p;
INSERT INTO interactions (user_id, post_id, kind)
SELECT u, p, 'like' FROM generate_series(1, 80) u, generate_series(1, 40) p
WHERE p % 4 = u % 4 AND (u * 3 + p) % 5 <> 0;
SELECT (recsys_train('{"factors": 8, "iterations": 8, "regularization": 0.1}'))->'posts' AS posts;

-- Filters keep only matching posts.
SELECT count(*) AS n, bool_and(p.category = 'pets') AS all_pets
FROM recsys_recommend(1, 10, category => 'pets') r JOIN posts p ON p.id = r.post_id;
SELECT count(*) AS n, bool_and(p.project_code = 'P01' AND p.mood = 'calm') AS all_match
FROM recsys_recommend(1, 20, project_code => 'P01', mood => 'calm') r JOIN posts p ON p.id = r.post_id;
SELECT count(*) AS unknown_category FROM recsys_recommend(1, 10, category => 'knitting');
-- Allow-list and deny-list.
SELECT array_agg(post_id ORDER BY post_id) AS included FROM recsys_recommend(1, 10, include => ARRAY[2, 3, 5, 999, NULL]::bigint[]);
SELECT count(*) FILTER (WHERE post_id = ANY (ARRAY[13, 17])) AS excluded_found
FROM recsys_recommend(1, 30, exclude => ARRAY[13, 17]::bigint[]);
-- Paging: page 2 continues page 1 exactly.
SELECT (SELECT array_agg(post_id ORDER BY ord) FROM recsys_recommend(1, 6) WITH ORDINALITY AS t(post_id, score, als, graph, content, social, popularity, reason, ord))
     = (SELECT array_agg(post_id ORDER BY ord) FROM recsys_recommend(1, 3) WITH ORDINALITY AS t(post_id, score, als, graph, content, social, popularity, reason, ord))
       || (SELECT array_agg(post_id ORDER BY ord) FROM recsys_recommend(1, 3, "offset" => 3) WITH ORDINALITY AS t(post_id, score, als, graph, content, social, popularity, reason, ord))
       AS pages_continue;
-- Diversity: without it the top 4 of user 1 (who likes category 1 = food) are all food;
-- with it other categories enter.
SELECT count(DISTINCT p.category) AS categories_plain FROM recsys_recommend(1, 4, exclude_seen => false) r JOIN posts p ON p.id = r.post_id;
SELECT count(DISTINCT p.category) > 1 AS categories_diverse FROM recsys_recommend(1, 4, exclude_seen => false, diversity => 0.9) r JOIN posts p ON p.id = r.post_id;
-- Bad feed arguments.
SELECT * FROM recsys_recommend(1, 10, "offset" => -1);
SELECT * FROM recsys_recommend(1, 10, diversity => 1.5);
SELECT * FROM recsys_recommend(1, 10, "offset" => 100000);
-- NULL in a required argument gives no rows; NULL in an optional knob means its default.
SELECT count(*) AS null_k FROM recsys_recommend(1, NULL);
SELECT count(*) AS null_offset_diversity FROM recsys_recommend(1, 5, "offset" => NULL, diversity => NULL);
SELECT count(*) AS null_filters FROM recsys_recommend(1, 5, category => NULL, include => NULL, exclude => NULL);
SELECT count(*) AS trending_null_k FROM recsys_trending(NULL);
SELECT count(*) > 0 AS trending_null_knobs FROM recsys_trending(5, since => NULL, "offset" => NULL);
SELECT count(*) AS search_null FROM recsys_search(NULL);
SELECT count(*) AS similar_null FROM recsys_similar(1, NULL);
