//! `Queue`: Python's `queue.Queue(maxsize=N)`, a bounded FIFO between
//! threads.
//!
//! # State machine
//!
//! A [`Lock`] guards the items (a `heapless::Deque<T, N>`) and the count of
//! unfinished tasks; three wait queues (the condition variables of Python's
//! implementation) hold the threads that wait for the queue to be not empty,
//! not full, or done with every task:
//!
//! - put: under the lock, wait on `not_full` while the deque is full; push
//!   at the back, count one more unfinished task, notify one `not_empty`
//!   waiter.
//! - get: under the lock, wait on `not_empty` while the deque is empty; pop
//!   the front, notify one `not_full` waiter.
//! - `task_done`: under the lock, count one task less; at zero, notify every
//!   `all_done` waiter. `join` waits on `all_done` while the count is not
//!   zero.
//!
//! Each waiter re-checks the deque after it wakes, so a thread that slips in
//! first simply leaves the woken one to wait again; a notify finds its
//! waiters with one atomic load, so an uncontended put or get makes no
//! system call.

use core::cell::UnsafeCell;
use core::fmt;
use core::time::Duration;

use heapless::Deque;

use crate::backend::{self, Backend, Deadline, DefaultBackend, TimedBackend};
use crate::condition::WaitQueue;
use crate::error::{Full, TaskDoneError};
use crate::lock::Lock;
use crate::sync::AtomicU32;

/// What the lock protects.
struct State<T, const N: usize> {
    items: Deque<T, N>,
    /// Items put and not yet marked done (`task_done`).
    unfinished: usize,
}

/// A bounded, blocking FIFO queue of at most `N` items: Python's
/// `queue.Queue(maxsize=N)`.
///
/// The items live inside the queue (a `heapless::Deque`); nothing is
/// allocated, and any number of threads may put and get at once. Waiting
/// threads are served longest-waiting first.
///
/// | Python | Rust |
/// | --- | --- |
/// | `q = queue.Queue(maxsize=8)` | `let q: Queue<T, 8> = Queue::new();` |
/// | `q.put(item)` | `q.put(item)` |
/// | `q.put(item, block=False)` (raises `queue.Full`) | `q.try_put(item)` (`Err(Full(item))`: the item comes back) |
/// | `q.put(item, timeout=t)` | `q.put_timeout(item, t)` |
/// | `q.get()` | `q.get()` |
/// | `q.get(block=False)` (raises `queue.Empty`) | `q.try_get()` (`None`) |
/// | `q.get(timeout=t)` | `q.get_timeout(t)` |
/// | `q.qsize()` / `q.empty()` / `q.full()` | `q.len()` / `q.is_empty()` / `q.is_full()` |
/// | `q.task_done()` (`ValueError` if called too often) | `q.task_done()?` |
/// | `q.join()` | `q.join()` |
///
/// ```
/// use core_sync::{Full, Queue};
/// use std::thread;
///
/// static JOBS: Queue<u32, 4> = Queue::new();
///
/// let worker = thread::spawn(|| {
///     let mut sum = 0;
///     loop {
///         let job = JOBS.get();             // blocks while empty
///         JOBS.task_done().unwrap();
///         if job == 0 { return sum; }
///         sum += job;
///     }
/// });
/// for job in [1, 2, 3, 0] {
///     JOBS.put(job);                        // blocks while full
/// }
/// JOBS.join();                              // every task done
/// assert_eq!(worker.join().unwrap(), 6);
///
/// let q: Queue<&str, 1> = Queue::new();
/// q.try_put("a").unwrap();
/// assert_eq!(q.try_put("b"), Err(Full("b")));   // queue.Full; the item comes back
/// assert_eq!(q.try_get(), Some("a"));
/// ```
pub struct Queue<T, const N: usize, B = DefaultBackend> {
    lock: Lock<B>,
    not_empty: WaitQueue<B>,
    not_full: WaitQueue<B>,
    all_done: WaitQueue<B>,
    state: UnsafeCell<State<T, N>>,
}

// SAFETY: the items and the task count are only reached through
// `Queue::with_state`, whose callers hold `lock`, so threads never touch them
// at the same time. Items move in and out by value (no `&T` is ever shared
// between threads), so `T: Send` is all it takes to hand them across.
unsafe impl<T: Send, const N: usize, B> Sync for Queue<T, N, B> {}

