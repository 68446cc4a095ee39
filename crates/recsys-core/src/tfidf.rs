//! TF-IDF over post text (Salton & Buckley 1988), with sklearn's `TfidfVectorizer` defaults so
//! figures compare: raw term counts, smooth idf = ln((1 + n) / (1 + df)) + 1, rows L2-normalised.
//!
//! Tokens: Unicode-aware, lowercased words split on anything that is not alphanumeric, a small
//! English stop-word list removed, single characters dropped (digits kept). Tags and the
//! category are also kept whole as `#tag` tokens (lowercased, inner spaces kept), so
//! "street dance" gives `#street dance`, `street` and `dance`.
use crate::buf::Buf;
use crate::csr::Csr;
use crate::ids::RowMap;
use std::collections::HashMap;

pub const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have", "he", "her", "his", "i", "in", "is", "it", "its", "me", "my", "not",
    "of", "on", "or", "our", "she", "so", "that", "the", "their", "them", "then", "there", "these", "they", "this", "to", "was", "we", "were", "what", "when",
    "which", "who", "will", "with", "you", "your",
];

fn is_stop(w: &str) -> bool {
    STOP_WORDS.binary_search(&w).is_ok()
}

/// Appends the word tokens of `text` to `out`.
pub fn words(text: &str, out: &mut Vec<String>) {
    for raw in text.split(|c: char| !c.is_alphanumeric()) {
        if raw.is_empty() {
            continue;
        }
        let w = raw.to_lowercase();
        let single = w.chars().nth(1).is_none();
        if (single && !w.chars().all(|c| c.is_numeric())) || is_stop(&w) {
            continue;
        }
        out.push(w);
    }
}

/// Appends a tag's tokens: the whole tag as `#tag` plus its words.
pub fn tag(t: &str, out: &mut Vec<String>) {
    let whole: String = t.trim().trim_start_matches('#').split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    if whole.is_empty() {
        return;
    }
    out.push(format!("#{whole}"));
    words(&whole, out);
}

/// The text fields of one post.
#[derive(Clone, Debug, Default)]
pub struct Doc<'a> {
    pub title: &'a str,
    pub description: &'a str,
    pub tags: Vec<&'a str>,
    pub category: &'a str,
}

pub fn tokens(d: &Doc<'_>) -> Vec<String> {
    let mut out = Vec::new();
    words(d.title, &mut out);
    words(d.description, &mut out);
    for t in &d.tags {
        tag(t, &mut out);
    }
    tag(d.category, &mut out);
    out
}

/// The terms of a fitted model, by id, with lookup by text: built as a vector and a hash map at
/// fit time, or packed (one byte blob, offsets, and the ids sorted by term for binary search)
/// so that it can be borrowed from a shared image without building anything.
#[derive(Clone, Debug)]
pub enum Vocab {
    Owned { terms: Vec<String>, index: HashMap<String, u32> },
    Packed { blob: Buf<u8>, offsets: Buf<u32>, sorted: Buf<u32> },
}

