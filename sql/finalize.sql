COMMENT ON FUNCTION @extschema@.recsys_train(jsonb) IS
'Trains the recommender on the interactions table and serves the new model once the transaction commits.
options (jsonb, all optional): factors 64, iterations 15, regularization 30, alpha 4, seed 42, cg_steps 3,
threads (default recsys.threads), kind_weights {"view":1,"like":4,"inspire":5,"share":6,"rate":1} (formerly "weights",
still accepted with a deprecation NOTICE), default_weight 1,
interactions {"table","user","post","kind","value","time"}, posts/users/follows mappings (tables named posts,
users, follows are used when they exist; stored schema-qualified; temporary tables are refused); posts "visible":
an SQL boolean expression over the posts row every served post must satisfy at call time. Hybrid: fusion {"als":1.5,"content":0.3,"social":1.5,"popularity":0.1,
"freshness":0.05,"demographic":0.3,"graph":1}, graph {"kind":"auto"|"ease"|"rp3beta"|"off","neighbours":100,
"ease_edges":2097152 (EASE keeps max(neighbours, ease_edges / posts) a post),"ease_lambda":400,"ease_max_items":20000,"rp3_alpha":0.6,"rp3_beta":0.5,"ease_beta":0.2} (auto: EASE when the catalogue has at most
ease_max_items posts and its dense solve fits maintenance_work_mem, else RP3beta), mutual_weight 2, degree_damping 0.3, second_hop 0 (off), owner_weight 1,
social_half_life_days 14, content_half_life_days 30, freshness_half_life_days 7, popularity_half_life_days 7,
cold_start_threshold 5, tune false (true: pick the fusion weights on a seeded holdout of the training data).
Ratings: feedback "implicit" (default) or "explicit" (adds an SVD++-style MF + KNNBaseline rating model over rows of
rating_kind "rate", value = rating; recsys_predict then returns ratings), rating {"factors":32,"iterations":10,
"regularization":2,"bias_regularization":0.9,"regularization_exponent":0.5 (lambda times n^exponent, n = ratings of the row),
"implicit_regularization":0.5 (0 = no implicit term),"knn_weight":0.25,"knn_k":40}.
Row weight = kind_weights[kind] (default_weight for other kinds) * coalesce(value, 1); repeated (user, post) rows are summed.
Returns a report: model_id, users, posts, interactions, nonzeros, iterations, loss, fusion weights, tuning, seconds per phase.
Memory budget: maintenance_work_mem. NULL options = {}.';

COMMENT ON FUNCTION @extschema@.recsys_recommend(bigint, integer, boolean, text, text, text, bigint[], bigint[], integer, real, jsonb, text, boolean) IS
'Top-k posts for a user, best first (ties by post_id), with each component''s contribution and a reason.
score = als + graph + content + social + popularity, each a weight times a component scaled to [0, 1]: ALS preference
(the user''s current interactions folded in at call time), graph (item-item EASE or RP3beta edges from the posts
the user engaged with, now), content (TF-IDF profile of the user''s posts), social
(engagement of followees: mutual follows count double, big accounts damped, recent engagement weighted more,
posts owned by followees), popularity (trending + freshness + demographic segment popularity for cold users).
Users with fewer than cold_start_threshold (5) interactions get demographics + social + trending, with ALS and
content scaled down; a user with nothing gets trending. exclude_seen drops posts the user interacted with.
Feed arguments: category, project_code, mood, include (allow-list), exclude, "offset", diversity 0..1 (MMR re-rank),
weights (jsonb, e.g. {"social": 0.6}: overrides the model''s fusion weights for this call).
k between 1 and recsys.max_k. A NULL user_id, k or exclude_seen returns no rows; a NULL offset, diversity,
weights or reasons means its default (0, 0, the model''s weights, true). model names the model (default ''default''; see recsys_models).
reasons => false leaves reason NULL and skips finding each row''s evidence (the same rows and scores, with less work).';

COMMENT ON FUNCTION @extschema@.recsys_predict(bigint, bigint, jsonb, text) IS
'The fused score recsys_recommend would give this post for this user (same weights, same scale; not excluded
if seen). An unknown post is an error; an unknown user gets the cold-start score. NULL arguments return NULL.
With a model trained with {"feedback": "explicit"}: the predicted rating, clamped to the observed range, from
the user''s ratings now (folded in); an unknown user gets mean + post bias, an unknown post mean + user bias. model names the model (default ''default''; see recsys_models).';