impl<T, const N: usize> Queue<T, N> {
    /// An empty queue on the [default backend](DefaultBackend)
    /// (`queue.Queue(maxsize=N)`). `N` must not be zero.
    #[cfg(not(loom))]
    #[inline]
    pub const fn new() -> Self {
        Self::with_backend()
    }

    /// An empty queue on the [default backend](DefaultBackend).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self::with_backend()
    }
}

impl<T, const N: usize> Default for Queue<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, const N: usize, B: Backend> Queue<T, N, B> {
    /// An empty queue waiting through the backend `B`. `N` must not be zero
    /// (Python's `maxsize=0`, unbounded, needs a heap).
    #[cfg(not(loom))]
    #[inline]
    pub const fn with_backend() -> Self {
        const { assert!(N > 0, "a Queue needs room for at least one item") };
        Queue {
            lock: Lock::with_backend(),
            not_empty: WaitQueue::new(),
            not_full: WaitQueue::new(),
            all_done: WaitQueue::new(),
            state: UnsafeCell::new(State { items: Deque::new(), unfinished: 0 }),
        }
    }

    /// An empty queue waiting through the backend `B`.
    #[cfg(loom)]
    pub fn with_backend() -> Self {
        const { assert!(N > 0, "a Queue needs room for at least one item") };
        Queue {
            lock: Lock::with_backend(),
            not_empty: WaitQueue::new(),
            not_full: WaitQueue::new(),
            all_done: WaitQueue::new(),
            state: UnsafeCell::new(State { items: Deque::new(), unfinished: 0 }),
        }
    }

    /// Runs `f` on the protected state.
    ///
    /// # Safety
    ///
    /// The caller holds `self.lock` for the whole call. (`f` cannot keep the
    /// reference, so it never outlives the lock, nor reaches a wait.)
    #[inline]
    unsafe fn with_state<R>(&self, f: impl FnOnce(&mut State<T, N>) -> R) -> R {
        // SAFETY: the caller holds the lock, so no other thread is inside
        // `with_state`; the reference ends with `f`.
        f(unsafe { &mut *self.state.get() })
    }

    /// Puts `item` at the back if there is room, and tells a getter.
    /// The caller holds the lock.
    #[inline]
    fn push_locked(&self, item: T) -> Result<(), T> {
        // SAFETY: the caller holds the lock.
        unsafe {
            self.with_state(|state| {
                state.items.push_back(item)?;
                // Two to the 64 puts never happen; wrapping keeps it panic-free.
                state.unfinished = state.unfinished.wrapping_add(1);
                Ok(())
            })
        }?;
        self.not_empty.notify(1);
        Ok(())
    }

    /// Takes the front item if there is one, and tells a putter.
    /// The caller holds the lock.
    #[inline]
    fn pop_locked(&self) -> Option<T> {
        // SAFETY: the caller holds the lock.
        let item = unsafe { self.with_state(|state| state.items.pop_front()) }?;
        self.not_full.notify(1);
        Some(item)
    }

    /// Puts `item` at the back, waiting through `wait` while the queue is
    /// full; gives it back if `wait` reports its deadline passed.
    fn put_with(
        &self,
        item: T,
        mut wait: impl FnMut(&AtomicU32, u32) -> bool,
    ) -> Result<(), Full<T>> {
        let _held = self.lock.lock();
        let mut item = item;
        let mut timed_out = false;
        loop {
            match self.push_locked(item) {
                Ok(()) => return Ok(()),
                Err(back) => item = back,
            }
            if timed_out {
                return Err(Full(item));
            }
            // `Ok(false)`: the deadline passed (one last look above). The
            // lock is ours, so the wait cannot fail with `NotHeldError`.
            timed_out = matches!(self.not_full.wait(&self.lock, &mut wait), Ok(false));
        }
    }

    /// Takes the front item, waiting through `wait` while the queue is
    /// empty; `None` if `wait` reports its deadline passed.
    fn get_with(&self, mut wait: impl FnMut(&AtomicU32, u32) -> bool) -> Option<T> {
        let _held = self.lock.lock();
        let mut timed_out = false;
        loop {
            if let Some(item) = self.pop_locked() {
                return Some(item);
            }
            if timed_out {
                return None;
            }
            timed_out = matches!(self.not_empty.wait(&self.lock, &mut wait), Ok(false));
        }
    }

