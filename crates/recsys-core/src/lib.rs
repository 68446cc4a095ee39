//! recsys-core: the algorithms of pg_recsys as plain Rust.
//!
//! Nothing here knows about PostgreSQL: inputs are slices, CSR matrices and option structs,
//! outputs are plain vectors. The extension crate (`src/`) only moves data in and out.
pub mod als;
pub mod buf;
pub mod build;
pub mod csr;
pub mod datasets;
pub mod error;
pub mod eval;
pub mod explicit;
pub mod fasthash;
pub mod graph;
pub mod hybrid;
pub mod ids;
pub mod ivf;
pub mod kernels;
pub mod options;
pub mod rng;
pub mod split;
pub mod synth;
pub mod tfidf;
pub mod topk;
pub mod tuning;
pub mod world;

pub use error::CoreError;
