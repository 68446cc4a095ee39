//! Data sets as [`World`]s: MovieLens 100K (the RecBole layout, fetched at run time) and the
//! seeded synthetic generator's output, and the set the hybrid benchmarks use.
use crate::csr::Csr;
use crate::hybrid::{self, Event};
use crate::tfidf::Tfidf;
use crate::world::World;
use std::collections::HashMap;

impl World {
    /// ML-100K as the extension sees it after scripts/load_ml100k.sh: positives (rating >= 4,
    /// weight 1, with their timestamps), movie titles with years and genres as the content, release
    /// year as creation time, age/gender/zip as demographics. No follows.
    pub fn from_movielens(dir: &std::path::Path) -> std::io::Result<World> {
        use crate::hybrid::{segment_keys, Event};
        let read = |name: &str| std::fs::read_to_string(dir.join(name));
        let (mut users, mut items): (HashMap<String, u32>, HashMap<String, u32>) = (HashMap::new(), HashMap::new());
        let mut events = vec![];
        for line in read("ml-100k.inter")?.lines().skip(1) {
            let f: Vec<&str> = line.split('\t').collect();
            if f.get(2).and_then(|x| x.parse::<f32>().ok()).unwrap_or(0.0) < 4.0 {
                continue;
            }
            let n = users.len() as u32;
            let u = *users.entry(f[0].to_string()).or_insert(n);
            let n = items.len() as u32;
            let i = *items.entry(f[1].to_string()).or_insert(n);
            events.push((u, Event { item: i, weight: 1.0, day: (f.get(3).and_then(|x| x.parse::<f64>().ok()).unwrap_or(f64::NAN) / 86_400.0) as f32 }));
        }
        let mut docs = vec![vec![]; items.len()];
        let mut created = vec![f32::NAN; items.len()];
        for line in read("ml-100k.item")?.lines().skip(1) {
            let f: Vec<&str> = line.split('\t').collect();
            let Some(&i) = items.get(f[0]) else { continue };
            let genres: Vec<String> = f.get(3).unwrap_or(&"").split(' ').map(|g| g.to_lowercase()).collect();
            let title = format!("{} ({})", f[1], f.get(2).unwrap_or(&""));
            docs[i as usize] = crate::tfidf::tokens(&crate::tfidf::Doc {
                title: &title,
                description: "",
                tags: genres.iter().map(|s| s.as_str()).collect(),
                category: genres.first().map(|s| s.as_str()).unwrap_or(""),
            });
            if let Ok(y) = f.get(2).unwrap_or(&"").parse::<i32>() {
                created[i as usize] = ((y - 1970) as f64 * 365.25) as f32;
            }
        }
        let mut dict = crate::ids::Dict::default();
        let mut keys = vec![[0u32; 3]; users.len()];
        for line in read("ml-100k.user")?.lines().skip(1) {
            let f: Vec<&str> = line.split('\t').collect();
            let Some(&u) = users.get(f[0]) else { continue };
            for (slot, k) in keys[u as usize].iter_mut().zip(segment_keys(f[1].parse().ok(), Some(f[2]), Some(f[4]))) {
                *slot = dict.code(Some(&k));
            }
        }
        let n_items = items.len();
        let tfidf = crate::tfidf::Tfidf::fit(&docs);
        Ok(World::new(
            users.len(),
            n_items,
            events,
            &[],
            &vec![None; n_items],
            keys,
            dict.into_values(),
            Some(tfidf),
            (0..n_items as u32).map(Some).collect(),
            created,
        ))
    }

    /// The synthetic generator's data, weighted as the extension's defaults weight it.
    pub fn from_synth(d: &crate::synth::SynthData) -> World {
        let n_users = d.users.len();
        let n_items = d.posts.len();
        let day = |t: i64| (t as f64 / 86_400.0) as f32;
        let it = &d.interactions;
        let events: Vec<(u32, Event)> = (0..it.user_id.len())
            .map(|k| {
                let kw = [1.0, 4.0, 5.0, 6.0, 1.0][it.kind[k] as usize];
                let v = if it.value[k].is_nan() { 1.0 } else { it.value[k] };
                (it.user_id[k] as u32 - 1, Event { item: it.post_id[k] as u32 - 1, weight: kw * v, day: day(it.created_at[k]) })
            })
            .collect();
        let follows: Vec<(u32, u32)> = d.follows.follower_id.iter().zip(&d.follows.followee_id).map(|(a, b)| (*a as u32 - 1, *b as u32 - 1)).collect();
        let owner: Vec<Option<u32>> = d.posts.iter().map(|p| Some(p.owner_id as u32 - 1)).collect();
        let mut key_dict = crate::ids::Dict::default();
        let keys = d
            .users
            .iter()
            .map(|u| {
                let mut codes = [0u32; 3];
                for (slot, k) in codes.iter_mut().zip(hybrid::segment_keys(Some(u.age as f64), Some(u.gender), Some(u.location))) {
                    *slot = key_dict.code(Some(&k));
                }
                codes
            })
            .collect();
        let docs: Vec<Vec<String>> = d.posts.iter().map(|p| p.tokens()).collect();
        let tfidf = Tfidf::fit(&docs);
        let to_item = (0..n_items as u32).map(Some).collect();
        let created = d.posts.iter().map(|p| day(p.created_at)).collect();
        World::new(n_users, n_items, events, &follows, &owner, keys, key_dict.into_values(), Some(tfidf), to_item, created)
    }
}

/// ML-100K's `ml-100k.inter` (the RecBole layout) as a users × items matrix, ids dense in
/// first-seen order: ratings below `min` dropped, values the stars or 1 with `binary`.
pub fn movielens_matrix(dir: &std::path::Path, min: f32, binary: bool) -> std::io::Result<Csr> {
    let text = std::fs::read_to_string(dir.join("ml-100k.inter"))?;
    let (mut users, mut items): (HashMap<String, u32>, HashMap<String, u32>) = (HashMap::new(), HashMap::new());
    let (mut r, mut c, mut v) = (vec![], vec![], vec![]);
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let Some(rating) = f.get(2).and_then(|x| x.parse::<f32>().ok()) else { continue };
        if rating < min {
            continue;
        }
        let n = users.len() as u32;
        r.push(*users.entry(f[0].to_string()).or_insert(n));
        let n = items.len() as u32;
        c.push(*items.entry(f[1].to_string()).or_insert(n));
        v.push(if binary { 1.0 } else { rating });
    }
    Ok(Csr::from_triplets(users.len(), items.len(), &r, &c, &v))
}

/// The data sets of the hybrid benchmarks (bench/hybrid.sh, examples/fusion_sweep.rs): two
/// seeded synthetic sets and, given its directory, ML-100K rating >= 4.
pub fn benchmark_worlds(ml100k: Option<&std::path::Path>) -> std::io::Result<Vec<(String, World)>> {
    let mut sets = vec![];
    for (seed, u, p, n) in [(42u64, 5_000usize, 5_000usize, 100_000usize), (7, 20_000, 10_000, 400_000)] {
        let w = World::from_synth(&crate::synth::generate(&crate::synth::SynthConfig::new(seed, u, p, n)));
        sets.push((format!("synthetic seed {seed}: {u} users, {p} posts, {n} interactions"), w));
    }
    if let Some(dir) = ml100k {
        sets.push(("ML-100K (rating >= 4; no follows)".into(), World::from_movielens(dir)?));
    }
    Ok(sets)
}
