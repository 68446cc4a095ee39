//! The SQL surface: each function checks its arguments, calls store + core, maps errors.
mod content;
mod evaluate;
mod explain;
mod factors;
mod feed;
mod progress;
mod score;
mod serve;
mod train;
mod trending;
mod trending_worker;
