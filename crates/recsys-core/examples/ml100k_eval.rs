//! Hyper-parameter check on MovieLens 100K under the DATASETS.md protocol.
//! `cargo run --release -p recsys-core --example ml100k_eval -- DIR [reg alpha factors iters]...`
//! prints NDCG@10/P@10 and Star Wars' (item 50) ten nearest neighbours for each setting.
use recsys_core::als::{self, AlsOptions, NoProgress};
use recsys_core::csr::Csr;
use recsys_core::eval::evaluate_ranking;
use recsys_core::kernels::score_all;
use recsys_core::split::holdout;
use std::collections::HashMap;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args.first().expect("usage: ml100k_eval DIR [reg alpha factors iters]...");
    let text = std::fs::read_to_string(format!("{dir}/ml-100k.inter")).expect("ml-100k.inter");
    let titles: HashMap<String, String> = std::fs::read_to_string(format!("{dir}/ml-100k.item"))
        .expect("ml-100k.item")
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_string(), f[1].to_string())
        })
        .collect();
    let (mut users, mut items) = (HashMap::new(), HashMap::new());
    let mut item_names = vec![];
    let (mut r, mut c, mut v) = (vec![], vec![], vec![]);
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f[2].parse::<f32>().unwrap() < 4.0 {
            continue;
        }
        let n = users.len() as u32;
        let u = *users.entry(f[0].to_string()).or_insert(n);
        let n = items.len() as u32;
        let i = *items.entry(f[1].to_string()).or_insert_with(|| {
            item_names.push(titles.get(f[1]).cloned().unwrap_or_default());
            n
        });
        r.push(u);
        c.push(i);
        v.push(1.0);
    }
    let m = Csr::from_triplets(users.len(), items.len(), &r, &c, &v);
    let (train, test) = holdout(&m, 0.2, 42);
    let pool = als::pool(2, None).unwrap();
    let sw = items["50"] as usize;
    let settings: Vec<f32> = args[1..].iter().map(|s| s.parse().unwrap()).collect();
    for s in settings.chunks(4) {
        let opts =
            AlsOptions { regularization: s[0], alpha: s[1], factors: s[2] as usize, iterations: s[3] as usize, compute_loss: false, ..Default::default() };
        let (model, _) = als::train(&train, &opts, &pool, &mut NoProgress).unwrap();
        let f = model.factors;
        let (met, cov) = evaluate_ranking(&train, &test, 10, |u, out| score_all(&model.item_factors, f, model.user(u), out));
        let norm = |x: &[f32]| x.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-9);
        let q = model.item(sw);
        let mut sims: Vec<(f32, usize)> = (0..model.items)
            .filter(|&j| j != sw)
            .map(|j| (recsys_core::kernels::dot_dispatch(q, model.item(j)) / (norm(q) * norm(model.item(j))), j))
            .collect();
        sims.sort_by(|a, b| b.0.total_cmp(&a.0));
        let nn: Vec<&str> = sims.iter().take(10).map(|(_, j)| item_names[*j].as_str()).collect();
        println!(
            "reg {:>6} alpha {:>4} f {:>3} it {:>2}: ndcg@10 {:.4} p@10 {:.4} cov {:.3} | {}",
            s[0],
            s[1],
            s[2],
            s[3],
            met.ndcg,
            met.precision,
            cov,
            nn.join("; ")
        );
    }
}
