//! Train options: a JSON object parsed key by key, so a typo or a wrong type is an error that
//! names the key. The parsed recipe is stored with the model (as JSON) and re-read at serving.
//! Pure (no PostgreSQL), so it can be fuzzed (fuzz/fuzz_targets/options.rs); the extension maps
//! [`OptionError`] to its SQLSTATEs.
use crate::als::AlsOptions;
use crate::explicit::ExplicitOptions;
use crate::hybrid::{HybridOptions, Weights, COMPONENTS};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// What is wrong with an options object.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptionError {
    #[error("options must be a JSON object")]
    NotObject,
    #[error("unknown option \"{key}\"")]
    Unknown { key: String, valid: Vec<String> },
    #[error("option \"{key}\" must be {expected}")]
    Type { key: String, expected: String, got: String },
}

impl OptionError {
    pub fn unknown(key: String, valid: &[&str]) -> OptionError {
        OptionError::Unknown { key, valid: valid.iter().map(|s| s.to_string()).collect() }
    }
}

pub type Result<T> = std::result::Result<T, OptionError>;

pub const TRAIN_KEYS: &[&str] = &[
    "factors",
    "iterations",
    "regularization",
    "alpha",
    "seed",
    "threads",
    "cg_steps",
    "kind_weights",
    "weights",
    "default_weight",
    "interactions",
    "posts",
    "users",
    "follows",
    "fusion",
    "mutual_weight",
    "degree_damping",
    "second_hop",
    "owner_weight",
    "negative_weight",
    "social_half_life_days",
    "content_half_life_days",
    "freshness_half_life_days",
    "popularity_half_life_days",
    "cold_start_threshold",
    "tune",
    "feedback",
    "rating_kind",
    "rating",
    "graph",
    "model",
    "deploy",
];

/// Default weight per interaction kind; a kind missing from the map gets `default_weight`.
pub const DEFAULT_WEIGHTS: &[(&str, f32)] = &[("view", 1.0), ("like", 4.0), ("inspire", 5.0), ("share", 6.0), ("rate", 1.0)];

/// One mappable table: its name and role → column (None = the column is not used).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TableMap {
    pub table: String,
    pub columns: BTreeMap<String, Option<String>>,
    /// Roles the caller named explicitly: those must exist; defaults that do not are skipped.
    pub explicit: Vec<String>,
    /// Posts only: an SQL predicate over the posts row (`deleted_at IS NULL AND is_public`)
    /// that every served post must satisfy at call time. Checked by [`predicate_is_contained`]
    /// here and by the server at train time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible: Option<String>,
}

/// Whether `p` stays one parenthesised expression when spliced as `(p)`: balanced parentheses
/// that never close more than they opened, no statement separator, no comment, no dollar
/// quoting or backslash escapes, strings and quoted identifiers closed. So `x) UNION SELECT ...`
/// or `x); DROP ...` cannot escape into the query around it; what remains is an expression
/// the server then parses and type-checks (it must be boolean).
pub fn predicate_is_contained(p: &str) -> bool {
    let b = p.as_bytes();
    let (mut depth, mut i) = (0i32, 0usize);
    if p.trim().is_empty() || p.len() > 4096 {
        return false;
    }
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                // A quoted string or identifier; a doubled quote is an escaped quote.
                i += 1;
                loop {
                    match b.get(i) {
                        None => return false,
                        Some(&c) if c == q && b.get(i + 1) == Some(&q) => i += 2,
                        Some(&c) if c == q => break,
                        Some(b'\\') => return false,
                        Some(_) => i += 1,
                    }
                }
            }
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            b';' | b'$' | b'\\' | 0 => return false,
            b'-' if b.get(i + 1) == Some(&b'-') => return false,
            b'/' if b.get(i + 1) == Some(&b'*') => return false,
            _ => {}
        }
        i += 1;
    }
    depth == 0
}

/// (role, default column, required)
pub type Spec = &'static [(&'static str, &'static str, bool)];
pub const INTERACTIONS: Spec =
    &[("user", "user_id", true), ("post", "post_id", true), ("kind", "kind", false), ("value", "value", false), ("time", "created_at", false)];
