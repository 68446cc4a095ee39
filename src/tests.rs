// In-server tests: SPI loading, the cache, and the SQLSTATE of each error path.
use pgrx::prelude::*;

fn fixture() {
    Spi::run(
        "CREATE TABLE interactions(user_id bigint, post_id bigint, kind text, value real, created_at timestamptz DEFAULT now());
         INSERT INTO interactions(user_id, post_id, kind, value)
           SELECT u, p, CASE WHEN (u + p) % 3 = 0 THEN 'like' ELSE 'view' END, NULL
           FROM generate_series(1, 60) u, generate_series(1, 40) p
           WHERE (u % 4) = (p % 4) AND (u * 7 + p * 3) % 5 <> 0;",
    )
    .unwrap();
}

fn sqlstate_of(sql: &str) -> String {
    // Run in a subtransaction-like DO block and return the SQLSTATE it raised.
    let q = format!(
        "DO $$ BEGIN PERFORM * FROM ({sql}) s; RAISE EXCEPTION 'no error' USING ERRCODE = '00000'; \
         EXCEPTION WHEN OTHERS THEN RAISE NOTICE '%', SQLSTATE; \
           PERFORM set_config('recsys_test.state', SQLSTATE, true); END $$"
    );
    Spi::run(&q).unwrap();
    Spi::get_one::<String>("SELECT current_setting('recsys_test.state')").unwrap().unwrap()
}

#[pg_test]
fn train_reads_tables_and_serves() {
    fixture();
    let report = Spi::get_one::<pgrx::JsonB>("SELECT recsys_train('{\"factors\": 8, \"iterations\": 5}')").unwrap().unwrap().0;
    assert_eq!(report["users"], 60);
    assert_eq!(report["posts"], 40);
    assert_eq!(report["iterations"], 5);
    assert_eq!(report["loss"].as_array().unwrap().len(), 5);
    let n = Spi::get_one::<i64>("SELECT count(*) FROM recsys_recommend(1, 10)").unwrap().unwrap();
    assert_eq!(n, 10);
    // Recommendations for user 1 come from its group (post_id % 4 == 1) and exclude seen posts.
    let own = Spi::get_one::<i64>(
        "SELECT count(*) FROM recsys_recommend(1, 2) r WHERE r.post_id % 4 = 1
           AND NOT EXISTS (SELECT 1 FROM interactions i WHERE i.user_id = 1 AND i.post_id = r.post_id)",
    )
    .unwrap()
    .unwrap();
    assert_eq!(own, 2); // exactly posts 1 and 21 are unseen in its group
    let sim = Spi::get_one::<i64>("SELECT count(*) FROM recsys_similar(5, 5) s WHERE s.post_id % 4 = 1 AND s.post_id <> 5").unwrap().unwrap();
    assert_eq!(sim, 5);
}

#[pg_test]
fn cache_picks_up_a_newer_model_and_fold_in_is_live() {
    fixture();
    Spi::run("SELECT recsys_train('{\"factors\": 8, \"iterations\": 3}')").unwrap();
    let first = Spi::get_one::<i64>("SELECT max(id) FROM _recsys_model").unwrap().unwrap();
    let before: Vec<i64> = top_ids(1000);
    // Unknown user 1000 gets the popularity fallback; a like makes it personal at once.
    Spi::run("INSERT INTO interactions VALUES (1000, 2, 'like', NULL), (1000, 6, 'like', NULL), (1000, 10, 'like', NULL)").unwrap();
    let after = top_ids(1000);
    assert_ne!(before, after);
    assert!(after.iter().filter(|p| *p % 4 == 2).count() >= 4, "{after:?}");
    Spi::run("SELECT recsys_train('{\"factors\": 4, \"iterations\": 2, \"seed\": 9}')").unwrap();
    let second = Spi::get_one::<i64>("SELECT max(id) FROM _recsys_model").unwrap().unwrap();
    assert!(second > first);
    let f = Spi::get_one::<i32>("SELECT factors FROM _recsys_model ORDER BY id DESC LIMIT 1").unwrap().unwrap();
    assert_eq!(f, 4);
    assert_eq!(top_ids(1).len(), 5);
}

