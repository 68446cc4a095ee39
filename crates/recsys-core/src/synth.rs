//! Seeded "socialverse" data with planted structure, for quality tests and benchmarks.
//!
//! What is planted (tests rely on it):
//! - Every user belongs to one of `communities` latent communities; community c prefers topic c.
//!   Demographics follow the community: a preferred age band (±4 years of noise), a gender skew
//!   and one of two favoured cities (90% of the time), so demographics are informative but noisy.
//! - Every post has one topic; its title, description and tags are drawn mostly (≈80%) from that
//!   topic's vocabulary, the rest from generic and other topics' words. Category follows the
//!   topic; project_code and mood are drawn with a topic bias.
//! - Post popularity is Zipf(`popularity_exponent`) within each topic; user activity is Zipf too
//!   and every user has at least one interaction; newer posts get a mild boost.
//! - Follows: about `avg_follows` per user, inside the community with probability `homophily`,
//!   towards popular accounts (preferential attachment); 30% of follows are reciprocated.
//! - Interactions: with probability `interest_focus` on the user's topic, otherwise any topic;
//!   15% are social (a post a followee owns or engaged with). Kinds: view (value = watch
//!   fraction), like, inspire, share, rate (value 1..5, higher on-topic).
use crate::rng::Rng;

pub const KINDS: [&str; 5] = ["view", "like", "inspire", "share", "rate"];
pub const CITIES: [&str; 12] = ["Lagos", "Mumbai", "Berlin", "Austin", "Osaka", "Lima", "Cairo", "Lyon", "Seoul", "Toronto", "Nairobi", "Porto"];
pub const MOODS: [&str; 6] = ["happy", "calm", "energetic", "sad", "funny", "inspiring"];
pub const TOPICS: [(&str, &str); 20] = [
    ("dance", "dance choreography hiphop salsa ballet moves groove crew battle rhythm tango breakdance steps stage twirl"),
    ("food", "recipe pasta bake bread spicy curry dinner kitchen chef sauce noodle dessert grill vegan soup"),
    ("cats", "cat kitten meow purr whiskers paws feline zoomies catnip tabby litter scratch nap laser yarn"),
    ("football", "football goal striker penalty league keeper match derby dribble tackle stadium coach offside corner fans"),
    ("travel", "travel beach mountain passport hostel island roadtrip backpack sunset flight hiking village temple desert map"),
    ("gaming", "gaming console speedrun boss level quest controller esports pixel loot arcade multiplayer respawn mod strategy"),
    ("music", "guitar piano song melody chord drummer vocals concert album beat producer synth lyrics bass orchestra"),
    ("fitness", "workout gym squat cardio yoga stretch protein marathon pushup abs deadlift sprint trainer plank kettlebell"),
    ("makeup", "makeup lipstick eyeliner contour foundation blush mascara skincare palette glow brows serum lashes concealer tutorial"),
    ("science", "physics chemistry experiment telescope molecule galaxy quantum biology fossil robot lab microscope atom rocket planet"),
    ("comedy", "comedy prank sketch joke standup parody meme funny laugh roast skit blooper satire improv punchline"),
    ("cars", "car engine drift turbo garage racing supercar restore horsepower tires exhaust rally sedan electric wheel"),
    ("art", "painting sketch canvas watercolor sculpture mural portrait acrylic ink gallery drawing charcoal pastel easel clay"),
    ("fashion", "fashion outfit sneakers runway vintage denim thrift streetwear jacket style model designer boots hoodie dress"),
    ("dogs", "dog puppy fetch leash bark retriever walk treat corgi husky bone tricks shelter paws sniff"),
    ("movies", "movie trailer cinema director scene actor sequel review popcorn thriller horror oscar script premiere blockbuster"),
    ("books", "book novel reading author chapter library poetry fantasy mystery bookshelf paperback classic memoir fiction saga"),
    ("tech", "phone laptop gadget unboxing chip coding software keyboard camera drone smartwatch battery headset app startup"),
    ("nature", "forest river wildlife bird waterfall flower ocean garden rain leaf insect meadow canyon glacier reef"),
    ("diy", "diy woodwork craft repair drill paint upcycle sewing knit glue shelf build tools pottery candle"),
];
const GENERIC: &str = "best new today amazing watch daily vibe week top easy quick first trying challenge";

