//! Python's `concurrent.futures.ThreadPoolExecutor` for Rust, on a
//! work-stealing scheduler.
//!
//! This crate is being built; today it re-exports the crates it builds on.

pub use core_sync;
pub use std_threads;
