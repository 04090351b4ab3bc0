//! Python's `threading.Thread` for Rust: threads with daemon semantics, a
//! `Timer`, and the thread registry.
//!
//! | Python | Rust |
//! | --- | --- |
//! | `t = threading.Thread(target=f, name="io", daemon=True)` | `let t = Thread::new(f).name("io").daemon(true);` |
//! | `t.start()` | `let h = t.start()?;` (`io::Error` when the OS refuses a thread) |
//! | `t.join()` / `t.join(timeout)` | `h.join()` (`Result<T, Panic>`) / `h.join_timeout(t) -> bool` |
//! | `t.is_alive()`, `t.name`, `t.ident`, `t.native_id`, `t.daemon` | `h.is_alive()`, `h.name()`, `h.ident()`, `h.native_id()`, `h.is_daemon()` |
//! | `threading.current_thread()` / `main_thread()` | [`current_thread()`] / [`main_thread()`] ([`ThreadRef`]) |
//! | `threading.enumerate()` / `active_count()` | [`enumerate()`] / [`active_count()`] |
//! | `threading.get_ident()` / `get_native_id()` | [`get_ident()`] / [`get_native_id()`] |
//! | `threading.excepthook = hook` | [`set_excepthook(hook)`](set_excepthook) |
//! | `threading._register_atexit(f)` | [`register_atexit(f)`](register_atexit) |
//! | `threading.Timer(5.0, f)`, `.start()`, `.cancel()` | [`Timer::new(interval, f)`](Timer::new), `.start()?`, `.cancel()` |
//!
//! ```
//! use std_threads::Thread;
//!
//! let worker = Thread::new(|| (1..=10).sum::<u32>()).start()?;
//! let logger = Thread::new(|| { /* runs until the process exits */ }).daemon(true).start()?;
//! assert_eq!(worker.join().unwrap(), 55);
//! # drop(logger);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Exit: the process waits for its non-daemon threads
//!
//! As in Python, when `main` returns or [`std::process::exit`] runs, the
//! process first waits for every non-daemon thread started through this
//! crate to finish; daemon threads are then simply ended with the process.
//! Nothing needs to be called in `main` for this.
//!
//! **How.** The first [`Thread::start`] registers a handler with the C
//! library's `atexit`. Returning from Rust's `main` and
//! `std::process::exit` both end in the C library's `exit`, which runs that
//! handler while the other threads still run. The handler sleeps on a futex
//! word (through `core-sync`) that counts the non-daemon threads still
//! running their function, until the count drops to zero; each such thread
//! decrements the count as its very last step and wakes the handler only
//! if it is waiting. Threads started while the handler waits are waited for
//! too. When the handler runs on a non-daemon thread (one that called
//! `exit` itself), it does not wait for that thread. When it runs on the
//! main thread, the main thread counts as finished from then on (Python's
//! behaviour): `main_thread().join()` in another thread returns. Then the
//! functions given to [`register_atexit`] run (last first), so that code
//! like a thread pool can tell its non-daemon workers to stop, and only then
//! the handler waits.
//!
//! **Platforms.**
//!
//! - Linux, Android, macOS, iOS, FreeBSD: both `main` returning and
//!   `std::process::exit` wait (the exit wait is tested on Linux; the other
//!   unix targets go through the same `atexit` path and are compile-checked).
//! - Windows: returning from `main` waits (the C runtime calls `exit`, which
//!   runs `atexit` handlers before `ExitProcess`). `std::process::exit` does
//!   **not** wait: Rust calls `ExitProcess` directly, which ends every other
//!   thread before any handler could run. Compile-checked only. Built into
//!   a DLL rather than an executable, the C runtime would run the handler
//!   at `DLL_PROCESS_DETACH`, after `ExitProcess` has ended the other
//!   threads, and it would wait for them forever: not supported.
//!
//! **Limits.**
//!
//! - `std::process::abort`, a crash, a signal that kills the process, and a
//!   panic under `panic = "abort"` skip the wait (as Python's `os._exit`).
//!   With `panic = "abort"` a panicking thread ends the whole process.
//! - A non-daemon thread that never finishes (blocked forever, an endless
//!   loop) keeps the process alive forever, as in Python. Make such threads
//!   daemons, or tell them to stop from a [`register_atexit`] function.
//! - A non-daemon thread that calls `std::process::exit` *after* the process
//!   has begun to exit (`main` has returned and the handler is waiting for
//!   that very thread) never returns: on Linux Rust's standard library parks
//!   every thread that calls `exit` after the first one
//!   ([rust-lang/rust#126600](https://github.com/rust-lang/rust/issues/126600)),
//!   so the handler waits for it forever. A non-daemon thread that calls
//!   `exit` while `main` still runs ends the process normally (after the
//!   *other* non-daemon threads). Python has no such case: `sys.exit()` in a
//!   thread only ends that thread.
//! - The handler runs where `exit` runs `atexit` handlers: after the
//!   handlers registered later than the first thread start, before those
//!   registered earlier; the main thread's thread-locals are already
//!   destroyed then (glibc runs their destructors first).
//! - A non-daemon thread started after the handler has returned (from
//!   another `atexit` handler, or from a daemon thread during the rest of
//!   `exit`) is not waited for.
//! - After `fork`, in the child, only the forking thread exists: it becomes
//!   the main thread, the others are marked finished, and the child waits
//!   only for threads it starts itself.
//!
//! # Threads this crate did not start
//!
//! A thread from `std::thread::spawn` (or a C library, or a test harness) is
//! a *dummy* thread, as in Python: [`current_thread()`] on it returns a
//! record named `"Dummy-N"` with `is_daemon() == true`, always alive, that
//! cannot be joined ([`JoinError::DummyThread`]) and that [`enumerate()`]
//! does not list. Threads it starts are daemons by default (they inherit its
//! flag), and the process never waits for it. The main thread is detected
//! by `gettid() == getpid()` on Linux and Android, `pthread_main_np()` on
//! macOS, iOS and FreeBSD, and by the name Rust's runtime gives it
//! (`"main"`) on Windows.
//!
//! # Waiting
//!
//! Every blocking wait here (`join`, the exit wait, a timer's interval) is a
//! futex wait on an `AtomicU32` through [`core_sync::backend`]; the registry
//! and the excepthook slot are [`core_sync::Mutex`]es.

mod exit;
mod hook;
mod registry;
mod sys;
mod thread;
mod timer;
mod wait;

pub use core_sync;
pub use exit::register_atexit;
pub use hook::{ExceptHookArgs, Panic, default_excepthook, reset_excepthook, set_excepthook};
pub use registry::{
    JoinError, ThreadRef, active_count, current_thread, enumerate, get_ident, get_native_id,
    main_thread,
};
pub use thread::{JoinHandle, Thread};
pub use timer::{Timer, TimerHandle};
