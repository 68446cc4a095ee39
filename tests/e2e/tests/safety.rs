//! Safe serving (issue 10, items 9-16): crafted models, huge inputs, hostile operators, session
//! state, row-level security, bad rows and unbounded work.
use pg_recsys_e2e::{root, Cluster};
use std::time::Instant;

fn fixture(c: &Cluster, db: &str) {
    c.sql(db, "CREATE EXTENSION pg_recsys");
    c.sql(db, &std::fs::read_to_string(root().join("scripts/schema.sql")).unwrap());
    c.sql(
        db,
        "INSERT INTO users (id, username, age, gender, location)
         SELECT u, 'u' || u, 20 + u % 30, CASE WHEN u % 2 = 0 THEN 'F' ELSE 'M' END, 'L' || (u % 3) FROM generate_series(1, 200) u;
         INSERT INTO posts (id, owner_id, title, tags, category, project_code, mood)
         SELECT p, 100 + p % 10, 'post ' || p || ' about ' || (ARRAY['dance','food','pets','music'])[1 + p % 4],
                ARRAY['t' || (p % 4)], (ARRAY['dance','food','pets','music'])[1 + p % 4], 'P0' || (1 + p % 2), 'calm'
         FROM generate_series(1, 50) p;
         INSERT INTO interactions (user_id, post_id, kind, created_at)
         SELECT u, p, 'like', now() - ((u + p) % 50) * interval '1 hour'
         FROM generate_series(1, 200) u, generate_series(1, 50) p WHERE (u + p) % 5 = 0;
         INSERT INTO follows (follower_id, followee_id) SELECT u, u + 5 FROM generate_series(1, 150) u;",
    );
}

const TRAIN: &str = r#"SELECT recsys_train('{"factors": 4, "iterations": 3}')"#;

/// Item 9: a crafted or damaged model row is an ERROR for the caller; the server never aborts.
#[test]
fn crafted_model_rows_are_errors_not_crashes() {
    let c = Cluster::start("safety_model");
    fixture(&c, "postgres");
    c.sql("postgres", TRAIN);
    let db = "postgres";
    let cases = [
        ("factors 2^59", "UPDATE _recsys_model SET options = jsonb_set(options, '{als,factors}', '576460752303423488')"),
        ("factors 0", "UPDATE _recsys_model SET options = jsonb_set(options, '{als,factors}', '0')"),
        ("factors 5000", "UPDATE _recsys_model SET options = jsonb_set(options, '{als,factors}', '5000')"),
        ("trailing byte", "UPDATE _recsys_model_data SET data = data || '\\x00'::bytea WHERE part = 'item_factors' AND chunk = 0"),
        ("short array", "UPDATE _recsys_model_data SET data = substring(data FROM 1 FOR 8) WHERE part = 'item_factors' AND chunk = 0"),
        ("future format", "UPDATE _recsys_model_data SET data = '\\x6300000000000000'::bytea WHERE part = 'format'"),
        (
            "content index out of range",
            "UPDATE _recsys_model_data SET data = '\\xffffff7f'::bytea || substring(data FROM 5) WHERE part = 'content_terms' AND chunk = 0",
        ),
    ];
    for (what, damage) in cases {
        c.sql(db, &format!("BEGIN; {damage}; COMMIT"));
        for call in ["SELECT count(*) FROM recsys_recommend(3, 5)", "SELECT count(*) FROM recsys_similar(5, 3)", "SELECT count(*) FROM recsys_search('food')"] {
            let err = c.sql_err(db, call);
            assert!(err.contains("XX001") && err.contains("stored model is damaged"), "{what}: {call}: {err}");
        }
        assert_eq!(c.sql(db, "SELECT 1"), "1", "{what}: the server restarted");
        c.sql(db, TRAIN);
    }
    // The server never crashed: no restart in the log.
    let log = std::fs::read_to_string(c.dir.join("server.log")).unwrap_or_default();
    assert!(!log.contains("terminated by signal"), "{log}");
    assert!(c.sql(db, "SELECT count(*) FROM recsys_recommend(3, 5)") == "5");
}