fn top_ids(user: i64) -> Vec<i64> {
    Spi::connect(|c| {
        c.select(&format!("SELECT post_id FROM recsys_recommend({user}, 5)"), None, &[])
            .unwrap()
            .map(|r| r.get::<i64>(1).unwrap().unwrap())
            .collect()
    })
}

#[pg_test]
fn error_sqlstates() {
    fixture();
    assert_eq!(sqlstate_of("SELECT * FROM recsys_recommend(1, 10)"), "55000"); // no trained model
    Spi::run("SELECT recsys_train('{\"factors\": 4, \"iterations\": 1}')").unwrap();
    assert_eq!(sqlstate_of("SELECT * FROM recsys_recommend(1, 0)"), "22023");
    assert_eq!(sqlstate_of("SELECT * FROM recsys_recommend(1, 100000)"), "22023");
    assert_eq!(sqlstate_of("SELECT * FROM recsys_similar(99999, 5)"), "P0002");
    assert_eq!(sqlstate_of("SELECT recsys_train('{\"factor\": 8}')"), "22023");
    assert_eq!(sqlstate_of("SELECT recsys_train('{\"factors\": \"x\"}')"), "22023");
    assert_eq!(sqlstate_of("SELECT recsys_train('[1]')"), "22023");
    assert_eq!(sqlstate_of("SELECT recsys_train('{\"interactions\": {\"table\": \"nope\"}}')"), "42P01");
    assert_eq!(sqlstate_of("SELECT recsys_train('{\"interactions\": {\"user\": \"nope\"}}')"), "42703");
    assert_eq!(sqlstate_of("SELECT recsys_train('{\"interactions\": {\"user\": \"kind\"}}')"), "42804");
    Spi::run("CREATE TABLE empty_events(user_id bigint, post_id bigint)").unwrap();
    assert_eq!(sqlstate_of("SELECT recsys_train('{\"interactions\": {\"table\": \"empty_events\"}}')"), "P0002");
    Spi::run("SET LOCAL maintenance_work_mem = '1MB'").unwrap();
    Spi::run("INSERT INTO interactions SELECT g, g % 1000, 'view', 1 FROM generate_series(1, 200000) g").unwrap();
    assert_eq!(sqlstate_of("SELECT recsys_train()"), "54000");
}

/// A Rust panic inside a function (a path that should not exist) must surface as an ERROR that
/// the caller can catch, leaving the backend usable.
#[pg_extern]
fn recsys_test_panic() -> i32 {
    let v: Vec<i32> = vec![];
    v[std::hint::black_box(3)]
}

#[pg_test]
fn a_panic_is_an_error_and_the_backend_lives_on() {
    let state = sqlstate_of("SELECT tests.recsys_test_panic()");
    assert_eq!(state, "XX000", "a panic is reported as an internal ERROR");
    // The same backend keeps working: SPI, the model cache, training.
    assert_eq!(Spi::get_one::<i32>("SELECT 41 + 1").unwrap(), Some(42));
    fixture();
    let report = Spi::get_one::<pgrx::JsonB>("SELECT recsys_train('{\"factors\": 4, \"iterations\": 2}')").unwrap().unwrap().0;
    assert_eq!(report["users"], 60);
}

