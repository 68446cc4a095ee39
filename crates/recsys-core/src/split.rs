//! Seeded per-user hold-out splits, as in ../shared/DATASETS.md: each user with two or more
//! interactions puts round(fraction · n) of them (at least one, never all) into the test set.
use crate::csr::Csr;
use crate::rng::Rng;

/// Returns (train, test) with the shape of `m`. Each user's draw uses its own stream derived
/// from (seed, user index), so the split does not depend on processing order.
pub fn holdout(m: &Csr, fraction: f64, seed: u64) -> (Csr, Csr) {
    let (mut tr, mut tc, mut tv) = (vec![], vec![], vec![]);
    let (mut er, mut ec, mut ev) = (vec![], vec![], vec![]);
    for u in 0..m.rows {
        let (idx, val) = m.row(u);
        let n = idx.len();
        let mut order: Vec<usize> = (0..n).collect();
        let n_test = if n >= 2 { ((n as f64 * fraction).round() as usize).clamp(1, n - 1) } else { 0 };
        let mut rng = Rng::new(seed ^ (u as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        rng.shuffle(&mut order);
        for (pos, &k) in order.iter().enumerate() {
            let (r, c, v) = if pos < n_test { (&mut er, &mut ec, &mut ev) } else { (&mut tr, &mut tc, &mut tv) };
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
}
