//! The thread registry: what `current_thread()`, `main_thread()`,
//! `enumerate()` and `active_count()` report.
//!
//! # Per-thread state machine
//!
//! Each thread's record ([`ThreadRef`]) has one `AtomicU32` word of bits:
//!
//! | bit | meaning |
//! | --- | --- |
//! | `STARTED` | the OS thread id has been published (`native_id` may be read) |
//! | `FINISHED` | the thread's function has returned or panicked (its result is stored); for the main thread: the process has begun exiting |
//! | `WAITERS` | some thread may sleep on the word (a joiner, or a `native_id` reader) |
//!
//! A waiter sets `WAITERS` (compare-exchange) and sleeps while the word holds
//! the value it saw; a publisher sets its bit with one `fetch_or` and calls
//! the wake only when the old value had `WAITERS`. The bit stays set once
//! set, so a second publish after a waiter may cost one needless wake.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use core_sync::Mutex;
use core_sync::backend::AtomicU32;

use crate::sys;
use crate::wait::{self, Deadline};

const STARTED: u32 = 1;
const FINISHED: u32 = 2;
const WAITERS: u32 = 4;

/// The main thread's ident (Python's is the pthread id; ours is a small,
/// never reused number).
const MAIN_IDENT: u64 = 1;

/// The next ident to hand out; 1 is the main thread's.
static NEXT_IDENT: AtomicU64 = AtomicU64::new(MAIN_IDENT + 1);

/// Python's `threading._counter`, shared by "Thread-N" and "Dummy-N".
static NAME_COUNTER: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// This thread's ident, 0 until assigned. No destructor: readable at any
    /// point of the thread's life, exit handlers included.
    static IDENT: Cell<u64> = const { Cell::new(0) };
    /// This thread's OS id, 0 until first read.
    static NATIVE_ID: Cell<u64> = const { Cell::new(0) };
    /// This thread's record, once known.
    static CURRENT: RefCell<Option<ThreadRef>> = const { RefCell::new(None) };
}

/// What kind of thread a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The thread that runs `main`.
    Main,
    /// A thread started through this crate.
    Started,
    /// A thread this crate did not start (Python's `_DummyThread`).
    Dummy,
}

/// The shared record of one thread.
pub(crate) struct Info {
    ident: u64,
    name: String,
    daemon: bool,
    kind: Kind,
    /// `STARTED | FINISHED | WAITERS` (see the module docs).
    state: AtomicU32,
    /// Valid once `STARTED` is set.
    native_id: AtomicU64,
}

impl Info {
    fn has(&self, bit: u32) -> bool {
        self.state.load(Ordering::Acquire) & bit != 0
    }

    /// Sets `bit` and wakes the sleepers, if any.
    fn publish(&self, bit: u32) {
        let old = self.state.fetch_or(bit, Ordering::AcqRel);
        if old & WAITERS != 0 {
            wait::wake_all(&self.state);
        }
    }

    /// Waits until one of `bits` is set or `deadline` passes; returns
    /// whether one is set.
    fn wait_for(&self, bits: u32, deadline: Deadline) -> bool {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if state & bits != 0 {
                return true;
            }
            if state & WAITERS == 0 {
                if let Err(now) = self.state.compare_exchange_weak(
                    state,
                    state | WAITERS,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    state = now;
                    continue;
                }
                state |= WAITERS;
            }
            if !wait::wait(&self.state, state, deadline) {
                return self.has(bits);
            }
            state = self.state.load(Ordering::Acquire);
        }
    }

    fn set_native_id(&self, id: u64) {
        self.native_id.store(id, Ordering::Relaxed);
        self.publish(STARTED);
    }
}

/// A shared handle on a thread: what Python's `current_thread()`,
/// `main_thread()` and `enumerate()` return, and what
/// [`JoinHandle::thread`](crate::JoinHandle::thread) gives to share a started
/// thread.
///
/// Cheap to clone (one reference count). Two handles are equal when they
/// describe the same thread.
///
/// | Python | Rust |
/// | --- | --- |
/// | `t.name` | [`t.name()`](ThreadRef::name) |
/// | `t.ident` | [`t.ident()`](ThreadRef::ident) |
/// | `t.native_id` | [`t.native_id()`](ThreadRef::native_id) |
/// | `t.daemon` | [`t.is_daemon()`](ThreadRef::is_daemon) |
/// | `t.is_alive()` | [`t.is_alive()`](ThreadRef::is_alive) |
/// | `t.join()` | [`t.join()`](ThreadRef::join) (`Err` where Python raises `RuntimeError`) |
/// | `t.join(timeout)` | [`t.join_timeout(t)`](ThreadRef::join_timeout) `-> bool` |
///
/// ```
/// use std_threads::{Thread, current_thread};
///
/// let handle = Thread::new(|| current_thread().name().to_owned())
///     .name("worker")
///     .start()?;
/// let shared = handle.thread().clone();   // e.g. for another thread to join
/// assert_eq!(handle.join().unwrap(), "worker");
/// assert!(!shared.is_alive());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct ThreadRef(Arc<Info>);

