//! `Thread`: Python's `threading.Thread`, and its `JoinHandle`.
//!
//! A started thread's life, as the other modules see it:
//!
//! 1. `start()` (on the creating thread): makes the record, adds it to the
//!    registry, counts it if it is a non-daemon thread (see `exit`), then
//!    asks the OS for the thread; if the OS refuses, undoes all three and
//!    returns the error.
//! 2. The new thread publishes its OS id, runs the function under
//!    `catch_unwind`, reports a panic to the excepthook, stores the result
//!    for `join`.
//! 3. It leaves the registry, marks itself finished (joiners wake), and, last,
//!    uncounts itself: from then on the process may exit without it.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use core_sync::Mutex;

use crate::hook::{self, Panic};
use crate::registry::{self, REGISTRY, ThreadRef};
use crate::{current_thread, exit};

/// A thread, configured but not started (Python's
/// `threading.Thread(target=f, name=..., daemon=...)`).
///
/// [`start`](Thread::start) consumes it, so a thread cannot be started
/// twice (Python raises `RuntimeError` for that).
///
/// | Python | Rust |
/// | --- | --- |
/// | `t = threading.Thread(target=f)` | `let t = Thread::new(f);` |
/// | `Thread(target=f, name="io")` | `Thread::new(f).name("io")` |
/// | `Thread(target=f, daemon=True)` / `t.daemon = True` | `Thread::new(f).daemon(true)` |
/// | `threading.stack_size(n)` (process-wide) | `Thread::new(f).stack_size(n)` (this thread) |
/// | `t.start()` | `let h = t.start()?;` |
/// | `t.join()` | `h.join()` (returns `f`'s result, or its panic) |
///
/// ```
/// use std_threads::Thread;
///
/// let handle = Thread::new(|| 6 * 7).name("answer").start()?;
/// assert_eq!(handle.name(), "answer");
/// assert_eq!(handle.join().unwrap(), 42);
/// # Ok::<(), std::io::Error>(())
/// ```
#[must_use = "a Thread does nothing until it is started"]
pub struct Thread<F> {
    f: F,
    name: Option<String>,
    daemon: Option<bool>,
    stack_size: Option<usize>,
}

/// The largest stack size passed on to the OS; a larger request is refused
/// with `InvalidInput` (the standard library's rounding would overflow).
const MAX_STACK_SIZE: usize = usize::MAX / 4;

impl<F, T> Thread<F>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    /// A thread that will run `f` (Python's `Thread(target=f)`); not started.
    pub fn new(f: F) -> Self {
        Thread { f, name: None, daemon: None, stack_size: None }
    }

    /// Names the thread (Python's `name=`). The default is `"Thread-N"`.
    /// The name is also given to the OS thread (without any NUL bytes), so
    /// Rust's panic messages and debuggers show it.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Makes the thread a daemon (Python's `daemon=True`) or not.
    ///
    /// The process does not wait for a daemon thread when it exits; it waits
    /// for every non-daemon thread. The default is the creating thread's
    /// flag: `false` on the main thread, the creator's own on a thread
    /// started through this crate, and `true` on any other thread (which
    /// counts as a daemon dummy thread, as in Python).
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = Some(daemon);
        self
    }

    /// The new thread's stack size in bytes (the OS may round it up). The
    /// default is the standard library's (2 MiB, or `RUST_MIN_STACK`).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Starts the thread (Python's `start()`).
    ///
    /// When this returns `Ok`, the thread is alive, listed by
    /// [`enumerate()`](crate::enumerate), and (unless it is a daemon) waited
    /// for when the process exits.
    ///
    /// # Errors
    ///
    /// The OS's error when it refuses a new thread (too many threads, no
    /// memory for the stack), `InvalidInput` for a stack size the OS cannot
    /// take, or an error from `atexit` when the exit handler cannot be
    /// registered (first start only). Nothing is started or registered then.
    /// This never panics.
    pub fn start(self) -> io::Result<JoinHandle<T>> {
        let Thread { f, name, daemon, stack_size } = self;
        if stack_size.is_some_and(|size| size > MAX_STACK_SIZE) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "stack size too large"));
        }
        let daemon = daemon.unwrap_or_else(|| current_thread().is_daemon());
        let name = name.unwrap_or_else(registry::new_thread_name);
        let os_name: String = name.chars().filter(|&c| c != '\0').collect();
        let thread = ThreadRef::new_started(name, daemon);
        let packet: Arc<Packet<T>> = Arc::new(Packet { result: Mutex::new(None) });

        {
            let mut registry = REGISTRY.lock();
            exit::install_hooks(&mut registry)?;
            registry::register(&mut registry, &thread);
        }
        if !daemon {
            exit::add_non_daemon();
        }

        let mut builder = std::thread::Builder::new().name(os_name);
        if let Some(size) = stack_size {
            builder = builder.stack_size(size);
        }
        let body = {
            let thread = thread.clone();
            let packet = Arc::clone(&packet);
            move || run(&thread, packet, f)
        };
        // `Builder::spawn` reports the OS's refusal as an error; the
        // `catch_unwind` is a last resort against a panic inside the
        // standard library.
        let spawned = panic::catch_unwind(AssertUnwindSafe(move || builder.spawn(body)))
            .unwrap_or_else(|_| Err(io::Error::other("the standard library panicked")));
        match spawned {
            // Dropping std's handle detaches the OS thread: joining is done
            // on the record's word, which also gives timed joins.
            Ok(_detached) => Ok(JoinHandle { thread, packet }),
            Err(error) => {
                registry::unregister(&thread);
                thread.finish();
                if !daemon {
                    exit::remove_non_daemon();
                }
                Err(error)
            }
        }
    }
}

