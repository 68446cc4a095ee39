//! External ids (post, user, owner ids: any i64) to dense indices, without building a hash map
//! when a model is opened: the ids sorted once with their values beside them, looked up by
//! binary search, so the arrays can be borrowed from a shared image as they are. Ids added
//! later (posts created after training) go to a small hash map on the side.
use crate::buf::Buf;
use std::collections::HashMap;

/// id → u32 value (an item index, a count).
#[derive(Clone, Debug, Default)]
pub struct IdIndex {
    /// Sorted, distinct.
    ids: Buf<i64>,
    values: Buf<u32>,
    extra: HashMap<i64, u32>,
    /// The sorted ids are first, first + 1, …: id − first is the position, without reading
    /// `ids` (a cache miss at every lookup in a catalogue of 100K posts).
    contiguous: bool,
    /// values[k] = k for every position (an index built from ids already in order, as
    /// training writes them): the position is the value, without reading `values`.
    identity: bool,
}

impl IdIndex {
    /// From (id, value) pairs; a repeated id keeps its first value.
    pub fn build(pairs: impl IntoIterator<Item = (i64, u32)>) -> IdIndex {
        let mut v: Vec<(i64, u32)> = pairs.into_iter().collect();
        // Stable: the first of equal ids stays first, and dedup keeps it.
        v.sort_by_key(|p| p.0);
        v.dedup_by_key(|p| p.0);
        let values: Buf<u32> = v.iter().map(|p| p.1).collect();
        let identity = is_identity(&values);
        IdIndex::with_shape(v.iter().map(|p| p.0).collect(), values, identity)
    }

    /// Sorted distinct `ids` with their `values` (`identity`: values[k] = k, as the caller
    /// knows); contiguity is read off the ends.
    fn with_shape(ids: Buf<i64>, values: Buf<u32>, identity: bool) -> IdIndex {
        let contiguous = match (ids.first(), ids.last()) {
            (Some(&a), Some(&b)) => b.checked_sub(a).and_then(|d| usize::try_from(d).ok()) == Some(ids.len() - 1),
            _ => false,
        };
        IdIndex { ids, values, extra: HashMap::new(), contiguous, identity }
    }

    /// The positions 0..n of `ids` (the usual id → index map).
    pub fn positions(ids: &[i64]) -> IdIndex {
        IdIndex::build(ids.iter().enumerate().map(|(i, &id)| (id, i as u32)))
    }

    /// From stored parts, checked: ids strictly increasing, lengths equal. None otherwise.
    pub fn from_parts(ids: Buf<i64>, values: Buf<u32>) -> Option<IdIndex> {
        (ids.len() == values.len() && ids.windows(2).all(|w| w[0] < w[1])).then(|| {
            let identity = is_identity(&values);
            IdIndex::with_shape(ids, values, identity)
        })
    }

    /// From parts written by [`IdIndex::parts`] (a model image), with the writer's
    /// [`IdIndex::is_identity`]: lengths checked, order and shape trusted (damaged parts make
    /// lookups miss or answer another position below the length, never read out of bounds),
    /// so opening touches none of the arrays but their ends.
    pub fn from_written_parts(ids: Buf<i64>, values: Buf<u32>, identity: bool) -> Option<IdIndex> {
        (ids.len() == values.len()).then(|| IdIndex::with_shape(ids, values, identity))
    }

    pub fn parts(&self) -> (&[i64], &[u32]) {
        (&self.ids, &self.values)
    }

    /// Whether every value is its position (what [`IdIndex::positions`] of ids in increasing
    /// order gives): stored with the parts so that a reader need not scan them.
    pub fn is_identity(&self) -> bool {
        self.identity
    }