impl ThreadRef {
    /// A record for a thread about to be started through the crate.
    pub(crate) fn new_started(name: String, daemon: bool) -> ThreadRef {
        ThreadRef(Arc::new(Info {
            ident: NEXT_IDENT.fetch_add(1, Ordering::Relaxed),
            name,
            daemon,
            kind: Kind::Started,
            state: AtomicU32::new(0),
            native_id: AtomicU64::new(0),
        }))
    }

    /// The record of the main thread (created by whichever thread asks
    /// first).
    fn new_main() -> ThreadRef {
        let native = sys::main_native_id();
        ThreadRef(Arc::new(Info {
            ident: MAIN_IDENT,
            name: "MainThread".to_owned(),
            daemon: false,
            kind: Kind::Main,
            state: AtomicU32::new(if native.is_some() { STARTED } else { 0 }),
            native_id: AtomicU64::new(native.unwrap_or(0)),
        }))
    }

    /// A record for the calling thread, which the crate did not start.
    fn new_dummy() -> ThreadRef {
        let n = NAME_COUNTER.fetch_add(1, Ordering::Relaxed);
        ThreadRef(Arc::new(Info {
            ident: get_ident(),
            name: format!("Dummy-{n}"),
            daemon: true,
            kind: Kind::Dummy,
            state: AtomicU32::new(STARTED),
            native_id: AtomicU64::new(get_native_id()),
        }))
    }

    /// The thread's name: the one given to [`Thread::name`](crate::Thread::name),
    /// else `"Thread-N"`; `"MainThread"` for the main thread; `"Dummy-N"` for
    /// a thread the crate did not start.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The thread's identifier (Python's `ident`): non-zero, unique among all
    /// threads of the process for its whole life (never reused, unlike
    /// Python's), and equal to [`get_ident()`] called on that thread. The
    /// main thread's is 1.
    pub fn ident(&self) -> u64 {
        self.0.ident
    }

    /// The operating system's id for the thread (Python's `native_id`):
    /// `gettid()` on Linux and Android, `pthread_threadid_np` on macOS and
    /// iOS, `pthread_getthreadid_np` on FreeBSD, `GetCurrentThreadId` on
    /// Windows.
    ///
    /// For a started thread this waits (briefly) until the new thread has
    /// published it, so it is always `Some`. It is `None` only for the main
    /// thread, asked from another thread, on a platform other than Linux and
    /// Android, before the main thread has called into this crate (it
    /// records its id the first time it does, e.g. when it starts a thread).
    pub fn native_id(&self) -> Option<u64> {
        if self.0.kind == Kind::Started {
            // FINISHED too: a thread that exists only in the parent of a
            // forked child is finished there without ever having started.
            self.0.wait_for(STARTED | FINISHED, Deadline::NEVER);
        }
        self.0.has(STARTED).then(|| self.0.native_id.load(Ordering::Relaxed))
    }

    /// Whether this is a daemon thread (Python's `daemon`): one the process
    /// does not wait for at exit. The main thread is not a daemon; a thread
    /// the crate did not start reports `true` (it is not waited for either).
    pub fn is_daemon(&self) -> bool {
        self.0.daemon
    }

    /// Whether the thread is alive (Python's `is_alive()`): a started thread
    /// from `start()` until its function has returned or panicked; the main
    /// thread until the process begins to exit; a thread the crate did not
    /// start always (as long as someone can ask).
    pub fn is_alive(&self) -> bool {
        !self.0.has(FINISHED)
    }

    /// Whether this is a thread the crate did not start (Python's
    /// `_DummyThread`), e.g. one from `std::thread::spawn`.
    pub fn is_dummy(&self) -> bool {
        self.0.kind == Kind::Dummy
    }

    /// Waits until the thread has finished (Python's `join()`).
    ///
    /// Joining the main thread from another thread waits until the process
    /// begins to exit (the main thread counts as finished then, as in
    /// Python). The thread's result or panic is not returned here; use
    /// [`JoinHandle::join`](crate::JoinHandle::join) for that.
    ///
    /// # Errors
    ///
    /// Where Python raises `RuntimeError` instead of waiting forever:
    /// [`JoinError::CurrentThread`] when the caller is this thread,
    /// [`JoinError::DummyThread`] for a thread the crate did not start.
    pub fn join(&self) -> Result<(), JoinError> {
        self.check_joinable()?;
        self.0.wait_for(FINISHED, Deadline::NEVER);
        Ok(())
    }

