//! `Future<T>`: Python's `concurrent.futures.Future`, and a `std::future::Future`.
//!
//! # One allocation per task
//!
//! A submitted task lives in one `Arc` allocation, a [`Cell`]: the future's
//! state word, its notification list, the result slot and the task closure
//! itself (`Cell<T, TaskSlot<F>>`). The executor's queue entry and every
//! [`Future`] handle point at that same allocation; the handles see it as
//! `Cell<T, dyn Slot<T>>` (an unsized coercion, so `Future<T>` does not name
//! the closure type). A future made by [`promise`] has no closure
//! (`Cell<T, NoTask>`).
//!
//! # State machine
//!
//! One `AtomicU32` (the futex word that result waiters sleep on):
//!
//! | bits | meaning |
//! | --- | --- |
//! | 0..3 | `PENDING` 0, `RUNNING` 1, `COMPLETING` 2, `CANCELLED` 3, `FINISHED` 4 |
//! | 3 `SLEEPERS` | some thread may sleep in the futex on this word: a change wakes all |
//! | 4 `NOTIFY` | the notification list (callbacks, waiters, wakers) is not empty |
//! | 5 `NOTIFYING` | the completer is running the list: the result is shared with callbacks |
//!
//! - `PENDING -> RUNNING`: the task was claimed, by a worker that popped it or
//!   by a worker that waits for it ([`Promise::set_running_or_notify_cancel`]).
//!   The claim is a compare-exchange, so exactly one thread runs a task.
//! - `PENDING -> CANCELLED`: `cancel()`; the only way to cancel.
//! - `PENDING | RUNNING -> COMPLETING -> FINISHED`: whoever moves the word to
//!   `COMPLETING` owns the result slot, writes the value, then publishes it
//!   with `FINISHED` (Release). The slot is initialised exactly when the state
//!   is `FINISHED`.
//! - Completing clears `SLEEPERS` (waking every sleeper) and turns `NOTIFY`
//!   into `NOTIFYING`; the completer then runs the list in registration
//!   order, clears `NOTIFYING` and wakes the async wakers and any sleeper
//!   that waits to *take* the value (taking must wait until no callback can
//!   still be reading it).
//!
//! Registering a callback takes the list lock and sets `NOTIFY` with a
//! compare-exchange that fails once the state is done, so a registration
//! either lands in the list before the completer looks at it or sees the
//! future done and runs the callback at once: none is lost, none runs twice.

use std::any::Any;
use std::cell::UnsafeCell;
use std::collections::HashSet;
use std::fmt;
use std::mem::{self, MaybeUninit};
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use core_sync::backend::{AtomicU32, Backend, Futex};

use crate::worker;

const STATE_MASK: u32 = 0b111;
const PENDING: u32 = 0;
const RUNNING: u32 = 1;
const COMPLETING: u32 = 2;
const CANCELLED: u32 = 3;
const FINISHED: u32 = 4;
const SLEEPERS: u32 = 1 << 3;
const NOTIFY: u32 = 1 << 4;
const NOTIFYING: u32 = 1 << 5;

/// How many times a waiter re-reads the state before it sleeps.
const SPIN_LIMIT: u32 = 64;

#[inline]
fn is_done(state: u32) -> bool {
    matches!(state & STATE_MASK, CANCELLED | FINISHED)
}

// ---------------------------------------------------------------------------
// Errors

/// Why a future holds no value.
///
/// | Python | Rust |
/// | --- | --- |
/// | the exception a task raised | [`TaskError::Panicked`] with the panic payload |
/// | `CancelledError` | [`TaskError::Cancelled`] |
/// | `BrokenThreadPool` / `BrokenProcessPool` | [`TaskError::BrokenPool`] |
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked; the payload. A panic with a `&'static str` or a
    /// `String` message keeps that type (so `downcast_ref::<&str>()` /
    /// `downcast_ref::<String>()` work as with `std::thread`); any other
    /// payload is wrapped in an [`UnsharedPayload`], because the error is
    /// shared between threads and must be `Sync`.
    Panicked(Box<dyn Any + Send + Sync + 'static>),
    /// The future was cancelled before it ran.
    Cancelled,
    /// The executor broke before the task finished (Python's
    /// `BrokenThreadPool` / `BrokenProcessPool`); says why.
    BrokenPool(String),
    /// The task ran past its per-task time limit and was stopped.
    TaskTimeout,
    /// Any other failure an executor reports.
    Other(String),
}

/// The error every cancelled future reports (shared, so a cancelled future
/// needs no result slot).
static CANCELLED_ERROR: TaskError = TaskError::Cancelled;