pub const POSTS: Spec = &[
    ("id", "id", true),
    ("owner", "owner_id", false),
    ("title", "title", false),
    ("description", "description", false),
    ("tags", "tags", false),
    ("category", "category", false),
    ("project_code", "project_code", false),
    ("mood", "mood", false),
    ("time", "created_at", false),
];
pub const USERS: Spec = &[
    ("id", "id", true),
    ("username", "username", false),
    ("age", "age", false),
    ("gender", "gender", false),
    ("location", "location", false),
    ("time", "created_at", false),
];
pub const FOLLOWS: Spec = &[("follower", "follower_id", true), ("followee", "followee_id", true), ("time", "created_at", false)];

impl TableMap {
    pub fn defaults_for(table: &str, spec: Spec) -> TableMap {
        Self::defaults(table, spec)
    }

    fn defaults(table: &str, spec: Spec) -> TableMap {
        TableMap { table: table.into(), columns: spec.iter().map(|(r, c, _)| (r.to_string(), Some(c.to_string()))).collect(), explicit: vec![], visible: None }
    }

    fn parse(key: &str, v: &Value, default_table: &str, spec: Spec) -> Result<TableMap> {
        let mut m = TableMap::defaults(default_table, spec);
        let obj = v.as_object().ok_or_else(|| type_err(key, "an object", v))?;
        for (k, val) in obj {
            let path = format!("{key}.{k}");
            if k == "table" {
                m.table = val.as_str().filter(|s| !s.is_empty()).ok_or_else(|| type_err(&path, "a non-empty string", val))?.into();
                m.explicit.push("table".into());
                continue;
            }
            if k == "visible" && default_table == "posts" {
                m.visible = match val {
                    Value::Null => None,
                    Value::String(p) if predicate_is_contained(p) => Some(p.clone()),
                    _ => return Err(type_err(&path, "an SQL boolean expression over the posts row (no ';', comments, '$' or unbalanced parentheses)", val)),
                };
                continue;
            }
            let Some((role, _, required)) = spec.iter().find(|(r, _, _)| r == k) else {
                let mut valid: Vec<&'static str> = vec!["table"];
                valid.extend(spec.iter().map(|(r, _, _)| *r));
                return Err(OptionError::Unknown { key: path, valid: valid.iter().map(|s| s.to_string()).collect() });
            };
            let col = match val {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Null if !required => None,
                _ => {
                    let expected = if *required { "a non-empty string" } else { "a non-empty string or null" };
                    return Err(type_err(&path, expected, val));
                }
            };
            m.columns.insert(role.to_string(), col);
            m.explicit.push(role.to_string());
        }
        Ok(m)
    }

    pub fn column(&self, role: &str) -> Option<&str> {
        self.columns.get(role).and_then(|c| c.as_deref())
    }

    pub fn is_explicit(&self, role: &str) -> bool {
        self.explicit.iter().any(|r| r == role)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainOptions {
    pub als: AlsOptions,
    /// None = the `recsys.threads` setting.
    pub threads: Option<usize>,
    pub weights: BTreeMap<String, f32>,
    pub default_weight: f32,
    pub interactions: TableMap,
    pub posts: Option<TableMap>,
    pub users: Option<TableMap>,
    pub follows: Option<TableMap>,
    /// Fusion weights and the social/cold-start knobs (models stored before these existed
    /// read as the defaults).
    #[serde(default)]
    pub hybrid: HybridOptions,
    /// Pick the fusion weights on a seeded holdout of the training data.
    #[serde(default)]
    pub tune: bool,
    /// "explicit" adds a rating model (recsys_predict then returns a predicted rating).
    #[serde(default)]
    pub explicit: bool,
    /// The interaction kind whose value is a rating (None = every row with a value).
    #[serde(default = "default_rating_kind")]
    pub rating_kind: Option<String>,
    #[serde(default)]
    pub rating: ExplicitOptions,
    /// The model's name: several models per database, each served and deployed on its own.
    #[serde(default = "default_model_name")]
    pub model: String,
    /// Serve the new version once the transaction commits (false: store it to evaluate first,
    /// then `recsys_deploy`).
    #[serde(default = "default_true")]
    pub deploy: bool,
    /// Deprecation notices from parsing, for the caller to raise (not stored).
    #[serde(skip)]
    pub notices: Vec<String>,
}

pub const DEFAULT_MODEL: &str = "default";

fn default_model_name() -> String {
    DEFAULT_MODEL.into()
}

fn default_true() -> bool {
    true
}

/// A model name: 1 to 63 letters, digits, `_`, `-` or `.`.
pub fn valid_model_name(name: &str) -> bool {
    (1..=63).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

fn default_rating_kind() -> Option<String> {
    Some("rate".into())
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            als: AlsOptions::default(),
            threads: None,
            weights: DEFAULT_WEIGHTS.iter().map(|(k, w)| (k.to_string(), *w)).collect(),
            default_weight: 1.0,
            interactions: TableMap::defaults("interactions", INTERACTIONS),
            posts: None,
            users: None,
            follows: None,
            hybrid: HybridOptions::default(),
            tune: false,
            explicit: false,
            rating_kind: default_rating_kind(),
            rating: ExplicitOptions::default(),
            model: default_model_name(),
            deploy: true,
            notices: vec![],
        }
    }
}

fn describe(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}...", &s[..s.char_indices().nth(57).map(|(i, _)| i).unwrap_or(s.len())])
    } else {
        s
    }
}