    pub fn get(&self, id: i64) -> Option<u32> {
        // Serial ids (most apps' posts and users) sit at position id − first: one probe instead
        // of a binary search over the whole array (which misses the cache on every step), and
        // no read at all when the ids are contiguous and the values their positions.
        if let Some(&first) = self.ids.first() {
            if let Some(k) = id.checked_sub(first).and_then(|k| usize::try_from(k).ok()).filter(|&k| k < self.ids.len()) {
                if self.contiguous || self.ids[k] == id {
                    return Some(if self.identity { k as u32 } else { self.values[k] });
                }
            }
        }
        match self.ids.binary_search(&id) {
            Ok(k) => Some(self.values[k]),
            Err(_) => self.extra.get(&id).copied(),
        }
    }

    pub fn contains(&self, id: i64) -> bool {
        self.get(id).is_some()
    }

    /// Adds or replaces an id (kept on the side: the sorted arrays are never rewritten).
    pub fn insert(&mut self, id: i64, value: u32) {
        self.extra.insert(id, value);
    }

    pub fn len(&self) -> usize {
        self.ids.len() + self.extra.len()
    }

    /// The largest id (None when empty): the sorted array's last, or an added one.
    pub fn max_id(&self) -> Option<i64> {
        self.ids.last().copied().into_iter().chain(self.extra.keys().copied()).max()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held privately (what a borrowed index costs a backend).
    pub fn private_bytes(&self) -> usize {
        let own = |b: usize, borrowed: bool| if borrowed { 0 } else { b };
        own(self.ids.bytes(), self.ids.is_borrowed()) + own(self.values.bytes(), self.values.is_borrowed()) + self.extra.capacity() * 16
    }
}

fn is_identity(values: &[u32]) -> bool {
    values.iter().enumerate().all(|(k, &v)| v as usize == k)
}

/// id → list of u32 (e.g. an owner's posts), as CSR over the sorted ids.
#[derive(Clone, Debug, Default)]
pub struct IdLists {
    ids: Buf<i64>,
    ptr: Buf<u32>,
    items: Buf<u32>,
    extra: HashMap<i64, Vec<u32>>,
}

impl IdLists {
    pub fn build(pairs: impl IntoIterator<Item = (i64, u32)>) -> IdLists {
        let mut v: Vec<(i64, u32)> = pairs.into_iter().collect();
        v.sort();
        let (mut ids, mut ptr, mut items) = (vec![], vec![0u32], vec![]);
        for (id, x) in v {
            if ids.last() != Some(&id) {
                if !ids.is_empty() {
                    ptr.push(items.len() as u32);
                }
                ids.push(id);
            }
            items.push(x);
        }
        if !ids.is_empty() {
            ptr.push(items.len() as u32);
        }
        IdLists { ids: ids.into(), ptr: ptr.into(), items: items.into(), extra: HashMap::new() }
    }

    /// From stored parts, checked (ids strictly increasing, ptr monotone from 0 to the end).
    pub fn from_parts(ids: Buf<i64>, ptr: Buf<u32>, items: Buf<u32>) -> Option<IdLists> {
        let ok = ptr.len() == ids.len() + 1
            && ptr[0] == 0
            && ptr.windows(2).all(|w| w[0] <= w[1])
            && ptr[ids.len()] as usize == items.len()
            && ids.windows(2).all(|w| w[0] < w[1]);
        ok.then(|| IdLists { ids, ptr, items, extra: HashMap::new() })
    }

    /// From parts written by [`IdLists::parts`]: sizes checked in O(1), order trusted (a
    /// damaged pointer array makes a lookup fail with a panic, never read out of bounds).
    pub fn from_written_parts(ids: Buf<i64>, ptr: Buf<u32>, items: Buf<u32>) -> Option<IdLists> {
        let ok = ptr.len() == ids.len() + 1 && ptr[0] == 0 && ptr[ids.len()] as usize == items.len();
        ok.then(|| IdLists { ids, ptr, items, extra: HashMap::new() })
    }

    pub fn parts(&self) -> (&[i64], &[u32], &[u32]) {
        (&self.ids, &self.ptr, &self.items)
    }