impl TaskError {
    /// The error for a task that panicked with `payload` (what
    /// `std::panic::catch_unwind` returns).
    pub fn from_panic(payload: Box<dyn Any + Send + 'static>) -> TaskError {
        let payload = match payload.downcast::<&'static str>() {
            Ok(s) => return TaskError::Panicked(s),
            Err(p) => p,
        };
        match payload.downcast::<String>() {
            Ok(s) => TaskError::Panicked(s),
            Err(p) => TaskError::Panicked(Box::new(UnsharedPayload(core_sync::Mutex::new(p)))),
        }
    }

    /// The panic message, when the task panicked with a string.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            TaskError::Panicked(p) => p
                .downcast_ref::<&'static str>()
                .copied()
                .or_else(|| p.downcast_ref::<String>().map(String::as_str)),
            _ => None,
        }
    }

    /// Whether this is [`TaskError::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, TaskError::Cancelled)
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Panicked(_) => match self.panic_message() {
                Some(m) => f.debug_tuple("Panicked").field(&m).finish(),
                None => f.debug_tuple("Panicked").field(&"Box<dyn Any>").finish(),
            },
            TaskError::Cancelled => f.write_str("Cancelled"),
            TaskError::BrokenPool(why) => f.debug_tuple("BrokenPool").field(why).finish(),
            TaskError::TaskTimeout => f.write_str("TaskTimeout"),
            TaskError::Other(why) => f.debug_tuple("Other").field(why).finish(),
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Panicked(_) => match self.panic_message() {
                Some(m) => write!(f, "the task panicked: {m}"),
                None => f.write_str("the task panicked"),
            },
            TaskError::Cancelled => f.write_str("the future was cancelled"),
            TaskError::BrokenPool(why) => write!(f, "the pool is broken: {why}"),
            TaskError::TaskTimeout => f.write_str("the task ran past its time limit"),
            TaskError::Other(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for TaskError {}

/// Two errors are equal when they are the same variant with the same text;
/// panics compare by their message (a panic without a string message equals
/// nothing).
impl PartialEq for TaskError {
    fn eq(&self, other: &TaskError) -> bool {
        match (self, other) {
            (TaskError::Panicked(_), TaskError::Panicked(_)) => {
                self.panic_message().is_some() && self.panic_message() == other.panic_message()
            }
            (TaskError::Cancelled, TaskError::Cancelled)
            | (TaskError::TaskTimeout, TaskError::TaskTimeout) => true,
            (TaskError::BrokenPool(a), TaskError::BrokenPool(b))
            | (TaskError::Other(a), TaskError::Other(b)) => a == b,
            _ => false,
        }
    }
}

/// A panic payload that is not a string: kept whole, behind a lock so that
/// the [`TaskError`] holding it can be shared between threads.
pub struct UnsharedPayload(core_sync::Mutex<Box<dyn Any + Send + 'static>>);

impl UnsharedPayload {
    /// The original payload, as `catch_unwind` returned it.
    pub fn into_inner(self) -> Box<dyn Any + Send + 'static> {
        self.0.into_inner()
    }

    /// Runs `f` on the original payload (e.g. to `downcast_ref` it).
    pub fn with<R>(&self, f: impl FnOnce(&(dyn Any + Send)) -> R) -> R {
        f(&**self.0.lock())
    }
}

impl fmt::Debug for UnsharedPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnsharedPayload(..)")
    }
}

/// Waiting for a result timed out (the future stays usable: wait again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TimeoutError;

impl fmt::Display for TimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out waiting for the future")
    }
}

impl std::error::Error for TimeoutError {}

// ---------------------------------------------------------------------------
// Deadlines

/// A point on the futex backend's monotonic clock, or never (`core-sync`'s).
type Deadline = core_sync::backend::Deadline<Futex>;

/// `timeout` from now; `None` never passes.
fn deadline(timeout: Option<Duration>) -> Deadline {
    timeout.map_or(Deadline::NEVER, Deadline::after)
}

// ---------------------------------------------------------------------------
// The shared cell

/// A done-callback, boxed.
type Callback<T> = Box<dyn FnOnce(&Future<T>) + Send + 'static>;

/// What a completed future tells the ones who asked.
enum Notify<T> {
    Callback(Callback<T>),
    Waiter(Arc<Waiter>, usize),
    Waker(Waker),
}

/// The future's state, its notification list and its result slot.
pub(crate) struct Core<T> {
    state: AtomicU32,
    /// Live [`Future`] handles (not the queue entry nor the promise): a value
    /// may be moved out only by the last one.
    handles: AtomicUsize,
    notify: core_sync::Mutex<Vec<Notify<T>>>,
    /// Initialised exactly when the state is `FINISHED`.
    value: UnsafeCell<MaybeUninit<Result<T, TaskError>>>,
}

// SAFETY: the slot is written only by the thread that moved the state to
// COMPLETING (exclusive by compare-exchange), read through `&T` only after
// FINISHED was published with Release (and `result` requires `T: Sync` for
// shared reads), and moved out only by the last handle once no callback can
// read it. Callbacks are `Send` and run once, after being taken out of the
// locked list. So the cell may be shared and sent whenever `T: Send`.
unsafe impl<T: Send> Sync for Core<T> {}
// SAFETY: see above; every field is sendable when `T: Send`.
unsafe impl<T: Send> Send for Core<T> {}

impl<T> Drop for Core<T> {
    fn drop(&mut self) {
        if *self.state.get_mut() & STATE_MASK == FINISHED {
            // SAFETY: FINISHED means the slot was initialised, and `&mut self`
            // means nobody else can read it any more.
            unsafe { self.value.get_mut().assume_init_drop() };
        }
    }
}

