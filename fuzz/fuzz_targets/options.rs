//! Any bytes as recsys_train / recsys_recommend options: parsing never panics; a parsed recipe
//! round-trips through the JSON stored with a model, and its values are in their documented
//! ranges.
#![no_main]
use libfuzzer_sys::fuzz_target;
use recsys_core::options::{parse_weights, TrainOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    if let Ok(o) = TrainOptions::parse(&v) {
        assert!((1..=1024).contains(&o.als.factors));
        assert!((1..=1000).contains(&o.als.iterations));
        assert!(o.als.alpha > 0.0 && o.als.alpha.is_finite());
        assert!(o.hybrid.weights.to_array().iter().all(|w| w.is_finite() && *w >= 0.0));
        assert!(o.rating.knn_weight >= 0.0 && o.rating.knn_weight <= 1.0);
        let stored = serde_json::to_value(&o).expect("serialisable");
        let back: TrainOptions = serde_json::from_value(stored).expect("a stored recipe reads back");
        assert_eq!(back.als, o.als);
        assert_eq!(back.interactions, o.interactions);
    }
    let _ = parse_weights("weights", &v, Default::default());
});
