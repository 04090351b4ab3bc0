//! The exit wait: the process waits for its non-daemon threads.
//!
//! # State machine
//!
//! One `AtomicU32`, `NON_DAEMON`:
//!
//! | bits | meaning |
//! | --- | --- |
//! | 0..=30 | how many non-daemon threads started through the crate have not finished their function |
//! | 31 (`EXIT_WAITING`) | the exit handler runs and may sleep on the word |
//!
//! - `start()` of a non-daemon thread adds one before the OS thread is
//!   created (and takes it back if the OS refuses the thread), so a thread
//!   that is being started is already waited for.
//! - A non-daemon thread subtracts one as the very last step of its
//!   function, after its result is stored, its panic reported and its
//!   joiners woken; it wakes the word only if `EXIT_WAITING` was set.
//! - The handler, registered with libc's `atexit` when the first thread is
//!   started (or the first `register_atexit`), marks the main thread
//!   finished (when it runs on it), runs the `register_atexit` functions,
//!   then sets `EXIT_WAITING` and sleeps (futex) until the count is at
//!   most what the calling thread itself contributes: 0 on the main thread
//!   or any thread that is not a counted non-daemon thread, 1 on a
//!   non-daemon thread that calls `exit` itself (it must not wait for
//!   itself). Threads started while it waits are counted and waited for too.

use std::cell::Cell;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;

use core_sync::backend::AtomicU32;

#[cfg(unix)]
use crate::hook;
use crate::registry::{self, REGISTRY, Registry};
use crate::{sys, wait};

const EXIT_WAITING: u32 = 1 << 31;
const COUNT: u32 = EXIT_WAITING - 1;

static NON_DAEMON: AtomicU32 = AtomicU32::new(0);

thread_local! {
    /// Whether the calling thread is a non-daemon thread counted in
    /// `NON_DAEMON`. No destructor: readable in exit handlers.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

/// Counts a non-daemon thread about to be started.
pub(crate) fn add_non_daemon() {
    NON_DAEMON.fetch_add(1, Ordering::AcqRel);
}

/// Uncounts a non-daemon thread that finished, or whose start failed.
pub(crate) fn remove_non_daemon() {
    let old = NON_DAEMON.fetch_sub(1, Ordering::AcqRel);
    if old & EXIT_WAITING != 0 {
        wait::wake_all(&NON_DAEMON);
    }
}

/// Marks the calling thread as counted (or not) in `NON_DAEMON`.
pub(crate) fn set_counted(counted: bool) {
    COUNTED.with(|c| c.set(counted));
}

/// Whether the calling thread is counted in `NON_DAEMON`; clears the mark.
pub(crate) fn take_counted() -> bool {
    COUNTED.with(|c| c.replace(false))
}

/// The `atexit` handler: waits for the non-daemon threads.
extern "C" fn wait_for_non_daemon_threads() {
    // As in Python, the main thread counts as finished from here on, so
    // threads that join it can go on.
    if sys::is_main_thread() {
        registry::main_thread().finish();
    }
    // Then the `register_atexit` functions, last registered first, as
    // Python's `threading._shutdown` does; a panic in one does not stop the
    // others (nor may it unwind out of this `extern "C"` function).
    let calls = {
        let mut registry = REGISTRY.lock();
        registry.exiting = true;
        std::mem::take(&mut registry.at_exit)
    };
    for call in calls.into_iter().rev() {
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(call)) {
            // Dropping a payload may panic in turn; leak it then.
            if let Err(again) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
                std::mem::forget(again);
            }
        }
    }
    let own = u32::from(COUNTED.with(Cell::get));
    let mut state = NON_DAEMON.fetch_or(EXIT_WAITING, Ordering::AcqRel) | EXIT_WAITING;
    while state & COUNT > own {
        wait::wait(&NON_DAEMON, state, wait::Deadline::NEVER);
        state = NON_DAEMON.load(Ordering::Acquire);
    }
}

/// Registers `f` to run when the process begins to exit, before it waits
/// for the non-daemon threads (Python's `threading._register_atexit`, which
/// `concurrent.futures` uses to tell its non-daemon workers to stop).
///
/// The functions run on the thread that exits (the main thread when `main`
/// returns), in the exit handler, last registered first, after the main
/// thread has been marked finished and before the wait. A panic in one is
/// caught and ignored. The other threads still run at that point, so these
/// functions can wake the threads that the exit would otherwise wait for
/// forever.
///
/// ```
/// std_threads::register_atexit(|| {
///     // e.g. set a "shutting down" flag and wake the idle workers
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// When the process has already begun to exit (Python raises
/// `RuntimeError: can't register atexit after shutdown`), or when the exit
/// handler cannot be registered with the C library.
pub fn register_atexit<F>(f: F) -> io::Result<()>
where
    F: FnOnce() + Send + 'static,
{
    let mut registry = REGISTRY.lock();
    if registry.exiting {
        return Err(io::Error::other("can't register atexit after shutdown"));
    }
    install_hooks(&mut registry)?;
    registry.at_exit.push(Box::new(f));
    Ok(())
}

/// Registers the exit handler and the fork handlers, once per process. The
/// caller holds the registry lock.
pub(crate) fn install_hooks(registry: &mut Registry) -> io::Result<()> {
    if registry.hooks_installed {
        return Ok(());
    }
    if !sys::register_at_exit(wait_for_non_daemon_threads) {
        return Err(io::Error::other("std-threads: atexit refused the exit handler"));
    }
    #[cfg(unix)]
    if !sys::register_at_fork(before_fork, after_fork_in_parent, after_fork_in_child) {
        return Err(io::Error::other("std-threads: pthread_atfork refused the fork handlers"));
    }
    registry.hooks_installed = true;
    Ok(())
}

/// The guard state of `core_sync::Lock` is `lock_api::GuardSend`, a
/// stateless marker: the one a forgotten guard held is the default value.
#[cfg(unix)]
fn stateless_guard<G: Default>() -> G {
    G::default()
}

/// Before a fork: take the crate's locks, so that the child does not
/// inherit one held by a thread that does not exist there.
#[cfg(unix)]
unsafe extern "C" fn before_fork() {
    core::mem::forget(hook::HOOK.lock());
    core::mem::forget(REGISTRY.lock());
}

/// After a fork, in the parent: give the locks back.
#[cfg(unix)]
unsafe extern "C" fn after_fork_in_parent() {
    // SAFETY: `before_fork` locked both and forgot the guards, on this
    // thread, just before the fork; the lock's guard state is stateless
    // (`GuardSend`), so a default one stands for the forgotten one.
    unsafe {
        REGISTRY.force_unlock(stateless_guard());
        hook::HOOK.force_unlock(stateless_guard());
    }
}

/// After a fork, in the child: only the forking thread exists. It becomes
/// the main thread; nothing is waited for at exit any more (the other
/// threads are gone), unless the child starts new threads.
#[cfg(unix)]
unsafe extern "C" fn after_fork_in_child() {
    // SAFETY: `before_fork` locked the registry and forgot the guard, on
    // this thread (the child's only one); the guard made here unlocks it.
    let mut registry = unsafe { REGISTRY.make_guard_unchecked(stateless_guard()) };
    registry::reset_after_fork(&mut registry);
    drop(registry);
    NON_DAEMON.store(0, Ordering::Release);
    set_counted(false);
    // SAFETY: locked by `before_fork` on this thread, guard forgotten.
    unsafe { hook::HOOK.force_unlock(stateless_guard()) };
}
