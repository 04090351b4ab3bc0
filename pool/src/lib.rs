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
//!
//! # Design
//!
//! **One allocation per task.** [`submit`](ThreadPoolExecutor::submit)
//! allocates one `Arc` cell holding the future's state word, its callback
//! list, the result slot and the closure; the scheduler's queue entry and
//! every [`Future`] handle point at that cell.
//!
//! **Scheduler.** `crossbeam-deque`: a global injector for submissions from
//! outside the pool, a LIFO deque per worker for work pushed from inside a
//! task (nested submissions, the second half of a [`join`]), stealing
//! between workers in a random order. Idle workers sleep on futex words
//! (through `core-sync`'s wait backend); the sleep/wake protocol, which
//! wakes exactly one worker per submission to a sleeping pool and loses no
//! wake-up, is a state machine in `sleep.rs`, checked by loom models
//! (`tests/loom.rs`, run on that very code). Workers start
//! lazily, one per submission while none is idle, up to `max_workers`, and
//! the pool never runs more threads than that.
//!
//! **Waiting on a future from inside the pool.** Python warns that a task
//! waiting for another task's future can deadlock a pool whose workers all
//! wait. Here a worker that waits (without a timeout) for a future of its
//! own pool whose task has not started claims that task (the same
//! compare-exchange a worker uses before running it, so it runs once) and
//! runs it inline; if the task is already running elsewhere it sleeps, as
//! that thread makes progress. It never runs *unrelated* queued work while
//! it waits, which is what blows stacks and re-enters held locks in
//! naive help-while-waiting schemes (rayon#592): the inline run is exactly
//! the call the waiter asked for, so the stack grows only as deep as the
//! chain of waits in the program itself. `wait` and `as_completed` do the
//! same for each still-queued future they wait for. A wait on something the
//! pool cannot see (a [`Promise`] completed by a task still in the queue, an
//! event) can still exhaust a full pool, exactly as in Python.
//!
//! **Fork-join.** [`join`] and [`scope`](ThreadPoolExecutor::scope) wait
//! differently: the waiting worker runs other queued work until its own
//! jobs are done (as rayon does), so recursion never leaves a worker idle
//! and never deadlocks the pool. `join`'s second closure lives on the
//! joiner's stack (no allocation, no reference count), and pushing it costs
//! no fence: it wakes a sleeping worker only when one sleeps, without the
//! full protocol, because a worker that misses it costs parallelism only
//! (the joiner runs its own second closure when nobody stole it). The
//! thief that finishes it takes the sleepers' lock only when the joiner
//! sleeps.
//!
//! **Threads.** Workers are `std-threads` threads named
//! `{thread_name_prefix}_{n}`, non-daemon unless the builder says
//! `daemon(true)`. As in Python, when the process exits every live pool
//! with non-daemon workers is shut down (no new work; queued work still
//! runs) and the exit waits for its workers, so a pool that was never
//! dropped neither loses queued tasks nor hangs the exit.

// Under `--cfg loom` only the sleep/wake protocol is built, for the loom
// models in `tests/loom.rs`: the rest needs real threads and futexes.
#[cfg(not(loom))]
mod executor;
#[cfg(not(loom))]
mod future;
#[cfg(not(loom))]
mod job;
#[cfg(not(loom))]
mod registry;
#[cfg(not(loom))]
mod scope;
#[cfg(loom)]
#[doc(hidden)]
pub mod sleep;
#[cfg(not(loom))]
#[allow(unreachable_pub)]
mod sleep;
#[cfg(not(loom))]
mod worker;

pub use core_sync;
#[cfg(not(loom))]
pub use executor::{Builder, Map, ShutdownError, ThreadPoolExecutor};
#[cfg(not(loom))]
pub use future::{
    AsCompleted, DoneAndNotDone, Future, Promise, ReturnWhen, TaskError, TimeoutError,
    UnsharedPayload, as_completed, promise, wait,
};
#[cfg(not(loom))]
pub use scope::{Scope, join};
#[cfg(not(loom))]
pub use std_threads;