impl<T> Core<T> {
    fn new(state: u32) -> Core<T> {
        Core {
            state: AtomicU32::new(state),
            handles: AtomicUsize::new(1),
            notify: core_sync::Mutex::new(Vec::new()),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    #[inline]
    fn load(&self) -> u32 {
        self.state.load(Ordering::Acquire)
    }

    /// Moves the state from one of `from` to `to`, keeping the flag bits.
    /// Returns the state seen when it failed.
    #[inline]
    fn transition(&self, from: &[u32], to: u32) -> Result<u32, u32> {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if !from.contains(&(s & STATE_MASK)) {
                return Err(s);
            }
            match self.state.compare_exchange_weak(
                s,
                (s & !STATE_MASK) | to,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(old) => return Ok(old),
                Err(now) => s = now,
            }
        }
    }

    /// `PENDING -> RUNNING`: the caller now owns the task.
    #[inline]
    pub(crate) fn claim(&self) -> bool {
        self.transition(&[PENDING], RUNNING).is_ok()
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.load() & STATE_MASK == CANCELLED
    }

    pub(crate) fn is_done(&self) -> bool {
        is_done(self.load())
    }
}

/// The task half of a cell: the closure of a submitted task, or nothing for
/// a [`promise`].
pub(crate) trait Slot<T>: Send + Sync {
    /// The pool whose workers may run this task inline while they wait for
    /// it (0: none).
    fn pool_id(&self) -> usize;

    /// Runs the task and completes the future with its outcome.
    ///
    /// # Safety
    ///
    /// The caller moved `cell`'s state from `PENDING` to `RUNNING` (it owns
    /// the task), and `cell` is the cell holding `self`.
    unsafe fn run(&self, cell: &Arc<DynCell<T>>);

    /// Drops the task closure without running it.
    ///
    /// # Safety
    ///
    /// No other thread can run or drop the closure: the future is done
    /// without having been claimed (cancelled or failed from `PENDING`) and
    /// the caller owns the executor's single queue entry for it.
    unsafe fn discard(&self);
}

/// One allocation: the future's core and (for a task) its closure.
pub(crate) struct Cell<T, S: ?Sized> {
    pub(crate) core: Core<T>,
    pub(crate) slot: S,
}

/// A cell whose task type is erased.
pub(crate) type DynCell<T> = Cell<T, dyn Slot<T>>;

/// The closure of a submitted task.
pub(crate) struct TaskSlot<F> {
    pool: usize,
    task: UnsafeCell<Option<F>>,
}

// SAFETY: `task` is touched only by the thread that claimed the task
// (PENDING -> RUNNING, exclusive) or by the owner of the queue entry once the
// task can never be claimed (see `Slot::discard`).
unsafe impl<F: Send> Sync for TaskSlot<F> {}

impl<T, F> Slot<T> for TaskSlot<F>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    fn pool_id(&self) -> usize {
        self.pool
    }

    unsafe fn run(&self, cell: &Arc<DynCell<T>>) {
        // SAFETY: the caller claimed the task, so no one else touches `task`.
        let Some(f) = (unsafe { (*self.task.get()).take() }) else { return };
        let outcome = panic::catch_unwind(AssertUnwindSafe(f)).map_err(TaskError::from_panic);
        complete(cell, outcome);
    }

    unsafe fn discard(&self) {
        // SAFETY: the caller guarantees exclusive access (see the trait).
        drop(unsafe { (*self.task.get()).take() });
    }
}

/// The empty task half of a [`promise`]'s cell.
struct NoTask;

impl<T> Slot<T> for NoTask {
    fn pool_id(&self) -> usize {
        0
    }

    unsafe fn run(&self, _cell: &Arc<DynCell<T>>) {}

    unsafe fn discard(&self) {}
}

/// A new task cell for `f`, submitted to pool `pool`: the future handle and
/// the executor's reference to the same allocation.
pub(crate) fn task_cell<T, F>(pool: usize, f: F) -> (Future<T>, Arc<Cell<T, TaskSlot<F>>>)
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let cell = Arc::new(Cell {
        core: Core::new(PENDING),
        slot: TaskSlot { pool, task: UnsafeCell::new(Some(f)) },
    });
    let erased: Arc<DynCell<T>> = cell.clone();
    (Future { cell: erased }, cell)
}

/// Completes the future with `outcome` unless it is already done
/// (cancelled). Returns whether it was completed.
pub(crate) fn complete<T>(cell: &Arc<DynCell<T>>, outcome: Result<T, TaskError>) -> bool {
    if cell.core.transition(&[PENDING, RUNNING], COMPLETING).is_err() {
        return false;
    }
    // SAFETY: COMPLETING makes this thread the only writer, and no reader
    // looks at the slot before FINISHED is published below.
    unsafe { (*cell.core.value.get()).write(outcome) };
    finish(cell, &[COMPLETING], FINISHED).is_ok()
}

/// Fails a future that nobody has started with `error` (its pool broke).
/// Returns whether it did.
pub(crate) fn fail_pending<T>(cell: &Arc<DynCell<T>>, error: TaskError) -> bool {
    if cell.core.transition(&[PENDING], COMPLETING).is_err() {
        return false;
    }
    // SAFETY: as in `complete`.
    unsafe { (*cell.core.value.get()).write(Err(error)) };
    finish(cell, &[COMPLETING], FINISHED).is_ok()
}

