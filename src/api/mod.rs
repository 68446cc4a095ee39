//! The SQL surface: each function checks its arguments, calls store + core, maps errors.
mod serve;
mod train;
