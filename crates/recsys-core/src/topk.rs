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

/// The best `size` entries of a dense score array among the positions `allowed` lets through
/// (what a [`TopK`] fed every allowed position in turn keeps, NaN never), id `id(i)` at
/// position i. A sample of every 64th score gives a floor that about 2 × `size` scores reach;
/// when at least `size` allowed positions reach it, only those are ranked (any position below
/// it ranks after all of them), else every position is. The same answer either way, at about
/// one comparison per position instead of a threshold check and a branch.
pub fn top_dense(scores: &[f32], size: usize, allowed: &dyn Fn(usize) -> bool, id: &dyn Fn(usize) -> i64) -> Vec<Scored> {
    const STRIDE: usize = 64;
    let push_all = |floor: f32| {
        let (mut top, mut reached) = (TopK::new(size), 0usize);
        for (c, chunk) in scores.chunks(STRIDE).enumerate() {
            // Compared all at once: most chunks hold no score at the floor.
            if !chunk.iter().fold(false, |any, &s| any | (s >= floor)) {
                continue;
            }
            for (j, &s) in chunk.iter().enumerate() {
                let i = c * STRIDE + j;
                if s >= floor && allowed(i) {
                    reached += 1;
                    top.push(Scored { score: s, id: id(i), index: i as u32 });
                }
            }
        }
        (top, reached)
    };
    if size > 0 && scores.len() >= STRIDE * 16 {
        let mut sample: Vec<f32> = scores.iter().step_by(STRIDE).copied().filter(|s| !s.is_nan()).collect();
        let r = 2 * size / STRIDE + 1;
        if r <= sample.len() {
            let (_, &mut floor, _) = sample.select_nth_unstable_by(r - 1, |a, b| b.total_cmp(a));
            let (top, reached) = push_all(floor);
            if reached >= size {
                return top.into_sorted();
            }
        }
    }
    // Every non-NaN score is at least −∞.
    push_all(f32::NEG_INFINITY).0.into_sorted()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_dense_keeps_what_a_full_pass_keeps() {
        let mut rng = crate::rng::Rng::new(41);
        for (n, size, ties, masked) in [
            (100_000usize, 224usize, false, false),
            (100_000, 224, true, true),
            (5_000, 20, true, false),
            (3_000, 2_000, false, true),
            (70, 5, false, false),
            (10_000, 0, false, false),
            (20_000, 150, false, true),
        ] {
            let mut scores: Vec<f32> = (0..n).map(|_| if ties { (rng.below(50) as f32) * 0.25 } else { rng.normal() as f32 }).collect();
            // A NaN, infinities and signed zeros among them.
            for (i, v) in [(3, f32::NAN), (n / 2, f32::INFINITY), (n / 3, f32::NEG_INFINITY), (n / 4, -0.0), (n / 5, 0.0)] {
                if i < n {
                    scores[i] = v;
                }
            }
            let allowed = |i: usize| !masked || i % 7 != 3;
            let id = |i: usize| (i as i64 * 7919) % 100_003;
            let mut want = TopK::new(size);
            scores.iter().enumerate().filter(|(i, _)| allowed(*i)).for_each(|(i, &s)| want.push(Scored { score: s, id: id(i), index: i as u32 }));
            let want = want.into_sorted();
            let got = top_dense(&scores, size, &allowed, &id);
            assert_eq!(got.len(), want.len(), "n {n} size {size}");
            assert!(got.iter().zip(&want).all(|(a, b)| a.index == b.index && a.score.to_bits() == b.score.to_bits()), "n {n} size {size}");
        }
        // Fewer allowed positions at the sampled floor than asked for: the full pass.
        let scores: Vec<f32> = (0..50_000).map(|i| i as f32).collect();
        let got = top_dense(&scores, 300, &|i| i < 1_000, &|i| i as i64);
        assert_eq!(got.iter().map(|s| s.index).collect::<Vec<_>>(), (700..1_000).rev().collect::<Vec<u32>>());
    }

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