#[derive(Clone, Debug)]
pub struct SynthConfig {
    pub seed: u64,
    pub users: usize,
    pub posts: usize,
    pub interactions: usize,
    /// Latent communities = topics (default 20).
    pub communities: usize,
    /// Mean follows per user (default 15).
    pub avg_follows: f32,
    /// Probability a follow stays inside the community (default 0.8).
    pub homophily: f32,
    /// Zipf exponent of post popularity (default 1.0).
    pub popularity_exponent: f32,
    /// Probability an interaction is on the user's own topic (default 0.8).
    pub interest_focus: f32,
    /// Time span of timestamps in days, ending at `now` (default 90).
    pub days: u32,
    /// Unix seconds of the newest possible timestamp.
    pub now: i64,
}

impl SynthConfig {
    pub fn new(seed: u64, users: usize, posts: usize, interactions: usize) -> Self {
        SynthConfig {
            seed,
            users,
            posts,
            interactions,
            communities: 20,
            avg_follows: 15.0,
            homophily: 0.8,
            popularity_exponent: 1.0,
            interest_focus: 0.8,
            days: 90,
            now: 1_767_225_600, // 2026-01-01
        }
    }
}

#[derive(Clone, Debug)]
pub struct SynthUser {
    pub id: i64,
    pub username: String,
    pub age: i32,
    pub gender: &'static str,
    pub location: &'static str,
    pub community: u32,
    pub created_at: i64,
}

#[derive(Clone, Debug)]
pub struct SynthPost {
    pub id: i64,
    pub owner_id: i64,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub category: String,
    pub project_code: String,
    pub mood: &'static str,
    pub topic: u32,
    pub created_at: i64,
}

impl SynthPost {
    /// The post's TF-IDF tokens (title, description, tags, category), as the extension reads them.
    pub fn tokens(&self) -> Vec<String> {
        crate::tfidf::tokens(&crate::tfidf::Doc {
            title: &self.title,
            description: &self.description,
            tags: self.tags.iter().map(|s| s.as_str()).collect(),
            category: &self.category,
        })
    }
}

/// Struct of arrays: no per-row heap objects, so 20M rows cost ~25 bytes each.
#[derive(Clone, Debug, Default)]
pub struct SynthInteractions {
    pub user_id: Vec<i64>,
    pub post_id: Vec<i64>,
    /// Index into KINDS.
    pub kind: Vec<u8>,
    /// NaN = SQL NULL.
    pub value: Vec<f32>,
    pub created_at: Vec<i64>,
}

#[derive(Clone, Debug, Default)]
pub struct SynthFollows {
    pub follower_id: Vec<i64>,
    pub followee_id: Vec<i64>,
    pub created_at: Vec<i64>,
}

#[derive(Clone, Debug)]
pub struct SynthData {
    pub users: Vec<SynthUser>,
    pub posts: Vec<SynthPost>,
    pub interactions: SynthInteractions,
    pub follows: SynthFollows,
}

/// Zipf sampler over 0..n by inverse CDF on a precomputed table.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut acc = 0.0;
        for k in 0..n {
            acc += 1.0 / ((k + 1) as f64).powf(s);
            cdf.push(acc);
        }
        Zipf { cdf }
    }
    fn sample(&self, rng: &mut Rng) -> usize {
        let x = rng.next_f64() * self.cdf.last().copied().unwrap_or(0.0);
        self.cdf.partition_point(|&c| c < x).min(self.cdf.len().saturating_sub(1))
    }
}

fn vocab(topic: usize) -> Vec<&'static str> {
    TOPICS[topic % TOPICS.len()].1.split(' ').collect()
}

fn topic_name(topic: usize) -> String {
    let base = TOPICS[topic % TOPICS.len()].0;
    if topic < TOPICS.len() {
        base.to_string()
    } else {
        format!("{base}{}", topic / TOPICS.len())
    }
}

fn pick<'a>(rng: &mut Rng, v: &[&'a str]) -> &'a str {
    v[rng.below(v.len() as u64) as usize]
}

fn words(rng: &mut Rng, topic: usize, n: usize, topics: usize) -> Vec<&'static str> {
    let own = vocab(topic);
    let generic: Vec<&str> = GENERIC.split(' ').collect();
    (0..n)
        .map(|_| {
            let x = rng.next_f32();
            if x < 0.8 {
                pick(rng, &own)
            } else if x < 0.93 {
                pick(rng, &generic)
            } else {
                let other = vocab(rng.below(topics as u64) as usize);
                pick(rng, &other)
            }
        })
        .collect()
}