/// The request path computes an interaction's weight and day in Rust from the raw columns
/// (source::event_weight, source::epoch_day); training computes them in SQL (weight_expr,
/// day_expr). Both must give the same bits, or a user's fold-in would differ from training's.
#[pg_test]
fn request_weight_and_day_equal_the_training_sql() {
    use crate::store::source::{epoch_day, event_weight};
    let o = crate::options::TrainOptions::parse(&serde_json::json!({"kind_weights": {"like": 0.1, "view": 3.3333, "inspire": 0.001, "share": 7}, "default_weight": 0.7}))
        .unwrap();
    let weights = serde_json::to_value(&o.weights).unwrap();
    for kind in [Some("like"), Some("view"), Some("inspire"), Some("share"), Some("unknown"), None] {
        for value in [None, Some(0.3f32), Some(2.5), Some(-1.75), Some(1e-7)] {
            let sql: f64 = Spi::get_one_with_args(
                "SELECT COALESCE(($1::pg_catalog.jsonb OPERATOR(pg_catalog.->>) ($3::text)::pg_catalog.text)::pg_catalog.float8, $2::pg_catalog.float8) \
                   OPERATOR(pg_catalog.*) COALESCE(($4::real)::pg_catalog.float8, 1::pg_catalog.float8)",
                &[pgrx::JsonB(weights.clone()).into(), o.default_weight.into(), kind.into(), value.into()],
            )
            .unwrap()
            .unwrap();
            let rust = event_weight(&o, kind, value.map(|v| v as f64));
            assert_eq!(sql.to_bits(), rust.to_bits(), "{kind:?} {value:?}: {sql} vs {rust}");
        }
    }
    for t in [
        "2026-03-01 12:34:56.789123+00",
        "1970-01-01 00:00:00+00",
        "1969-12-31 23:59:59.999999+00",
        "2000-01-01 00:00:00.000001+00",
        "0001-01-01 00:00:00+00",
        "4713-11-24 00:00:00+00 BC",
        "294276-12-31 23:59:59.999999+00",
        "infinity",
        "-infinity",
    ] {
        let (raw, sql) = Spi::get_two_with_args::<pgrx::datum::TimestampWithTimeZone, f32>(
            "SELECT $1::timestamptz, (pg_catalog.date_part('epoch', ($1::timestamptz)::pg_catalog.timestamptz) OPERATOR(pg_catalog./) 86400::pg_catalog.float8)::pg_catalog.float4",
            &[t.into()],
        )
        .unwrap();
        let (raw, sql) = (raw.unwrap().into_inner(), sql.unwrap());
        assert_eq!(sql.to_bits(), epoch_day(Some(raw)).to_bits(), "{t}: {sql} vs {}", epoch_day(Some(raw)));
    }
    assert!(epoch_day(None).is_nan());
}

/// The direct read of the served version (`store::direct::deployed`) keys a model as the
/// statement does: `(date_part('epoch', created_at) * 1000000)::int8`, bit for bit (a
/// difference would reload the model on every call that switches between the two).
#[pg_test]
fn model_key_time_equals_the_sql() {
    use crate::store::source::epoch_micros;
    for t in [
        "2026-03-01 12:34:56.789123+00",
        "2026-12-03 10:22:16.123457+00",
        "1970-01-01 00:00:00+00",
        "1969-12-31 23:59:59.999999+00",
        "2000-01-01 00:00:00.000001+00",
        "1999-12-31 23:59:59.999999+00",
        "2262-04-11 23:47:16.854775+00",
        "0001-01-01 00:00:00+00",
        "4713-11-24 00:00:00+00 BC",
    ] {
        let (raw, sql) = Spi::get_two_with_args::<pgrx::datum::TimestampWithTimeZone, i64>(
            "SELECT $1::timestamptz, (pg_catalog.date_part('epoch', $1::timestamptz) OPERATOR(pg_catalog.*) 1000000::float8)::int8",
            &[t.into()],
        )
        .unwrap();
        assert_eq!(epoch_micros(raw.unwrap().into_inner()), sql, "{t}");
    }
    // Every microsecond of a few seconds, around now and around the epochs.
    for base in ["2026-12-03 10:22:16+00", "1970-01-01 00:00:00+00", "2000-01-01 00:00:00+00"] {
        let rows: Vec<(i64, i64)> = Spi::connect(|c| {
            c.select(
                "SELECT t, (pg_catalog.date_part('epoch', t) OPERATOR(pg_catalog.*) 1000000::float8)::int8 \
                 FROM (SELECT $1::timestamptz + g * interval '1 microsecond' * 7919 AS t FROM generate_series(-2000, 2000) g) s",
                None,
                &[base.into()],
            )
            .unwrap()
            .map(|r| (r.get::<pgrx::datum::TimestampWithTimeZone>(1).unwrap().unwrap().into_inner(), r.get::<i64>(2).unwrap().unwrap()))
            .collect()
        });
        for (raw, sql) in rows {
            assert_eq!(epoch_micros(raw), Some(sql), "{raw}");
        }
    }
    // The infinities' cast is an error in SQL; the direct read lets the statement raise it.
    assert_eq!(epoch_micros(i64::MAX), None);
    assert_eq!(epoch_micros(i64::MIN), None);
}

