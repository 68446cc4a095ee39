//! The SQL surface: each function checks its arguments, calls store + core, maps errors.
mod content;
mod evaluate;
mod factors;
mod progress;
mod serve;
mod trending;
mod train;
