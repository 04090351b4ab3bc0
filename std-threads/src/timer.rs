//! `Timer`: Python's `threading.Timer`.
//!
//! # State machine
//!
//! One `AtomicU32` per timer, shared by the timer's thread and its handles:
//!
//! | value | meaning |
//! | --- | --- |
//! | `ARMED` | waiting for the interval to pass |
//! | `CANCELLED` | `cancel()` won: the function will never run |
//! | `FIRED` | the interval passed first: the function runs (or ran) |
//!
//! The only transitions are `ARMED -> CANCELLED` (by `cancel`) and
//! `ARMED -> FIRED` (by the timer thread, once the deadline has passed),
//! each one compare-exchange, so exactly one of them wins. The timer thread
//! sleeps on the word (futex, until the deadline) while it holds `ARMED`; a
//! successful cancel wakes it, so it ends at once instead of at the deadline.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use core_sync::backend::AtomicU32;

use crate::JoinError;
use crate::registry::ThreadRef;
use crate::thread::Thread;
use crate::wait;

const ARMED: u32 = 0;
const CANCELLED: u32 = 1;
const FIRED: u32 = 2;

/// A function to call after an interval, on its own thread, unless
/// cancelled first (Python's `threading.Timer`). Configured, not started.
///
/// | Python | Rust |
/// | --- | --- |
/// | `t = threading.Timer(5.0, f)` | `let t = Timer::new(Duration::from_secs(5), f);` |
/// | `t.start()` | `let t = t.start()?;` |
/// | `t.cancel()` | `t.cancel()` (returns whether the call was prevented) |
/// | `t.is_alive()` / `t.join()` | `t.is_alive()` / `t.join()` |
///
/// ```
/// use std_threads::Timer;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let fired = Arc::new(AtomicBool::new(false));
/// let flag = Arc::clone(&fired);
/// let t = Timer::new(Duration::from_millis(10), move || flag.store(true, Ordering::SeqCst))
///     .start()?;
/// t.join().unwrap();
/// assert!(fired.load(Ordering::SeqCst));
///
/// let t = Timer::new(Duration::from_secs(3600), || unreachable!()).start()?;
/// assert!(t.cancel());           // prevented; the timer's thread ends now
/// t.join().unwrap();
/// # Ok::<(), std::io::Error>(())
/// ```
#[must_use = "a Timer does nothing until it is started"]
pub struct Timer<F> {
    interval: Duration,
    f: F,
    name: Option<String>,
    daemon: Option<bool>,
}

impl<F> Timer<F>
where
    F: FnOnce() + Send + 'static,
{
    /// A timer that will call `f` once `interval` has passed after
    /// [`start`](Timer::start). `Duration::MAX` means "only if never
    /// cancelled": it waits forever.
    pub fn new(interval: Duration, f: F) -> Self {
        Timer { interval, f, name: None, daemon: None }
    }

    /// Names the timer's thread (default `"Thread-N"`, as Python's).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Makes the timer's thread a daemon or not; the default is the creating
    /// thread's flag, as for [`Thread::daemon`]. The process waits for a
    /// non-daemon timer at exit: for its interval, unless it is cancelled.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = Some(daemon);
        self
    }

    /// Starts the timer's thread; the interval counts from now.
    ///
    /// # Errors
    ///
    /// As [`Thread::start`]: the OS refused the thread.
    pub fn start(self) -> io::Result<TimerHandle> {
        let Timer { interval, f, name, daemon } = self;
        let state = Arc::new(AtomicU32::new(ARMED));
        let deadline = wait::Deadline::after(interval);
        let word = Arc::clone(&state);
        let mut thread = Thread::new(move || wait_then_call(&word, deadline, f));
        if let Some(name) = name {
            thread = thread.name(name);
        }
        if let Some(daemon) = daemon {
            thread = thread.daemon(daemon);
        }
        let handle = thread.start()?;
        Ok(TimerHandle { state, thread: handle.thread().clone() })
    }
}

impl<F> std::fmt::Debug for Timer<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer")
            .field("interval", &self.interval)
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .finish_non_exhaustive()
    }
}

/// The timer thread's body.
fn wait_then_call<F: FnOnce()>(state: &AtomicU32, deadline: wait::Deadline, f: F) {
    loop {
        if state.load(Ordering::Acquire) != ARMED {
            return; // cancelled
        }
        if deadline.passed() {
            if state.compare_exchange(ARMED, FIRED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                f();
            }
            return;
        }
        wait::wait(state, ARMED, deadline);
    }
}

/// A started [`Timer`]. Cheap to clone; every clone controls the same timer.
///
/// The function's panic, if any, goes to the
/// [excepthook](crate::set_excepthook), as in Python; `join` only waits.
#[derive(Clone)]
pub struct TimerHandle {
    state: Arc<AtomicU32>,
    thread: ThreadRef,
}

impl TimerHandle {
    /// Stops the timer if its function has not been called yet (Python's
    /// `cancel()`). Returns `true` when the function will never be called
    /// (this or an earlier cancel won), `false` when it had already been
    /// called or is running.
    ///
    /// Race-free: a cancel that returns `true` is never followed by the
    /// call, however close to the deadline it comes. The timer's thread then
    /// ends promptly, without waiting for the interval.
    pub fn cancel(&self) -> bool {
        match self.state.compare_exchange(ARMED, CANCELLED, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                wait::wake_all(&self.state);
                true
            }
            Err(now) => now == CANCELLED,
        }
    }

    /// Whether the function has been called (or is running): the interval
    /// passed before any cancel.
    pub fn fired(&self) -> bool {
        self.state.load(Ordering::Acquire) == FIRED
    }

    /// Whether the timer's thread is still running: waiting, or calling the
    /// function (Python's `is_alive()`).
    pub fn is_alive(&self) -> bool {
        self.thread.is_alive()
    }

    /// Waits for the timer's thread to end: after the call, or promptly
    /// after a cancel (Python's `join()`).
    ///
    /// # Errors
    ///
    /// [`JoinError::CurrentThread`] when called from the timer's own
    /// function.
    pub fn join(&self) -> Result<(), JoinError> {
        self.thread.join()
    }

    /// Waits at most `timeout` for the timer's thread to end; returns
    /// whether it has.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.thread.join_timeout(timeout)
    }

    /// The timer's thread.
    pub fn thread(&self) -> &ThreadRef {
        &self.thread
    }
}

impl std::fmt::Debug for TimerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state.load(Ordering::Relaxed) {
            ARMED => "armed",
            CANCELLED => "cancelled",
            _ => "fired",
        };
        f.debug_struct("TimerHandle").field("state", &state).field("thread", &self.thread).finish()
    }
}
