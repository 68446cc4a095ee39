-- Content model, search, similar for posts without interactions, trending.
CREATE EXTENSION pg_recsys;
SET client_min_messages = warning;
\pset footer off
\i scripts/schema.sql

-- Trending needs no trained model; old interactions decay, newer count more.
INSERT INTO posts (id, title, description, tags, category, project_code, mood) VALUES
 (1, 'Street dance battle', 'Best crew moves in the city', '{"street dance",battle}', 'dance', 'P01', 'energetic'),
 (2, 'Salsa night', 'Learn salsa steps', '{salsa,"partner dance"}', 'dance', 'P02', 'happy'),
 (3, 'Sourdough bread at home', 'Bake a crusty loaf', '{baking,bread}', 'food', 'P01', 'calm'),
 (4, 'Quick pasta dinner', 'Fresh pasta in ten minutes', '{pasta,cooking}', 'food', 'P03', 'happy'),
 (5, 'Cat vs cucumber', 'Funny cat reaction', '{cats,funny}', 'pets', 'P02', 'funny'),
 (6, 'Kitten zoomies', 'Funny kitten runs around', '{cats,kitten}', 'pets', 'P02', 'funny'),
 (7, 'Hip hop dance tutorial', 'Street dance basics for beginners', '{"street dance",tutorial}', 'dance', 'P01', 'energetic');
INSERT INTO interactions (user_id, post_id, kind, value, created_at)
SELECT u, p, 'like', NULL, now() - (u || ' hours')::interval
FROM generate_series(1, 6) u, generate_series(1, 6) p WHERE (u + p) % 3 <> 0;
INSERT INTO interactions VALUES (1, 3, 'view', 1, now() - interval '30 days');

SELECT post_id, round(score::numeric, 3) AS score FROM recsys_trending(3);
SELECT post_id FROM recsys_trending(10, category => 'dance');
SELECT post_id FROM recsys_trending(10, project_code => 'P02', "offset" => 1);
SELECT count(*) AS in_window FROM recsys_trending(10, since => '2 hours');
SELECT * FROM recsys_trending(10, since => '-1 day');
SELECT * FROM recsys_trending(10, "offset" => -1);
-- A backend reuses a trending result for recsys.trending_cache_seconds (10): a burst of likes
-- on post 6 shows only once the cache is off (or 10 s later).
SELECT post_id AS before FROM recsys_trending(1);
INSERT INTO interactions (user_id, post_id, kind) SELECT u, 6, 'share' FROM generate_series(1, 30) u;
SELECT post_id AS cached FROM recsys_trending(1);
SET recsys.trending_cache_seconds = 0;
SELECT post_id AS fresh FROM recsys_trending(1);
DELETE FROM interactions WHERE post_id = 6 AND kind = 'share';

SELECT (r->'content_posts')::int AS content_posts, (r->'content_terms')::int > 20 AS has_vocab, r->'posts' AS als_posts,
       r->'placed_by_content' AS placed
FROM recsys_train('{"factors": 4, "iterations": 5}') r;
-- Post 7 has no interactions but was placed in the ALS space from its content neighbours, so
-- it is now a candidate in feeds (before placement it could never appear).
INSERT INTO interactions (user_id, post_id, kind) VALUES (100, 1, 'like');
SELECT bool_or(post_id = 7) AS new_post_is_candidate, count(*) AS candidates FROM recsys_recommend(100, 10);

-- Search: words, whole tags, unknown terms, empty query.
SELECT post_id FROM recsys_search('funny cat', 3);
SELECT post_id FROM recsys_search('#street dance', 2);
SELECT count(*) AS no_match FROM recsys_search('quantum chromodynamics');
SELECT count(*) AS empty FROM recsys_search('');
SELECT * FROM recsys_search('cat', 0);

-- Post 7 has no interactions: it is still similar to the other street dance post, by content.
SELECT post_id FROM recsys_similar(7, 1);
-- A post with interactions blends ALS and content; with the content share at 1 it is content only.
SET recsys.similar_content_weight = 1;
SELECT post_id FROM recsys_similar(5, 1);
RESET recsys.similar_content_weight;
SELECT * FROM recsys_similar(99, 3);

-- Posts whose text has no token at all still train and serve.
UPDATE posts SET title = '!!', description = NULL, tags = NULL, category = NULL;
SELECT (recsys_train('{"factors": 4, "iterations": 2}'))->'content_terms' AS terms;
SELECT count(*) AS by_content_only FROM recsys_similar(7, 3);
SELECT count(*) AS none_found FROM recsys_search('dance');