    /// The list of `id` (stored ones first, then added ones).
    pub fn get(&self, id: i64) -> Vec<u32> {
        let mut out = match self.ids.binary_search(&id) {
            Ok(k) => self.items.get(self.ptr[k] as usize..self.ptr[k + 1] as usize).map(|s| s.to_vec()).unwrap_or_default(),
            Err(_) => vec![],
        };
        if let Some(more) = self.extra.get(&id) {
            out.extend_from_slice(more);
        }
        out
    }

    pub fn push(&mut self, id: i64, x: u32) {
        self.extra.entry(id).or_default().push(x);
    }
}

/// A map between two index spaces (content row ↔ model item). Training stores the documents
/// in item order, so the map is almost always the identity over a prefix (row i is item i, the
/// rest have none): that form is kept as two numbers instead of a table of one entry per post
/// in every backend. Any other map is a table.
#[derive(Clone, Debug, PartialEq)]
pub enum RowMap {
    /// i ↦ i for i < `mapped`, nothing for `mapped` ≤ i < `len`.
    Prefix {
        mapped: usize,
        len: usize,
    },
    Table(Vec<Option<u32>>),
}

impl Default for RowMap {
    fn default() -> RowMap {
        RowMap::Prefix { mapped: 0, len: 0 }
    }
}

impl RowMap {
    /// The map `table` (entry i: where i goes), as a prefix when it is one.
    pub fn new(table: Vec<Option<u32>>) -> RowMap {
        Self::collect(table)
    }

    /// [`RowMap::new`] from the entries in order, without a table when they form a prefix (a
    /// model opened from its image reads them from the mapped section).
    pub fn collect(entries: impl IntoIterator<Item = Option<u32>>) -> RowMap {
        let mut entries = entries.into_iter();
        let (mut mapped, mut len) = (0usize, 0usize);
        while let Some(x) = entries.next() {
            let fits = if len == mapped { x.is_none() || x == Some(len as u32) } else { x.is_none() };
            if !fits {
                let mut t: Vec<Option<u32>> = RowMap::Prefix { mapped, len }.iter().collect();
                t.push(x);
                t.extend(entries);
                return RowMap::Table(t);
            }
            if x.is_some() {
                mapped += 1;
            }
            len += 1;
        }
        RowMap::Prefix { mapped, len }
    }

    /// The inverse of `self` over `n` targets (where each target comes from; a target reached
    /// twice keeps the last source, targets ≥ `n` are dropped).
    pub fn inverse(&self, n: usize) -> RowMap {
        match self {
            RowMap::Prefix { mapped, .. } => RowMap::Prefix { mapped: (*mapped).min(n), len: n },
            RowMap::Table(t) => {
                let mut inv = vec![None; n];
                for (d, i) in t.iter().enumerate() {
                    if let Some(slot) = i.and_then(|i| inv.get_mut(i as usize)) {
                        *slot = Some(d as u32);
                    }
                }
                RowMap::new(inv)
            }
        }
    }