COMMENT ON FUNCTION @extschema@.recsys_explain(bigint, bigint, jsonb, text) IS
'The evidence behind a fused score, one row per piece: als rows are the user''s posts that contribute most through
the ALS item-item term (Hu, Koren & Volinsky 2008, section 5), graph rows the user''s posts with an item-graph
edge to it, social rows the followees who engaged with or own
the post, content rows the matching profile terms, then popularity, freshness, demographic and the total.
contribution is in units of the fused score. model names the model (default ''default''; see recsys_models).';

COMMENT ON FUNCTION @extschema@.recsys_similar(bigint, integer, text, text, text, bigint[], bigint[], integer, text) IS
'Top-k posts most similar to a post, never the post itself: ALS item cosine and content (TF-IDF) cosine blended,
content share recsys.similar_content_weight (default 0.3), with a reason. A post with no interactions but a row in
the posts table is placed by content alone. Same filters as recsys_recommend (category, project_code, mood, include,
exclude, "offset"). An unknown post is an error. k between 1 and recsys.max_k. NULL post_id or k: no rows. model names the model (default ''default''; see recsys_models).';

COMMENT ON FUNCTION @extschema@.recsys_search(text, integer, text) IS
'Free-text search over the posts'' TF-IDF (title, description, tags, category; #tag matches a whole tag).
Returns posts by cosine similarity, best first. An empty query, or one with no term found in any post,
returns no rows. Needs a model trained with a posts table. k between 1 and recsys.max_k. STRICT.
Only posts that are in the posts table now and visible to the caller are returned. A query longer than
recsys.max_query_bytes (10000) is an error (54000). model names the model (default ''default''; see recsys_models).';

COMMENT ON FUNCTION @extschema@.recsys_trending(integer, text, text, interval, integer, text) IS
'Posts ranked by recent engagement: the sum of interaction weights (as in the model''s options, or the
defaults) decayed by 2^(-age / recsys.trending_half_life_hours), over interactions newer than since.
Optional category and project_code filters read the posts table now; posts no longer in it (or hidden by the
posts "visible" predicate or row-level security) are not returned; offset pages. Needs no trained model.
The feed''s popularity component is this signal (default window, top 1000), scaled to [0, 1].
NULL k returns no rows; NULL since/offset mean their defaults. model: whose kind weights and posts mapping apply
(default ''default''; without any trained model the defaults).';

COMMENT ON FUNCTION @extschema@.recsys_evaluate(jsonb) IS
'Offline evaluation in the database: reads the tables recsys_train reads, splits each user''s posts in memory
(seeded), trains on the training part and ranks with the served scorer; writes nothing, never replaces the served
model. Returns (metric, value) rows: users, folds, precision@k, recall@k, ndcg@k, map@k, coverage, and the same for
a popularity baseline on the same split ("popularity ..."); with folds, means plus "... stddev" rows.
options: every recsys_train option, plus k 10, test_fraction 0.2 (held-out share of each user''s posts),
folds (k-fold cross-validation, 2..20), min_value (rows whose weight is below it are dropped first, e.g. 4 for
4-star positives), components (e.g. ["als"]; default: all of the model''s fusion), cold_fraction 0 (share of users
whose whole history is hidden), max_users 5000 (users evaluated per fold, a seeded sample).
With {"feedback": "explicit"}: k-fold (default 5) rmse, mae and the baseline (mean + biases) rmse, mae, each with a stddev row.';

CREATE FUNCTION @extschema@.recsys_import_factors(user_factors regclass, item_factors regclass, options jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE sql VOLATILE
AS $$ SELECT @extschema@._recsys_import_factors($1::pg_catalog.oid, $2::pg_catalog.oid, $3) $$;

COMMENT ON FUNCTION @extschema@.recsys_import_factors(regclass, regclass, jsonb) IS
'Serves factors trained elsewhere (e.g. Spark MLlib ALS output): two tables of (id integer type, features
real[], double precision[] or pgvector vector) for users and posts, the same dimension everywhere, distinct ids,
finite values.
Builds and stores a model exactly as recsys_train does (content, social, trending, fusion, filters, fold-in,
explanations) but with these item factors instead of training ALS; interactions on posts without imported
factors are left out, posts in the posts table without factors are placed by content. options as recsys_train
(set "regularization" and "alpha" to the values the factors were trained with: fold-in uses them).
Returns the report. Errors (22023) name the table and the offending id.';

