\pset footer off
SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM posts) AS posts,
       (SELECT count(*) FROM interactions) AS interactions;

\echo '== SELECT recsys_train(); -- implicit ALS, 64 factors, 15 iterations'
SELECT jsonb_pretty(r - 'loss') AS report FROM recsys_train() AS r;

\echo '== What user 42 rated highest'
SELECT p.title, i.value AS stars FROM interactions i JOIN posts p ON p.id = i.post_id
WHERE i.user_id = 42 ORDER BY i.value DESC, p.title LIMIT 5;

\echo '== SELECT * FROM recsys_recommend(42, 10);'
SELECT r.post_id, round(r.score::numeric, 3) AS score, p.title, array_to_string(p.tags, ', ') AS genres
FROM recsys_recommend(42, 10) r JOIN posts p ON p.id = r.post_id ORDER BY r.score DESC, r.post_id;

\echo '== More like "Star Wars (1977)": recsys_similar(post_id, 10)'
SELECT s.post_id, round(s.score::numeric, 3) AS cosine, p.title
FROM posts q, recsys_similar(q.id, 10) s JOIN posts p ON p.id = s.post_id
WHERE q.title = 'Star Wars (1977)' ORDER BY s.score DESC, s.post_id;

\echo '== A like inserted now changes the next call (fold-in, no retrain)'
INSERT INTO interactions (user_id, post_id, kind) SELECT 9999, id, 'like' FROM posts WHERE title LIKE 'Toy Story%';
SELECT r.post_id, round(r.score::numeric, 3) AS score, p.title
FROM recsys_recommend(9999, 5) r JOIN posts p ON p.id = r.post_id ORDER BY r.score DESC, r.post_id;