    pub fn get(&self, i: usize) -> Option<u32> {
        match self {
            RowMap::Prefix { mapped, .. } => (i < *mapped).then_some(i as u32),
            RowMap::Table(t) => t.get(i).copied().flatten(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            RowMap::Prefix { len, .. } => *len,
            RowMap::Table(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry i ↦ Some(i), known from the form: a prefix with every entry mapped
    /// ([`RowMap::new`] and [`RowMap::collect`] make any identity one; a table built by hand
    /// is never taken for one).
    pub fn is_identity(&self) -> bool {
        matches!(self, RowMap::Prefix { mapped, len } if mapped == len)
    }

    pub fn iter(&self) -> impl Iterator<Item = Option<u32>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Appends an entry.
    pub fn push(&mut self, x: Option<u32>) {
        match self {
            RowMap::Prefix { len, .. } if x.is_none() => *len += 1,
            RowMap::Prefix { mapped, len } if *mapped == *len && x == Some(*len as u32) => {
                *mapped += 1;
                *len += 1;
            }
            _ => self.table_mut().push(x),
        }
    }

    /// Sets entry `i` (< len).
    pub fn set(&mut self, i: usize, x: Option<u32>) {
        if self.get(i) == x {
            return;
        }
        match self {
            // The first unmapped entry becoming itself extends the prefix.
            RowMap::Prefix { mapped, len } if i == *mapped && i < *len && x == Some(i as u32) => *mapped += 1,
            _ => self.table_mut()[i] = x,
        }
    }

    /// The map as a table (made one first if it was a prefix).
    fn table_mut(&mut self) -> &mut Vec<Option<u32>> {
        if let RowMap::Prefix { .. } = self {
            *self = RowMap::Table(self.iter().collect());
        }
        match self {
            RowMap::Table(t) => t,
            RowMap::Prefix { .. } => unreachable!("made a table above"),
        }
    }
}

/// Dictionary encoding of text values: code 0 is "no value" (NULL), the others in first-seen
/// order; the list of values by code goes with the model.
#[derive(Clone, Debug)]
pub struct Dict {
    values: Vec<String>,
    codes: HashMap<String, u32>,
}

impl Default for Dict {
    fn default() -> Self {
        Dict { values: vec![String::new()], codes: HashMap::new() }
    }
}

impl Dict {
    /// The code of `v` (a new one the first time); 0 for None.
    pub fn code(&mut self, v: Option<&str>) -> u32 {
        let Some(v) = v else { return 0 };
        if let Some(&c) = self.codes.get(v) {
            return c;
        }
        self.values.push(v.to_string());
        let c = self.values.len() as u32 - 1;
        self.codes.insert(v.to_string(), c);
        c
    }

    /// Values by code (index 0: the empty string for "no value").
    pub fn values(&self) -> &[String] {
        &self.values
    }

    pub fn into_values(self) -> Vec<String> {
        self.values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_maps_keep_a_prefix_as_two_numbers_and_agree_with_the_table() {
        let prefix = vec![Some(0), Some(1), Some(2), None, None];
        let m = RowMap::new(prefix.clone());
        assert_eq!(m, RowMap::Prefix { mapped: 3, len: 5 });
        assert_eq!(m.iter().collect::<Vec<_>>(), prefix);
        assert_eq!((m.is_identity(), m.get(2), m.get(3), m.get(9)), (false, Some(2), None, None));
        assert_eq!(m.inverse(3), RowMap::Prefix { mapped: 3, len: 3 });
        assert!(m.inverse(3).is_identity());
        // Not a prefix: a table, and its inverse.
        let t = RowMap::new(vec![Some(1), Some(0), None, Some(3)]);
        assert!(matches!(t, RowMap::Table(_)));
        assert_eq!(t.inverse(5).iter().collect::<Vec<_>>(), vec![Some(1), Some(0), None, Some(3), None]);
        assert_eq!(RowMap::new(vec![None, Some(1)]).iter().collect::<Vec<_>>(), vec![None, Some(1)]);
        assert_eq!(RowMap::new(vec![Some(0), Some(2)]).iter().collect::<Vec<_>>(), vec![Some(0), Some(2)]);
        assert_eq!(RowMap::new(vec![]), RowMap::Prefix { mapped: 0, len: 0 });
        // Posts added after training: in order they stay a prefix, out of order a table.
        let mut m = RowMap::new(vec![Some(0), Some(1)]);
        m.push(None);
        m.set(2, Some(2));
        m.push(Some(3));
        assert_eq!(m, RowMap::Prefix { mapped: 4, len: 4 });
        m.push(None);
        m.push(None);
        m.set(5, Some(4));
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![Some(0), Some(1), Some(2), Some(3), None, Some(4)]);
        assert!(matches!(m, RowMap::Table(_)));
    }

    #[test]
    fn index_lookups_agree_with_a_map_whatever_the_shape_of_the_ids() {
        // Contiguous in order (values are positions), contiguous shuffled, gaps, negatives,
        // a single id, ids at the ends of i64.
        let shapes: Vec<Vec<i64>> = vec![
            (1..=50).collect(),
            (1..=50).rev().collect(),
            vec![3, 4, 5, 9, 10, 11],
            vec![-7, -6, -5, -4],
            vec![42],
            vec![i64::MIN, 0, i64::MAX],
            vec![i64::MAX - 2, i64::MAX - 1, i64::MAX],
        ];
        for ids in shapes {
            let reference: HashMap<i64, u32> = ids.iter().enumerate().map(|(k, &id)| (id, k as u32)).collect();
            let ix = IdIndex::positions(&ids);
            let (i, v) = ix.parts();
            let written = IdIndex::from_written_parts(i.to_vec().into(), v.to_vec().into(), ix.is_identity()).unwrap();
            let checked = IdIndex::from_parts(i.to_vec().into(), v.to_vec().into()).unwrap();
            assert_eq!(ix.is_identity(), ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
            assert_eq!(checked.is_identity(), ix.is_identity());
            let lo = ids.iter().min().unwrap().saturating_sub(3);
            let hi = ids.iter().max().unwrap().saturating_add(3);
            let probes = (0..8).flat_map(|d| [lo.saturating_add(d), hi.saturating_sub(d)]).chain(ids.iter().copied()).chain([0, 1, -1, i64::MIN, i64::MAX]);
            for id in probes {
                let want = reference.get(&id).copied();
                assert_eq!((ix.get(id), written.get(id), checked.get(id)), (want, want, want), "{ids:?} at {id}");
            }
            // Ids added later live beside the arrays, also just past a contiguous range.
            let mut grown = written.clone();
            let next = ids.iter().max().unwrap().checked_add(1);
            if let Some(n) = next {
                grown.insert(n, 99);
                assert_eq!(grown.get(n), Some(99));
            }
            assert_eq!(grown.get(ids[0]), reference.get(&ids[0]).copied());
        }
    }

    #[test]
    fn index_and_lists_round_trip_through_parts() {
        let ix = IdIndex::positions(&[50, -3, 7, 50]);
        assert_eq!((ix.get(50), ix.get(-3), ix.get(7), ix.get(8)), (Some(0), Some(1), Some(2), None));
        let (i, v) = ix.parts();
        let mut back = IdIndex::from_parts(i.to_vec().into(), v.to_vec().into()).unwrap();
        back.insert(8, 9);
        assert_eq!((back.get(7), back.get(8), back.len()), (Some(2), Some(9), 4));
        assert!(IdIndex::from_parts(vec![2, 1].into(), vec![0, 1].into()).is_none());
        let l = IdLists::build([(5, 1), (3, 0), (5, 2)]);
        assert_eq!((l.get(5), l.get(3), l.get(4)), (vec![1, 2], vec![0], vec![]));
        let (i, p, x) = l.parts();
        let mut back = IdLists::from_parts(i.to_vec().into(), p.to_vec().into(), x.to_vec().into()).unwrap();
        back.push(5, 7);
        back.push(6, 8);
        assert_eq!((back.get(5), back.get(6)), (vec![1, 2, 7], vec![8]));
        assert!(IdLists::from_parts(vec![1].into(), vec![0, 3].into(), vec![1].into()).is_none());
        assert!(IdLists::build([]).get(1).is_empty());
        let mut d = Dict::default();
        assert_eq!((d.code(Some("b")), d.code(None), d.code(Some("a")), d.code(Some("b"))), (1, 0, 2, 1));
        assert_eq!(d.values(), ["", "b", "a"]);
    }
}
