//! The served model's operational surface (issue 12): missing-index warnings and training
//! progress seen from another session.
use pg_recsys_e2e::{root, Cluster};

/// 30,000 interactions (about 1.5 MB: above the 1 MB warning threshold) over 50 posts.
fn fixture(c: &Cluster, db: &str) {
    c.sql(db, "CREATE EXTENSION pg_recsys");
    c.sql(db, &std::fs::read_to_string(root().join("scripts/schema.sql")).unwrap());
    c.sql(
        db,
        "INSERT INTO posts (id, owner_id, title, category)
         SELECT p, 100 + p % 10, 'post ' || p || ' about ' || (ARRAY['dance','food','pets','music'])[1 + p % 4],
                (ARRAY['dance','food','pets','music'])[1 + p % 4] FROM generate_series(1, 50) p;
         INSERT INTO interactions (user_id, post_id, kind, created_at)
         SELECT u, 1 + (u * 7 + k * 13) % 50, 'like', now() - (k || ' hours')::interval
         FROM generate_series(1, 3000) u, generate_series(1, 10) k;
         INSERT INTO follows (follower_id, followee_id) SELECT u, u + 1 FROM generate_series(1, 100) u;",
    );
}

/// Item 5: a per-call read that would scan gets a WARNING naming the exact CREATE INDEX, which
/// runs as printed; with the indexes in place the warning is gone. Tiny tables do not warn.
#[test]
fn missing_indexes_are_warned_with_the_statement() {
    let c = Cluster::start("models_index");
    let db = "postgres";
    fixture(&c, db);
    let train = r#"SELECT recsys_train('{"factors": 4, "iterations": 2}')->'missing_indexes'"#;
    assert_eq!(c.sql(db, train), "[]", "schema.sql's indexes cover every per-call read");
    c.sql(db, "DROP INDEX interactions_user_time_idx, interactions_created_idx");
    let out = c.psql_cmd(db).args(["-v", "ON_ERROR_STOP=1", "-A", "-t", "-c", train]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let want = ["CREATE INDEX ON public.interactions (user_id, created_at)", "CREATE INDEX ON public.interactions (created_at)"];
    for stmt in want {
        assert!(stderr.contains("WARNING:  recsys_train: serving will scan a table on every call") && stderr.contains(stmt), "{stderr}");
        assert!(stdout.contains(stmt), "the report lists it: {stdout}");
    }
    // posts and follows are small here: no warning for them.
    assert!(!stderr.contains("ON public.posts") && !stderr.contains("ON public.follows"), "{stderr}");
    for stmt in want {
        c.sql(db, stmt);
    }
    assert_eq!(c.sql(db, train), "[]");
    // A partial index does not serve every user's read.
    c.sql(db, "DROP INDEX interactions_user_id_created_at_idx; CREATE INDEX ON public.interactions (user_id) WHERE kind = 'like'");
    assert!(c.sql(db, train).contains("CREATE INDEX ON public.interactions (user_id, created_at)"));
    // A category feed reads the category's posts: warned once posts is large enough to scan.
    c.sql(db, "DROP INDEX posts_category_idx; INSERT INTO posts (id, title, category) SELECT p, repeat('words ', 8), 'c' || p % 10 FROM generate_series(1000, 21000) p; ANALYZE posts");
    let with_posts = c.sql(db, train);
    assert!(with_posts.contains("CREATE INDEX ON public.posts (category, id)"), "{with_posts}");
    c.sql(db, "CREATE INDEX ON public.posts (category, id)");
    assert!(!c.sql(db, train).contains("ON public.posts"));
}

/// Item 4: another session sees a running train in recsys_progress: waiting for the lock held
/// by a concurrent train, then its phases with ALS iterations and rows read; the row is gone
/// when the train returns.
#[test]
fn training_progress_is_visible_from_another_session() {
    let c = Cluster::start("models_progress");
    let db = "postgres";
    fixture(&c, db);
    assert_eq!(c.sql(db, "SELECT count(*) FROM recsys_progress"), "0");
    std::thread::scope(|s| {
        // A holds the training lock for 1.5 s; B's train waits for it, then runs.
        let a = s.spawn(|| c.sql(db, "BEGIN; SELECT pg_advisory_xact_lock(hashtext('pg_recsys'), 1); SELECT pg_sleep(1.5); COMMIT;"));
        std::thread::sleep(std::time::Duration::from_millis(300));
        let b = s.spawn(|| c.sql(db, r#"SELECT recsys_train('{"factors": 64, "iterations": 100}')->>'iterations'"#));
        let mut seen: Vec<String> = vec![];
        let t0 = std::time::Instant::now();
        while !b.is_finished() && t0.elapsed().as_secs() < 120 {
            let row = c.sql(db, "SELECT phase || '|' || iteration || '|' || iterations || '|' || (rows_read > 0) || '|' || (database = current_database()) FROM recsys_progress");
            if !row.is_empty() && seen.last() != Some(&row) {
                seen.push(row);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        a.join().unwrap();
        assert_eq!(b.join().unwrap(), "100");
        assert!(seen.iter().any(|r| r.starts_with("waiting for another train|")), "{seen:?}");
        assert!(
            seen.iter().any(|r| r.starts_with("als|") && !r.starts_with("als|0|") && r.contains("|100|true|true")),
            "an ALS iteration with rows read: {seen:?}"
        );
    });
    assert_eq!(c.sql(db, "SELECT count(*) FROM recsys_progress"), "0", "gone when the train returns");
    // A failed train leaves nothing behind either.
    c.sql_err(db, r#"SELECT recsys_train('{"factors": 0}')"#);
    assert_eq!(c.sql(db, "SELECT count(*) FROM recsys_progress"), "0");
}

/// Item 3: named models, train without serving, deploy, roll back (also inside a transaction
/// that rolls back), keep_models never deleting the served or a pinned version.
#[test]
fn named_models_deploy_and_roll_back() {
    let c = Cluster::start("models_named");
    let db = "postgres";
    fixture(&c, db);
    let top = |sql: &str| c.sql(db, &format!("SELECT string_agg(post_id::text, ',' ORDER BY post_id) FROM ({sql}) t"));
    let feed = "SELECT post_id FROM recsys_recommend(7, 5)";
    assert_eq!(c.sql(db, r#"SELECT recsys_train('{"factors": 8, "iterations": 3}')->>'model_id'"#), "1");
    let v1 = top(feed);
    // A second name, served on its own; an unknown name is an error with a hint.
    c.sql(db, r#"SELECT recsys_train('{"factors": 8, "iterations": 3, "model": "popular", "fusion": {"als": 0, "graph": 0, "content": 0, "social": 0, "popularity": 1}}')"#);
    let popular = top("SELECT post_id FROM recsys_recommend(7, 5, model => 'popular')");
    assert_eq!(top(feed), v1, "the default model is unchanged");
    assert_ne!(popular, v1);
    let err = c.sql_err(db, "SELECT * FROM recsys_recommend(7, 5, model => 'nope')");
    assert!(err.contains("55000") && err.contains("no deployed model named \"nope\"") && err.contains("recsys_models"), "{err}");
    // A candidate trained without serving: stored, listed, not served.
    assert_eq!(c.sql(db, r#"SELECT recsys_train('{"factors": 8, "iterations": 3, "deploy": false, "fusion": {"als": 0, "graph": 0, "content": 0, "social": 0, "popularity": 1}}')->>'model_id'"#), "3");
    assert_eq!(
        c.sql(db, "SELECT string_agg(name || ':' || version || ':' || deployed, ' ' ORDER BY version) FROM recsys_models"),
        "default:1:true popular:2:true default:3:false"
    );
    assert_eq!(top(feed), v1);
    // Deploy it: the same session (model cached) and a new one see it; then roll back.
    let out = c.sql(db, &format!("{feed}; SELECT recsys_deploy('default', 'latest'); SELECT 'after', string_agg(post_id::text, ',' ORDER BY post_id) FROM (SELECT post_id FROM recsys_recommend(7, 5)) t"));
    assert!(out.lines().any(|l| l == "3") && out.lines().any(|l| l == format!("after|{popular}")), "{out}");
    assert_eq!(top(feed), popular);
    assert_eq!(c.sql(db, "SELECT recsys_deploy('default', 'previous')"), "1");
    assert_eq!(top(feed), v1);
    // A deploy inside a transaction that rolls back changes nothing.
    c.sql(db, "BEGIN; SELECT recsys_deploy('default', '3'); ROLLBACK;");
    assert_eq!(top(feed), v1);
    assert_eq!(c.sql(db, "SELECT version FROM recsys_models WHERE name = 'default' AND deployed"), "1");
    // Errors: no tuned version for 'best', a bad version word, an unknown version.
    assert!(c.sql_err(db, "SELECT recsys_deploy('default', 'best')").contains("holdout NDCG"));
    assert!(c.sql_err(db, "SELECT recsys_deploy('default', 'newest')").contains("22023"));
    assert!(c.sql_err(db, "SELECT recsys_deploy('default', '99')").contains("P0002"));
    let err = c.sql_err(db, "SELECT recsys_pin(99)");
    assert!(err.contains("P0002") && err.contains("recsys_models"), "{err}");
    // keep_models = 1 keeps the newest, the served (1) and the pinned (3) versions.
    c.sql(db, "SELECT recsys_pin(3)");
    c.sql(db, r#"SET recsys.keep_models = 1; SELECT recsys_train('{"factors": 8, "iterations": 3, "deploy": false}')"#);
    assert_eq!(c.sql(db, "SELECT string_agg(version::text, ',' ORDER BY version) FROM recsys_models WHERE name = 'default'"), "1,3,4");
    c.sql(db, "SELECT recsys_pin(3, false)");
    c.sql(db, r#"SET recsys.keep_models = 1; SELECT recsys_train('{"factors": 8, "iterations": 3, "deploy": false}')"#);
    assert_eq!(c.sql(db, "SELECT string_agg(version::text, ',' ORDER BY version) FROM recsys_models WHERE name = 'default'"), "1,5");
    // The other name's refresh keeps its own name and serves the result.
    assert_eq!(c.sql(db, "SELECT r->>'refreshed_from' FROM recsys_refresh(model => 'popular') r"), "2");
    assert_eq!(c.sql(db, "SELECT version FROM recsys_models WHERE name = 'popular' AND deployed"), "6");
    assert_eq!(top("SELECT post_id FROM recsys_recommend(7, 5, model => 'popular')"), popular);
    // 'best' picks the highest holdout NDCG among tuned versions.
    c.sql(db, r#"SELECT recsys_train('{"factors": 8, "iterations": 3, "deploy": false, "tune": true}')"#);
    assert_eq!(c.sql(db, "SELECT recsys_deploy('default', 'best')"), "7");
}

/// Item 1: the served model is an image file mapped by every backend. Serving from it gives
/// exactly what the private decoded copy gives; a damaged image is a WARNING and is rebuilt;
/// images of versions no longer stored are removed.
#[test]
fn model_images_serve_exactly_the_stored_model() {
    let c = Cluster::start("models_image");
    let db = "postgres";
    fixture(&c, db);
    // Demographics, so the image holds segment lists; user 5000 has none of the history.
    c.sql(
        db,
        "INSERT INTO users (id, age, gender, location) SELECT u, 18 + u % 40, (ARRAY['f','m'])[1 + u % 2], (ARRAY['oslo','lima','pune'])[1 + u % 3]
         FROM generate_series(1, 3000) u;
         INSERT INTO users (id, age, gender, location) VALUES (5000, 30, 'f', 'lima');",
    );
    c.sql(db, r#"SELECT recsys_train('{"factors": 8, "iterations": 4}')"#);
    let calls = "SELECT post_id, round(score::numeric, 5), reason FROM recsys_recommend(7, 8);
                 SELECT post_id, round(score::numeric, 5), round(popularity::numeric, 5), reason FROM recsys_recommend(5000, 8);
                 SELECT post_id, round(score::numeric, 5), reason FROM recsys_recommend(2999, 8, diversity => 0.3);
                 SELECT post_id, round(score::numeric, 5) FROM recsys_similar(3, 5);
                 SELECT post_id, round(score::numeric, 5) FROM recsys_search('food dance', 5);
                 SELECT component, evidence, round(contribution::numeric, 5) FROM recsys_explain(7, 12);
                 SELECT round(recsys_predict(7, 12)::numeric, 5);";
    let shared = c.sql(db, calls);
    let images = c.dir.join("pg_recsys").join("images");
    let files = || -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(&images).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
        v.sort();
        v
    };
    assert_eq!(files().len(), 1, "one image for the served version: {:?}", files());
    let private = c.sql(db, &format!("SET recsys.shared_models = off; {calls}"));
    assert_eq!(shared, private, "the image serves exactly the decoded model");
    assert!(shared.lines().count() > 30, "{shared}");
    // A new connection opens the image, with the options the image keeps.
    assert_eq!(c.sql(db, calls), shared, "served from the image in a new connection");
    // An image without its options section (as written before it was kept): the row's.
    let img = images.join(&files()[0]);
    let mut bytes = std::fs::read(&img).unwrap();
    let at = bytes.windows(8).position(|w| w == b"options\0").expect("the image names an options section");
    bytes[at + 6] = b'X';
    std::fs::write(&img, &bytes).unwrap();
    assert_eq!(c.sql(db, calls), shared, "an image without options: the row's options");
    assert!(shared.contains("popular with people like you"), "the cold user is served from its segments' lists: {shared}");
    // A damaged image: a WARNING, rebuilt from the rows, same answers.
    std::fs::write(&img, b"not an image at all").unwrap();
    let out = c.psql_cmd(db).args(["-A", "-t", "-c", calls]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), shared);
    assert!(String::from_utf8_lossy(&out.stderr).contains("rebuilding it"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::metadata(&img).unwrap().len() > 1000, "rebuilt");
    // A new version gets its own image; images of versions no longer stored go.
    c.sql(db, r#"SET recsys.keep_models = 1; SELECT recsys_train('{"factors": 8, "iterations": 5}')"#);
    c.sql(db, "SELECT count(*) FROM recsys_recommend(7, 5)");
    let now = files();
    assert_eq!(now.len(), 1, "{now:?}");
    assert!(now[0].contains("_2_"), "the image of version 2: {now:?}");
}

/// Item 6: factors go to and come from pgvector columns: recsys_item_factors exports the
/// served post factors into a vector column, recsys_import_factors reads vector columns, and the
/// imported model ranks like the original (same item factors, same similar-posts answer).
#[test]
fn factors_round_trip_through_pgvector_columns() {
    let c = Cluster::start("models_vector");
    let db = "postgres";
    fixture(&c, db);
    c.sql(db, r#"SELECT recsys_train('{"factors": 8, "iterations": 4}')"#);
    let similar = "SELECT string_agg(post_id::text, ',' ORDER BY score DESC, post_id) FROM recsys_similar(3, 8)";
    let before = c.sql(db, similar);
    c.sql(
        db,
        "CREATE EXTENSION vector;
         CREATE TABLE item_vec (id bigint PRIMARY KEY, v vector(8));
         INSERT INTO item_vec SELECT post_id, factors::vector FROM recsys_item_factors();
         CREATE TABLE user_vec (id bigint PRIMARY KEY, v vector(8));
         INSERT INTO user_vec SELECT u, array_fill(0.1::real, ARRAY[8])::vector FROM generate_series(1, 3000) u;",
    );
    assert_eq!(c.sql(db, "SELECT count(*) = (SELECT count(*) FROM recsys_item_factors()) FROM item_vec"), "t");
    let report = c.sql(db, "SELECT r->>'factors' FROM recsys_import_factors('user_vec', 'item_vec', '{\"factors\": 8}') r");
    assert_eq!(report, "8");
    assert_eq!(c.sql(db, similar), before, "same item factors, same neighbours");
    let err = c.sql_err(db, "SELECT count(*) FROM recsys_item_factors(model => 'nope')");
    assert!(err.contains("55000") && err.contains("recsys_deploy"), "{err}");
    let err = c.sql_err(db, "CREATE TABLE bad_vec (id bigint, v text); SELECT recsys_import_factors('user_vec', 'bad_vec')");
    assert!(err.contains("vector"), "{err}");
}
