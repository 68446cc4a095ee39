//! Top-k selection with a total, deterministic order: higher score first, then lower id.
//! NaN scores are never returned.
use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    pub score: f32,
    /// The public id (post id), used for the tie-break.
    pub id: i64,
    /// Dense index inside the model.
    pub index: u32,
}

/// Heap order: the entry that ranks *last* is the greatest, so the heap top is the one to evict.
#[derive(PartialEq)]
struct Worst(Scored);
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Worst {
    fn cmp(&self, o: &Self) -> Ordering {
        rank_order(&self.0, &o.0)
    }
}

/// `Less` when `a` ranks before `b`.
pub fn rank_order(a: &Scored, b: &Scored) -> Ordering {
    b.score.total_cmp(&a.score).then(a.id.cmp(&b.id))
}

/// Keeps the best `k` of a stream.
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Worst>,
}

impl TopK {
    pub fn new(k: usize) -> TopK {
        TopK { k, heap: BinaryHeap::with_capacity(k.min(1 << 16) + 1) }
    }

    /// The score an entry must beat to enter, once full.
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::NEG_INFINITY
        } else {
            self.heap.peek().map(|w| w.0.score).unwrap_or(f32::NEG_INFINITY)
        }
    }

    #[inline]
    pub fn push(&mut self, s: Scored) {
        if self.k == 0 || s.score.is_nan() {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(Worst(s));
        } else if let Some(top) = self.heap.peek() {
            if rank_order(&s, &top.0) == Ordering::Less {
                self.heap.pop();
                self.heap.push(Worst(s));
            }
        }
    }

    /// Best first.
    pub fn into_sorted(self) -> Vec<Scored> {
        let mut v: Vec<Scored> = self.heap.into_iter().map(|w| w.0).collect();
        v.sort_by(rank_order);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(score: f32, id: i64) -> Scored {
        Scored { score, id, index: id as u32 }
    }

    #[test]
    fn keeps_best_in_order_with_id_tie_break() {
        let mut t = TopK::new(3);
        for x in [s(0.5, 9), s(0.9, 4), s(0.5, 2), s(f32::NAN, 1), s(0.5, 3), s(0.1, 7)] {
            t.push(x);
        }
        let ids: Vec<i64> = t.into_sorted().iter().map(|x| x.id).collect();
        assert_eq!(ids, vec![4, 2, 3]);
    }

    #[test]
    fn order_does_not_depend_on_input_order() {
        let items: Vec<Scored> = (0..200).map(|i| s(((i * 37) % 11) as f32, i)).collect();
        let mut a = TopK::new(15);
        let mut b = TopK::new(15);
        items.iter().for_each(|x| a.push(*x));
        items.iter().rev().for_each(|x| b.push(*x));
        assert_eq!(a.into_sorted(), b.into_sorted());
    }

    #[test]
    fn k_larger_than_input_and_zero() {
        let mut t = TopK::new(10);
        t.push(s(1.0, 1));
        t.push(s(2.0, 2));
        assert_eq!(t.into_sorted().len(), 2);
        let mut z = TopK::new(0);
        z.push(s(1.0, 1));
        assert!(z.into_sorted().is_empty());
    }
}

/// Maximal marginal relevance re-rank (Carbonell & Goldstein 1998): picks `k` of `cands`
/// (best first) greedily by (1 − d)·relevance − d·(max similarity to those already picked),
/// relevance being the score scaled to [0, 1] over the candidates. d = 0 keeps the order.
pub fn mmr<S: Fn(u32, u32) -> f32>(cands: &[Scored], k: usize, d: f32, sim: S) -> Vec<Scored> {
    mmr_bounded(cands, k, d, sim, usize::MAX, &mut || {})
}

/// [`mmr`] with bounded work: at most `picks` positions are re-ranked (the rest follow in score
/// order, which is what a reader far down a page sees anyway), and `tick` runs after every
/// pick so a caller can honour cancel. Cost O(picks × candidates) similarity calls.
pub fn mmr_bounded<S: Fn(u32, u32) -> f32>(cands: &[Scored], k: usize, d: f32, sim: S, picks: usize, tick: &mut dyn FnMut()) -> Vec<Scored> {
    if d <= 0.0 || cands.len() <= 1 || picks == 0 {
        return cands.iter().take(k).copied().collect();
    }
    let (lo, hi) = cands.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), c| (a.min(c.score), b.max(c.score)));
    let span = (hi - lo).max(1e-12);
    let mut left: Vec<Scored> = cands.to_vec();
    let mut max_sim = vec![f32::NEG_INFINITY; left.len()];
    let mut out: Vec<Scored> = Vec::with_capacity(k);
    while out.len() < k.min(picks) && !left.is_empty() {
        let mut best = 0usize;
        let mut best_v = f32::NEG_INFINITY;
        for (j, c) in left.iter().enumerate() {
            let rel = (c.score - lo) / span;
            let red = if out.is_empty() { 0.0 } else { max_sim[j] };
            let v = (1.0 - d) * rel - d * red;
            // Ties keep the original order (candidates arrive best first).
            if v > best_v {
                best_v = v;
                best = j;
            }
        }
        let picked = left.remove(best);
        max_sim.remove(best);
        for (j, c) in left.iter().enumerate() {
            max_sim[j] = max_sim[j].max(sim(picked.index, c.index));
        }
        out.push(picked);
        tick();
    }
    // Beyond the re-ranked prefix: the remaining candidates in their original (score) order.
    let rest = k.saturating_sub(out.len());
    out.extend(left.into_iter().take(rest));
    out
}

#[cfg(test)]
mod mmr_tests {
    use super::*;

    #[test]
    fn diversity_trades_relevance_for_novelty() {
        // Items 0,1,2 are near-duplicates (same group); 3 is different and a little less relevant.
        let c: Vec<Scored> = [(1.0, 0), (0.95, 1), (0.9, 2), (0.8, 3)].iter().map(|&(s, i)| Scored { score: s, id: i as i64, index: i }).collect();
        let sim = |a: u32, b: u32| if (a < 3) == (b < 3) { 1.0 } else { 0.0 };
        let ids = |v: Vec<Scored>| v.iter().map(|s| s.id).collect::<Vec<_>>();
        assert_eq!(ids(mmr(&c, 3, 0.0, sim)), vec![0, 1, 2]);
        assert_eq!(ids(mmr(&c, 3, 0.5, sim)), vec![0, 3, 1]);
        assert_eq!(ids(mmr(&c, 2, 1.0, sim)), vec![0, 3]);
        // A bounded re-rank diversifies the first pick(s) only, then keeps score order.
        let mut ticks = 0;
        assert_eq!(ids(mmr_bounded(&c, 4, 0.5, sim, 2, &mut || ticks += 1)), vec![0, 3, 1, 2]);
        assert_eq!(ticks, 2);
    }
}
