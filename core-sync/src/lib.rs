//! Python's `threading` primitives for Rust, down to bare metal.
//!
//! `core-sync` is `#![no_std]` and never allocates. Every primitive is a small
//! atomic state machine over one or two `AtomicU32` words; the only thing it
//! asks of the platform is a [wait backend](backend): "sleep while this word
//! equals X (until a deadline)" and "wake one / wake all". With the default
//! `std` feature that backend is the operating system's futex
//! ([`backend::Futex`]); without it, a spinning backend ([`backend::Spin`]) or
//! one that a kernel or RTOS writes for its own wait queues.
//!
//! | Python | Rust |
//! | --- | --- |
//! | `threading.Lock()` | [`Lock::new()`](Lock::new) |
//! | `threading.Semaphore(v)` | [`Semaphore::new(v)`](Semaphore::new) |
//! | `threading.BoundedSemaphore(v)` | [`BoundedSemaphore::new(v)`](BoundedSemaphore::new) |
//! | `threading.Event()` | [`Event::new()`](Event::new) |
//! | `threading.Barrier(n, action)` | [`Barrier::new(n)`](Barrier::new), [`Barrier::with_action(n, &f)`](Barrier::with_action) |
//! | `readerwriterlock.rwlock.RWLockFair()` | [`ReadWriteLock::new()`](ReadWriteLock::new) (policy [`Fair`]) |
//! | `rwlock.RWLockRead()` / `rwlock.RWLockWrite()` | [`ReadWriteLock::<ReadPreferring>::with_policy()`](ReadWriteLock::with_policy) / `<WritePreferring>` ([`ReadPreferring`], [`WritePreferring`]) |
//! | `rw.gen_rlock().acquire()` / `.release()` | [`acquire_read`](ReadWriteLock::acquire_read), `try_acquire_read`, `acquire_read_timeout`, [`release_read`](ReadWriteLock::release_read), [`read()`](ReadWriteLock::read) guard |
//! | `rw.gen_wlock().acquire()` / `.release()` | [`acquire_write`](ReadWriteLock::acquire_write), `try_acquire_write`, `acquire_write_timeout`, [`release_write`](ReadWriteLock::release_write), [`write()`](ReadWriteLock::write) guard |
//! | `RWLockFairD().gen_wlock().downgrade()` | [`downgrade()`](ReadWriteLock::downgrade), [`WriteGuard::downgrade`] |
//! | `threading.RLock()` | [`RLock::new()`](RLock): `acquire()?`, `release()?` (by the owner only), `is_owned()`; `ReentrantMutex<T>` for data |
//! | `threading.Condition()` / `Condition(lock=l)` | [`Condition::new()`](Condition) (owns an `RLock`) / [`Condition::with_lock(&l)`](Condition::with_lock) |
//! | `cond.wait()` / `wait(timeout)` / `wait_for(pred, timeout)` | `wait()?`, `wait_timeout(t)? -> bool`, `wait_for(pred)?`, `wait_for_timeout(pred, t)? -> bool` |
//! | `cond.notify(n)` / `cond.notify_all()` | `notify(n)?`, `notify_all()?` (longest-waiting first) |
//! | `queue.Queue(maxsize=N)` | [`Queue::<T, N>::new()`](Queue::new): `put`, `try_put`, `put_timeout`, `get`, `try_get`, `get_timeout`, `task_done`, `join` |
//!
//! Every blocking call has three forms: blocking (`acquire`), non-blocking
//! (`try_acquire`, Python's `blocking=False`) and timed (`acquire_timeout`,
//! Python's `timeout=`). Timed forms exist only where the backend has a clock
//! ([`backend::TimedBackend`]), so a clockless target gets a compile error
//! rather than a silent spin. `Duration::ZERO` behaves as `try_`, and
//! `Duration::MAX` waits forever without overflowing.
//!
//! Misuse that Python reports with an exception (releasing an unheld lock,
//! say) returns an `Err` here and changes nothing.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(any(feature = "std", loom))]
extern crate std;

pub mod backend;
mod barrier;
mod condition;
mod error;
mod event;
mod lock;
mod queue;
mod rlock;
mod rwlock;
mod semaphore;
mod spin;
mod sync;

pub use backend::{Backend, DefaultBackend, TimedBackend};
pub use barrier::Barrier;
pub use condition::{Condition, ConditionLock, DefaultConditionLock};
pub use error::{
    BrokenBarrierError, Full, NotHeldError, RecursionOverflow, ReleaseError, TaskDoneError,
};
pub use event::Event;
pub use lock::{Lock, LockGuard};
#[cfg(not(loom))]
pub use lock::{Mutex, MutexGuard};
pub use queue::Queue;
pub use rlock::{RLock, RLockGuard, ThreadIdOf};
#[cfg(all(feature = "std", not(loom)))]
pub use rlock::{ReentrantMutex, ReentrantMutexGuard};
pub use rwlock::{
    Fair, ReadGuard, ReadPreferring, ReadWriteLock, ReadWritePolicy, WriteGuard, WritePreferring,
};
#[cfg(not(loom))]
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard};
