//! The feed arguments (k, filters, include/exclude, paging, diversity), checked, and the ranking
//! of a scored catalogue into a page of posts the caller may see now.
use crate::error::{RecsysError, Result};
use crate::gucs;
use crate::store::live;
use crate::store::serving::Serving;
use pgrx::spi::SpiClient;
use recsys_core::fasthash::IndexSet;
use recsys_core::topk::Scored;
use std::collections::{HashMap, HashSet};

/// Positions of a feed re-ranked for diversity; later positions keep score order.
const MMR_PICKS: usize = 1000;
/// Candidates beyond the page that MMR may choose from.
const MMR_EXTRA_POOL: usize = 3000;

pub(super) fn check_k(k: i32) -> Result<usize> {
    if k < 1 {
        return Err(RecsysError::InvalidArgument { message: format!("k must be at least 1, got {k}"), hint: "pass k => 10".into() });
    }
    let max = gucs::max_k();
    if k > max {
        return Err(RecsysError::InvalidArgument {
            message: format!("k = {k} is above recsys.max_k ({max})"),
            hint: format!("SET recsys.max_k = {k} to allow it"),
        });
    }
    Ok(k as usize)
}

/// The feed arguments of recsys_recommend, checked.
pub(crate) struct Feed<'a> {
    pub k: usize,
    pub offset: usize,
    pub diversity: f32,
    pub attrs: [Option<&'a str>; 3],
    pub include: Option<HashSet<i64>>,
    pub exclude: HashSet<i64>,
    /// Posts matching the attribute filters in the posts table now (None = no filter, or no
    /// posts table: then the model's codes decide).
    pub live_match: Option<HashSet<i64>>,
}

/// A ranked page: visible posts only.
pub(crate) struct Ranked {
    pub items: Vec<Scored>,
    /// Titles of the visible posts among those checked, and of the extra posts asked for with
    /// them (None: no posts table, or not read by this ranking).
    pub titles: Option<HashMap<i64, String>>,
}

/// Rounds of "rank, drop what is no longer visible, rank again" before a page is returned
/// short: each round widens the pool, so only a burst of deletions among the top posts costs
/// more than one.
const REFILL_ROUNDS: usize = 4;