/// `future.cancel()` on a cell.
pub(crate) fn cancel<T>(cell: &Arc<DynCell<T>>) -> bool {
    match finish(cell, &[PENDING], CANCELLED) {
        Ok(()) => true,
        Err(s) => s & STATE_MASK == CANCELLED,
    }
}

/// Moves the state from one of `from` to the final state `to` (publishing
/// it) and tells everyone who asked. Returns the state seen on failure.
fn finish<T>(cell: &Arc<DynCell<T>>, from: &[u32], to: u32) -> Result<(), u32> {
    let core = &cell.core;
    let mut s = core.state.load(Ordering::Relaxed);
    let old = loop {
        if !from.contains(&(s & STATE_MASK)) {
            return Err(s);
        }
        let notifying = if s & NOTIFY != 0 { NOTIFYING } else { 0 };
        match core.state.compare_exchange_weak(
            s,
            to | notifying,
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(old) => break old,
            Err(now) => s = now,
        }
    };
    if old & SLEEPERS != 0 {
        Futex::wake_all(&core.state);
    }
    if old & NOTIFY == 0 {
        return Ok(());
    }
    let list = mem::take(&mut *core.notify.lock());
    let mut wakers = Vec::new();
    {
        let view = Future::from_cell(cell);
        for entry in list {
            match entry {
                Notify::Callback(f) => run_callback(f, &view),
                Notify::Waiter(w, index) => w.notify(index),
                Notify::Waker(w) => wakers.push(w),
            }
        }
    }
    // Callbacks are over: the value may be moved out from now on. Wakers that
    // registered while they ran are in the list; the clear happens under the
    // lock so that none registers after it and sleeps.
    let (rest, old) = {
        let mut guard = core.notify.lock();
        let rest = mem::take(&mut *guard);
        (rest, core.state.fetch_and(!(NOTIFYING | SLEEPERS), Ordering::AcqRel))
    };
    if old & SLEEPERS != 0 {
        Futex::wake_all(&core.state);
    }
    for w in wakers {
        w.wake();
    }
    for entry in rest {
        if let Notify::Waker(w) = entry {
            w.wake();
        }
    }
    Ok(())
}

fn run_callback<T>(f: Callback<T>, future: &Future<T>) {
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| f(future))) {
        let error = TaskError::from_panic(payload);
        // Python logs "exception calling callback for <Future>" and goes on.
        eprintln!("pool: a done-callback of a future panicked: {error}");
    }
}

// ---------------------------------------------------------------------------
// Future

/// The result of a call that may not have finished: Python's
/// `concurrent.futures.Future`, and a [`std::future::Future`].
///
/// | Python | Rust |
/// | --- | --- |
/// | `future = pool.submit(f)` | `let future = pool.submit(f)?;` |
/// | `future.result()` | [`result()`](Future::result) (borrows) or [`into_result()`](Future::into_result) (moves) |
/// | `future.result(timeout=t)` | [`result_timeout(t)`](Future::result_timeout) |
/// | `future.exception()` | [`exception()`](Future::exception) |
/// | `future.cancel()` | [`cancel()`](Future::cancel) |
/// | `future.cancelled()` / `running()` / `done()` | [`cancelled()`](Future::cancelled) / [`running()`](Future::running) / [`done()`](Future::done) |
/// | `future.add_done_callback(fn)` | [`add_done_callback(f)`](Future::add_done_callback) |
/// | `await asyncio.wrap_future(future)` | `future.await` |
///
/// A handle is cheap to clone; every clone sees the same future. The value
/// belongs to the future: any handle can borrow it, and the last handle can
/// move it out.
///
/// ```
/// use pool::{promise, TaskError};
///
/// let (future, producer) = promise::<i32>();
/// assert!(!future.done());
/// std::thread::spawn(move || producer.set_result(6 * 7));
/// assert_eq!(future.result(), Ok(&42));
/// assert_eq!(future.into_result().ok(), Some(42));
///
/// let (future, _producer) = promise::<i32>();
/// assert!(future.cancel());
/// assert!(matches!(future.into_result(), Err(TaskError::Cancelled)));
/// ```
pub struct Future<T> {
    cell: Arc<DynCell<T>>,
}

impl<T> Clone for Future<T> {
    fn clone(&self) -> Self {
        Future::from_cell(&self.cell)
    }
}

impl<T> Drop for Future<T> {
    fn drop(&mut self) {
        // Release: reads through this handle happen before a later take.
        self.cell.core.handles.fetch_sub(1, Ordering::Release);
    }
}

impl<T> fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.cell.core.load() & STATE_MASK {
            PENDING => "pending",
            RUNNING | COMPLETING => "running",
            CANCELLED => "cancelled",
            _ => "finished",
        };
        f.debug_struct("Future").field("state", &state).finish()
    }
}

impl<T> Future<T> {
    fn from_cell(cell: &Arc<DynCell<T>>) -> Future<T> {
        cell.core.handles.fetch_add(1, Ordering::Relaxed);
        Future { cell: Arc::clone(cell) }
    }

    /// Whether both handles are the same future.
    pub fn ptr_eq(&self, other: &Future<T>) -> bool {
        Arc::ptr_eq(&self.cell, &other.cell)
    }

    /// Cancels the call if it has not started (`future.cancel()`).
    ///
    /// Returns `false` when the call is running or finished (it cannot be
    /// cancelled then), `true` when it is now cancelled (also when it was
    /// already). Cancelling runs the done-callbacks.
    pub fn cancel(&self) -> bool {
        cancel(&self.cell)
    }

