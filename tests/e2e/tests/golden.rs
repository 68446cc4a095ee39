//! SQL golden tests: each tests/sql/NAME.sql runs in a fresh database of a real cluster and its
//! transcript must equal tests/expected/NAME.out. RECSYS_BLESS=1 rewrites the expected files.
use pg_recsys_e2e::{normalise, root, Cluster};

#[test]
fn sql_golden_files() {
    let root = root();
    let cluster = Cluster::start("golden");
    let mut names: Vec<_> = std::fs::read_dir(root.join("tests/sql"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    names.sort();
    assert!(!names.is_empty());
    let mut failed = vec![];
    for (n, file) in names.iter().enumerate() {
        let stem = file.file_stem().unwrap().to_string_lossy().to_string();
        let db = format!("golden{n}");
        cluster.createdb(&db);
        // Scripts \i files relative to the repository root.
        std::env::set_current_dir(&root).unwrap();
        let out = cluster.transcript(&db, file);
        let got = normalise(&String::from_utf8_lossy(&out.stdout));
        let expected_path = root.join("tests/expected").join(format!("{stem}.out"));
        if std::env::var("RECSYS_BLESS").is_ok() {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            let results = root.join("target/golden-results");
            std::fs::create_dir_all(&results).unwrap();
            std::fs::write(results.join(format!("{stem}.out")), &got).unwrap();
            let diff = std::process::Command::new("diff").arg("-u").arg(&expected_path).arg(results.join(format!("{stem}.out"))).output().unwrap();
            eprintln!("{stem}: transcript differs\n{}", String::from_utf8_lossy(&diff.stdout));
            failed.push(stem);
        }
    }
    assert!(failed.is_empty(), "golden files differ: {failed:?} (see target/golden-results)");
}
