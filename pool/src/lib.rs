//! Python's `concurrent.futures.ThreadPoolExecutor` for Rust, on a
//! work-stealing scheduler.
//!
//! | Python | Rust |
//! | --- | --- |
//! | `ThreadPoolExecutor(max_workers=5)` | [`ThreadPoolExecutor::new(5)`](ThreadPoolExecutor::new) |
//! | `pool.submit(f)` | [`pool.submit(f)?`](ThreadPoolExecutor::submit) |
//! | `future.result()` | [`future.result()`](Future::result) |
//! | `pool.map(f, items)` | [`pool.map(f, items)?`](ThreadPoolExecutor::map) |
//! | `pool.shutdown(wait=True, cancel_futures=False)` | [`pool.shutdown(true, false)`](ThreadPoolExecutor::shutdown) |
//! | `concurrent.futures.as_completed(fs, timeout)` | [`as_completed(&fs, timeout)`](as_completed) |
//! | `concurrent.futures.wait(fs, timeout, FIRST_COMPLETED)` | [`wait(&fs, timeout, ReturnWhen::FirstCompleted)`](wait) |
//! | (Rust only) tasks borrowing the caller's stack | [`pool.scope(\|s\| ...)`](ThreadPoolExecutor::scope) |
//! | (Rust only) fork-join recursion | [`join(a, b)`](join) |
//!
//! ```
//! use pool::ThreadPoolExecutor;
//!
//! let pool = ThreadPoolExecutor::new(5);
//! let futures: Vec<_> = (0..10).map(|i| pool.submit(move || i * i).unwrap()).collect();
//! let total: i32 = pool::as_completed(&futures, None).map(|f| *f.unwrap().result().unwrap()).sum();
//! assert_eq!(total, 285);
//! ```

mod executor;
mod future;
mod job;
mod registry;
mod scope;
mod worker;

pub use core_sync;
pub use executor::{Builder, Map, ShutdownError, ThreadPoolExecutor};
pub use future::{
    AsCompleted, DoneAndNotDone, Future, Promise, ReturnWhen, TaskError, TimeoutError,
    UnsharedPayload, as_completed, promise, wait,
};
pub use scope::{Scope, join};
pub use std_threads;