impl<'a> Feed<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        k: i32,
        category: Option<&'a str>,
        project_code: Option<&'a str>,
        mood: Option<&'a str>,
        include: Option<Vec<Option<i64>>>,
        exclude: Option<Vec<Option<i64>>>,
        offset: i32,
        diversity: f32,
    ) -> Result<Feed<'a>> {
        let k = check_k(k)?;
        if offset < 0 {
            return Err(RecsysError::InvalidArgument { message: format!("offset must be 0 or more, got {offset}"), hint: "pass offset => 0".into() });
        }
        if (offset as i64 + k as i64) > gucs::max_k() as i64 * 10 {
            return Err(RecsysError::InvalidArgument {
                message: format!("offset + k = {} is above 10 × recsys.max_k", offset as i64 + k as i64),
                hint: "page with smaller offsets, or raise recsys.max_k".into(),
            });
        }
        if !(0.0..=1.0).contains(&diversity) {
            return Err(RecsysError::InvalidArgument {
                message: format!("diversity must be between 0 and 1, got {diversity}"),
                hint: "0 = off, 0.3 = a mild re-rank, 1 = most diverse".into(),
            });
        }
        Ok(Feed {
            k,
            offset: offset as usize,
            diversity,
            attrs: [category, project_code, mood],
            include: include.map(|v| v.into_iter().flatten().collect()),
            exclude: exclude.map(|v| v.into_iter().flatten().collect()).unwrap_or_default(),
            live_match: None,
        })
    }

    /// Reads what the attribute filters match in the posts table now.
    pub fn prepare(&mut self, client: &pgrx::spi::SpiClient<'_>, m: &Serving) -> Result<()> {
        self.live_match = live::matching(client, m, self.attrs)?;
        Ok(())
    }

    /// Ranks `scores` (one per model item), applying every filter, the page and the re-rank.
    /// The filter codes for this feed (None when no attribute filter is set).
    pub(super) fn codes(&self, m: &Serving) -> Result<Option<[Option<Option<u32>>; 3]>> {
        if self.attrs.iter().all(|a| a.is_none()) || self.live_match.is_some() {
            return Ok(None);
        }
        let c = m.content.as_ref().ok_or(RecsysError::NoContentModel)?;
        Ok(Some(c.filter_codes(self.attrs)))
    }

    /// Whether model item `i` may appear in this feed.
    fn allowed(&self, m: &Serving, i: usize, seen: Option<&IndexSet<i64>>, codes: Option<&[Option<Option<u32>>; 3]>) -> bool {
        let id = m.item_ids[i];
        if seen.is_some_and(|x| x.contains(&id))
            || self.exclude.contains(&id)
            || self.include.as_ref().is_some_and(|inc| !inc.contains(&id))
            || self.live_match.as_ref().is_some_and(|l| !l.contains(&id))
        {
            return false;
        }
        match (codes, m.content.as_ref()) {
            (None, _) => true,
            (Some(codes), Some(c)) => c.from_item.get(i).is_some_and(|row| c.matches(row as usize, codes)),
            (Some(_), None) => false,
        }
    }

    /// Which items may appear, as one flag per item (None = all): built once per call, so the
    /// scan tests a byte instead of hashing ids (a filter keeps the threshold low for long).
    pub(super) fn mask(&self, m: &crate::store::serving::Data, seen: Option<&IndexSet<i64>>, codes: Option<&[Option<Option<u32>>; 3]>) -> Option<Vec<bool>> {
        let seen_any = seen.is_some_and(|s| !s.is_empty());
        if !seen_any && self.exclude.is_empty() && self.include.is_none() && codes.is_none() && self.live_match.is_none() {
            return None;
        }
        let n = m.item_ids.len();
        let allow = |set: &HashSet<i64>| {
            let mut v = vec![false; n];
            set.iter().filter_map(|&id| m.item_index.get(id)).for_each(|i| v[i as usize] = true);
            v
        };
        let mut mask = match &self.include {
            None => vec![true; n],
            Some(inc) => allow(inc),
        };
        if let Some(live) = &self.live_match {
            mask.iter_mut().zip(allow(live)).for_each(|(ok, l)| *ok = *ok && l);
        }
        if let Some(codes) = codes {
            match m.content.as_ref() {
                Some(c) => mask.iter_mut().zip(c.from_item.iter()).for_each(|(ok, row)| *ok = *ok && row.is_some_and(|r| c.matches(r as usize, codes))),
                None => mask.iter_mut().for_each(|ok| *ok = false),
            }
        }
        for id in seen.into_iter().flatten().chain(self.exclude.iter()) {
            if let Some(i) = m.item_index.get(*id) {
                mask[i as usize] = false;
            }
        }
        Some(mask)
    }

    /// The popularity feed as a walk down the precomputed order: O(page), not O(catalogue).
    /// `pop` is the popularity in force and `first` the posts it ranks (trending now, best
    /// first); the rest of the walk follows the model's popularity order.
    pub fn rank_popular(&self, client: &SpiClient<'_>, m: &Serving, pop: &[f32], first: &[u32], seen: Option<&IndexSet<i64>>) -> Result<Ranked> {
        if self.diversity > 0.0 {
            return self.rank(client, m, pop, seen, None, &mut |_| vec![]);
        }
        let codes = self.codes(m)?;
        let want = self.offset + self.k;
        let mut out = Vec::with_capacity(want);
        let mut walked = HashSet::new();
        let mut order =
            first.iter().chain(m.popularity_order.iter()).copied().filter(|&i| walked.insert(i) && self.allowed(m, i as usize, seen, codes.as_ref()));
        // Walked in batches, each checked against the posts table, until the page is full.
        loop {
            let need = want - out.len();
            let batch: Vec<Scored> =
                order.by_ref().take(need + need / 2 + 8).map(|i| Scored { score: pop[i as usize], id: m.item_ids[i as usize], index: i }).collect();
            if batch.is_empty() {
                break;
            }
            let ids: Vec<i64> = batch.iter().map(|c| c.id).collect();
            match live::visible(client, m, &ids)? {
                None => out.extend(batch),
                Some(v) => out.extend(batch.into_iter().filter(|c| v.contains_key(&c.id))),
            }
            if out.len() >= want {
                break;
            }
            pgrx::check_for_interrupts!();
        }
        out.truncate(want);
        Ok(Ranked { items: out.into_iter().skip(self.offset).collect(), titles: None })
    }

    /// With `exact`, `scores` are approximate: a larger pool is kept and re-scored by `exact`
    /// before paging, so the returned order and scores are exact.
    /// Candidates no longer in the posts table (or hidden from the caller) are dropped and the
    /// pool refilled, so a page is full whenever enough visible posts exist.
    pub fn rank(
        &self,
        client: &SpiClient<'_>,
        m: &Serving,
        scores: &[f32],
        seen: Option<&IndexSet<i64>>,
        exact: Option<&dyn Fn(u32) -> f32>,
        also: &mut dyn FnMut(&[Scored]) -> Vec<i64>,
    ) -> Result<Ranked> {
        let top = |mask: Option<&[bool]>, size: usize| {
            let allowed = |i: usize| mask.is_none_or(|mk| mk[i]);
            let mut cands = recsys_core::topk::top_dense(scores, size, &allowed, &|i| m.item_ids[i]);
            if let Some(ex) = exact {
                cands.iter_mut().for_each(|c| c.score = ex(c.index));
                cands.sort_by(recsys_core::topk::rank_order);
            }
            cands
        };
        self.rank_by(client, m, seen, exact.is_some(), None, &top, also)
    }

    /// [`Feed::rank`] over candidates from `top(mask, size)`: the best `size` items the mask
    /// allows (None = all), best first, with their final scores. `approx`: the order is only
    /// fixed by re-scoring, so a larger pool is asked for. `also(chunk)`: more post ids whose
    /// titles to read in the same statement as the chunk's visibility (the reasons' evidence),
    /// asked only for the candidates the page would show if all before them are visible.
    /// `mask`: [`Feed::mask`] for these `seen`, when the caller has it already.
    #[allow(clippy::too_many_arguments)]
    pub fn rank_by(
        &self,
        client: &SpiClient<'_>,
        m: &Serving,
        seen: Option<&IndexSet<i64>>,
        approx: bool,
        mask: Option<Option<Vec<bool>>>,
        top: &dyn Fn(Option<&[bool]>, usize) -> Vec<Scored>,
        also: &mut dyn FnMut(&[Scored]) -> Vec<i64>,
    ) -> Result<Ranked> {
        let want = self.offset + self.k;
        // MMR needs a pool to choose from (bounded: it is scanned once per pick); plain
        // ranking needs exactly the page.
        let mut pool = if self.diversity > 0.0 { want + (want * 3).clamp(20, MMR_EXTRA_POOL) } else { want };
        if approx {
            pool = pool.max(want * 8 + 64);
        }
        // What the page (or MMR) needs visible; the rest of an exact re-scoring pool is only
        // there to fix the order.
        let need = if self.diversity > 0.0 { want + (want * 3).clamp(20, MMR_EXTRA_POOL) } else { want };
        let mut mask = match mask {
            Some(mask) => mask,
            None => self.mask(m, seen, self.codes(m)?.as_ref()),
        };
        let mut ranked: Vec<Scored> = vec![];
        let mut titles: Option<HashMap<i64, String>> = None;
        for round in 0..REFILL_ROUNDS {
            let size = pool << (2 * round);
            let cands = top(mask.as_deref(), size);
            let exhausted = cands.len() < size;
            // Checked against the posts table a prefix at a time, best first, until `need`
            // candidates are known visible: a call looks up about k posts, not the whole pool.
            ranked.clear();
            let mut gone = vec![];
            let mut checked = 0;
            let mut live = true;
            while ranked.len() < need && checked < cands.len() {
                let step = ((need - ranked.len()) + (need - ranked.len()) / 4 + 4).min(cands.len() - checked);
                let chunk = &cands[checked..checked + step];
                checked += step;
                let mut ids: Vec<i64> = chunk.iter().map(|c| c.id).collect();
                // Only the candidates that land on the page if every one before them is visible
                // (positions offset..offset + k; none when MMR re-ranks): the others' evidence
                // is worked out only if they make the page after all.
                let at = ranked.len();
                let (lo, hi) = if self.diversity > 0.0 { (0, 0) } else { (self.offset.saturating_sub(at).min(step), want.saturating_sub(at).min(step)) };
                ids.extend(also(&chunk[lo..hi.max(lo)]));
                match live::visible(client, m, &ids)? {
                    None => {
                        live = false;
                        ranked = cands.clone();
                        break;
                    }
                    Some(vis) => {
                        for c in chunk {
                            if vis.contains_key(&c.id) {
                                ranked.push(*c);
                            } else {
                                gone.push(c.index);
                            }
                        }
                        titles.get_or_insert_with(HashMap::new).extend(vis);
                    }
                }
            }
            if !live || ranked.len() >= need || exhausted {
                break;
            }
            let mk = mask.get_or_insert_with(|| vec![true; m.item_ids.len()]);
            gone.iter().for_each(|&i| mk[i as usize] = false);
            pgrx::check_for_interrupts!();
        }
        ranked.truncate(need);
        let ranked = if self.diversity > 0.0 {
            let f = m.factors;
            let cos = |a: u32, b: u32| {
                let (a, b) = (a as usize, b as usize);
                recsys_core::kernels::dot_dispatch(&m.item_factors[a * f..(a + 1) * f], &m.item_factors[b * f..(b + 1) * f])
                    / (m.item_norms[a] * m.item_norms[b]).max(1e-12)
            };
            // Bounded: MMR is quadratic, so only the first MMR_PICKS positions are re-ranked,
            // and interrupts are checked after every pick.
            recsys_core::topk::mmr_bounded(&ranked, want, self.diversity, cos, MMR_PICKS, &mut || {
                pgrx::check_for_interrupts!();
            })
        } else {
            ranked
        };
        Ok(Ranked { items: ranked.into_iter().skip(self.offset).take(self.k).collect(), titles })
    }
}
