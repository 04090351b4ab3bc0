//! Python's `concurrent.futures.ThreadPoolExecutor` for Rust, on a
//! work-stealing scheduler.
//!
//! This crate is being built; today it has Python's `Future` (with its
//! producer side, [`Promise`]), `as_completed` and `wait`.

mod future;
mod worker;

pub use core_sync;
pub use future::{
    AsCompleted, DoneAndNotDone, Future, Promise, ReturnWhen, TaskError, TimeoutError,
    UnsharedPayload, as_completed, promise, wait,
};
pub use std_threads;