/// Draws the data in four steps — users, posts, follows, interactions — from one seeded
/// generator: each step consumes the draws in a fixed order, so a seed always gives the same data.
pub fn generate(cfg: &SynthConfig) -> SynthData {
    let mut rng = Rng::new(cfg.seed);
    let c = cfg.communities.max(1);
    let span = cfg.days.max(1) as i64 * 86_400;
    let start = cfg.now - span;
    let users = gen_users(cfg, &mut rng, c, start);
    let mut by_community: Vec<Vec<usize>> = vec![vec![]; c];
    for (i, u) in users.iter().enumerate() {
        by_community[u.community as usize].push(i);
    }
    let posts = gen_posts(cfg, &mut rng, &by_community, start, span);
    let popularity = Popularity::new(cfg, &mut rng, &posts, c, start, span);
    let user_zipf = Zipf::new(cfg.users.max(1), 1.0);
    let followees = gen_followees(cfg, &mut rng, &users, &by_community, &user_zipf);
    let follows = follow_rows(&mut rng, &followees, start, span);
    let world = World { cfg, users: &users, posts: &posts, popularity: &popularity, followees: &followees, user_zipf: &user_zipf };
    let interactions = world.interactions(&mut rng);
    SynthData { users, posts, interactions, follows }
}

/// Users and their community demographics.
fn gen_users(cfg: &SynthConfig, rng: &mut Rng, c: usize, start: i64) -> Vec<SynthUser> {
    (0..cfg.users)
        .map(|u| {
            let community = rng.below(c as u64) as u32;
            let mut crng = Rng::new(cfg.seed ^ 0xC0FFEE ^ community as u64);
            let band = 16 + crng.below(40) as i32;
            let female_p = 0.2 + 0.6 * crng.next_f32();
            let cities = [CITIES[crng.below(12) as usize], CITIES[crng.below(12) as usize]];
            let location = if rng.next_f32() < 0.9 { cities[rng.below(2) as usize] } else { CITIES[rng.below(12) as usize] };
            SynthUser {
                id: u as i64 + 1,
                username: format!("user{}", u + 1),
                age: (band + rng.below(9) as i32 - 4).max(13),
                gender: if rng.next_f32() < female_p { "female" } else { "male" },
                location,
                community,
                created_at: start - rng.below(365 * 86_400) as i64,
            }
        })
        .collect()
}

/// Posts: one topic each, owner from that community when there is one.
fn gen_posts(cfg: &SynthConfig, rng: &mut Rng, by_community: &[Vec<usize>], start: i64, span: i64) -> Vec<SynthPost> {
    let c = by_community.len();
    (0..cfg.posts)
        .map(|p| {
            let topic = rng.below(c as u64) as usize;
            let owners = &by_community[topic];
            let owner = if owners.is_empty() || rng.next_f32() < 0.1 {
                rng.below(cfg.users.max(1) as u64) as usize
            } else {
                owners[rng.below(owners.len() as u64) as usize]
            };
            let (nt, nd) = (2 + rng.below(3) as usize, 6 + rng.below(8) as usize);
            let title_words = words(rng, topic, nt, c);
            let desc_words = words(rng, topic, nd, c);
            let tags = gen_tags(rng, topic);
            let project = if rng.next_f32() < 0.7 { topic % 10 } else { rng.below(10) as usize };
            let mood = if rng.next_f32() < 0.6 { MOODS[topic % MOODS.len()] } else { MOODS[rng.below(MOODS.len() as u64) as usize] };
            SynthPost {
                id: p as i64 + 1,
                owner_id: owner as i64 + 1,
                title: title_words.join(" "),
                description: desc_words.join(" "),
                tags,
                category: topic_name(topic),
                project_code: format!("P{:02}", project + 1),
                mood,
                topic: topic as u32,
                created_at: start + rng.below(span as u64) as i64,
            }
        })
        .collect()
}

/// A post's tags: words of its topic, sometimes a two-word tag naming the topic; sorted, unique.
fn gen_tags(rng: &mut Rng, topic: usize) -> Vec<String> {
    let own = vocab(topic);
    let n_tags = 2 + rng.below(4);
    let mut tags: Vec<String> = (0..n_tags).map(|_| pick(rng, &own).to_string()).collect();
    if rng.next_f32() < 0.3 {
        tags.push(format!("{} {}", pick(rng, &own), topic_name(topic)));
    }
    tags.sort();
    tags.dedup();
    tags
}

