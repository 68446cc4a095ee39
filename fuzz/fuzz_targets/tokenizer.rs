//! Any text through the tokenizer and a TF-IDF fit: no panic, no empty token, tokens are
//! lowercase, every document row has L2 norm 1 (or 0 when it has no token), a query never
//! panics and its cosine with any document is in [0, 1].
#![no_main]
use libfuzzer_sys::fuzz_target;
use recsys_core::tfidf::{tokens, Doc, Tfidf};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parts: Vec<&str> = text.splitn(4, '\u{0}').collect();
    let get = |i: usize| parts.get(i).copied().unwrap_or("");
    let tags: Vec<&str> = get(2).split(',').collect();
    let doc = Doc { title: get(0), description: get(1), tags, category: get(3) };
    let toks = tokens(&doc);
    for t in &toks {
        assert!(!t.is_empty());
        assert_eq!(*t, t.to_lowercase());
    }
    let other = tokens(&Doc { title: get(1), description: get(0), tags: vec![get(3)], category: get(2) });
    let m = Tfidf::fit(&[toks.clone(), other, vec![]]);
    for d in 0..3 {
        let n: f32 = m.doc(d).iter().map(|x| x.1 * x.1).sum();
        assert!(n == 0.0 || (n - 1.0).abs() < 1e-3, "row norm {n}");
    }
    let q = m.query(&toks);
    let mut s = vec![0f32; 3];
    m.scores(&q, &mut s);
    assert!(s.iter().all(|x| x.is_finite() && *x >= -1e-4 && *x <= 1.0 + 1e-3), "{s:?}");
});