impl<F> std::fmt::Debug for Thread<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Thread")
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("stack_size", &self.stack_size)
            .finish_non_exhaustive()
    }
}

/// Where a thread leaves its result for `join`.
struct Packet<T> {
    result: Mutex<Option<Result<T, Panic>>>,
}

/// The body of every thread the crate starts.
fn run<F, T>(thread: &ThreadRef, packet: Arc<Packet<T>>, f: F)
where
    F: FnOnce() -> T,
{
    exit::set_counted(!thread.is_daemon());
    thread.enter();
    let result = panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let panic = Panic::new(payload);
        hook::report(thread, &panic);
        panic
    });
    *packet.result.lock() = Some(result);
    // If the handle is gone, this drops the result here, while the process
    // still waits for the thread, rather than after it stopped waiting.
    drop(packet);
    registry::unregister(thread);
    thread.finish();
    // The flag, not the daemon setting: in a forked child the thread is no
    // longer counted.
    if exit::take_counted() {
        exit::remove_non_daemon();
    }
}

/// A started thread: join it for its result (what Python's `Thread` object
/// is after `start()`).
///
/// Not `Clone`: it owns the thread's result, which [`join`](JoinHandle::join)
/// hands out once. To share the thread (to test `is_alive`, to join it
/// without the result, from several places), clone
/// [`thread()`](JoinHandle::thread), a [`ThreadRef`]. Dropping the handle
/// does not stop the thread or change how exit waits for it; the result is
/// then dropped on the thread itself, before it counts as finished (so
/// before the exit wait lets the process go).
pub struct JoinHandle<T> {
    thread: ThreadRef,
    packet: Arc<Packet<T>>,
}

impl<T> JoinHandle<T> {
    /// Waits for the thread to finish and returns its function's result, or
    /// its panic (Python's `join()`, which returns nothing and leaves the
    /// exception to `threading.excepthook`; the hook has run by the time
    /// this returns).
    ///
    /// # Errors
    ///
    /// The thread's [`Panic`]. A thread that calls `join` on its own handle
    /// (which it can only have been sent) gets at once a `Panic` whose
    /// payload is [`JoinError::CurrentThread`](crate::JoinError::CurrentThread)
    /// instead of waiting forever (Python raises `RuntimeError`).
    pub fn join(self) -> Result<T, Panic> {
        if let Err(error) = self.thread.check_joinable() {
            return Err(Panic::new(Box::new(error)));
        }
        self.thread.join_timeout(Duration::MAX);
        match self.packet.result.lock().take() {
            Some(result) => result,
            // The thread finished, so it stored its result; this is only
            // reachable if that invariant breaks.
            None => Err(Panic::new(Box::new("std-threads: the thread left no result"))),
        }
    }

    /// Waits at most `timeout` for the thread to finish (Python's
    /// `join(timeout)` then `not is_alive()`); returns whether it finished.
    /// The handle stays usable: a later [`join`](JoinHandle::join) returns
    /// the result.
    ///
    /// `Duration::ZERO` only checks; `Duration::MAX` waits forever. On the
    /// thread itself it returns `false` at once.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.thread.join_timeout(timeout)
    }

    /// Whether the thread is still running its function (Python's
    /// `is_alive()`).
    pub fn is_alive(&self) -> bool {
        self.thread.is_alive()
    }

    /// The thread's name (Python's `name`).
    pub fn name(&self) -> &str {
        self.thread.name()
    }

    /// The thread's identifier (Python's `ident`); see [`ThreadRef::ident`].
    pub fn ident(&self) -> u64 {
        self.thread.ident()
    }

    /// The OS's id for the thread (Python's `native_id`); waits briefly for
    /// the new thread to publish it. See [`ThreadRef::native_id`].
    pub fn native_id(&self) -> u64 {
        self.thread.native_id().unwrap_or(0)
    }

    /// Whether the thread is a daemon (Python's `daemon`).
    pub fn is_daemon(&self) -> bool {
        self.thread.is_daemon()
    }

    /// The shared handle on the thread (what `current_thread()` returns on
    /// it), to clone and pass around.
    pub fn thread(&self) -> &ThreadRef {
        &self.thread
    }
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle").field("thread", &self.thread).finish_non_exhaustive()
    }
}
