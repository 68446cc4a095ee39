//! `recsys_item_factors`: the served model's post factors as rows, e.g. to copy them into a
//! pgvector column (`INSERT INTO item_vec SELECT post_id, factors::vector FROM
//! recsys_item_factors()`), or to compare with another system.
use crate::error::{OrRaise, Result};
use crate::options::DEFAULT_MODEL;
use crate::store::model;
use pgrx::prelude::*;

#[pg_extern(stable)]
fn recsys_item_factors(model: default!(Option<&str>, "'default'")) -> TableIterator<'static, (name!(post_id, i64), name!(factors, Vec<f32>))> {
    let rows = Spi::connect(|client| -> Result<Vec<(i64, Vec<f32>)>> {
        let m = model::current(client, model.unwrap_or(DEFAULT_MODEL))?;
        let f = m.factors;
        Ok(m.item_ids.iter().zip(m.item_factors.chunks_exact(f)).map(|(&id, v)| (id, v.to_vec())).collect())
    })
    .or_raise();
    TableIterator::new(rows)
}
