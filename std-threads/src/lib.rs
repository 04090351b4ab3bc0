//! Python's `threading.Thread` for Rust: threads with daemon semantics, a
//! `Timer`, and the thread registry.
//!
//! This crate is being built; today it re-exports the blocking primitives of
//! [`core_sync`] that it is built on.

pub use core_sync;
