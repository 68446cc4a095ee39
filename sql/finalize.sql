COMMENT ON FUNCTION @extschema@.recsys_train(jsonb) IS
'Trains the recommender on the interactions table and serves the new model once the transaction commits.
options (jsonb, all optional): factors 64, iterations 15, regularization 10, alpha 1, seed 42, cg_steps 3,
threads (default recsys.threads), weights {"view":1,"like":4,"inspire":5,"share":6,"rate":1}, default_weight 1,
interactions {"table","user","post","kind","value","time"}, posts/users/follows mappings.
Row weight = weights[kind] (default_weight for other kinds) * coalesce(value, 1); repeated (user, post) rows are summed.
Returns a report: model_id, users, posts, interactions, nonzeros, iterations, loss per iteration, seconds per phase.
Memory budget: maintenance_work_mem. NULL options = {}.';

COMMENT ON FUNCTION @extschema@.recsys_recommend(bigint, integer, boolean) IS
'Top-k posts for a user, best first (ties by post_id). The user''s current interactions are folded into the
model at call time, so new likes count without a retrain. A user with no known interactions gets the
popularity fallback (score = distinct users per post / max). exclude_seen drops posts the user interacted with.
k between 1 and recsys.max_k. STRICT: a NULL argument returns no rows.';

COMMENT ON FUNCTION @extschema@.recsys_similar(bigint, integer) IS
'Top-k posts most similar to a post: cosine similarity of ALS item factors, never the post itself.
An unknown post is an error. k between 1 and recsys.max_k. STRICT: a NULL argument returns no rows.';