/// Each topic's posts in popularity order, with a Zipf sampler over that order.
struct Popularity {
    by_topic: Vec<Vec<usize>>,
    zipfs: Vec<Zipf>,
}

impl Popularity {
    /// Within a topic, popularity rank = a seeded shuffle; newer posts nudged up.
    fn new(cfg: &SynthConfig, rng: &mut Rng, posts: &[SynthPost], c: usize, start: i64, span: i64) -> Popularity {
        let mut by_topic: Vec<Vec<usize>> = vec![vec![]; c];
        for (i, p) in posts.iter().enumerate() {
            by_topic[p.topic as usize].push(i);
        }
        for list in by_topic.iter_mut() {
            rng.shuffle(list);
            list.sort_by_key(|&i| std::cmp::Reverse((posts[i].created_at - start) / (span / 4).max(1)));
        }
        let zipfs: Vec<Zipf> = by_topic.iter().map(|l| Zipf::new(l.len().max(1), cfg.popularity_exponent as f64)).collect();
        Popularity { by_topic, zipfs }
    }

    /// A post of `topic` by popularity, or any of the `n_posts` posts when the topic has none.
    fn sample(&self, rng: &mut Rng, topic: usize, n_posts: usize) -> usize {
        let list = &self.by_topic[topic];
        if list.is_empty() {
            rng.below(n_posts as u64) as usize
        } else {
            list[self.zipfs[topic].sample(rng)]
        }
    }
}

/// Who each user follows: homophily + preferential attachment to popular accounts (low ids in
/// each list), some follows reciprocated.
fn gen_followees(cfg: &SynthConfig, rng: &mut Rng, users: &[SynthUser], by_community: &[Vec<usize>], user_zipf: &Zipf) -> Vec<Vec<u32>> {
    let community_zipf: Vec<Zipf> = by_community.iter().map(|l| Zipf::new(l.len().max(1), 0.8)).collect();
    let mut followees: Vec<Vec<u32>> = vec![vec![]; cfg.users];
    for (u, user) in users.iter().enumerate() {
        let n = ((cfg.avg_follows as f64) * (0.5 + rng.next_f64())).round() as usize;
        for _ in 0..n {
            let same = &by_community[user.community as usize];
            let v = if rng.next_f32() < cfg.homophily && same.len() > 1 {
                same[community_zipf[user.community as usize].sample(rng).min(same.len() - 1)]
            } else {
                user_zipf.sample(rng)
            };
            if v == u || followees[u].contains(&(v as u32)) {
                continue;
            }
            followees[u].push(v as u32);
            if rng.next_f32() < 0.3 && !followees[v].contains(&(u as u32)) {
                followees[v].push(u as u32);
            }
        }
    }
    followees
}

/// The follows table, one timestamped row per followee.
fn follow_rows(rng: &mut Rng, followees: &[Vec<u32>], start: i64, span: i64) -> SynthFollows {
    let mut follows = SynthFollows::default();
    for (u, list) in followees.iter().enumerate() {
        for &v in list {
            follows.follower_id.push(u as i64 + 1);
            follows.followee_id.push(v as i64 + 1);
            follows.created_at.push(start + rng.below(span as u64) as i64);
        }
    }
    follows
}

/// What interactions are drawn from: the people, the posts and who follows whom.
struct World<'a> {
    cfg: &'a SynthConfig,
    users: &'a [SynthUser],
    posts: &'a [SynthPost],
    popularity: &'a Popularity,
    followees: &'a [Vec<u32>],
    user_zipf: &'a Zipf,
}