COMMENT ON FUNCTION @extschema@._recsys_import_factors(oid, oid, jsonb) IS
'Internal: the implementation of recsys_import_factors(regclass, regclass, jsonb).';

COMMENT ON FUNCTION @extschema@.recsys_refresh(text) IS
'Rebuilds the served model from the tables as they are now, keeping its ALS factors: the content model (new and
changed posts; posts without factors are placed by their content), feed attributes, owners, freshness, follower
counts, demographic segments and popularity. No ALS, so it takes seconds where a train takes minutes; a new model
version is stored and served on commit, as with recsys_train. Returns the report (refreshed_from = the model whose
factors were kept). For apps that prefer batch freshness: SELECT cron.schedule(''recsys-refresh'', ''*/5 * * * *'',
''SELECT recsys_refresh()''). model: which named model to refresh (default ''default''); the refreshed version
is deployed.';

-- Training progress seen from any session: one row per recsys_train / recsys_refresh /
-- recsys_import_factors statement running now in this cluster (rows of other roles' sessions
-- need pg_read_all_stats, as pg_stat_activity's do).
CREATE VIEW @extschema@.recsys_progress AS
SELECT p.pid, d.datname AS database, p.phase, p.iteration, p.iterations, p.rows_read,
       pg_catalog.to_timestamp(p.started) AS started_at,
       pg_catalog.to_timestamp(p.updated) AS updated_at,
       pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.to_timestamp(p.started) AS elapsed
FROM @extschema@._recsys_progress() p
JOIN pg_catalog.pg_stat_activity a
  ON a.pid OPERATOR(pg_catalog.=) p.pid AND a.state OPERATOR(pg_catalog.=) 'active'
 AND a.query_start OPERATOR(pg_catalog.<=) pg_catalog.to_timestamp(p.started)
LEFT JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) p.database;

COMMENT ON VIEW @extschema@.recsys_progress IS
'Trains running now, seen from any session (NOTICEs reach only the caller, and pg_cron drops them): phase
(waiting for another train, reading, als, importing factors, content, social, tuning, rating model, saving),
ALS iteration of iterations, rows read from the input tables so far, start, last update (written at each phase
change and at most every 250 ms) and elapsed time. A train that returns, fails or is cancelled leaves the view
at once.';

COMMENT ON FUNCTION @extschema@._recsys_progress() IS
'Internal: the training progress files behind the recsys_progress view (which keeps running statements only).';

-- Named models: every version of every name, which one is served, and what it cost.
CREATE VIEW @extschema@.recsys_models AS
SELECT m.name, m.id AS version,
       m.id OPERATOR(pg_catalog.=) (SELECT d.id FROM @extschema@._recsys_model d
                                    WHERE d.name OPERATOR(pg_catalog.=) m.name AND d.deployed_at IS NOT NULL
                                    ORDER BY d.deployed_at DESC, d.id DESC LIMIT 1) IS TRUE AS deployed,
       m.pinned, m.created_at AS trained_at, m.deployed_at AS last_deployed_at,
       (m.report OPERATOR(pg_catalog.->) 'seconds' OPERATOR(pg_catalog.->>) 'total')::pg_catalog.float8 AS seconds,
       (m.report OPERATOR(pg_catalog.->>) 'interactions')::pg_catalog.int8 AS rows,
       m.n_users AS users, m.n_items AS posts,
       (m.report OPERATOR(pg_catalog.->>) 'memory_estimate_mb')::pg_catalog.int8 AS memory_mb,
       (m.report OPERATOR(pg_catalog.->) 'tuned' OPERATOR(pg_catalog.->>) 'ndcg_at_10')::pg_catalog.float8 AS holdout_ndcg,
       m.report OPERATOR(pg_catalog.->) 'missing_indexes' AS missing_indexes