    /// Whether the call was cancelled (`future.cancelled()`).
    pub fn cancelled(&self) -> bool {
        self.cell.core.load() & STATE_MASK == CANCELLED
    }

    /// Whether the call is running now (`future.running()`).
    pub fn running(&self) -> bool {
        matches!(self.cell.core.load() & STATE_MASK, RUNNING | COMPLETING)
    }

    /// Whether the call finished or was cancelled (`future.done()`).
    pub fn done(&self) -> bool {
        is_done(self.cell.core.load())
    }

    /// Waits until the future is done (`concurrent.futures.wait([future])`).
    pub fn wait(&self) {
        wait_state(&self.cell, Deadline::NEVER, false);
    }

    /// Waits at most `timeout` for the future to be done; returns whether it is.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        wait_state(&self.cell, Deadline::after(timeout), false)
    }

    /// The error of a done future, or `None` if it succeeded
    /// (`future.exception()`); waits until it is done. A cancelled future
    /// reports [`TaskError::Cancelled`].
    pub fn exception(&self) -> Option<&TaskError> {
        self.wait();
        self.outcome().err()
    }

    /// [`exception`](Future::exception), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`TimeoutError`] when the future is still not done; it stays usable.
    pub fn exception_timeout(&self, timeout: Duration) -> Result<Option<&TaskError>, TimeoutError> {
        if self.wait_timeout(timeout) { Ok(self.outcome().err()) } else { Err(TimeoutError) }
    }

    /// The outcome of a done future, without waiting.
    fn outcome(&self) -> Result<&T, &TaskError> {
        let s = self.cell.core.load();
        debug_assert!(is_done(s));
        if s & STATE_MASK == CANCELLED {
            return Err(&CANCELLED_ERROR);
        }
        // SAFETY: FINISHED (loaded with Acquire) means the slot is
        // initialised and will not change while a handle borrows it.
        let outcome = unsafe { (*self.cell.core.value.get()).assume_init_ref() };
        outcome.as_ref()
    }

    /// Calls `f` with this future when it is done (`add_done_callback`).
    ///
    /// A future that is already done runs `f` at once, in the caller.
    /// Otherwise `f` runs in the thread that completes (or cancels) the
    /// future, after the result is set; callbacks run in registration order.
    /// A panicking callback is reported on stderr and does not stop the
    /// others.
    pub fn add_done_callback(&self, f: impl FnOnce(&Future<T>) + Send + 'static) {
        let f: Callback<T> = Box::new(f);
        match register(&self.cell.core, Notify::Callback(f)) {
            Ok(()) => {}
            Err(Notify::Callback(f)) => run_callback(f, self),
            Err(_) => unreachable!("register hands back what it was given"),
        }
    }

    /// Waits until the future is done and moves its outcome out.
    ///
    /// The value is moved only when this is the last handle to the future;
    /// while other clones are alive they may still borrow it, and this
    /// returns [`TaskError::Other`] instead (use [`result`](Future::result)
    /// to borrow).
    ///
    /// # Errors
    ///
    /// The task's error: [`TaskError::Panicked`] with the panic payload,
    /// [`TaskError::Cancelled`], [`TaskError::BrokenPool`], ...
    pub fn into_result(self) -> Result<T, TaskError> {
        wait_state(&self.cell, Deadline::NEVER, true);
        self.take()
    }

    /// Moves the outcome out of a done future whose callbacks have run.
    fn take(&self) -> Result<T, TaskError> {
        let s = self.cell.core.load();
        debug_assert!(is_done(s) && s & NOTIFYING == 0);
        if s & STATE_MASK == CANCELLED {
            return Err(TaskError::Cancelled);
        }
        let others = self.cell.core.handles.load(Ordering::Acquire) - 1;
        if others > 0 {
            return Err(TaskError::Other(format!(
                "the result is shared with {others} other handle(s) of this future; borrow it \
                 with result()"
            )));
        }
        let taken = TaskError::Other("the result was already moved out of this future".into());
        // SAFETY: FINISHED means the slot is initialised; this is the only
        // handle (any other was dropped, with Release, before the Acquire
        // load above), no callback is running (NOTIFYING is clear), and we
        // hold `&self` of the only handle, so nobody else can read the slot.
        // It stays initialised (with a "taken" error).
        unsafe { mem::replace((*self.cell.core.value.get()).assume_init_mut(), Err(taken)) }
    }
}

impl<T: Sync> Future<T> {
    /// The call's outcome, waiting as long as it takes (`future.result()`).
    ///
    /// Borrows the value: the future keeps it, and every handle may read it.
    /// Use [`into_result`](Future::into_result) or `.await` to move it out.
    ///
    /// # Errors
    ///
    /// The task's error: [`TaskError::Panicked`] with the panic payload,
    /// [`TaskError::Cancelled`], [`TaskError::BrokenPool`], ...
    pub fn result(&self) -> Result<&T, &TaskError> {
        self.wait();
        self.outcome()
    }

