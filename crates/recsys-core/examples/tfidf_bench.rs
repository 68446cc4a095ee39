//! TF-IDF build and all-posts top-10 on seeded synthetic posts (bench/tfidf_vs_sklearn.py).
//!   cargo run --release -p recsys-core --example tfidf_bench -- POSTS OUT_DIR
//! Writes OUT_DIR/corpus.tsv (title, description, tags joined by '|', category), tokens.txt (our
//! tokens per post, joined by U+001F) and neighbours.txt (each post's top 10 by cosine, itself
//! excluded, ties by index); prints one JSON line of seconds (2 threads).
use rayon::prelude::*;
use recsys_core::synth::{generate, SynthConfig};
use recsys_core::tfidf::{tokens, Doc, Tfidf};
use recsys_core::topk::{Scored, TopK};
use std::io::Write;
use std::time::Instant;

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = a[0].parse().expect("posts");
    let out = std::path::Path::new(&a[1]);
    std::fs::create_dir_all(out).unwrap();
    let d = generate(&SynthConfig::new(42, (n / 5).max(10), n, n));
    let mut corpus = std::io::BufWriter::new(std::fs::File::create(out.join("corpus.tsv")).unwrap());
    for p in &d.posts {
        writeln!(corpus, "{}\t{}\t{}\t{}", p.title, p.description, p.tags.join("|"), p.category).unwrap();
    }
    drop(corpus);
    let pool = recsys_core::als::pool(2, None).unwrap();
    let t0 = Instant::now();
    let toks: Vec<Vec<String>> = pool.install(|| {
        d.posts
            .par_iter()
            .map(|p| tokens(&Doc { title: &p.title, description: &p.description, tags: p.tags.iter().map(|s| s.as_str()).collect(), category: &p.category }))
            .collect()
    });
    let t_tok = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let m = Tfidf::fit(&toks);
    let t_fit = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let neighbours: Vec<Vec<u32>> = pool.install(|| {
        (0..m.docs.rows)
            .into_par_iter()
            .map_init(
                || vec![0f32; m.docs.rows],
                |scores, doc| {
                    m.scores(&m.doc(doc), scores);
                    let mut t = TopK::new(10);
                    for (e, &s) in scores.iter().enumerate() {
                        if e != doc && s > 0.0 && s >= t.threshold() {
                            t.push(Scored { score: s, id: e as i64, index: e as u32 });
                        }
                    }
                    t.into_sorted().into_iter().map(|s| s.index).collect()
                },
            )
            .collect()
    });
    let t_top = t2.elapsed().as_secs_f64();
    let mut f = std::io::BufWriter::new(std::fs::File::create(out.join("tokens.txt")).unwrap());
    for t in &toks {
        writeln!(f, "{}", t.join("\u{1f}")).unwrap();
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(out.join("neighbours.txt")).unwrap());
    for nb in &neighbours {
        writeln!(f, "{}", nb.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")).unwrap();
    }
    println!("{{\"posts\": {}, \"terms\": {}, \"tokenize\": {t_tok:.4}, \"fit\": {t_fit:.4}, \"top10_all\": {t_top:.4}}}", m.docs.rows, m.vocab.len());
}