/// Waits (up to 10 s) until `flag` is set: a backend-thread part that returns only once the
/// helper has begun the work, so that the backend thread never takes it back, however busy
/// the machine running the tests is.
fn until_set(flag: &std::sync::atomic::AtomicBool) {
    let t0 = std::time::Instant::now();
    while !flag.load(std::sync::atomic::Ordering::SeqCst) && t0.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[pg_test]
fn helper_runs_work_beside_the_backend_and_returns_both() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let me = std::thread::current().id();
    crate::helper::start_now();
    crate::helper::reset_backoff();
    for i in 0..20 {
        crate::helper::prewake();
        let begun = AtomicBool::new(false);
        let (a, b) = crate::helper::alongside(
            true,
            || {
                begun.store(true, SeqCst);
                (std::thread::current().id(), i * 2)
            },
            || {
                until_set(&begun);
                i + 1
            },
        );
        assert_ne!(a.0, me, "the work runs on the helper thread");
        assert_eq!((a.1, b), (i * 2, i + 1));
    }
    // Without the helper the work runs here.
    let (a, ()) = crate::helper::alongside(false, || std::thread::current().id(), || ());
    assert_eq!(a, me);
}

#[pg_test]
fn a_cpu_is_free_while_fewer_threads_run_than_cpus() {
    use crate::helper::free_by_loadavg as free;
    assert!(free("0.52 0.41 0.30 1/81 12345\n", 2), "this thread alone on 2 CPUs");
    assert!(!free("0.52 0.41 0.30 2/81 12345\n", 2), "2 running on 2 CPUs");
    assert!(!free("19.0 7.0 2.0 23/104 12345\n", 2));
    assert!(free("1.0 1.0 1.0 3/90 1\n", 8));
    // Unreadable: as if free (the helper is used as before).
    assert!(free("", 2));
    assert!(free("0.1 0.1 0.1 x/81 1", 2));
    assert!(free("0.1 0.1 0.1 5/81 1", 0));
}

#[pg_test]
fn a_busy_machine_is_asked_again_only_after_a_while() {
    use crate::helper::{busy_at, cpu_free_by, set_busy_at};
    use std::time::{Duration, Instant};
    // Found busy just now: the answer stands, the load is not read.
    set_busy_at(Some(Instant::now()));
    assert!(!cpu_free_by(|| panic!("read while a busy answer stands")));
    // Found busy a second ago: read again; busy again renews the answer, free clears it.
    let old = Instant::now() - Duration::from_secs(1);
    set_busy_at(Some(old));
    assert!(!cpu_free_by(|| false));
    assert!(busy_at().is_some_and(|at| at > old), "a new busy answer is kept");
    set_busy_at(Some(old));
    assert!(cpu_free_by(|| true));
    assert_eq!(busy_at(), None);
    // Found free last time (or never asked): read.
    let mut read = false;
    assert!(cpu_free_by(|| {
        read = true;
        true
    }));
    assert!(read);
}

