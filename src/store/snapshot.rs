//! The app's tables read into the core's [`AppData`], once, before any compute: what
//! `recsys_train` builds a model from (`recsys_core::build`) and what `recsys_evaluate` splits.
//! Every mapping is resolved in the catalog first, so a typo fails before minutes of work.
use crate::error::{RecsysError, Result};
use crate::options::{TableMap, TrainOptions, FOLLOWS, POSTS, USERS};
use crate::store::model;
use crate::store::serving::Tables;
use crate::store::source::{self, Loaded};
use pgrx::spi::SpiClient;
use recsys_core::build::AppData;

/// What the snapshot is for: a train reads the follower counts (and the follow pairs only when
/// tuning, the ratings only in explicit mode); an evaluation reads the follow pairs.
#[derive(Clone, Copy, PartialEq)]
pub enum Purpose {
    Train,
    Evaluate,
}

/// The mapping of an optional table: the caller's, or the default name when such a table
/// exists. The choice is stored with the model, so serving reads the same tables.
fn optional_map(client: &SpiClient<'_>, given: &Option<TableMap>, name: &str, spec: crate::options::Spec) -> Result<Option<TableMap>> {
    Ok(match given {
        Some(m) => Some(m.clone()),
        None if source::table_exists(client, name)? => Some(TableMap::defaults_for(name, spec)),
        None => None,
    })
}

/// The options with every table mapping checked and stored schema-qualified (so every session
/// serves the same tables whatever its search_path), the optional tables that exist used, and
/// the `visible` predicate parsed by the server; with the resolved tables.
pub fn resolve(client: &SpiClient<'_>, o: &TrainOptions) -> Result<(TrainOptions, Tables)> {
    let mut o = o.clone();
    o.posts = optional_map(client, &o.posts, "posts", POSTS)?;
    o.users = optional_map(client, &o.users, "users", USERS)?;
    o.follows = optional_map(client, &o.follows, "follows", FOLLOWS)?;
    // The same resolution serving does at load (interactions, posts, users, follows).
    let t = model::resolve_tables(client, &o)?;
    if let Some(v) = o.posts.as_ref().and_then(|m| m.visible.as_deref()) {
        source::check_visible(client, t.posts.as_ref().ok_or(RecsysError::NoContentModel)?, v)?;
    }
    o.interactions.table = t.interactions.table.clone();
    for (m, r) in [(&mut o.posts, &t.posts), (&mut o.users, &t.users), (&mut o.follows, &t.follows)] {
        if let (Some(m), Some(r)) = (m.as_mut(), r) {
            m.table = r.table.clone();
        }
    }
    Ok((o, t))
}

/// Reads the tables `t` (resolved by [`resolve`]) within `budget` bytes each. `check` runs
/// once the interactions are in, before anything else is read (the caller's memory estimate).
pub fn read(client: &SpiClient<'_>, o: &TrainOptions, t: &Tables, budget: u64, purpose: Purpose, check: impl FnOnce(&Loaded) -> Result<()>) -> Result<AppData> {
    let interactions = source::read_interactions(client, &t.interactions, o, budget)?;
    check(&interactions)?;
    pgrx::check_for_interrupts!();
    let posts = t.posts.as_ref().map(|p| read_posts(client, p, budget)).transpose()?;
    pgrx::check_for_interrupts!();
    let user_keys = t.users.as_ref().map(|u| source::read_user_keys(client, u, budget)).transpose()?;
    let train = purpose == Purpose::Train;
    let (mut followers, mut follows) = (vec![], vec![]);
    if let Some(f) = &t.follows {
        // Followers per followed user (degree damping); the followees' engagement itself is
        // read per request, so a like a second ago counts.
        if train {
            followers = source::read_follower_counts(client, f, budget)?;
        }
        if o.tune || !train {
            follows = source::read_follows(client, f, budget)?;
        }
    }
    let ratings = (train && o.explicit).then(|| source::read_ratings(client, &t.interactions, o.rating_kind.as_deref(), budget)).transpose()?;
    pgrx::check_for_interrupts!();
    Ok(AppData { interactions, posts, user_keys, followers, follows, ratings, imported: None })
}

/// The posts' text, within the budget the content model will need for it.
fn read_posts(client: &SpiClient<'_>, t: &source::Resolved, budget: u64) -> Result<source::PostText> {
    let text = source::read_posts(client, t, budget)?;
    let est = text.token_count * 40 + text.ids.len() as u64 * 64;
    if est > budget {
        return Err(RecsysError::OverBudget { needed: est, budget, what: "the content model" });
    }
    Ok(text)
}