    /// Puts `item` at the back, waiting while the queue is full
    /// (`q.put(item)`).
    pub fn put(&self, item: T) {
        // Untimed waits never report a passed deadline, so this is `Ok`.
        let _ = self.put_with(item, backend::wait_forever::<B>);
    }

    /// Puts `item` at the back if there is room now
    /// (`q.put(item, block=False)`).
    ///
    /// # Errors
    ///
    /// [`Full`] with the item when the queue is full.
    pub fn try_put(&self, item: T) -> Result<(), Full<T>> {
        let _held = self.lock.lock();
        self.push_locked(item).map_err(Full)
    }

    /// Takes the front item, waiting while the queue is empty (`q.get()`).
    pub fn get(&self) -> T {
        loop {
            // Untimed waits never report a passed deadline, so this is `Some`.
            if let Some(item) = self.get_with(backend::wait_forever::<B>) {
                return item;
            }
        }
    }

    /// Takes the front item if there is one now (`q.get(block=False)`).
    pub fn try_get(&self) -> Option<T> {
        let _held = self.lock.lock();
        self.pop_locked()
    }

    /// How many items the queue holds (`q.qsize()`); a snapshot.
    pub fn len(&self) -> usize {
        let _held = self.lock.lock();
        // SAFETY: the lock is held.
        unsafe { self.with_state(|state| state.items.len()) }
    }

    /// Whether the queue holds no item (`q.empty()`); a snapshot.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue holds `N` items (`q.full()`); a snapshot.
    pub fn is_full(&self) -> bool {
        self.len() == N
    }

    /// The most items the queue holds (`q.maxsize`).
    pub const fn capacity(&self) -> usize {
        N
    }

    /// How many items were put and not yet marked done
    /// (`q.unfinished_tasks`); a snapshot.
    pub fn unfinished_tasks(&self) -> usize {
        let _held = self.lock.lock();
        // SAFETY: the lock is held.
        unsafe { self.with_state(|state| state.unfinished) }
    }

    /// Marks one item taken from the queue as processed (`q.task_done()`);
    /// when every item put so far is done, [`join`](Queue::join) returns.
    ///
    /// # Errors
    ///
    /// [`TaskDoneError`] when called more times than items were put;
    /// nothing changes then.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        let _held = self.lock.lock();
        // SAFETY: the lock is held.
        let left = unsafe {
            self.with_state(|state| {
                state.unfinished = state.unfinished.checked_sub(1).ok_or(TaskDoneError)?;
                Ok(state.unfinished)
            })
        }?;
        if left == 0 {
            self.all_done.notify(usize::MAX);
        }
        Ok(())
    }

    /// Waits until every item put so far is marked done with
    /// [`task_done`](Queue::task_done) (`q.join()`).
    pub fn join(&self) {
        let _held = self.lock.lock();
        // SAFETY: the lock is held (the wait releases it only inside).
        while unsafe { self.with_state(|state| state.unfinished) } != 0 {
            let _ = self.all_done.wait(&self.lock, backend::wait_forever::<B>);
        }
    }
}

impl<T, const N: usize, B: TimedBackend> Queue<T, N, B> {
    /// Puts `item` at the back, waiting at most `timeout` while the queue is
    /// full (`q.put(item, timeout=t)`). `Duration::ZERO` is
    /// [`try_put`](Queue::try_put); `Duration::MAX` waits forever.
    ///
    /// # Errors
    ///
    /// [`Full`] with the item when the queue stayed full for `timeout`.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), Full<T>> {
        if timeout.is_zero() {
            return self.try_put(item);
        }
        let deadline = Deadline::<B>::after(timeout);
        self.put_with(item, |word, value| deadline.wait(word, value))
    }

    /// Takes the front item, waiting at most `timeout` while the queue is
    /// empty (`q.get(timeout=t)`); `None` if it stayed empty.
    /// `Duration::ZERO` is [`try_get`](Queue::try_get); `Duration::MAX`
    /// waits forever.
    pub fn get_timeout(&self, timeout: Duration) -> Option<T> {
        if timeout.is_zero() {
            return self.try_get();
        }
        let deadline = Deadline::<B>::after(timeout);
        self.get_with(|word, value| deadline.wait(word, value))
    }
}

impl<T, const N: usize, B: Backend> fmt::Debug for Queue<T, N, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue").field("len", &self.len()).field("capacity", &N).finish()
    }
}