pub fn type_err(key: &str, expected: &str, got: &Value) -> OptionError {
    OptionError::Type { key: key.into(), expected: expected.into(), got: describe(got) }
}

pub fn int_in(key: &str, v: &Value, min: i64, max: i64) -> Result<i64> {
    let n = v.as_i64().ok_or_else(|| type_err(key, &format!("an integer between {min} and {max}"), v))?;
    if n < min || n > max {
        return Err(type_err(key, &format!("an integer between {min} and {max}"), v));
    }
    Ok(n)
}

pub fn num_in(key: &str, v: &Value, min: f64, max: f64) -> Result<f64> {
    let n = v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| type_err(key, &format!("a number between {min} and {max}"), v))?;
    if n < min || n > max {
        return Err(type_err(key, &format!("a number between {min} and {max}"), v));
    }
    Ok(n)
}

pub fn object(v: &Value) -> Result<&Map<String, Value>> {
    v.as_object().ok_or(OptionError::NotObject)
}

impl TrainOptions {
    // One function on purpose (issue 14): a flat match with one arm per option key, each with
    // its range, so the whole options surface reads as one table.
    pub fn parse(v: &Value) -> Result<TrainOptions> {
        let mut o = TrainOptions::default();
        for (key, val) in object(v)? {
            match key.as_str() {
                "factors" => o.als.factors = int_in(key, val, 1, 1024)? as usize,
                "iterations" => o.als.iterations = int_in(key, val, 1, 1000)? as usize,
                "regularization" => o.als.regularization = num_in(key, val, 0.0, 1e6)? as f32,
                "alpha" => o.als.alpha = num_in(key, val, 1e-6, 1e6)? as f32,
                "seed" => o.als.seed = int_in(key, val, 0, i64::MAX)? as u64,
                "cg_steps" => o.als.cg_steps = int_in(key, val, 1, 100)? as usize,
                "threads" => o.threads = Some(int_in(key, val, 1, 1024)? as usize),
                "default_weight" => o.default_weight = num_in(key, val, -1e6, 1e6)? as f32,
                "kind_weights" | "weights" => {
                    if key == "weights" {
                        o.notices.push(
                            "recsys_train: the option \"weights\" (per interaction kind) is now \"kind_weights\"; \"weights\" still works but is deprecated (it was easy to confuse with the fusion weights)".into(),
                        );
                    }
                    let map = val.as_object().ok_or_else(|| type_err(key, "an object of kind: number", val))?;
                    for (kind, w) in map {
                        let w = num_in(&format!("{key}.{kind}"), w, -1e6, 1e6)? as f32;
                        o.weights.insert(kind.clone(), w);
                    }
                }
                "interactions" => o.interactions = TableMap::parse(key, val, "interactions", INTERACTIONS)?,
                "posts" => o.posts = Some(TableMap::parse(key, val, "posts", POSTS)?),
                "users" => o.users = Some(TableMap::parse(key, val, "users", USERS)?),
                "follows" => o.follows = Some(TableMap::parse(key, val, "follows", FOLLOWS)?),
                "fusion" => o.hybrid.weights = parse_weights(key, val, o.hybrid.weights)?,
                "mutual_weight" => o.hybrid.mutual_weight = num_in(key, val, 0.0, 1e3)? as f32,
                "degree_damping" => o.hybrid.degree_damping = num_in(key, val, 0.0, 10.0)? as f32,
                "second_hop" => o.hybrid.second_hop = num_in(key, val, 0.0, 1e3)? as f32,
                "owner_weight" => o.hybrid.owner_weight = num_in(key, val, 0.0, 1e3)? as f32,
                "negative_weight" => o.hybrid.negative_weight = num_in(key, val, 0.0, 10.0)? as f32,
                "social_half_life_days" => o.hybrid.social_half_life_days = num_in(key, val, 0.001, 1e6)? as f32,
                "content_half_life_days" => o.hybrid.content_half_life_days = num_in(key, val, 0.001, 1e6)? as f32,
                "freshness_half_life_days" => o.hybrid.freshness_half_life_days = num_in(key, val, 0.001, 1e6)? as f32,
                "popularity_half_life_days" => o.hybrid.popularity_half_life_days = num_in(key, val, 0.001, 1e6)? as f32,
                "cold_start_threshold" => o.hybrid.cold_start_threshold = int_in(key, val, 0, 1_000_000)? as usize,
                "tune" => o.tune = val.as_bool().ok_or_else(|| type_err(key, "true or false", val))?,
                "feedback" => {
                    o.explicit = match val.as_str() {
                        Some("implicit") => false,
                        Some("explicit") => true,
                        _ => return Err(type_err(key, "\"implicit\" or \"explicit\"", val)),
                    }
                }
                "rating_kind" => {
                    o.rating_kind = match val {
                        Value::Null => None,
                        Value::String(s) if !s.is_empty() => Some(s.clone()),
                        _ => return Err(type_err(key, "a kind (string) or null for every row", val)),
                    }
                }
                "rating" => {
                    let map = val.as_object().ok_or_else(|| type_err(key, "an object", val))?;
                    for (k, v) in map {
                        let path = format!("rating.{k}");
                        let r = &mut o.rating;
                        match k.as_str() {
                            "factors" => r.factors = int_in(&path, v, 1, 1024)? as usize,
                            "iterations" => r.iterations = int_in(&path, v, 1, 1000)? as usize,
                            "regularization" => r.regularization = num_in(&path, v, 0.0, 1e6)? as f32,
                            "bias_regularization" => r.bias_regularization = num_in(&path, v, 0.0, 1e6)? as f32,
                            "regularization_exponent" => r.regularization_exponent = num_in(&path, v, 0.0, 2.0)? as f32,
                            "implicit_regularization" => r.implicit_regularization = num_in(&path, v, 0.0, 1e6)? as f32,
                            "knn_weight" => r.knn_weight = num_in(&path, v, 0.0, 1.0)? as f32,
                            "knn_k" => r.knn_k = int_in(&path, v, 1, 1000)? as usize,
                            _ => return Err(OptionError::unknown(path, RATING_KEYS)),
                        }
                    }
                }
                "graph" => o.hybrid.graph = parse_graph(key, val, o.hybrid.graph.clone())?,
                "model" => match val.as_str() {
                    Some(n) if valid_model_name(n) => o.model = n.to_string(),
                    _ => return Err(type_err(key, "a model name (1 to 63 letters, digits, _ - .)", val)),
                },
                "deploy" => o.deploy = val.as_bool().ok_or_else(|| type_err(key, "true or false", val))?,
                _ => return Err(OptionError::unknown(key.clone(), TRAIN_KEYS)),
            }
        }
        Ok(o)
    }
}

