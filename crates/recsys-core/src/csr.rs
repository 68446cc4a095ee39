//! Compressed sparse rows with u32 column indices and f32 values: 8 bytes a non-zero plus one
//! offset a row, and no per-row heap objects, so 20M interactions fit in ~160 MB a copy.
use crate::buf::Buf;
use rayon::prelude::*;

#[derive(Clone, Debug, PartialEq)]
pub struct Csr {
    pub rows: usize,
    pub cols: usize,
    /// Row r's entries are `indptr[r]..indptr[r + 1]`.
    pub indptr: Buf<usize>,
    pub indices: Buf<u32>,
    pub data: Buf<f32>,
}

impl Csr {
    /// Builds from coordinate triplets. Duplicate (row, col) pairs are summed and entries whose
    /// sum is not a positive finite number are dropped; columns are sorted within each row.
    pub fn from_triplets(rows: usize, cols: usize, r: &[u32], c: &[u32], v: &[f32]) -> Csr {
        assert!(r.len() == c.len() && c.len() == v.len());
        let mut counts = vec![0usize; rows + 1];
        for &ri in r {
            counts[ri as usize + 1] += 1;
        }
        for i in 0..rows {
            counts[i + 1] += counts[i];
        }
        let mut next = counts.clone();
        let mut idx = vec![0u32; r.len()];
        let mut val = vec![0f32; r.len()];
        for k in 0..r.len() {
            let row = r[k] as usize;
            debug_assert!((c[k] as usize) < cols);
            let p = next[row];
            idx[p] = c[k];
            val[p] = v[k];
            next[row] += 1;
        }
        drop(next);
        // Sort and merge each row in place (in parallel: rows are disjoint slices).
        let mut lens = vec![0usize; rows];
        {
            let mut rest_i: &mut [u32] = &mut idx;
            let mut rest_v: &mut [f32] = &mut val;
            let mut slices = Vec::with_capacity(rows);
            for row in 0..rows {
                let n = counts[row + 1] - counts[row];
                let (a, b) = rest_i.split_at_mut(n);
                let (x, y) = rest_v.split_at_mut(n);
                slices.push((a, x));
                rest_i = b;
                rest_v = y;
            }
            slices.into_par_iter().zip(lens.par_iter_mut()).for_each(|((ri, rv), len)| {
                *len = merge_row(ri, rv);
            });
        }
        // Compact.
        let mut indptr = vec![0usize; rows + 1];
        let mut w = 0usize;
        for row in 0..rows {
            let start = counts[row];
            for k in 0..lens[row] {
                idx[w] = idx[start + k];
                val[w] = val[start + k];
                w += 1;
            }
            indptr[row + 1] = w;
        }
        idx.truncate(w);
        val.truncate(w);
        idx.shrink_to_fit();
        val.shrink_to_fit();
        Csr { rows, cols, indptr: indptr.into(), indices: idx.into(), data: val.into() }
    }

    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// The matrix with row `order[k]` at position k (`order` a permutation of the rows).
    pub fn permute_rows(&self, order: &[usize]) -> Csr {
        let mut indptr = Vec::with_capacity(self.rows + 1);
        let (mut indices, mut data) = (Vec::with_capacity(self.indices.len()), Vec::with_capacity(self.data.len()));
        indptr.push(0);
        for &r in order {
            let (c, v) = self.row(r);
            indices.extend_from_slice(c);
            data.extend_from_slice(v);
            indptr.push(indices.len());
        }
        Csr { rows: order.len(), cols: self.cols, indptr: indptr.into(), indices: indices.into(), data: data.into() }
    }

