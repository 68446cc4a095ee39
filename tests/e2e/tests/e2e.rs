//! End-to-end tests against a real cluster with the installed (release) extension.
use pg_recsys_e2e::{root, Cluster};
use std::process::Command;
use std::time::Instant;

fn load_ml100k(c: &Cluster, db: &str) {
    let st = Command::new("bash")
        .arg(root().join("scripts/load_ml100k.sh"))
        .args(["-h", "127.0.0.1", "-p", &c.port.to_string(), "-U", "postgres", "-d", db])
        .status()
        .expect("load_ml100k.sh");
    assert!(st.success());
}

/// The demo's claim, checked: on MovieLens 100K, Star Wars' neighbours include Return of the
/// Jedi and The Empire Strikes Back, and a user's feed holds only unseen films.
#[test]
fn ml100k_train_recommend_similar() {
    let c = Cluster::start("ml100k");
    c.sql("postgres", "CREATE EXTENSION pg_recsys");
    load_ml100k(&c, "postgres");
    let report = c.sql("postgres", "SELECT recsys_train()::text");
    assert!(report.contains("\"users\": 943") && report.contains("\"posts\": 1682"), "{report}");
    let similar = c.sql(
        "postgres",
        "SELECT string_agg(p.title, '|') FROM posts q, recsys_similar(q.id, 10) s JOIN posts p ON p.id = s.post_id
         WHERE q.title = 'Star Wars (1977)'",
    );
    assert!(similar.contains("Return of the Jedi (1983)"), "{similar}");
    assert!(similar.contains("Empire Strikes Back"), "{similar}");
    let seen = c.sql(
        "postgres",
        "SELECT count(*) FROM recsys_recommend(42, 50) r JOIN interactions i ON i.user_id = 42 AND i.post_id = r.post_id",
    );
    assert_eq!(seen, "0");
    assert_eq!(c.sql("postgres", "SELECT count(*) FROM recsys_recommend(42, 50)"), "50");
}

/// Cancel works: statement_timeout stops a long train promptly and the previous model serves.
#[test]
fn statement_timeout_stops_training_and_old_model_serves() {
    let c = Cluster::start("cancel");
    c.sql("postgres", "CREATE EXTENSION pg_recsys");
    c.sql("postgres", &std::fs::read_to_string(root().join("scripts/schema.sql")).unwrap());
    c.sql(
        "postgres",
        "INSERT INTO interactions (user_id, post_id, kind)
         SELECT (g * 7919) % 50000, (g * 104729) % 20000 + (g % 7) * 3, 'view' FROM generate_series(1::bigint, 1000000) g",
    );
    c.sql("postgres", "SELECT recsys_train('{\"factors\": 8, \"iterations\": 1}')");
    let t = Instant::now();
    let err = c.sql_err(
        "postgres",
        "SET maintenance_work_mem = '1GB'; SET statement_timeout = '1500ms'; SELECT recsys_train('{\"factors\": 128, \"iterations\": 1000}')",
    );
    let took = t.elapsed().as_secs_f64();
    assert!(err.contains("57014") && err.contains("statement timeout"), "{err}");
    assert!(took < 5.0, "cancel took {took:.2}s");
    eprintln!("statement_timeout 1.5 s: train stopped after {took:.2}s (psql round trip included)");
    assert_eq!(c.sql("postgres", "SELECT factors FROM _recsys_model ORDER BY id DESC LIMIT 1"), "8");
    assert_eq!(c.sql("postgres", "SELECT count(*) FROM recsys_recommend(7, 10)"), "10");
    // The server survived: a new connection works.
    assert_eq!(c.sql("postgres", "SELECT 1"), "1");
}