#[pg_test]
fn work_the_helper_has_not_taken_runs_on_the_backend_thread() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let me = std::thread::current().id();
    crate::helper::start_now();
    crate::helper::HOLD.store(true, SeqCst);
    // (A helper between its check of HOLD and its claim has taken its claim by now.)
    std::thread::sleep(std::time::Duration::from_millis(5));
    let r = std::panic::catch_unwind(|| {
        for i in 0..20 {
            let (a, b) = crate::helper::alongside(true, || (std::thread::current().id(), i * 2), || i + 1);
            assert_eq!(a.0, me, "the work the helper did not take runs here");
            assert_eq!((a.1, b), (i * 2, i + 1));
        }
        // Its panic is resumed here too.
        assert!(std::panic::catch_unwind(|| crate::helper::alongside(true, || -> i32 { panic!("work failed") }, || 1)).is_err());
    });
    crate::helper::HOLD.store(false, SeqCst);
    r.unwrap_or_else(|p| std::panic::resume_unwind(p));
    // Work taken back starts a back-off: the next calls run here without asking the helper,
    // then one asks it again (the back-off has grown to its cap, 32 calls).
    let on_helper = || {
        let begun = AtomicBool::new(false);
        let work = || {
            begun.store(true, SeqCst);
            std::thread::current().id()
        };
        crate::helper::alongside(true, work, || until_set(&begun)).0 != me
    };
    assert!(!on_helper(), "a call right after work was taken back runs without the helper");
    let first = (0..40).position(|_| on_helper());
    assert!(first.is_some_and(|n| n <= 32), "the helper takes work again after the back-off: {first:?}");
    // It keeps taking it.
    assert!(on_helper());
}

#[pg_test]
fn helper_panics_reach_the_backend_after_both_parts_end() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    // A panic in the helper's work is resumed on the backend thread.
    let r = std::panic::catch_unwind(|| crate::helper::alongside(true, || -> i32 { panic!("work failed") }, || 1));
    assert!(r.is_err());
    // A panic here unwinds only after the helper's work (which borrows this frame) has ended:
    // the helper has taken the work (it waits awake for it) before this part fails.
    let (started, done) = (AtomicBool::new(false), AtomicBool::new(false));
    crate::helper::start_now();
    crate::helper::reset_backoff();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::helper::prewake();
        crate::helper::alongside(
            true,
            || {
                started.store(true, SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(50));
                done.store(true, SeqCst)
            },
            || -> () {
                until_set(&started);
                panic!("here failed")
            },
        )
    }));
    assert!(r.is_err());
    assert!(started.load(SeqCst), "the helper took the work");
    assert!(done.load(SeqCst), "the helper's work finished before the panic left alongside");
    // Work not yet taken when this part fails is not run at all.
    let ran = AtomicBool::new(false);
    crate::helper::HOLD.store(true, SeqCst);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| crate::helper::alongside(true, || ran.store(true, SeqCst), || -> () { panic!("here failed") })));
    crate::helper::HOLD.store(false, SeqCst);
    assert!(r.is_err());
    assert!(!ran.load(SeqCst), "work not taken is dropped with the panic");
    // The helper still serves.
    assert_eq!(crate::helper::alongside(true, || 2, || 3), (2, 3));
}

/// The trending refresh asks a window's age without reading its rows (half a megabyte at 100K
/// engaged posts): the header's write time, for the key stored, and nothing for another key.
#[pg_test]
fn a_cached_results_age_is_read_from_its_header() {
    use crate::store::filecache;
    use std::time::Duration;
    let rows: Vec<(i64, f32)> = (0..50_000).map(|i| (i, i as f32)).collect();
    filecache::put("test", "key A", &rows);
    let age = filecache::age("test", "key A").expect("the stored key has an age");
    assert!(age < Duration::from_secs(5), "{age:?}");
    std::thread::sleep(Duration::from_millis(50));
    let later = filecache::age("test", "key A").unwrap();
    assert!(later >= age + Duration::from_millis(50), "{age:?} then {later:?}");
    let (read_age, back) = filecache::get("test", "key A", Duration::from_secs(60)).unwrap();
    assert!(read_age >= later);
    assert_eq!(back, rows);
    assert!(filecache::age("test", "key B").is_none());
    assert!(filecache::get("test", "key A", Duration::from_millis(10)).is_none(), "older than the time to live");
}