    /// The call's outcome, waiting at most `timeout`
    /// (`future.result(timeout=t)`).
    ///
    /// # Errors
    ///
    /// `Err(TimeoutError)` when the future is still not done after
    /// `timeout`; it stays usable (ask again). `Duration::ZERO` does not
    /// wait; `Duration::MAX` waits forever.
    pub fn result_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Result<&T, &TaskError>, TimeoutError> {
        if self.wait_timeout(timeout) { Ok(self.outcome()) } else { Err(TimeoutError) }
    }
}

/// Adds `entry` to the notification list unless the future is done; hands
/// it back if so. A waker is also accepted while the completer still runs
/// the list (it wakes the wakers after that).
fn register<T>(core: &Core<T>, entry: Notify<T>) -> Result<(), Notify<T>> {
    let mut list = core.notify.lock();
    let mut s = core.state.load(Ordering::Acquire);
    loop {
        if is_done(s) {
            if s & NOTIFYING != 0 && matches!(entry, Notify::Waker(_)) {
                list.push(entry);
                return Ok(());
            }
            return Err(entry);
        }
        if s & NOTIFY != 0 {
            break;
        }
        match core.state.compare_exchange_weak(s, s | NOTIFY, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => break,
            Err(now) => s = now,
        }
    }
    if let Notify::Waker(w) = &entry
        && list.iter().any(|e| matches!(e, Notify::Waker(old) if old.will_wake(w)))
    {
        return Ok(());
    }
    list.push(entry);
    Ok(())
}

/// Waits until the future is done (and, with `quiet`, its callbacks have
/// run), or the deadline passes. Returns whether it is.
///
/// A pool worker that waits without a timeout for a task of its own pool
/// that is still pending claims it and runs it inline, so a pool whose
/// workers all wait on queued tasks cannot deadlock (see the crate docs);
/// otherwise it sleeps. (A timed wait never runs the task: it could not
/// return on time.)
fn wait_state<T>(cell: &Arc<DynCell<T>>, deadline: Deadline, quiet: bool) -> bool {
    let core = &cell.core;
    let ready = |s: u32| is_done(s) && !(quiet && s & NOTIFYING != 0);
    let mut s = core.load();
    if ready(s) {
        return true;
    }
    if s & STATE_MASK == PENDING
        && deadline.is_never()
        && worker::may_run_inline(cell.slot.pool_id())
        && core.claim()
    {
        // SAFETY: the claim above made this thread the task's owner.
        unsafe { cell.slot.run(cell) };
        s = core.load();
        if ready(s) {
            return true;
        }
    }
    for _ in 0..SPIN_LIMIT {
        std::hint::spin_loop();
        s = core.load();
        if ready(s) {
            return true;
        }
    }
    loop {
        if ready(s) {
            return true;
        }
        if s & SLEEPERS == 0 {
            if let Err(now) = core.state.compare_exchange_weak(
                s,
                s | SLEEPERS,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                s = now;
                continue;
            }
            s |= SLEEPERS;
        }
        if !deadline.wait(&core.state, s) {
            return ready(core.load());
        }
        s = core.load();
    }
}

impl<T> std::future::Future for Future<T> {
    type Output = Result<T, TaskError>;

    /// Ready once the future is done; then moves the outcome out as
    /// [`into_result`](Future::into_result) does. Works from any async
    /// runtime: the waker is stored in the future and woken by the thread
    /// that completes it.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &*self;
        let s = this.cell.core.load();
        if is_done(s) && s & NOTIFYING == 0 {
            return Poll::Ready(this.take());
        }
        match register(&this.cell.core, Notify::Waker(cx.waker().clone())) {
            Ok(()) => Poll::Pending,
            Err(_) => Poll::Ready(this.take()),
        }
    }
}

// ---------------------------------------------------------------------------
// Promise

/// The producer side of a future: what an executor holds while the task is
/// queued or running.
///
/// | Python (executor side) | Rust |
/// | --- | --- |
/// | `Future()` | [`promise()`] |
/// | `future.set_running_or_notify_cancel()` | [`set_running_or_notify_cancel()`](Promise::set_running_or_notify_cancel) |
/// | `future.set_result(v)` | [`set_result(v)`](Promise::set_result) |
/// | `future.set_exception(e)` | [`set_exception(e)`](Promise::set_exception) |
///
/// Dropping a promise that was never completed completes its future with
/// [`TaskError::BrokenPool`]: a waiter never hangs on a lost task.
pub struct Promise<T> {
    cell: Option<Arc<DynCell<T>>>,
}

/// A new pending future and its producer.
///
/// ```
/// let (future, promise) = pool::promise::<String>();
/// assert!(promise.set_running_or_notify_cancel());
/// assert!(future.running());
/// promise.set_result("done".to_string());
/// assert_eq!(future.result().map(String::as_str), Ok("done"));
/// ```
pub fn promise<T: Send + 'static>() -> (Future<T>, Promise<T>) {
    let cell: Arc<DynCell<T>> = Arc::new(Cell { core: Core::new(PENDING), slot: NoTask });
    let future = Future { cell: Arc::clone(&cell) };
    (future, Promise { cell: Some(cell) })
}

impl<T> Promise<T> {
    fn cell(&self) -> &Arc<DynCell<T>> {
        self.cell.as_ref().expect("a promise holds its cell until it is consumed")
    }