impl World<'_> {
    /// Interactions: every user at least once, then Zipf activity.
    fn interactions(&self, rng: &mut Rng) -> SynthInteractions {
        let (cfg, users, posts) = (self.cfg, self.users, self.posts);
        let mut it = SynthInteractions::default();
        let n = cfg.interactions.max(cfg.users.min(cfg.interactions));
        let mut recent: Vec<Vec<u32>> = vec![vec![]; cfg.users];
        for k in 0..n {
            if posts.is_empty() || users.is_empty() {
                break;
            }
            let u = if k < cfg.users { k } else { self.user_zipf.sample(rng) };
            let user = &users[u];
            let p = self.pick_post(rng, u, &recent);
            let post = &posts[p];
            let (kind, value) = kind_and_value(rng, post.topic == user.community);
            let t = post.created_at + rng.below((cfg.now - post.created_at).max(1) as u64) as i64;
            it.user_id.push(user.id);
            it.post_id.push(post.id);
            it.kind.push(kind);
            it.value.push(value);
            it.created_at.push(t);
            let r = &mut recent[u];
            if r.len() >= 8 {
                r.remove(0);
            }
            r.push(p as u32);
        }
        it
    }

    /// The post user `u` engages with: 15% social (a followee's recent post, else a popular post
    /// of the followee's topic), otherwise by interest.
    fn pick_post(&self, rng: &mut Rng, u: usize, recent: &[Vec<u32>]) -> usize {
        let followees = &self.followees[u];
        let social = rng.next_f32() < 0.15 && !followees.is_empty();
        if social {
            let f = followees[rng.below(followees.len() as u64) as usize] as usize;
            match recent[f].last() {
                Some(&p) if rng.next_f32() < 0.7 => p as usize,
                _ => self.popularity.sample(rng, self.users[f].community as usize, self.posts.len()),
            }
        } else {
            let topic = if rng.next_f32() < self.cfg.interest_focus {
                self.users[u].community as usize
            } else {
                rng.below(self.cfg.communities.max(1) as u64) as usize
            };
            self.popularity.sample(rng, topic, self.posts.len())
        }
    }
}

/// An interaction's kind (index into KINDS) and value: a view's watch fraction, a rating
/// (higher on-topic), NaN for the rest.
fn kind_and_value(rng: &mut Rng, on_topic: bool) -> (u8, f32) {
    let x = rng.next_f32();
    if x < 0.6 {
        (0u8, (0.1 + 0.9 * rng.next_f32()).min(1.0))
    } else if x < 0.82 {
        (1, f32::NAN)
    } else if x < 0.88 {
        (2, f32::NAN)
    } else if x < 0.93 {
        (3, f32::NAN)
    } else {
        (4, if on_topic { 3.0 + rng.below(3) as f32 } else { 1.0 + rng.below(4) as f32 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SynthData {
        generate(&SynthConfig::new(7, 2_000, 2_000, 20_000))
    }

    #[test]
    fn deterministic_and_sized() {
        let (a, b) = (small(), small());
        assert_eq!(a.interactions.post_id, b.interactions.post_id);
        assert_eq!(a.follows.followee_id, b.follows.followee_id);
        assert_ne!(generate(&SynthConfig::new(8, 2_000, 2_000, 20_000)).interactions.post_id, a.interactions.post_id);
        assert_eq!((a.users.len(), a.posts.len(), a.interactions.user_id.len()), (2_000, 2_000, 20_000));
        let mut seen = vec![false; 2_000];
        for &u in &a.interactions.user_id {
            assert!((1..=2_000).contains(&u));
            seen[u as usize - 1] = true;
        }
        assert!(seen.iter().all(|s| *s), "every user interacts");
        assert!(a.interactions.post_id.iter().all(|p| (1..=2_000).contains(p)));
    }

    #[test]
    fn planted_structure_is_there() {
        let d = small();
        let comm = |id: i64| d.users[id as usize - 1].community;
        let same = d.follows.follower_id.iter().zip(&d.follows.followee_id).filter(|(a, b)| comm(**a) == comm(**b)).count();
        assert!(same as f64 / d.follows.follower_id.len() as f64 > 0.6, "homophily");
        let on = d.interactions.user_id.iter().zip(&d.interactions.post_id).filter(|(u, p)| comm(**u) == d.posts[**p as usize - 1].topic).count();
        let frac = on as f64 / d.interactions.user_id.len() as f64;
        assert!(frac > 0.65 && frac < 0.95, "on-topic fraction {frac}");
        let mut counts = vec![0usize; d.posts.len()];
        d.interactions.post_id.iter().for_each(|p| counts[*p as usize - 1] += 1);
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top: usize = counts[..200].iter().sum();
        assert!(top as f64 / d.interactions.post_id.len() as f64 > 0.4, "popularity is skewed");
        // A post's text is mostly its topic's vocabulary.
        let p = &d.posts[0];
        let v = vocab(p.topic as usize);
        let text: Vec<&str> = p.description.split(' ').collect();
        assert!(text.iter().filter(|w| v.contains(w)).count() * 2 > text.len());
    }
}
