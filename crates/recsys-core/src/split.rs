//! Seeded per-user hold-out splits, as in ../shared/DATASETS.md, the one definition every
//! offline evaluation uses ([`holdout`] on a matrix, `world::prepare` on an app's events):
//! each user's distinct items, in ascending order, are shuffled by a stream of their own and
//! either round(fraction · n) of them (at least one, never all) or every `folds`-th one go to
//! the test set. Users with fewer than two items hold out nothing.
use crate::csr::Csr;
use crate::rng::Rng;

/// How much of each user's history is held out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Holdout {
    /// round(fraction · n) items, at least one and never all.
    Fraction(f64),
    /// k-fold cross-validation: shuffled position p is held out in fold p mod `folds`.
    Fold { folds: usize, fold: usize },
}

/// Which of user `user`'s `n` distinct items (by position in ascending order) are held out.
/// The draw uses a stream derived from (seed, user), so it does not depend on processing order
/// (bench/graph_peers.py rebuilds it in numpy, bit for bit).
pub fn held_out(n: usize, user: usize, seed: u64, how: Holdout) -> Vec<bool> {
    let mut test = vec![false; n];
    if n < 2 {
        return test;
    }
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(seed ^ (user as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).shuffle(&mut order);
    match how {
        Holdout::Fraction(f) => {
            let n_test = ((n as f64 * f).round() as usize).clamp(1, n - 1);
            order[..n_test].iter().for_each(|&p| test[p] = true);
        }
        Holdout::Fold { folds, fold } => order.iter().enumerate().filter(|(p, _)| p % folds.max(1) == fold).for_each(|(_, &p)| test[p] = true),
    }
    test
}

/// Returns (train, test) with the shape of `m`, each row split by [`held_out`].
pub fn holdout(m: &Csr, fraction: f64, seed: u64) -> (Csr, Csr) {
    let (mut tr, mut tc, mut tv) = (vec![], vec![], vec![]);
    let (mut er, mut ec, mut ev) = (vec![], vec![], vec![]);
    for u in 0..m.rows {
        let (idx, val) = m.row(u);
        for (k, test) in held_out(idx.len(), u, seed, Holdout::Fraction(fraction)).into_iter().enumerate() {
            let (r, c, v) = if test { (&mut er, &mut ec, &mut ev) } else { (&mut tr, &mut tc, &mut tv) };
            r.push(u as u32);
            c.push(idx[k]);
            v.push(val[k]);
        }
    }
    (Csr::from_triplets(m.rows, m.cols, &tr, &tc, &tv), Csr::from_triplets(m.rows, m.cols, &er, &ec, &ev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_seeded_disjoint_and_sized() {
        let mut r = vec![];
        let mut c = vec![];
        for u in 0..50u32 {
            for i in 0..(u % 12) {
                r.push(u);
                c.push(i * 3 % 40);
            }
        }
        let v = vec![1.0; r.len()];
        let m = Csr::from_triplets(50, 40, &r, &c, &v);
        let (tr, te) = holdout(&m, 0.2, 9);
        assert_eq!(tr.nnz() + te.nnz(), m.nnz());
        for u in 0..50 {
            let n = m.row(u).0.len();
            let t = te.row(u).0.len();
            if n >= 2 {
                assert!(t >= 1 && t < n);
            } else {
                assert_eq!(t, 0);
            }
            for i in te.row(u).0 {
                assert!(!tr.row(u).0.contains(i));
            }
        }
        assert_eq!(holdout(&m, 0.2, 9), (tr.clone(), te.clone()));
        assert_ne!(holdout(&m, 0.2, 10).1, te);
    }

    #[test]
    fn folds_partition_each_user() {
        for n in 0..12 {
            let folds: Vec<Vec<bool>> = (0..3).map(|fold| held_out(n, 7, 42, Holdout::Fold { folds: 3, fold })).collect();
            for p in 0..n {
                let times = folds.iter().filter(|f| f[p]).count();
                assert_eq!(times, usize::from(n >= 2), "n {n} position {p}");
            }
        }
    }
}
