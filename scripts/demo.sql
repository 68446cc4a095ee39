\pset footer off
SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM posts) AS posts,
       (SELECT count(*) FROM interactions) AS interactions;

\echo '== SELECT recsys_train(); -- implicit ALS + item graph (EASE) + TF-IDF + demographic segments, default options'
SELECT jsonb_pretty(r - 'loss' - 'fusion' - 'tuned') AS report FROM recsys_train() AS r;

\echo '== What user 42 rated highest'
SELECT p.title, i.value AS stars FROM interactions i JOIN posts p ON p.id = i.post_id
WHERE i.user_id = 42 ORDER BY i.value DESC, p.title LIMIT 5;

\echo '== SELECT * FROM recsys_recommend(42, 10); -- fused score, its parts, and a reason'
SELECT r.post_id, round(r.score::numeric, 3) AS score, round(r.als::numeric, 3) AS als, round(r.graph::numeric, 3) AS graph,
       round(r.content::numeric, 3) AS content, round(r.popularity::numeric, 3) AS popularity, p.title, r.reason
FROM recsys_recommend(42, 10) r JOIN posts p ON p.id = r.post_id ORDER BY r.score DESC, r.post_id;

\echo '== Why the first one? SELECT * FROM recsys_explain(42, post_id);'
SELECT e.component, e.evidence, round(e.contribution::numeric, 4) AS contribution
FROM (SELECT post_id FROM recsys_recommend(42, 1)) r, recsys_explain(42, r.post_id) e;

\echo '== More like "Star Wars (1977)": recsys_similar(post_id, 10)'
SELECT s.post_id, round(s.score::numeric, 3) AS score, p.title, s.reason
FROM posts q, recsys_similar(q.id, 10) s JOIN posts p ON p.id = s.post_id
WHERE q.title = 'Star Wars (1977)' ORDER BY s.score DESC, s.post_id;

\echo '== Cold start: a new user (24, F) who follows users 1, 2 and 3 and has no history yet'
INSERT INTO users (id, username, age, gender, location) VALUES (9998, 'newcomer', 24, 'F', '10001');
INSERT INTO follows (follower_id, followee_id) VALUES (9998, 1), (9998, 2), (9998, 3);
SELECT r.post_id, round(r.score::numeric, 3) AS score, round(r.social::numeric, 3) AS social,
       round(r.popularity::numeric, 3) AS popularity, p.title, r.reason
FROM recsys_recommend(9998, 8) r JOIN posts p ON p.id = r.post_id ORDER BY r.score DESC, r.post_id;

\echo '== A like inserted now changes the next call (fold-in, no retrain)'
INSERT INTO interactions (user_id, post_id, kind) SELECT 9999, id, 'like' FROM posts WHERE title LIKE 'Toy Story%';
SELECT r.post_id, round(r.score::numeric, 3) AS score, p.title, r.reason
FROM recsys_recommend(9999, 5) r JOIN posts p ON p.id = r.post_id ORDER BY r.score DESC, r.post_id;