    /// Waits at most `timeout` for the thread to finish (Python's
    /// `join(timeout)` followed by `not is_alive()`); returns whether it has
    /// finished. The handle stays usable either way.
    ///
    /// `Duration::ZERO` only checks; `Duration::MAX` waits forever. For the
    /// calling thread itself or a thread the crate did not start, returns
    /// `false` at once (it cannot finish while being waited for).
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        if self.check_joinable().is_err() {
            return false;
        }
        self.0.wait_for(FINISHED, Deadline::after(timeout))
    }

    pub(crate) fn check_joinable(&self) -> Result<(), JoinError> {
        if self.0.kind == Kind::Dummy {
            Err(JoinError::DummyThread)
        } else if self.0.ident == get_ident() {
            Err(JoinError::CurrentThread)
        } else {
            Ok(())
        }
    }

    /// Runs on a thread the crate starts, first thing: makes it known to
    /// `current_thread()` and publishes its OS id.
    pub(crate) fn enter(&self) {
        IDENT.with(|i| i.set(self.0.ident));
        let _ = CURRENT.try_with(|c| *c.borrow_mut() = Some(self.clone()));
        self.0.set_native_id(get_native_id());
    }

    /// Marks the thread finished: joiners wake, `is_alive()` turns false.
    pub(crate) fn finish(&self) {
        self.0.publish(FINISHED);
    }
}

impl PartialEq for ThreadRef {
    fn eq(&self, other: &Self) -> bool {
        self.0.ident == other.0.ident
    }
}

impl Eq for ThreadRef {}

impl Hash for ThreadRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.ident.hash(state);
    }
}

impl fmt::Debug for ThreadRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadRef")
            .field("name", &self.0.name)
            .field("ident", &self.0.ident)
            .field("daemon", &self.0.daemon)
            .field("alive", &self.is_alive())
            .field("dummy", &self.is_dummy())
            .finish()
    }
}

/// Why a thread cannot be joined: where Python's `join()` raises
/// `RuntimeError` (and where waiting would never end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinError {
    /// A thread tried to join itself.
    CurrentThread,
    /// The thread was not started through this crate (Python's dummy
    /// threads cannot be joined either).
    DummyThread,
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JoinError::CurrentThread => "cannot join current thread",
            JoinError::DummyThread => "cannot join a dummy thread",
        })
    }
}

impl std::error::Error for JoinError {}

/// The global registry: live started threads and the main thread's record.
pub(crate) struct Registry {
    /// Started threads that have not finished, by ident (start order).
    pub(crate) live: BTreeMap<u64, ThreadRef>,
    /// The main thread's record, created on first use.
    pub(crate) main: Option<ThreadRef>,
    /// Whether the exit and fork hooks are registered.
    pub(crate) hooks_installed: bool,
    /// The functions given to `register_atexit`, in registration order.
    pub(crate) at_exit: Vec<Box<dyn FnOnce() + Send>>,
    /// Whether the exit handler has begun (no more `register_atexit`).
    pub(crate) exiting: bool,
}

pub(crate) static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    live: BTreeMap::new(),
    main: None,
    hooks_installed: false,
    at_exit: Vec::new(),
    exiting: false,
});