/// Item 10: an oversized search query is a clear 54000 error; a long one is cancellable.
#[test]
fn huge_search_queries_are_refused_and_cancellable() {
    let c = Cluster::start("safety_search");
    fixture(&c, "postgres");
    c.sql("postgres", TRAIN);
    let err = c.sql_err("postgres", "SELECT * FROM recsys_search(repeat('ab ', 100000000))");
    assert!(err.contains("54000") && err.contains("recsys.max_query_bytes"), "{err}");
    let err = c.sql_err("postgres", "SELECT * FROM recsys_search(repeat('ab ', 4000))");
    assert!(err.contains("54000"), "{err}");
    // Raised limit: the work is interruptible (statement_timeout ends it promptly).
    let t = Instant::now();
    let out = c
        .psql_cmd("postgres")
        .args([
            "-c",
            "SET recsys.max_query_bytes = 10000000; SET statement_timeout = '300ms'; SELECT count(*) FROM recsys_search(repeat('food dance ', 900000))",
        ])
        .output()
        .unwrap();
    let took = t.elapsed().as_secs_f64();
    assert!(took < 3.0, "search ran {took:.2}s past a 300 ms timeout: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(c.sql("postgres", "SELECT count(*) FROM recsys_search('food', 3)"), "3");
}

/// Item 11: operators planted in a schema on the caller's search_path never run: generated SQL
/// uses only exact-type, schema-qualified operators. Every operator name x every pair of common
/// types with no exact pg_catalog operator gets a trap that records the call.
#[test]
fn operators_on_the_search_path_never_run() {
    let c = Cluster::start("safety_ops");
    fixture(&c, "postgres");
    c.sql(
        "postgres",
        r#"CREATE TABLE public.pwned (what text);
        GRANT INSERT ON public.pwned TO PUBLIC;
        DO $do$
        DECLARE o text; l text; r text; n int := 0;
        BEGIN
          FOREACH o IN ARRAY ARRAY['=', '<>', '<', '>', '<=', '>=', '+', '-', '*', '/', '->>', '||'] LOOP
            FOREACH l IN ARRAY ARRAY['int2','int4','int8','float4','float8','numeric','oid','regclass','text','name','"char"','jsonb','timestamptz','interval','date','bool','bigint[]'] LOOP
              FOREACH r IN ARRAY ARRAY['int2','int4','int8','float4','float8','numeric','oid','regclass','text','name','"char"','jsonb','timestamptz','interval','date','bool','bigint[]'] LOOP
                IF NOT EXISTS (SELECT 1 FROM pg_operator WHERE oprname = o AND oprleft = l::regtype AND oprright = r::regtype
                               AND oprnamespace = 'pg_catalog'::regnamespace) THEN
                  n := n + 1;
                  EXECUTE format('CREATE FUNCTION public.trap%s(%s, %s) RETURNS bool LANGUAGE plpgsql AS $f$ BEGIN
                      INSERT INTO public.pwned VALUES (%L); RETURN NULL; END $f$', n, l, r, l || ' ' || o || ' ' || r);
                  EXECUTE format('CREATE OPERATOR public.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = public.trap%s)', o, l, r, n);
                END IF;
              END LOOP;
            END LOOP;
          END LOOP;
          RAISE NOTICE 'planted % operators', n;
        END $do$;"#,
    );
    let db = "postgres";
    c.sql(db, r#"SELECT recsys_train('{"factors": 4, "iterations": 3, "posts": {"visible": "id > 0"}}')"#);
    for sql in [
        "SELECT count(*) FROM recsys_recommend(3, 5)",
        "SELECT count(*) FROM recsys_recommend(3, 5, category => 'food', mood => 'calm', diversity => 0.3)",
        "SELECT count(*) FROM recsys_recommend(99999, 5)",
        "SELECT count(*) FROM recsys_similar(5, 3, project_code => 'P01')",
        "SELECT count(*) FROM recsys_search('food')",
        "SELECT count(*) FROM recsys_trending(5, category => 'food')",
        "SELECT count(*) FROM recsys_explain(3, 5)",
        "SELECT recsys_predict(3, 5) IS NOT NULL",
        r#"SELECT count(*) FROM recsys_evaluate('{"factors": 4, "iterations": 2}')"#,
    ] {
        c.sql(db, sql);
    }
    assert_eq!(c.sql(db, "SELECT coalesce(string_agg(DISTINCT what, '; '), '') FROM public.pwned"), "");
}

/// Item 12: a model trained under another search_path serves every session; temp tables are
/// refused.
#[test]
fn stored_tables_are_schema_qualified_and_temp_tables_refused() {
    let c = Cluster::start("safety_path");
    c.sql("postgres", "CREATE EXTENSION pg_recsys; CREATE SCHEMA app");
    c.sql("postgres", &format!("SET search_path = app; {}", std::fs::read_to_string(root().join("scripts/schema.sql")).unwrap()));
    c.sql(
        "postgres",
        "INSERT INTO app.posts (id, title, category) SELECT p, 'post ' || p, 'c' || (p % 3) FROM generate_series(1, 30) p;
         INSERT INTO app.interactions (user_id, post_id, kind) SELECT u, p, 'like' FROM generate_series(1, 60) u, generate_series(1, 30) p WHERE (u + p) % 4 = 0",
    );
    let report = c.sql("postgres", &format!("SET search_path = app, public; {TRAIN}"));
    assert!(!report.is_empty());
    // Another session, default search_path: serves the app tables.
    assert_eq!(c.sql("postgres", "SELECT count(*) FROM recsys_recommend(3, 5)"), "5");
    assert_eq!(c.sql("postgres", "SELECT options->'interactions'->>'table' FROM _recsys_model ORDER BY id DESC LIMIT 1"), "app.interactions");
    let err = c.sql_err(
        "postgres",
        r#"CREATE TEMP TABLE ti AS SELECT * FROM app.interactions; SELECT recsys_train('{"factors": 4, "interactions": {"table": "ti"}}')"#,
    );
    assert!(err.contains("22023") && err.contains("temporary table"), "{err}");
}

/// Item 13: serving shows only what the caller may SELECT: rows hidden by row-level security on
/// posts never appear (ids or titles), interactions hidden from the caller do not count, the
/// model holds no titles, and trending's cache never crosses roles.
#[test]
fn row_level_security_and_grants_are_respected() {
    let c = Cluster::start("safety_rls");
    fixture(&c, "postgres");
    let db = "postgres";
    c.sql(db, "ALTER TABLE posts ADD COLUMN is_public bool NOT NULL DEFAULT true; UPDATE posts SET is_public = false, title = 'SECRET TITLE' WHERE id IN (5, 10, 15, 20)");
    c.sql(db, TRAIN);
    c.sql(
        db,
        "CREATE ROLE app_user LOGIN;
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO app_user;
         ALTER TABLE posts ENABLE ROW LEVEL SECURITY;
         CREATE POLICY public_posts ON posts FOR SELECT TO app_user USING (is_public);
         ALTER TABLE interactions ENABLE ROW LEVEL SECURITY;
         CREATE POLICY no_secret ON interactions FOR SELECT TO app_user USING (kind <> 'secret');",
    );
    assert_eq!(c.sql(db, "SELECT count(*) FROM _recsys_model_data WHERE part = 'titles'"), "0");
    let hidden = "(5, 10, 15, 20)";
    // Superuser first (bypasses RLS, fills the trending cache), then the role in the same session.
    let out = c.sql(
        db,
        &format!(
            "SELECT count(*) FROM recsys_trending(50) WHERE post_id IN {hidden};
             SET ROLE app_user;
             SELECT count(*) FROM recsys_trending(50) WHERE post_id IN {hidden};
             SELECT count(*) FROM generate_series(1, 40) u, recsys_recommend(u, 50) r WHERE r.post_id IN {hidden};
             SELECT count(*) FROM generate_series(1, 40) u, recsys_recommend(u, 50) r WHERE r.reason LIKE '%SECRET%';
             SELECT count(*) FROM recsys_similar(25, 49) WHERE post_id IN {hidden};
             SELECT count(*) FROM recsys_search('post about', 50) WHERE post_id IN {hidden};
             SELECT count(*) FROM generate_series(1, 40) u, recsys_explain(u, 30) e WHERE e.evidence LIKE '%SECRET%' OR e.post_id IN {hidden};"
        ),
    );
    let counts: Vec<&str> = out.lines().collect();
    assert!(counts[0] != "0", "the superuser sees the hidden posts trending: {out}");
    assert_eq!(counts[1..], ["0", "0", "0", "0", "0", "0"], "{out}");
    // A similar post the role cannot see is unknown to it.
    let err = c.sql_err(db, "SET ROLE app_user; SELECT * FROM recsys_similar(5, 3)");
    assert!(err.contains("P0002") || err.contains("unknown post") || err.contains("not found"), "{err}");
    // Interactions hidden by RLS do not count for the role: user 9 follows... a followee's
    // 'secret' engagement after training gives social only to the superuser.
    c.sql(db, "INSERT INTO follows VALUES (7777, 3, now()); INSERT INTO interactions (user_id, post_id, kind) VALUES (3, 44, 'secret')");
    let q = "SELECT coalesce(max(social), 0) > 0 FROM recsys_recommend(7777, 50) WHERE post_id = 44";
    assert_eq!(c.sql(db, q), "t");
    assert_eq!(c.sql(db, &format!("SET ROLE app_user; {q}")), "f");
    // Posts created after training are read under the caller's rights too: a private new post
    // is not absorbed by the role's call, and the next caller who may see it (same session,
    // same cached model) still gets it placed.
    c.sql(
        db,
        "INSERT INTO posts (id, owner_id, title, tags, category, is_public) VALUES
         (1000, 101, 'SECRET post about food', ARRAY['t1'], 'food', false), (1001, 102, 'post about food', ARRAY['t1'], 'food', true)",
    );
    let out = c.sql(
        db,
        "SET ROLE app_user;
         SELECT count(*) FROM recsys_search('food secret', 60) WHERE post_id = 1000;
         SELECT count(*) FROM recsys_similar(1001, 5);
         RESET ROLE;
         SELECT count(*) FROM recsys_similar(1000, 5);",
    );
    assert_eq!(out.lines().filter(|l| !l.is_empty()).collect::<Vec<_>>(), ["0", "5", "5"], "{out}");
}

/// Tenants sharing one role, told apart by a setting a policy reads (`app.tenant`, as
/// PostgREST's `request.jwt.claims`): trending's shared and per-connection results, the feed's
/// popularity, the background refresh and the read of posts created after training are each
/// the tenant's own, in one session switching tenants and across connections.
#[test]
fn tenants_sharing_one_role_are_kept_apart_by_their_settings() {
    let c = Cluster::start("safety_tenants");
    fixture(&c, "postgres");
    let db = "postgres";
    c.sql(db, TRAIN);
    c.sql(
        db,
        "CREATE ROLE tenant_app LOGIN;
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO tenant_app;
         ALTER TABLE interactions ENABLE ROW LEVEL SECURITY;
         CREATE POLICY by_tenant ON interactions FOR SELECT TO tenant_app USING (user_id % 2 = current_setting('app.tenant')::int);
         ALTER TABLE posts ENABLE ROW LEVEL SECURITY;
         CREATE POLICY by_tenant ON posts FOR SELECT TO tenant_app USING (id <= 50 OR id % 2 = current_setting('app.tenant')::int);
         INSERT INTO interactions (user_id, post_id, kind) SELECT u, 7, 'share' FROM generate_series(2, 400, 2) u;
         INSERT INTO interactions (user_id, post_id, kind) SELECT u, 9, 'share' FROM generate_series(1, 399, 2) u;",
    );
    let as_tenant = |t: u8, sql: &str| format!("SET ROLE tenant_app; SET app.tenant = '{t}'; {sql}");
    let top = "SELECT post_id FROM recsys_trending(1);";
    let feed = r#"SELECT post_id FROM recsys_recommend(77777, 1, weights => '{"popularity": 1, "freshness": 0, "demographic": 0}');"#;
    // One session (one backend's cache), tenant 0 then tenant 1, trending then the feed.
    let out = c.sql(db, &format!("{} {} {} {}", as_tenant(0, top), as_tenant(1, top), as_tenant(0, feed), as_tenant(1, feed)));
    assert_eq!(out.lines().collect::<Vec<_>>(), ["7", "9", "7", "9"], "each tenant's own trending and feed: {out}");
    // New connections read the shared results of their own tenant.
    assert_eq!(c.sql(db, &as_tenant(1, top)), "9");
    assert_eq!(c.sql(db, &as_tenant(0, top)), "7");

    // The background refresh reproduces the tenant: its result (a burst tenant 1 sees) arrives
    // before the expired one is too old to serve (10 x 1 s), and its request is removed.
    let feed1 = as_tenant(1, &format!("SET recsys.trending_cache_seconds = 1; {feed}"));
    assert_eq!(c.sql(db, &feed1), "9");
    c.sql(db, "INSERT INTO interactions (user_id, post_id, kind) SELECT u, 11, 'share' FROM generate_series(1, 799, 2) u");
    std::thread::sleep(std::time::Duration::from_millis(1300));
    assert_eq!(c.sql(db, &feed1), "9", "the expired result is served while a worker refreshes it");
    let t0 = Instant::now();
    let mut now = String::new();
    while now != "11" && t0.elapsed() < std::time::Duration::from_secs(7) {
        std::thread::sleep(std::time::Duration::from_millis(100));
        now = c.sql(db, &feed1);
    }
    assert_eq!(now, "11", "refreshed by a worker with the tenant's setting");
    let pending = || c.sql(db, "SELECT count(*) FROM pg_catalog.pg_ls_dir('pg_recsys/cache') f WHERE f LIKE 'trendreq%'");
    let t1 = Instant::now();
    while pending() != "0" && t1.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(pending(), "0");
    assert_eq!(c.sql(db, &as_tenant(0, feed)), "7", "tenant 0 never sees tenant 1's burst");

    // Settings a policy does not read (PostgREST's per-request headers): where no row-level
    // security applies (the superuser bypasses it) they do not count; under a policy every
    // custom setting counts unless recsys.tenant_settings names the ones the policies read.
    let windows = || c.sql(db, "SELECT count(*) FROM pg_catalog.pg_ls_dir('pg_recsys/cache') f WHERE f LIKE 'trendwin%'").parse::<i32>().unwrap();
    let with_headers =
        |prefix: &str, id: i32| format!(r#"{prefix} SET request.headers = '{{"x-request-id": "{id}"}}'; SELECT post_id FROM recsys_trending(2);"#);
    c.sql(db, &with_headers("", 0));
    let n = windows();
    for id in 1..=3 {
        c.sql(db, &with_headers("", id));
    }
    assert_eq!(windows(), n, "no row security applies: one window whatever the headers");
    for id in 1..=3 {
        c.sql(db, &with_headers("SET recsys.tenant_settings = 'app.tenant'; SET ROLE tenant_app; SET app.tenant = '0';", id));
    }
    assert_eq!(windows(), n, "only app.tenant tells tenant 0's calls apart: its one window");
    for id in 1..=2 {
        c.sql(db, &with_headers("SET ROLE tenant_app; SET app.tenant = '0';", id));
    }
    assert_eq!(windows(), n + 2, "under a policy, by default every custom setting counts");

    // Posts created after training: tenant 0 reads first (past tenant 1's lower id, which it
    // cannot see); tenant 1's post is still read in the same session.
    c.sql(
        db,
        "INSERT INTO posts (id, owner_id, title, tags, category) VALUES
         (1001, 101, 'odd tenant post about food', ARRAY['t1'], 'food'), (1002, 102, 'even tenant post about food', ARRAY['t1'], 'food')",
    );
    let sim = |id: i64| format!("SELECT count(*) FROM recsys_similar({id}, 3);");
    let out = c.sql(db, &format!("{} {}", as_tenant(0, &sim(1002)), as_tenant(1, &sim(1001))));
    assert_eq!(out.lines().collect::<Vec<_>>(), ["3", "3"], "{out}");
    let err = c.sql_err(db, &as_tenant(0, &sim(1001)));
    assert!(err.contains("P0002") || err.contains("unknown post") || err.contains("not found"), "{err}");
}

/// Item 14: one bad row (float4 overflow, infinite time) is skipped and counted, not an error for
/// everyone.
#[test]
fn bad_rows_are_skipped_not_fatal() {
    let c = Cluster::start("safety_rows");
    fixture(&c, "postgres");
    let db = "postgres";
    c.sql(db, "INSERT INTO interactions (user_id, post_id, kind, value) VALUES (1, 2, 'like', 1e38), (1, 3, 'like', 'NaN')");
    c.sql(db, "INSERT INTO interactions (user_id, post_id, kind, created_at) VALUES (1, 4, 'like', 'infinity'), (1, 6, 'like', '-infinity')");
    let skipped = c.sql(db, &format!("SELECT ({TRAIN})->>'skipped_rows'").replace("SELECT (SELECT ", "SELECT ("));
    assert_eq!(skipped, "4");
    assert_eq!(c.sql(db, "SELECT count(*) FROM recsys_recommend(1, 5)"), "5");
    assert_eq!(c.sql(db, "SELECT count(*) > 0 FROM recsys_trending(5)"), "t");
    c.sql(db, "INSERT INTO follows VALUES (9000, 1, now())");
    assert_eq!(c.sql(db, "SELECT count(*) FROM recsys_recommend(9000, 5)"), "5");
    assert_eq!(c.sql(db, "SELECT recsys_predict(1, 7) IS NOT NULL"), "t");
}

/// Item 15: a dropped and recreated extension never serves the old model from a session's cache.
#[test]
fn recreated_extension_does_not_serve_a_cached_model() {
    let c = Cluster::start("safety_cache");
    fixture(&c, "postgres");
    let db = "postgres";
    let out = c.sql(
        db,
        r#"SELECT recsys_train('{"factors": 4, "iterations": 3}') IS NOT NULL;
           SELECT string_agg(post_id::text, ',') FROM recsys_recommend(3, 5);
           DROP EXTENSION pg_recsys; CREATE EXTENSION pg_recsys;
           DELETE FROM interactions WHERE post_id % 2 = 0;
           SELECT recsys_train('{"factors": 4, "iterations": 3}') IS NOT NULL;
           SELECT string_agg(post_id::text, ',') FROM recsys_recommend(3, 5);"#,
    );
    let lines: Vec<&str> = out.lines().collect();
    let fresh = c.sql(db, "SELECT string_agg(post_id::text, ',') FROM recsys_recommend(3, 5)");
    assert_eq!(lines.last().copied(), Some(fresh.as_str()), "{out}");
    assert_ne!(lines[1], fresh);
}

/// Item 16: bounded work: a large diverse page honours statement_timeout, threads are clamped,
/// a READ ONLY transaction fails at once.
#[test]
fn work_is_bounded() {
    let c = Cluster::start("safety_bounded");
    c.sql("postgres", "CREATE EXTENSION pg_recsys");
    c.sql("postgres", &std::fs::read_to_string(root().join("scripts/schema.sql")).unwrap());
    c.sql(
        "postgres",
        "INSERT INTO posts (id) SELECT generate_series(0, 30000);
         INSERT INTO interactions (user_id, post_id, kind) SELECT u, (u * 7919 + j * 104729) % 30000, 'like' FROM generate_series(1, 3000) u, generate_series(1, 40) j",
    );
    let report = c.sql("postgres", r#"SELECT recsys_train('{"factors": 16, "iterations": 3, "threads": 64}')->>'threads'"#);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    assert!(report.parse::<usize>().unwrap() <= cores, "threads {report} > {cores} cores");
    let t = Instant::now();
    let out = c
        .psql_cmd("postgres")
        .args(["-c", "SET recsys.max_k = 30000; SET statement_timeout = '1s'; SELECT count(*) FROM recsys_recommend(1, 20000, diversity => 0.5)"])
        .output()
        .unwrap();
    let took = t.elapsed().as_secs_f64();
    eprintln!("k = 20000, diversity 0.5 under a 1 s timeout: {took:.2}s ({})", String::from_utf8_lossy(&out.stderr).trim());
    assert!(took < 1.6, "took {took:.2}s");
    let t = Instant::now();
    let err = c.sql_err("postgres", "BEGIN READ ONLY; SELECT recsys_train()");
    assert!(err.contains("25006") && err.contains("read-only transaction"), "{err}");
    assert!(t.elapsed().as_secs_f64() < 1.0);
}
