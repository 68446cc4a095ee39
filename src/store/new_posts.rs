//! Posts created after training, served without a retrain. On every call the posts table is
//! asked for posts with an id above the highest one the backend's model knows (an index range
//! scan on the id: one probe when there is nothing new); new ones are placed by content as
//! training places posts without interactions (TF-IDF over the model's vocabulary, factors the
//! mean of their content neighbours'), and appended to the backend's copy of the model. From
//! then on they are ordinary items: recommendable, filterable, similar-to, searchable, and their
//! interactions count in fold-in, social and trending.
//!
//! Limits, documented in docs/live.md: a post is picked up when its id is above every id the
//! model knew (serial / identity ids); words the model's vocabulary lacks do not count for its
//! placement; at most [`PER_CALL`] posts are absorbed per call. `recsys_refresh()` rebuilds
//! the content model over everything.
use crate::error::Result;
use crate::store::serving::{Reader, Serving};
use crate::store::source::{self, PostText};
use pgrx::{PgBuiltInOids, PgOid};

/// New posts absorbed per call at most (a larger burst is absorbed over the next calls).
pub const PER_CALL: i64 = 1000;

const INT8: PgOid = PgOid::BuiltIn(PgBuiltInOids::INT8OID);

fn reader(m: &Serving) -> Reader {
    // SAFETY: reads the backend's current user id and a GUC variable, on the backend thread.
    let (role, rls) = unsafe { (pgrx::pg_sys::GetUserId().to_u32(), pgrx::pg_sys::row_security) };
    let filtered = m.options.posts.as_ref().is_some_and(|p| source::settings_may_filter(&p.table, p.visible.as_deref()));
    (role, rls, if filtered { crate::gucs::custom_settings_fingerprint() } else { 0 })
}

/// Posts the model does not know yet, read under the caller's rights; None when there are none.
pub struct Pending {
    text: PostText,
    reader: Reader,
    last: i64,
}

/// The id above which the caller's posts are new to the model (what this backend has read for
/// the caller's role so far, else the highest id trained on).
pub fn after(m: &Serving) -> i64 {
    let Some(np) = &m.new_posts else { return i64::MAX };
    after_for(np, reader(m))
}

/// [`after`] for reader `who`.
fn after_for(np: &crate::store::serving::NewPosts, who: Reader) -> i64 {
    match np.read.get() {
        Some((r, last)) if r == who => last,
        _ => np.trained_max,
    }
}

pub fn pending(client: &pgrx::spi::SpiClient<'_>, m: &Serving) -> Result<Option<Pending>> {
    let Some(np) = &m.new_posts else { return Ok(None) };
    let who = reader(m);
    let after = after_for(np, who);
    let mut text = PostText::default();
    let mut last = after;
    m.run(client, "new_posts", &np.query, &[INT8, INT8], &[after.into(), PER_CALL.into()], |row| {
        source::push_post_row(row, &mut text)?;
        Ok(Some(()))
    })?;
    if let Some(&id) = text.ids.last() {
        last = last.max(id);
    }
    np.read.set(Some((who, last)));
    // Posts another role's call already added are known.
    let known = |id: &i64| m.content.as_ref().is_some_and(|c| c.index.contains(*id));
    if text.ids.iter().all(known) {
        return Ok(None);
    }
    // Read again if the model cannot be extended on this call (see model::catch_up).
    np.read.set(Some((who, after)));
    Ok(Some(Pending { text, reader: who, last }))
}

impl Serving {
    /// Appends new posts: a content row each (TF-IDF over the model's vocabulary), and an item
    /// when content placement finds it neighbours with factors.
    pub fn add_posts(&mut self, p: Pending) {
        let half_life = self.options.hybrid.freshness_half_life_days;
        let data = &mut self.data;
        let f = data.factors;
        let Some(c) = data.content.as_mut() else { return };
        let mut rows = vec![];
        for (k, &pid) in p.text.ids.iter().enumerate() {
            if c.index.contains(pid) {
                continue;
            }
            let row = c.ids.len();
            let doc = c.tfidf.query(&p.text.tokens[k]);
            let docs = &mut c.tfidf.docs;
            docs.indices.extend(doc.iter().map(|x| x.0));
            docs.data.extend(doc.iter().map(|x| x.1));
            docs.indptr.push(docs.indices.len());
            docs.rows += 1;
            c.ids.push(pid);
            c.index.insert(pid, row as u32);
            c.to_item.push(None);
            let mut codes = [0u32; 3];
            for (code, value) in codes.iter_mut().zip(&p.text.attrs[k]) {
                if let Some(v) = value {
                    *code = *c.dict.entry(v.clone()).or_insert_with(|| {
                        c.dict_list.push(v.clone());
                        c.dict_list.len() as u32 - 1
                    });
                }
            }
            c.attrs.extend_from_slice(&codes);
            rows.push((row, k));
        }
        if rows.is_empty() {
            return;
        }
        // The new documents' postings go at the end of their terms' lists (one copy, no sort).
        let entries: Vec<(u32, u32, f32)> = rows
            .iter()
            .flat_map(|&(d, _)| {
                let (terms, values) = c.tfidf.docs.row(d);
                terms.iter().zip(values).map(move |(&t, &v)| (t, d as u32, v)).collect::<Vec<_>>()
            })
            .collect();
        c.tfidf.postings.append_columns(rows.len(), entries);
        let docs: Vec<usize> = rows.iter().map(|r| r.0).collect();
        let placed = recsys_core::tfidf::place_docs(&c.tfidf, &c.to_item, &data.item_factors, f, recsys_core::tfidf::PLACEMENT_NEIGHBOURS, &docs);
        let text_of: std::collections::HashMap<usize, usize> = rows.into_iter().collect();
        for (d, v) in placed {
            let k = text_of[&d];
            let pid = c.ids[d];
            let item = data.item_ids.len() as u32;
            c.to_item.set(d, Some(item));
            c.from_item.push(Some(d as u32));
            data.item_ids.push(pid);
            data.item_index.insert(pid, item);
            data.item_norms.push(v.iter().map(|x| x * x).sum::<f32>().sqrt());
            if let Some(q) = data.quantized.as_mut() {
                q.push(&v);
            }
            data.item_factors.extend_from_slice(&v);
            data.popularity.push(0.0);
            data.popularity_order.push(item);
            if !data.freshness.is_empty() {
                data.freshness.push(recsys_core::hybrid::freshness_of(p.text.created[k], data.newest_day, half_life));
            }
            if !data.owners.is_empty() {
                let owner = p.text.owners[k].unwrap_or(i64::MIN);
                data.owners.push(owner);
                if owner != i64::MIN {
                    data.owned.push(owner, item);
                }
            }
        }
        if let Some(np) = &self.new_posts {
            np.read.set(Some((p.reader, p.last)));
        }
    }
}
