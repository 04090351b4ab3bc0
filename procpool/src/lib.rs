//! Python's `multiprocessing.Process` and `ProcessPoolExecutor` for Rust.
//!
//! This crate is being built; today it re-exports the crates it builds on.

pub use core_sync;
pub use pool;