    #[inline]
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[r], self.indptr[r + 1]);
        (&self.indices[a..b], &self.data[a..b])
    }

    pub fn transpose(&self) -> Csr {
        let mut counts = vec![0usize; self.cols + 1];
        for &c in &self.indices {
            counts[c as usize + 1] += 1;
        }
        for i in 0..self.cols {
            counts[i + 1] += counts[i];
        }
        let mut next = counts.clone();
        let mut idx = vec![0u32; self.nnz()];
        let mut val = vec![0f32; self.nnz()];
        for r in 0..self.rows {
            let (ci, cv) = self.row(r);
            for (&c, &v) in ci.iter().zip(cv) {
                let p = next[c as usize];
                idx[p] = r as u32;
                val[p] = v;
                next[c as usize] += 1;
            }
        }
        Csr { rows: self.cols, cols: self.rows, indptr: counts.into(), indices: idx.into(), data: val.into() }
    }

    /// Appends columns `self.cols..self.cols + new_cols` given as `(row, column, value)` entries
    /// (rows < `self.rows`): since the columns are new, each entry goes at the end of its row, so
    /// this is one copy of the matrix, no sort (the transposed side of appending documents).
    pub fn append_columns(&mut self, new_cols: usize, mut entries: Vec<(u32, u32, f32)>) {
        entries.sort_unstable_by_key(|e| (e.0, e.1));
        let mut indptr = Vec::with_capacity(self.rows + 1);
        let mut indices = Vec::with_capacity(self.indices.len() + entries.len());
        let mut data = Vec::with_capacity(self.data.len() + entries.len());
        indptr.push(0);
        let mut k = 0;
        for r in 0..self.rows {
            let (a, b) = (self.indptr[r], self.indptr[r + 1]);
            indices.extend_from_slice(&self.indices[a..b]);
            data.extend_from_slice(&self.data[a..b]);
            while k < entries.len() && entries[k].0 as usize == r {
                indices.push(entries[k].1);
                data.push(entries[k].2);
                k += 1;
            }
            indptr.push(indices.len());
        }
        self.indptr = indptr.into();
        self.indices = indices.into();
        self.data = data.into();
        self.cols += new_cols;
    }

    /// Bytes held, for memory accounting.
    pub fn bytes(&self) -> usize {
        self.indptr.len() * 8 + self.indices.len() * 4 + self.data.len() * 4
    }

    /// Bytes a matrix of this shape would hold.
    pub fn bytes_for(rows: usize, nnz: usize) -> usize {
        (rows + 1) * 8 + nnz * 8
    }
}

/// Sorts one row by column, sums duplicates, drops non-positive or non-finite sums.
/// Returns the new length.
fn merge_row(idx: &mut [u32], val: &mut [f32]) -> usize {
    if idx.is_empty() {
        return 0;
    }
    if !idx.windows(2).all(|w| w[0] < w[1]) {
        let mut pairs: Vec<(u32, f32)> = idx.iter().copied().zip(val.iter().copied()).collect();
        pairs.sort_by_key(|p| p.0);
        for (k, (i, v)) in pairs.into_iter().enumerate() {
            idx[k] = i;
            val[k] = v;
        }
    }
    let mut w = 0usize;
    let mut k = 0usize;
    while k < idx.len() {
        let col = idx[k];
        let mut sum = 0f32;
        while k < idx.len() && idx[k] == col {
            sum += val[k];
            k += 1;
        }
        if sum.is_finite() && sum > 0.0 {
            idx[w] = col;
            val[w] = sum;
            w += 1;
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appending_columns_equals_transposing_the_appended_rows() {
        // docs × terms, then two more docs; their postings appended = the full transpose.
        let docs = Csr::from_triplets(3, 4, &[0, 0, 1, 2, 2], &[0, 2, 1, 0, 3], &[1., 2., 3., 4., 5.]);
        let all = Csr::from_triplets(5, 4, &[0, 0, 1, 2, 2, 3, 3, 4], &[0, 2, 1, 0, 3, 3, 1, 0], &[1., 2., 3., 4., 5., 6., 7., 8.]);
        let mut postings = docs.transpose();
        postings.append_columns(2, vec![(3, 3, 6.), (1, 3, 7.), (0, 4, 8.)]);
        let want = all.transpose();
        assert_eq!((postings.rows, postings.cols), (want.rows, want.cols));
        assert_eq!((postings.indptr, postings.indices, postings.data), (want.indptr, want.indices, want.data));
    }

    #[test]
    fn triplets_sum_duplicates_and_sort() {
        let m = Csr::from_triplets(3, 4, &[2, 0, 0, 2, 0, 1], &[1, 3, 1, 1, 3, 0], &[1.0, 2.0, 0.5, 4.0, 1.0, -1.0]);
        assert_eq!(&m.indptr[..], &[0, 2, 2, 3]);
        assert_eq!(&m.indices[..], &[1, 3, 1]);
        assert_eq!(&m.data[..], &[0.5, 3.0, 5.0]);
        let t = m.transpose();
        assert_eq!((t.rows, t.cols), (4, 3));
        assert_eq!(t.row(1), (&[0u32, 2][..], &[0.5f32, 5.0][..]));
        assert_eq!(t.transpose(), m);
    }

    #[test]
    fn drops_nan_and_nonpositive() {
        let m = Csr::from_triplets(1, 3, &[0, 0, 0], &[0, 1, 2], &[f32::NAN, 0.0, f32::INFINITY]);
        assert_eq!(m.nnz(), 0);
    }
}
