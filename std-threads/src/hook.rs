//! A thread's panic: the value `join` returns, and the hook that reports it
//! (Python's `threading.excepthook`).

use std::any::Any;
use std::fmt;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use core_sync::Mutex;

use crate::ThreadRef;

/// The panic of a thread: what [`JoinHandle::join`](crate::JoinHandle::join)
/// returns when the thread's function panicked (Python's exception, which
/// Python reports but does not return), with the panic's payload.
///
/// ```
/// let h = std_threads::Thread::new(|| -> u32 { panic!("boom") }).start()?;
/// let panic = h.join().unwrap_err();
/// assert_eq!(panic.message(), Some("boom"));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Panic(Box<dyn Any + Send + 'static>);

impl Panic {
    pub(crate) fn new(payload: Box<dyn Any + Send + 'static>) -> Panic {
        Panic(payload)
    }

    /// The panic's payload, as `std::thread::JoinHandle::join` would return
    /// it: a `&'static str` or a `String` for `panic!` with a message, any
    /// value for `std::panic::panic_any`.
    pub fn payload(&self) -> &(dyn Any + Send + 'static) {
        &*self.0
    }

    /// The payload, owned (to downcast, or to re-raise with
    /// `std::panic::resume_unwind`).
    pub fn into_payload(self) -> Box<dyn Any + Send + 'static> {
        self.0
    }

    /// The panic message, when the payload is a string (as `panic!("...")`
    /// makes it).
    pub fn message(&self) -> Option<&str> {
        if let Some(s) = self.0.downcast_ref::<&'static str>() {
            Some(s)
        } else {
            self.0.downcast_ref::<String>().map(String::as_str)
        }
    }

    /// Continues the panic on the calling thread (Python's `raise`).
    pub fn resume(self) -> ! {
        panic::resume_unwind(self.0)
    }
}

impl fmt::Debug for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Panic").field(&self.message().unwrap_or("Box<dyn Any>")).finish()
    }
}

impl fmt::Display for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.message() {
            Some(message) => write!(f, "thread panicked: {message}"),
            None => f.write_str("thread panicked"),
        }
    }
}

impl std::error::Error for Panic {}

/// What the exception hook is told about a thread's panic (Python's
/// `threading.ExceptHookArgs`).
pub struct ExceptHookArgs<'a> {
    thread: &'a ThreadRef,
    panic: &'a Panic,
}

impl ExceptHookArgs<'_> {
    /// The thread that panicked (Python's `args.thread`).
    pub fn thread(&self) -> &ThreadRef {
        self.thread
    }

    /// The thread's name.
    pub fn name(&self) -> &str {
        self.thread.name()
    }

    /// The panic (Python's `args.exc_value`); its payload is what `join`
    /// returns afterwards.
    pub fn panic(&self) -> &Panic {
        self.panic
    }
}

impl fmt::Debug for ExceptHookArgs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExceptHookArgs")
            .field("thread", self.thread)
            .field("panic", self.panic)
            .finish()
    }
}

type Hook = Arc<dyn Fn(&ExceptHookArgs<'_>) + Send + Sync + 'static>;

/// The hook set by `set_excepthook`; `None` is the default.
pub(crate) static HOOK: Mutex<Option<Hook>> = Mutex::new(None);

/// Sets the function called when a thread started through the crate panics
/// (Python's `threading.excepthook = hook`).
///
/// The hook runs on the panicking thread, after the panic has unwound and
/// before the thread counts as finished, so a `join` that returns has seen
/// it run. A panic inside the hook is caught and reported on stderr. Timers'
/// functions are reported here too.
///
/// Rust's own panic hook (`std::panic::set_hook`) still runs first, at the
/// panic itself; by default it prints `thread 'NAME' panicked at ...`.
///
/// | Python | Rust |
/// | --- | --- |
/// | `threading.excepthook = hook` | `set_excepthook(hook)` |
/// | `threading.excepthook = threading.__excepthook__` | [`reset_excepthook()`] |
/// | `threading.__excepthook__(args)` | [`default_excepthook(args)`](default_excepthook) |
///
/// ```
/// use std_threads::{Thread, set_excepthook, reset_excepthook};
/// use std::sync::atomic::{AtomicBool, Ordering};
///
/// static SEEN: AtomicBool = AtomicBool::new(false);
/// set_excepthook(|args| {
///     assert_eq!(args.name(), "doomed");
///     assert_eq!(args.panic().message(), Some("boom"));
///     SEEN.store(true, Ordering::SeqCst);
/// });
/// let h = Thread::new(|| panic!("boom")).name("doomed").start()?;
/// assert!(h.join().is_err());
/// assert!(SEEN.load(Ordering::SeqCst));
/// reset_excepthook();
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn set_excepthook<F>(hook: F)
where
    F: Fn(&ExceptHookArgs<'_>) + Send + Sync + 'static,
{
    let old = HOOK.lock().replace(Arc::new(hook));
    // Dropped outside the lock: the old hook's captures may do anything.
    drop(old);
}

/// Puts the default hook ([`default_excepthook`]) back.
pub fn reset_excepthook() {
    let old = HOOK.lock().take();
    drop(old);
}

/// The default hook (Python's `threading.__excepthook__`): prints
/// `Exception in thread NAME:` and the panic message to stderr.
pub fn default_excepthook(args: &ExceptHookArgs<'_>) {
    let message = args.panic.message().unwrap_or("Box<dyn Any>");
    let mut err = std::io::stderr().lock();
    // Nothing to do if stderr is gone; never panic here.
    let _ = writeln!(err, "Exception in thread {}:\n{message}", args.name());
}

/// Reports a thread's panic to the hook, on the panicking thread.
pub(crate) fn report(thread: &ThreadRef, panic: &Panic) {
    let hook = HOOK.lock().clone();
    let args = ExceptHookArgs { thread, panic };
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| match &hook {
        Some(hook) => hook(&args),
        None => default_excepthook(&args),
    }));
    if let Err(payload) = outcome {
        let inner = Panic(payload);
        let message = inner.message().unwrap_or("Box<dyn Any>").to_owned();
        let _ = writeln!(
            std::io::stderr().lock(),
            "Exception in the excepthook of thread {}:\n{message}",
            thread.name()
        );
        // Dropping a payload may panic in turn; leak it then.
        if let Err(again) = panic::catch_unwind(AssertUnwindSafe(move || drop(inner))) {
            core::mem::forget(again);
        }
    }
}