    /// Python's `set_running_or_notify_cancel`: `false` if the future was
    /// cancelled (the executor must not run the call then), else marks it
    /// running and returns `true`.
    pub fn set_running_or_notify_cancel(&self) -> bool {
        match self.cell().core.transition(&[PENDING], RUNNING) {
            Ok(_) => true,
            Err(s) => s & STATE_MASK != CANCELLED,
        }
    }

    /// Completes the future with `value` (ignored if it was cancelled).
    pub fn set_result(mut self, value: T) {
        if let Some(cell) = self.cell.take() {
            complete(&cell, Ok(value));
        }
    }

    /// Completes the future with `error` (ignored if it was cancelled).
    pub fn set_exception(mut self, error: TaskError) {
        if let Some(cell) = self.cell.take() {
            complete(&cell, Err(error));
        }
    }

    /// Whether the consumer cancelled the future.
    pub fn is_cancelled(&self) -> bool {
        self.cell().core.is_cancelled()
    }

    /// A new handle to the future this promise completes.
    pub fn future(&self) -> Future<T> {
        Future::from_cell(self.cell())
    }
}

impl<T> Drop for Promise<T> {
    fn drop(&mut self) {
        if let Some(cell) = self.cell.take() {
            complete(&cell, Err(TaskError::BrokenPool("the executor dropped the task".into())));
        }
    }
}

impl<T> fmt::Debug for Promise<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Promise").finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// Waiting for many futures

/// Collects the indices of futures that completed, for `as_completed` and
/// `wait`: one thread waits, completers push.
pub(crate) struct Waiter {
    /// 1 while the waiting thread may sleep; a notifier swaps in 0 and wakes
    /// it if it saw 1.
    word: AtomicU32,
    done: core_sync::Mutex<Vec<usize>>,
}

impl Waiter {
    fn new() -> Arc<Waiter> {
        Arc::new(Waiter { word: AtomicU32::new(0), done: core_sync::Mutex::new(Vec::new()) })
    }

    fn notify(&self, index: usize) {
        self.done.lock().push(index);
        if self.word.swap(0, Ordering::SeqCst) == 1 {
            Futex::wake_all(&self.word);
        }
    }

    /// Moves the indices completed so far into `out`; if there are none,
    /// sleeps until one arrives or the deadline passes. Returns `false` only
    /// when nothing arrived before the deadline.
    fn collect(&self, out: &mut Vec<usize>, deadline: Deadline) -> bool {
        loop {
            self.word.store(1, Ordering::SeqCst);
            {
                let mut done = self.done.lock();
                if !done.is_empty() {
                    out.append(&mut done);
                    return true;
                }
            }
            if !deadline.wait(&self.word, 1) {
                let mut done = self.done.lock();
                let got = !done.is_empty();
                out.append(&mut done);
                return got;
            }
        }
    }
}

/// Registers `waiter` with every future not yet done (deduplicated), and
/// returns the distinct indices in `futures` split into done and pending.
fn watch<T>(futures: &[Future<T>], waiter: &Arc<Waiter>) -> (Vec<usize>, Vec<usize>) {
    let mut seen = HashSet::with_capacity(futures.len());
    let (mut done, mut pending) = (Vec::new(), Vec::new());
    for (i, f) in futures.iter().enumerate() {
        if !seen.insert(Arc::as_ptr(&f.cell).cast::<()>()) {
            continue;
        }
        match register(&f.cell.core, Notify::Waiter(Arc::clone(waiter), i)) {
            Ok(()) => pending.push(i),
            Err(_) => done.push(i),
        }
    }
    (done, pending)
}

/// Removes `waiter` from the lists of the futures at `indices`.
fn unwatch<T>(futures: &[Future<T>], indices: impl Iterator<Item = usize>, waiter: &Arc<Waiter>) {
    for i in indices {
        let mut list = futures[i].cell.core.notify.lock();
        list.retain(|e| !matches!(e, Notify::Waiter(w, _) if Arc::ptr_eq(w, waiter)));
    }
}

/// A pool worker that waits without a timeout for many futures first runs
/// those of them that are still queued in its own pool (each is claimed, so
/// none runs twice). Stops early once `stop` says so.
fn run_pending_inline<T>(
    futures: &[Future<T>],
    indices: &[usize],
    deadline: Deadline,
    stop: impl Fn() -> bool,
) {
    if !deadline.is_never() {
        return;
    }
    for &i in indices {
        let cell = &futures[i].cell;
        if stop() {
            return;
        }
        if worker::may_run_inline(cell.slot.pool_id()) && cell.core.claim() {
            // SAFETY: the claim made this thread the task's owner.
            unsafe { cell.slot.run(cell) };
        }
    }
}

/// Python's `concurrent.futures.as_completed(fs, timeout)`: yields the
/// futures as they finish (or are cancelled), those already done first. A
/// future given more than once is yielded once.
///
/// The iterator yields `Err(TimeoutError)` once (and then ends) if `timeout`,
/// counted from this call, passes before every future is done.
///
/// ```
/// use pool::{as_completed, promise};
/// use std::time::Duration;
///
/// let (a, pa) = promise::<u32>();
/// let (b, pb) = promise::<u32>();
/// pb.set_result(2);
/// let futures = [a, b];
/// let mut it = as_completed(&futures, Some(Duration::from_millis(10)));
/// assert_eq!(it.next().unwrap().unwrap().result(), Ok(&2));
/// assert!(it.next().unwrap().is_err()); // `a` is still pending
/// pa.set_result(1);
/// ```
pub fn as_completed<T>(futures: &[Future<T>], timeout: Option<Duration>) -> AsCompleted<'_, T> {
    let deadline = deadline(timeout);
    let waiter = Waiter::new();
    let (ready, pending) = watch(futures, &waiter);
    let left = pending.len();
    AsCompleted {
        futures,
        waiter,
        ready: ready.into(),
        pending: pending.into_iter().collect(),
        left,
        deadline,
        timed_out: false,
    }
}

