//! The few platform calls the crate needs: the OS thread id, "is this the
//! main thread", and the process-exit and fork hooks.
//!
//! Supported: Linux, Android, macOS, iOS, FreeBSD and Windows (the platforms
//! of `core-sync`'s futex backend).

/// The calling thread's OS id (Python's `threading.get_native_id()`).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn native_id() -> u64 {
    // SAFETY: gettid takes no argument and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    u64::try_from(tid).unwrap_or(0)
}

/// The calling thread's OS id (Python's `threading.get_native_id()`).
#[cfg(any(target_os = "macos", target_os = "ios"))]
pub(crate) fn native_id() -> u64 {
    let mut id = 0u64;
    // SAFETY: a null pthread_t means the calling thread; `id` is a valid,
    // writable u64.
    unsafe { libc::pthread_threadid_np(0, &raw mut id) };
    id
}

/// The calling thread's OS id (Python's `threading.get_native_id()`).
#[cfg(target_os = "freebsd")]
pub(crate) fn native_id() -> u64 {
    // SAFETY: takes no argument and cannot fail.
    let id = unsafe { libc::pthread_getthreadid_np() };
    u64::try_from(id).unwrap_or(0)
}

/// The calling thread's OS id (Python's `threading.get_native_id()`).
#[cfg(windows)]
pub(crate) fn native_id() -> u64 {
    // SAFETY: takes no argument and cannot fail.
    u64::from(unsafe { windows::GetCurrentThreadId() })
}

/// Whether the calling thread is the process's main thread (the one that
/// runs `main`).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn is_main_thread() -> bool {
    // The main thread's id is the process id; this also holds in a forked
    // child, whose only thread becomes its main thread.
    // SAFETY: getpid cannot fail.
    native_id() == u64::try_from(unsafe { libc::getpid() }).unwrap_or(0)
}

/// Whether the calling thread is the process's main thread (the one that
/// runs `main`).
#[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
pub(crate) fn is_main_thread() -> bool {
    // SAFETY: takes no argument and cannot fail.
    unsafe { libc::pthread_main_np() == 1 }
}

/// Whether the calling thread is the process's main thread (the one that
/// runs `main`).
#[cfg(windows)]
pub(crate) fn is_main_thread() -> bool {
    // Windows has no "main thread" query; Rust's runtime names the thread
    // that runs `main` "main" (a thread spawned with that name would be
    // mistaken for it).
    std::thread::current().name() == Some("main")
}

/// The main thread's OS id, when another thread can know it: the process id
/// on Linux and Android; elsewhere `None` (the main thread records its own id
/// the first time it calls into the crate).
pub(crate) fn main_native_id() -> Option<u64> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: getpid cannot fail.
        u64::try_from(unsafe { libc::getpid() }).ok()
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        None
    }
}

/// Registers `handler` to run when the process exits through the C runtime's
/// `exit` (Rust's return from `main`, and `std::process::exit` on unix).
/// Returns whether it was registered.
pub(crate) fn register_at_exit(handler: extern "C" fn()) -> bool {
    // SAFETY: `handler` is a plain `extern "C" fn()` that lives as long as
    // the program (it is a function item of this crate, which is never
    // unloaded while it has threads running).
    unsafe { libc::atexit(handler) == 0 }
}

/// Registers the fork handlers: `prepare` runs in the parent before a fork,
/// `parent` in the parent after it, `child` in the child. Returns whether
/// they were registered (always, where fork does not exist).
#[cfg(unix)]
pub(crate) fn register_at_fork(
    prepare: unsafe extern "C" fn(),
    parent: unsafe extern "C" fn(),
    child: unsafe extern "C" fn(),
) -> bool {
    // SAFETY: the three handlers are `extern "C" fn()` items of this crate
    // that live as long as the program.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) == 0 }
}

#[cfg(windows)]
mod windows {
    #[link(name = "kernel32")]
    unsafe extern "system" {
        pub(super) fn GetCurrentThreadId() -> u32;
    }
}
