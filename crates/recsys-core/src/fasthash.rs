//! A hash map for the per-call maps keyed by small integers (item, term and post indexes).
//!
//! std's default SipHash resists keys chosen to collide, which costs ~20 ns a lookup; a feed call
//! makes thousands of lookups on keys that are indexes of the model's own rows. This is the
//! multiply-rotate hash rustc uses for its own integer-keyed tables (FxHash).
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

#[derive(Default, Clone, Copy)]
pub struct IndexHasher(u64);

impl IndexHasher {
    #[inline]
    fn add(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(K);
    }
}

impl Hasher for IndexHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|&b| self.add(b as u64));
    }
    #[inline]
    fn write_u32(&mut self, x: u32) {
        self.add(x as u64);
    }
    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.add(x);
    }
    #[inline]
    fn write_i64(&mut self, x: i64) {
        self.add(x as u64);
    }
    #[inline]
    fn write_usize(&mut self, x: usize) {
        self.add(x as u64);
    }
}

pub type IndexMap<K, V> = HashMap<K, V, BuildHasherDefault<IndexHasher>>;
pub type IndexSet<K> = HashSet<K, BuildHasherDefault<IndexHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_map() {
        let mut m: IndexMap<u32, f32> = IndexMap::default();
        for i in 0..10_000u32 {
            *m.entry(i % 1000).or_insert(0.0) += 1.0;
        }
        assert_eq!(m.len(), 1000);
        assert!(m.values().all(|&v| v == 10.0));
        let s: IndexSet<i64> = (0..100i64).map(|x| x * 1_000_003).collect();
        assert!(s.contains(&(7 * 1_000_003)) && !s.contains(&5));
    }
}