/// The iterator [`as_completed`] returns.
pub struct AsCompleted<'a, T> {
    futures: &'a [Future<T>],
    waiter: Arc<Waiter>,
    /// Indices done and not yet yielded.
    ready: std::collections::VecDeque<usize>,
    /// Indices registered and not yet reported done.
    pending: HashSet<usize>,
    left: usize,
    deadline: Deadline,
    timed_out: bool,
}

impl<'a, T> Iterator for AsCompleted<'a, T> {
    type Item = Result<&'a Future<T>, TimeoutError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(i) = self.ready.pop_front() {
                return Some(Ok(&self.futures[i]));
            }
            if self.left == 0 || self.timed_out {
                return None;
            }
            let pending: Vec<usize> = self.pending.iter().copied().collect();
            let waiter = &self.waiter;
            run_pending_inline(self.futures, &pending, self.deadline, || {
                !waiter.done.lock().is_empty()
            });
            let mut got = Vec::new();
            if !self.waiter.collect(&mut got, self.deadline) {
                self.timed_out = true;
                return Some(Err(TimeoutError));
            }
            for i in got {
                if self.pending.remove(&i) {
                    self.left -= 1;
                    self.ready.push_back(i);
                }
            }
        }
    }
}

impl<T> Drop for AsCompleted<'_, T> {
    fn drop(&mut self) {
        unwatch(self.futures, self.pending.iter().copied(), &self.waiter);
    }
}

impl<T> fmt::Debug for AsCompleted<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted").field("left", &(self.left + self.ready.len())).finish()
    }
}

/// When [`wait`] returns (Python's `FIRST_COMPLETED`, `FIRST_EXCEPTION`,
/// `ALL_COMPLETED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ReturnWhen {
    /// As soon as any future finishes or is cancelled.
    FirstCompleted,
    /// As soon as any future finishes with an error (a cancellation does not
    /// count); if none does, when all are done.
    FirstException,
    /// When every future is done.
    #[default]
    AllCompleted,
}

/// The futures [`wait`] found done, and those it did not.
pub type DoneAndNotDone<'a, T> = (Vec<&'a Future<T>>, Vec<&'a Future<T>>);

/// Python's `concurrent.futures.wait(fs, timeout, return_when)`: waits until
/// `when` holds or `timeout` passes, and returns `(done, not_done)` (each
/// future once, in the order given; a timeout is not an error, as in Python).
///
/// ```
/// use pool::{promise, wait, ReturnWhen};
///
/// let (a, pa) = promise::<u32>();
/// let (b, _pb) = promise::<u32>();
/// pa.set_result(1);
/// let futures = [a, b];
/// let (done, not_done) = wait(&futures, None, ReturnWhen::FirstCompleted);
/// assert_eq!((done.len(), not_done.len()), (1, 1));
/// ```
pub fn wait<T>(
    futures: &[Future<T>],
    timeout: Option<Duration>,
    when: ReturnWhen,
) -> DoneAndNotDone<'_, T> {
    let deadline = deadline(timeout);
    let waiter = Waiter::new();
    let (done, pending) = watch(futures, &waiter);
    let failed = |i: &usize| {
        let s = futures[*i].cell.core.load();
        s & STATE_MASK == FINISHED && futures[*i].outcome().is_err()
    };
    let satisfied = |done: &[usize], left: usize| match when {
        ReturnWhen::FirstCompleted => !done.is_empty(),
        ReturnWhen::FirstException => left == 0 || done.iter().any(failed),
        ReturnWhen::AllCompleted => left == 0,
    };
    let mut done = done;
    let mut pending: HashSet<usize> = pending.into_iter().collect();
    loop {
        if satisfied(&done, pending.len()) {
            break;
        }
        let list: Vec<usize> = pending.iter().copied().collect();
        let first = when == ReturnWhen::FirstCompleted;
        run_pending_inline(futures, &list, deadline, || first && !waiter.done.lock().is_empty());
        let mut got = Vec::new();
        let arrived = waiter.collect(&mut got, deadline);
        for i in got {
            if pending.remove(&i) {
                done.push(i);
            }
        }
        if !arrived {
            break;
        }
    }
    unwatch(futures, pending.iter().copied(), &waiter);
    let mut done_mask = vec![false; futures.len()];
    for i in done {
        done_mask[i] = true;
    }
    let mut not_done_mask = vec![false; futures.len()];
    for i in pending {
        not_done_mask[i] = true;
    }
    let pick =
        |mask: &[bool]| futures.iter().zip(mask).filter(|(_, m)| **m).map(|(f, _)| f).collect();
    (pick(&done_mask), pick(&not_done_mask))
}
