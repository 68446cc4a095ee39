//! Writes seeded socialverse data as PostgreSQL COPY CSV files (header included):
//! users.csv, posts.csv, interactions.csv, follows.csv, and truth.csv (user community, post topic).
//! `cargo run --release -p recsys-core --example synth -- SEED USERS POSTS INTERACTIONS OUT_DIR`
use recsys_core::synth::{generate, SynthConfig, KINDS};
use std::io::{BufWriter, Write};

fn ts(t: i64) -> String {
    // Unix seconds -> "YYYY-MM-DD HH:MM:SS+00" (civil-from-days, Hinnant).
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}+00", secs / 3600, secs % 3600 / 60, secs % 60)
}

fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n', '{', '}']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn main() -> std::io::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() != 5 {
        eprintln!("usage: synth SEED USERS POSTS INTERACTIONS OUT_DIR");
        std::process::exit(2);
    }
    let n = |i: usize| a[i].parse::<usize>().expect("a number");
    let cfg = SynthConfig::new(n(0) as u64, n(1), n(2), n(3));
    let t = std::time::Instant::now();
    let d = generate(&cfg);
    let dir = std::path::Path::new(&a[4]);
    std::fs::create_dir_all(dir)?;
    let file = |name: &str| std::fs::File::create(dir.join(name)).map(BufWriter::new);
    let mut f = file("users.csv")?;
    writeln!(f, "id,username,age,gender,location,created_at")?;
    for u in &d.users {
        writeln!(f, "{},{},{},{},{},{}", u.id, u.username, u.age, u.gender, u.location, ts(u.created_at))?;
    }
    let mut f = file("posts.csv")?;
    writeln!(f, "id,owner_id,title,description,tags,category,project_code,mood,created_at")?;
    for p in &d.posts {
        let tags = format!("{{{}}}", p.tags.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(","));
        writeln!(
            f,
            "{},{},{},{},{},{},{},{},{}",
            p.id,
            p.owner_id,
            csv(&p.title),
            csv(&p.description),
            csv(&tags),
            p.category,
            p.project_code,
            p.mood,
            ts(p.created_at)
        )?;
    }
    let mut f = file("interactions.csv")?;
    writeln!(f, "user_id,post_id,kind,value,created_at")?;
    let it = &d.interactions;
    for k in 0..it.user_id.len() {
        let v = if it.value[k].is_nan() { String::new() } else { format!("{}", it.value[k]) };
        writeln!(f, "{},{},{},{},{}", it.user_id[k], it.post_id[k], KINDS[it.kind[k] as usize], v, ts(it.created_at[k]))?;
    }
    let mut f = file("follows.csv")?;
    writeln!(f, "follower_id,followee_id,created_at")?;
    for k in 0..d.follows.follower_id.len() {
        writeln!(f, "{},{},{}", d.follows.follower_id[k], d.follows.followee_id[k], ts(d.follows.created_at[k]))?;
    }
    let mut f = file("truth.csv")?;
    writeln!(f, "kind,id,group")?;
    for u in &d.users {
        writeln!(f, "user,{},{}", u.id, u.community)?;
    }
    for p in &d.posts {
        writeln!(f, "post,{},{}", p.id, p.topic)?;
    }
    eprintln!(
        "synth: {} users, {} posts, {} interactions, {} follows in {:.1}s",
        d.users.len(),
        d.posts.len(),
        it.user_id.len(),
        d.follows.follower_id.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