pub const GRAPH_KEYS: &[&str] = &["kind", "neighbours", "ease_edges", "ease_lambda", "ease_max_items", "ease_beta", "rp3_alpha", "rp3_beta"];

/// `"graph": {"kind": "auto" | "ease" | "rp3beta" | "off", ...}` (or just the kind as a string).
fn parse_graph(key: &str, v: &Value, mut g: crate::hybrid::GraphOptions) -> Result<crate::hybrid::GraphOptions> {
    use crate::hybrid::GraphKind;
    let kind = |path: &str, v: &Value| -> Result<GraphKind> {
        match v.as_str() {
            Some("auto") => Ok(GraphKind::Auto),
            Some("ease") => Ok(GraphKind::Ease),
            Some("rp3beta") => Ok(GraphKind::Rp3beta),
            Some("off") => Ok(GraphKind::Off),
            _ => Err(type_err(path, "\"auto\", \"ease\", \"rp3beta\" or \"off\"", v)),
        }
    };
    if v.is_string() {
        g.kind = kind(key, v)?;
        return Ok(g);
    }
    let map = v.as_object().ok_or_else(|| type_err(key, "an object or a kind", v))?;
    for (k, x) in map {
        let path = format!("{key}.{k}");
        match k.as_str() {
            "kind" => g.kind = kind(&path, x)?,
            "neighbours" => g.neighbours = int_in(&path, x, 1, 10_000)? as usize,
            "ease_edges" => g.ease_edges = int_in(&path, x, 0, 1_000_000_000)? as usize,
            "ease_lambda" => g.ease_lambda = num_in(&path, x, 1e-6, 1e9)? as f32,
            "ease_max_items" => g.ease_max_items = int_in(&path, x, 2, 100_000)? as usize,
            "ease_beta" => g.ease_beta = num_in(&path, x, 0.0, 10.0)? as f32,
            "rp3_alpha" => g.rp3_alpha = num_in(&path, x, 0.0, 10.0)? as f32,
            "rp3_beta" => g.rp3_beta = num_in(&path, x, 0.0, 10.0)? as f32,
            _ => return Err(OptionError::unknown(path, GRAPH_KEYS)),
        }
    }
    Ok(g)
}