FROM @extschema@._recsys_model m;

COMMENT ON VIEW @extschema@.recsys_models IS
'Every stored model version: name, version (id), deployed (the version served for its name: the one deployed
last), pinned (never deleted by recsys.keep_models), trained_at, last_deployed_at, seconds to train, rows read,
users, posts, memory estimate, holdout NDCG@10 (versions trained with "tune": true) and the CREATE INDEX
statements serving would need (missing_indexes).';

CREATE FUNCTION @extschema@.recsys_deploy(model text DEFAULT 'default', version text DEFAULT 'latest')
RETURNS bigint LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v bigint;
BEGIN
    IF model IS NULL OR version IS NULL THEN
        RAISE EXCEPTION 'model and version must not be NULL' USING ERRCODE = '22004',
            HINT = 'pass version => ''latest'', ''previous'', ''best'' or a version number';
    END IF;
    IF version = 'latest' THEN
        SELECT id INTO v FROM @extschema@._recsys_model WHERE name = model ORDER BY id DESC LIMIT 1;
    ELSIF version = 'previous' THEN
        SELECT id INTO v FROM @extschema@._recsys_model WHERE name = model AND deployed_at IS NOT NULL
        ORDER BY deployed_at DESC, id DESC OFFSET 1 LIMIT 1;
        IF v IS NULL THEN
            RAISE EXCEPTION 'model "%" has no previously deployed version', model USING ERRCODE = '55000',
                HINT = 'SELECT * FROM recsys_models lists the versions; deploy one by number';
        END IF;
    ELSIF version = 'best' THEN
        SELECT id INTO v FROM @extschema@._recsys_model
        WHERE name = model AND report -> 'tuned' ->> 'ndcg_at_10' IS NOT NULL
        ORDER BY (report -> 'tuned' ->> 'ndcg_at_10')::float8 DESC, id DESC LIMIT 1;
        IF v IS NULL THEN
            RAISE EXCEPTION 'no version of model "%" has a holdout NDCG', model USING ERRCODE = '55000',
                HINT = 'train candidates with {"tune": true, "deploy": false}: the report then holds their holdout NDCG@10';
        END IF;
    ELSIF version ~ '^[0-9]+$' THEN
        SELECT id INTO v FROM @extschema@._recsys_model WHERE name = model AND id = version::bigint;
    ELSE
        RAISE EXCEPTION 'version must be ''latest'', ''previous'', ''best'' or a version number, got "%"', version
            USING ERRCODE = '22023';
    END IF;
    IF v IS NULL THEN
        RAISE EXCEPTION 'model "%" has no version %', model, version USING ERRCODE = 'P0002',
            HINT = 'SELECT * FROM recsys_models lists the stored versions';
    END IF;
    UPDATE @extschema@._recsys_model SET deployed_at = clock_timestamp() WHERE id = v;
    RETURN v;
END $$;

COMMENT ON FUNCTION @extschema@.recsys_deploy(text, text) IS
'Serves a stored version of a model from the next call on, in every session, once the transaction commits
(ROLLBACK keeps the one served before): version ''latest'' (the newest trained), ''previous'' (the version deployed
before the current one: a rollback), ''best'' (the highest holdout NDCG@10 among versions trained with "tune": true)
or a version number from recsys_models. Returns the version now served. Train without serving with
{"deploy": false}.';

CREATE FUNCTION @extschema@.recsys_pin(version bigint, pinned boolean DEFAULT true)
RETURNS void LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE @extschema@._recsys_model SET pinned = recsys_pin.pinned WHERE id = version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no model version %', version USING ERRCODE = 'P0002',
            HINT = 'SELECT * FROM recsys_models lists the stored versions';
    END IF;
END $$;

COMMENT ON FUNCTION @extschema@.recsys_pin(bigint, boolean) IS
'Pins a model version (or unpins it with pinned => false): recsys.keep_models never deletes a pinned version, nor
the version being served.';

COMMENT ON FUNCTION @extschema@.recsys_item_factors(text) IS
'The served model''s post factors, one row per post (post_id, factors real[]): e.g. into a pgvector column with
INSERT INTO item_vec SELECT post_id, factors::vector FROM recsys_item_factors(). model as elsewhere.';
