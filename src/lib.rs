//! pg_recsys: a recommender inside PostgreSQL. This crate is glue only: SQL surface (`api`),
//! SPI and the model cache (`store`), settings (`gucs`) and error mapping (`error`). The
//! algorithms are in `crates/recsys-core`.
use pgrx::prelude::*;

mod api;
mod backend;
mod error;
mod gucs;
mod helper;
mod options;
mod progress;
mod store;

::pgrx::pg_module_magic!(name, version);

pgrx::extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
pgrx::extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::init();
    backend::register_destructors();
    backend::detect_cpu_features();
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    include!("tests.rs");
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
