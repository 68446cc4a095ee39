COMMENT ON FUNCTION @extschema@.recsys_train(jsonb) IS
'Trains the recommender on the interactions table and serves the new model once the transaction commits.
options (jsonb, all optional): factors 64, iterations 15, regularization 10, alpha 1, seed 42, cg_steps 3,
threads (default recsys.threads), weights {"view":1,"like":4,"inspire":5,"share":6,"rate":1}, default_weight 1,
interactions {"table","user","post","kind","value","time"}, posts/users/follows mappings.
Row weight = weights[kind] (default_weight for other kinds) * coalesce(value, 1); repeated (user, post) rows are summed.
Returns a report: model_id, users, posts, interactions, nonzeros, iterations, loss per iteration, seconds per phase.
Memory budget: maintenance_work_mem. NULL options = {}.';

COMMENT ON FUNCTION @extschema@.recsys_recommend(bigint, integer, boolean, text, text, text, bigint[], bigint[], integer, real) IS
'Top-k posts for a user, best first (ties by post_id). The user''s current interactions are folded into the
model at call time, so new likes count without a retrain. A user with no known interactions gets the
popularity fallback (score = distinct users per post / max). exclude_seen drops posts the user interacted with.
Feed arguments: category, project_code, mood (exact match on the posts table as of training), include (allow-list),
exclude, "offset" (paging), diversity 0..1 (MMR re-rank over ALS item cosine; 0 = off).
k between 1 and recsys.max_k. A NULL user_id, k or exclude_seen returns no rows; NULL offset/diversity/filters mean their defaults.';

COMMENT ON FUNCTION @extschema@.recsys_similar(bigint, integer) IS
'Top-k posts most similar to a post, never the post itself: a blend of ALS item cosine and content (TF-IDF)
cosine, content share recsys.similar_content_weight (default 0.3). A post with no interactions but a row in the
posts table is placed by content alone. An unknown post is an error. k between 1 and recsys.max_k. STRICT.';

COMMENT ON FUNCTION @extschema@.recsys_search(text, integer) IS
'Free-text search over the posts'' TF-IDF (title, description, tags, category; #tag matches a whole tag).
Returns posts by cosine similarity, best first. An empty query, or one with no term found in any post,
returns no rows. Needs a model trained with a posts table. k between 1 and recsys.max_k. STRICT.';

COMMENT ON FUNCTION @extschema@.recsys_trending(integer, text, text, interval, integer) IS
'Posts ranked by recent engagement: the sum of interaction weights (as in the model''s options, or the
defaults) decayed by 2^(-age / recsys.trending_half_life_hours), over interactions newer than since.
Optional category and project_code filters join the posts table; offset pages. Needs no trained model.
NULL k returns no rows; NULL since/offset mean their defaults.';