/// The next default name, "Thread-N".
pub(crate) fn new_thread_name() -> String {
    format!("Thread-{}", NAME_COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn main_ref_locked(registry: &mut Registry) -> ThreadRef {
    registry.main.get_or_insert_with(ThreadRef::new_main).clone()
}

/// Works out the record of a thread that has none in its thread-local yet:
/// the main thread's, or a new dummy.
fn identify() -> ThreadRef {
    if sys::is_main_thread() {
        let main = main_ref_locked(&mut REGISTRY.lock());
        if !main.0.has(STARTED) {
            main.0.set_native_id(get_native_id());
        }
        main
    } else {
        ThreadRef::new_dummy()
    }
}

/// The calling thread (Python's `threading.current_thread()`).
///
/// - On a thread started through the crate: its record (name, daemon flag).
/// - On the main thread: [`main_thread()`] (`"MainThread"`, not a daemon).
/// - On any other thread (`std::thread::spawn`, a C library's thread, a test
///   harness thread): a dummy record like Python's `_DummyThread`: named
///   `"Dummy-N"`, daemon, alive, not joinable, not listed by [`enumerate()`].
///   It is created on the first call and the same record is returned by
///   every later call on that thread.
///
/// ```
/// use std_threads::{Thread, current_thread};
///
/// let h = Thread::new(|| current_thread().name().to_owned()).name("io").start()?;
/// assert_eq!(h.join().unwrap(), "io");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn current_thread() -> ThreadRef {
    match CURRENT.try_with(|c| c.borrow().clone()) {
        Ok(Some(thread)) => thread,
        Ok(None) => {
            let thread = identify();
            let _ = CURRENT.try_with(|c| *c.borrow_mut() = Some(thread.clone()));
            thread
        }
        // The thread-local is being destroyed (the thread is ending).
        Err(_) => identify(),
    }
}

/// The calling thread's record if it has one in its thread-local, without
/// creating one.
#[cfg(unix)]
pub(crate) fn current_if_known() -> Option<ThreadRef> {
    CURRENT.try_with(|c| c.borrow().clone()).ok().flatten()
}

/// Replaces the calling thread's record (after a fork).
#[cfg(unix)]
pub(crate) fn set_current(thread: ThreadRef) {
    let _ = CURRENT.try_with(|c| *c.borrow_mut() = Some(thread));
}

/// The main thread, the one that runs `main` (Python's
/// `threading.main_thread()`): named `"MainThread"`, not a daemon, alive
/// until the process begins to exit.
///
/// ```
/// let main = std_threads::main_thread();
/// assert_eq!(main.name(), "MainThread");
/// assert!(!main.is_daemon());
/// ```
pub fn main_thread() -> ThreadRef {
    main_ref_locked(&mut REGISTRY.lock())
}

/// Every live thread (Python's `threading.enumerate()`): the main thread
/// while it is alive, then every thread started through the crate that has
/// not finished, in start order. Threads the crate did not start are not
/// listed (Python lists its dummy threads; here they are invisible until
/// they call [`current_thread()`] themselves).
///
/// ```
/// let all = std_threads::enumerate();
/// assert_eq!(all[0].name(), "MainThread");
/// ```
pub fn enumerate() -> Vec<ThreadRef> {
    let mut registry = REGISTRY.lock();
    let main = main_ref_locked(&mut registry);
    let mut all = Vec::with_capacity(registry.live.len() + 1);
    if main.is_alive() {
        all.push(main);
    }
    all.extend(registry.live.values().cloned());
    all
}

/// How many threads [`enumerate()`] would list (Python's
/// `threading.active_count()`).
pub fn active_count() -> usize {
    let mut registry = REGISTRY.lock();
    let main_alive = main_ref_locked(&mut registry).is_alive();
    registry.live.len() + usize::from(main_alive)
}

/// The calling thread's identifier (Python's `threading.get_ident()`):
/// what [`ThreadRef::ident`] reports for it. Works on every thread, whoever
/// started it.
pub fn get_ident() -> u64 {
    IDENT.with(|cell| {
        let mut id = cell.get();
        if id == 0 {
            id = if sys::is_main_thread() {
                MAIN_IDENT
            } else {
                NEXT_IDENT.fetch_add(1, Ordering::Relaxed)
            };
            cell.set(id);
        }
        id
    })
}

/// The calling thread's OS id (Python's `threading.get_native_id()`); see
/// [`ThreadRef::native_id`] for the call behind it on each platform.
pub fn get_native_id() -> u64 {
    NATIVE_ID.with(|cell| {
        let mut id = cell.get();
        if id == 0 {
            id = sys::native_id();
            cell.set(id);
        }
        id
    })
}

/// After a fork, in the child: the calling thread is the only one left, and
/// becomes the main thread (as in Python). Every other record is marked
/// finished. The caller holds the registry lock (taken before the fork).
#[cfg(unix)]
pub(crate) fn reset_after_fork(registry: &mut Registry) {
    let me = get_ident();
    for (_, thread) in std::mem::take(&mut registry.live) {
        if thread.ident() == me {
            registry.live.insert(me, thread);
        } else {
            thread.finish();
        }
    }
    let old_main = registry.main.take();
    match old_main {
        Some(main) if main.ident() == me => registry.main = Some(main),
        old_main => {
            if let Some(main) = old_main {
                main.finish();
            }
            // The forking thread's own record becomes the main thread's.
            let me_ref = current_if_known().unwrap_or_else(|| {
                let fresh = ThreadRef(Arc::new(Info {
                    ident: me,
                    name: "MainThread".to_owned(),
                    daemon: false,
                    kind: Kind::Main,
                    state: AtomicU32::new(STARTED),
                    native_id: AtomicU64::new(0),
                }));
                set_current(fresh.clone());
                fresh
            });
            registry.main = Some(me_ref);
        }
    }
    // The OS id changed in the child.
    NATIVE_ID.with(|cell| cell.set(0));
    if let Some(main) = &registry.main {
        main.0.native_id.store(get_native_id(), Ordering::Relaxed);
    }
}

/// Adds a started thread to the registry (before its OS thread exists).
pub(crate) fn register(registry: &mut Registry, thread: &ThreadRef) {
    registry.live.insert(thread.ident(), thread.clone());
}

/// Removes a thread from the registry (when it finishes, or when its OS
/// thread could not be created).
pub(crate) fn unregister(thread: &ThreadRef) {
    REGISTRY.lock().live.remove(&thread.ident());
}