pub const RATING_KEYS: &[&str] =
    &["factors", "iterations", "regularization", "bias_regularization", "regularization_exponent", "implicit_regularization", "knn_weight", "knn_k"];

/// A partial object of fusion weights over `base`: {"social": 0.5} changes one weight.
pub fn parse_weights(key: &str, v: &Value, base: Weights) -> Result<Weights> {
    let map = v.as_object().ok_or_else(|| type_err(key, "an object of component: number", v))?;
    let mut w = base;
    for (name, x) in map {
        let path = format!("{key}.{name}");
        let slot = w.get_mut(name).ok_or_else(|| OptionError::unknown(path.clone(), &COMPONENTS))?;
        *slot = num_in(&path, x, 0.0, 1e6)? as f32;
    }
    if w.to_array().iter().all(|x| *x == 0.0) {
        return Err(type_err(key, "weights with at least one above 0", v));
    }
    Ok(w)
}

#[cfg(test)]
mod unit {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_rejects() {
        let o = TrainOptions::parse(&json!({"factors": 8, "weights": {"like": 2}, "interactions": {"table": "events", "value": null}})).unwrap();
        assert_eq!(o.als.factors, 8);
        assert_eq!(o.weights["like"], 2.0);
        assert_eq!(o.weights["view"], 1.0);
        assert_eq!(o.interactions.table, "events");
        assert_eq!(o.interactions.column("value"), None);
        assert_eq!(o.interactions.column("user"), Some("user_id"));
        assert!(matches!(TrainOptions::parse(&json!({"factor": 8})), Err(OptionError::Unknown { .. })));
        assert!(matches!(TrainOptions::parse(&json!({"factors": "8"})), Err(OptionError::Type { .. })));
        let o = TrainOptions::parse(&json!({"posts": {"visible": "deleted_at IS NULL AND (is_public OR title = 'it''s (ok)')"}})).unwrap();
        assert!(o.posts.unwrap().visible.is_some());
        for bad in ["true) UNION SELECT 1 FROM t WHERE (true", "true; DROP TABLE posts", "true -- x", "a /* x */", "$$x$$", "E'\\'' OR true", "(a", "'open", ""]
        {
            assert!(TrainOptions::parse(&json!({"posts": {"visible": bad}})).is_err(), "{bad}");
        }
        assert!(TrainOptions::parse(&json!({"interactions": {"visible": "true"}})).is_err());
        assert!(matches!(TrainOptions::parse(&json!({"factors": 0})), Err(OptionError::Type { .. })));
        assert!(matches!(TrainOptions::parse(&json!([1])), Err(OptionError::NotObject)));
        assert!(matches!(TrainOptions::parse(&json!({"interactions": {"user": null}})), Err(OptionError::Type { .. })));
        assert!(matches!(TrainOptions::parse(&json!({"interactions": {"usr": "a"}})), Err(OptionError::Unknown { .. })));
        let o = TrainOptions::parse(&json!({"fusion": {"social": 0.5}, "second_hop": 0.2, "tune": true, "cold_start_threshold": 3})).unwrap();
        assert_eq!(
            (o.hybrid.weights.social, o.hybrid.weights.als, o.hybrid.second_hop, o.tune, o.hybrid.cold_start_threshold),
            (0.5, Weights::default().als, 0.2, true, 3)
        );
        assert!(matches!(TrainOptions::parse(&json!({"fusion": {"socail": 1}})), Err(OptionError::Unknown { .. })));
        assert!(matches!(TrainOptions::parse(&json!({"fusion": {"als": -1}})), Err(OptionError::Type { .. })));
        assert!(matches!(
            TrainOptions::parse(&json!({"fusion": {"als": 0, "content": 0, "social": 0, "popularity": 0, "freshness": 0, "demographic": 0, "graph": 0}})),
            Err(OptionError::Type { .. })
        ));
        assert!(matches!(TrainOptions::parse(&json!({"tune": 1})), Err(OptionError::Type { .. })));
        assert_eq!(TrainOptions::parse(&json!({"negative_weight": 0.5})).unwrap().hybrid.negative_weight, 0.5);
        assert_eq!(TrainOptions::parse(&json!({"negative_weight": 0})).unwrap().hybrid.negative_weight, 0.0);
        assert_eq!(TrainOptions::default().hybrid.negative_weight, 1.0);
        let new = TrainOptions::parse(&json!({"kind_weights": {"like": 3}})).unwrap();
        let old = TrainOptions::parse(&json!({"weights": {"like": 3}})).unwrap();
        assert_eq!((new.weights.get("like"), new.notices.len()), (Some(&3.0), 0));
        assert_eq!((old.weights.get("like"), old.notices.len()), (Some(&3.0), 1));
        let g = TrainOptions::parse(&json!({"graph": {"kind": "rp3beta", "neighbours": 50}})).unwrap().hybrid.graph;
        assert_eq!((g.kind, g.neighbours), (crate::hybrid::GraphKind::Rp3beta, 50));
        let g = TrainOptions::parse(&json!({"graph": {"ease_edges": 0}})).unwrap().hybrid.graph;
        assert_eq!((g.neighbours, g.ease_edges), (crate::graph::DEFAULT_K, 0));
        assert!(matches!(TrainOptions::parse(&json!({"graph": {"ease_edges": -1}})), Err(OptionError::Type { .. })));
        let g = TrainOptions::parse(&json!({"graph": {"ease_beta": 0}})).unwrap().hybrid.graph;
        assert_eq!((g.ease_beta, g.ease_lambda), (0.0, crate::graph::DEFAULT_EASE_LAMBDA));
        assert_eq!(TrainOptions::default().hybrid.graph.ease_beta, crate::graph::DEFAULT_EASE_BETA);
        let r = TrainOptions::parse(&json!({"rating": {"regularization_exponent": 1, "implicit_regularization": 0}})).unwrap().rating;
        assert_eq!((r.regularization_exponent, r.implicit_regularization), (1.0, 0.0));
        for bad in [json!({"regularization_exponent": 2.5}), json!({"implicit_regularization": -1}), json!({"regularization_exponent": "1"})] {
            assert!(matches!(TrainOptions::parse(&json!({"rating": bad})), Err(OptionError::Type { .. })), "{bad}");
        }
        assert_eq!(TrainOptions::parse(&json!({"graph": "off"})).unwrap().hybrid.graph.kind, crate::hybrid::GraphKind::Off);
        assert!(matches!(TrainOptions::parse(&json!({"graph": "dense"})), Err(OptionError::Type { .. })));
        assert!(matches!(TrainOptions::parse(&json!({"graph": {"lambda": 3}})), Err(OptionError::Unknown { .. })));
        assert!(matches!(TrainOptions::parse(&json!({"graph": {"neighbours": 0}})), Err(OptionError::Type { .. })));
        for bad in [json!(-0.1), json!(10.5), json!("1"), json!(null)] {
            assert!(matches!(TrainOptions::parse(&json!({"negative_weight": bad})), Err(OptionError::Type { .. })), "{bad}");
        }
        // A model stored before the hybrid options existed still reads.
        let mut old = serde_json::to_value(TrainOptions::default()).unwrap();
        old.as_object_mut().unwrap().remove("hybrid");
        old.as_object_mut().unwrap().remove("tune");
        assert_eq!(serde_json::from_value::<TrainOptions>(old).unwrap(), TrainOptions::default());
        // ... and one stored before "negative_weight" reads it as the default.
        let mut old = serde_json::to_value(TrainOptions::default()).unwrap();
        old["hybrid"].as_object_mut().unwrap().remove("negative_weight");
        assert_eq!(serde_json::from_value::<TrainOptions>(old).unwrap().hybrid.negative_weight, 1.0);
    }
}