impl Vocab {
    pub fn len(&self) -> usize {
        match self {
            Vocab::Owned { terms, .. } => terms.len(),
            Vocab::Packed { offsets, .. } => offsets.len().saturating_sub(1),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text of term `id` (empty when out of range).
    pub fn term(&self, id: u32) -> &str {
        let i = id as usize;
        match self {
            Vocab::Owned { terms, .. } => terms.get(i).map_or("", |t| t.as_str()),
            Vocab::Packed { blob, offsets, .. } => match (offsets.get(i), offsets.get(i + 1)) {
                // Checked to be UTF-8 on char boundaries by `packed`.
                (Some(&a), Some(&b)) => blob.get(a as usize..b as usize).and_then(|t| std::str::from_utf8(t).ok()).unwrap_or(""),
                _ => "",
            },
        }
    }

    pub fn get(&self, t: &str) -> Option<u32> {
        match self {
            Vocab::Owned { index, .. } => index.get(t).copied(),
            Vocab::Packed { sorted, .. } => sorted.binary_search_by(|&id| self.term(id).cmp(t)).ok().map(|k| sorted[k]),
        }
    }

    /// The packed form's parts: (blob, offsets, ids sorted by term).
    pub fn pack(&self) -> (Vec<u8>, Vec<u32>, Vec<u32>) {
        let mut blob = vec![];
        let mut offsets = vec![0u32];
        for i in 0..self.len() as u32 {
            blob.extend_from_slice(self.term(i).as_bytes());
            offsets.push(blob.len() as u32);
        }
        let mut sorted: Vec<u32> = (0..self.len() as u32).collect();
        sorted.sort_by(|&a, &b| self.term(a).cmp(self.term(b)));
        (blob, offsets, sorted)
    }

    /// A packed vocabulary from its parts, checked: offsets monotone within the blob, each term
    /// UTF-8, `sorted` a permutation in term order. None when anything is off.
    /// A packed vocabulary this build wrote itself: offsets checked, term text and order
    /// trusted (a term that is not UTF-8 reads as empty, a misordered table misses lookups).
    pub fn packed_written(blob: Buf<u8>, offsets: Buf<u32>, sorted: Buf<u32>) -> Option<Vocab> {
        let n = offsets.len().checked_sub(1)?;
        let ok = offsets[0] == 0 && offsets[n] as usize == blob.len() && offsets.windows(2).all(|w| w[0] <= w[1]) && sorted.len() == n;
        ok.then_some(Vocab::Packed { blob, offsets, sorted })
    }

    pub fn packed(blob: Buf<u8>, offsets: Buf<u32>, sorted: Buf<u32>) -> Option<Vocab> {
        let n = offsets.len().checked_sub(1)?;
        if offsets[0] != 0 || offsets[n] as usize != blob.len() || offsets.windows(2).any(|w| w[0] > w[1]) || sorted.len() != n {
            return None;
        }
        if offsets.windows(2).any(|w| std::str::from_utf8(&blob[w[0] as usize..w[1] as usize]).is_err()) {
            return None;
        }
        let v = Vocab::Packed { blob, offsets, sorted };
        let Vocab::Packed { sorted, .. } = &v else { return None };
        let in_range = sorted.iter().all(|&i| (i as usize) < n);
        let ordered = sorted.windows(2).all(|w| v.term(w[0]) < v.term(w[1]));
        (in_range && ordered).then_some(v.clone())
    }
}

/// A fitted TF-IDF model: vocabulary, idf, and one L2-normalised row per document.
#[derive(Clone, Debug)]
pub struct Tfidf {
    pub vocab: Vocab,
    pub idf: Buf<f32>,
    /// documents × terms, rows sorted by term, L2-normalised (all-zero for a doc with no terms).
    pub docs: Csr,
    /// terms × documents, for scoring by postings.
    pub postings: Csr,
}

impl Tfidf {
    pub fn fit(docs: &[Vec<String>]) -> Tfidf {
        let mut index: HashMap<String, u32> = HashMap::new();
        let mut vocab: Vec<String> = Vec::new();
        let (mut r, mut c, mut v) = (vec![], vec![], vec![]);
        for (d, toks) in docs.iter().enumerate() {
            for t in toks {
                let id = match index.get(t) {
                    Some(&i) => i,
                    None => {
                        let i = vocab.len() as u32;
                        index.insert(t.clone(), i);
                        vocab.push(t.clone());
                        i
                    }
                };
                r.push(d as u32);
                c.push(id);
                v.push(1.0f32);
            }
        }
        let mut m = Csr::from_triplets(docs.len(), vocab.len(), &r, &c, &v);
        let n = docs.len() as f64;
        let mut df = vec![0u32; vocab.len()];
        for &t in &m.indices {
            df[t as usize] += 1;
        }
        let idf: Vec<f32> = df.iter().map(|&d| (((1.0 + n) / (1.0 + d as f64)).ln() + 1.0) as f32).collect();
        for d in 0..m.rows {
            let (a, b) = (m.indptr[d], m.indptr[d + 1]);
            let mut norm = 0f64;
            for k in a..b {
                m.data[k] *= idf[m.indices[k] as usize];
                norm += (m.data[k] as f64).powi(2);
            }
            let norm = norm.sqrt();
            if norm > 0.0 {
                for k in a..b {
                    m.data[k] = (m.data[k] as f64 / norm) as f32;
                }
            }
        }
        let postings = m.transpose();
        Tfidf { vocab: Vocab::Owned { terms: vocab, index }, idf: idf.into(), docs: m, postings }
    }

    /// L2-normalised query vector over known terms (sorted by term); empty when no term is known.
    pub fn query(&self, toks: &[String]) -> Vec<(u32, f32)> {
        let mut counts: HashMap<u32, f32> = HashMap::new();
        for t in toks {
            if let Some(i) = self.vocab.get(t) {
                *counts.entry(i).or_insert(0.0) += 1.0;
            }
        }
        let mut q: Vec<(u32, f32)> = counts.into_iter().map(|(i, c)| (i, c * self.idf[i as usize])).collect();
        q.sort_by_key(|x| x.0);
        let norm = q.iter().map(|x| (x.1 as f64).powi(2)).sum::<f64>().sqrt();
        if norm > 0.0 {
            q.iter_mut().for_each(|x| x.1 = (x.1 as f64 / norm) as f32);
        }
        q
    }

    /// Cosine of a sparse query against every document, accumulated through the postings
    /// (cost proportional to the postings of the query's terms, not to the corpus).
    pub fn scores(&self, q: &[(u32, f32)], out: &mut [f32]) {
        out.iter_mut().for_each(|s| *s = 0.0);
        self.accumulate(q, out);
    }

    /// Adds the query terms' postings to `out` (so a long query can be scored a block of
    /// terms at a time, with a cancel check between blocks).
    pub fn accumulate(&self, q: &[(u32, f32)], out: &mut [f32]) {
        for &(t, w) in q {
            let (docs, vals) = self.postings.row(t as usize);
            for (&d, &v) in docs.iter().zip(vals) {
                out[d as usize] += w * v;
            }
        }
    }

    /// Document `d` as a sparse query.
    pub fn doc(&self, d: usize) -> Vec<(u32, f32)> {
        let (t, v) = self.docs.row(d);
        t.iter().copied().zip(v.iter().copied()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn tokenizer_is_unicode_aware_and_keeps_tags_whole() {
        let mut out = vec![];
        words("The Café-Crème of São Paulo, 2024! a I x 7", &mut out);
        assert_eq!(out, toks(&["café", "crème", "são", "paulo", "2024", "7"]));
        let mut t = vec![];
        tag("#Street  Dance", &mut t);
        assert_eq!(t, toks(&["#street dance", "street", "dance"]));
        let mut jp = vec![];
        words("東京 ダンス", &mut jp);
        assert_eq!(jp, toks(&["東京", "ダンス"]));
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]), "stop words must stay sorted");
        let d = Doc { title: "Cat dance", description: "", tags: vec!["cats"], category: "Pets" };
        assert_eq!(tokens(&d), toks(&["cat", "dance", "#cats", "cats", "#pets", "pets"]));
    }

    #[test]
    fn three_document_corpus_matches_hand_computed_weights() {
        // d0 = a a b, d1 = b c, d2 = c; n = 3.
        let docs = vec![toks(&["apple", "apple", "banana"]), toks(&["banana", "cherry"]), toks(&["cherry"])];
        let m = Tfidf::fit(&docs);
        let idf = |df: f64| ((4.0 / (1.0 + df)).ln() + 1.0) as f32;
        let (ia, ib) = (idf(1.0), idf(2.0));
        let n0 = ((2.0 * ia).powi(2) + ib.powi(2)).sqrt();
        let d0 = m.doc(0);
        let apple = m.vocab.get("apple").unwrap();
        let banana = m.vocab.get("banana").unwrap();
        let get = |t: u32| d0.iter().find(|x| x.0 == t).unwrap().1;
        assert!((get(apple) - 2.0 * ia / n0).abs() < 1e-6);
        assert!((get(banana) - ib / n0).abs() < 1e-6);
        // d2 has one term: weight 1.
        assert_eq!(m.doc(2), vec![(m.vocab.get("cherry").unwrap(), 1.0)]);
        // cosine(d1, d2) = w(cherry in d1) since d2 = e_cherry.
        let mut s = vec![0.0; 3];
        m.scores(&m.doc(2), &mut s);
        let d1 = m.doc(1);
        let cherry_w = d1.iter().find(|x| x.0 == m.vocab.get("cherry").unwrap()).unwrap().1;
        assert!((s[1] - cherry_w).abs() < 1e-6 && s[0] == 0.0 && (s[2] - 1.0).abs() < 1e-6);
        // A query with no known term is empty.
        assert!(m.query(&toks(&["durian"])).is_empty());
    }
}

/// Content neighbours averaged to place a post that has no interactions.
pub const PLACEMENT_NEIGHBOURS: usize = 10;

/// Factors for posts that have text but no interactions: the cosine-weighted mean of the
/// factors of their `m` most content-similar posts that do have factors. Posts sharing no term
/// with any trained post get nothing (they stay reachable by content only).
/// `to_item[d]` is the ALS row of document d, if any. Returns (document, factors) pairs.
pub fn place_by_content(t: &Tfidf, to_item: &[Option<u32>], item_factors: &[f32], f: usize, m: usize) -> Vec<(usize, Vec<f32>)> {
    use rayon::prelude::*;
    let cold: Vec<usize> = (0..t.docs.rows).filter(|&d| to_item[d].is_none()).collect();
    let item_of = |e: usize| to_item.get(e).copied().flatten();
    cold.par_iter().map_init(|| Placer::new(t.docs.rows), |p, &d| p.place(t, &item_of, item_factors, f, m, d).map(|v| (d, v))).flatten().collect()
}

/// [`place_by_content`] for the given documents only, on the calling thread (posts created
/// after training, placed at serving time: a handful per call).
pub fn place_docs(t: &Tfidf, to_item: &RowMap, item_factors: &[f32], f: usize, m: usize, docs: &[usize]) -> Vec<(usize, Vec<f32>)> {
    let mut p = Placer::new(t.docs.rows);
    let item_of = |e: usize| to_item.get(e);
    docs.iter().filter_map(|&d| p.place(t, &item_of, item_factors, f, m, d).map(|v| (d, v))).collect()
}

/// Scratch for placing one document: similarities accumulated through the postings, only the
/// touched documents visited and reset (cost proportional to the postings of its terms).
struct Placer {
    scores: Vec<f32>,
    touched: Vec<u32>,
}

impl Placer {
    fn new(rows: usize) -> Placer {
        Placer { scores: vec![0f32; rows], touched: vec![] }
    }

    /// `item_of(e)`: the ALS row of document e, if any.
    fn place(&mut self, t: &Tfidf, item_of: &dyn Fn(usize) -> Option<u32>, item_factors: &[f32], f: usize, m: usize, d: usize) -> Option<Vec<f32>> {
        use crate::topk::{Scored, TopK};
        let (terms, weights) = t.docs.row(d);
        for (&term, &w) in terms.iter().zip(weights) {
            let (docs, vals) = t.postings.row(term as usize);
            for (&e, &v) in docs.iter().zip(vals) {
                let s = &mut self.scores[e as usize];
                if *s == 0.0 {
                    self.touched.push(e);
                }
                *s += w * v;
            }
        }
        let mut top = TopK::new(m);
        for &e in &self.touched {
            let s = std::mem::take(&mut self.scores[e as usize]);
            let e = e as usize;
            if s > 0.0 && e != d && item_of(e).is_some() && s >= top.threshold() {
                top.push(Scored { score: s, id: e as i64, index: e as u32 });
            }
        }
        self.touched.clear();
        let top = top.into_sorted();
        let total: f32 = top.iter().map(|s| s.score).sum();
        if total <= 0.0 {
            return None;
        }
        let mut v = vec![0f32; f];
        for s in &top {
            let i = item_of(s.index as usize).unwrap_or(0) as usize;
            crate::kernels::axpy::<false>(s.score / total, &item_factors[i * f..(i + 1) * f], &mut v);
        }
        Some(v)
    }
}

#[cfg(test)]
mod placement_tests {
    use super::*;

    #[test]
    fn new_post_lands_among_its_content_neighbours() {
        let docs: Vec<Vec<String>> =
            ["cat kitten funny", "cat funny video", "pasta cooking dinner", "pasta sauce cooking", "funny cat kitten zoomies", "quantum"]
                .iter()
                .map(|s| s.split(' ').map(String::from).collect())
                .collect();
        let t = Tfidf::fit(&docs);
        // Items 0..4 have factors: cats along axis 0, cooking along axis 1.
        let to_item = vec![Some(0), Some(1), Some(2), Some(3), None, None];
        let f = 2;
        let factors = vec![1.0, 0.0, 0.9, 0.1, 0.0, 1.0, 0.1, 0.9];
        let placed = place_by_content(&t, &to_item, &factors, f, 3);
        assert_eq!(placed.len(), 1, "doc 5 shares no term with a trained post");
        let (d, v) = &placed[0];
        assert_eq!(*d, 4);
        assert!(v[0] > 0.8 && v[1] < 0.2, "{v:?}");
        // Placing the one document on the calling thread gives the same factors.
        assert_eq!(place_docs(&t, &crate::ids::RowMap::new(to_item), &factors, f, 3, &[4, 5]), placed);
    }
}
