//! The operating system's futex, with timed waits on a monotonic clock.
//!
//! Untimed wait and wake go through `atomic-wait` where it talks to the
//! kernel directly (Linux, Android, FreeBSD, Windows). `atomic-wait` has no
//! timeouts, so the timed wait is the one platform call this module adds:
//!
//! - Linux/Android: `FUTEX_WAIT_BITSET` with an absolute `CLOCK_MONOTONIC`
//!   deadline, so a spurious wake-up and a retry never stretch a timeout.
//! - FreeBSD: `_umtx_op(UMTX_OP_WAIT_UINT_PRIVATE)` with `UMTX_ABSTIME` on
//!   `CLOCK_MONOTONIC`.
//! - Windows: `WaitOnAddress` with the time left, in milliseconds rounded up.
//! - macOS/iOS: `atomic-wait` goes through libc++'s monitor table, whose
//!   waits cannot time out and whose wakes do not reach a `__ulock` waiter,
//!   so on Apple platforms every call (wait, timed wait, wake) uses
//!   `__ulock_wait`/`__ulock_wake` on the word itself.

use super::{Backend, CurrentThread, TimedBackend};
use core::num::NonZeroUsize;

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "macos",
    target_os = "ios",
    windows
)))]
compile_error!(
    "core-sync's `std` feature has a futex backend for Linux, Android, FreeBSD, macOS, iOS and \
     Windows only; on other targets disable default features and use `backend::Spin` or your own \
     `Backend`"
);

/// The atomic type the OS calls take: `core`'s, even when the crate's
/// primitives use `portable-atomic`'s (same layout, same address).
#[inline]
fn os_word(word: &super::AtomicU32) -> &core::sync::atomic::AtomicU32 {
    #[cfg(feature = "portable-atomic")]
    {
        // SAFETY: `portable_atomic::AtomicU32` has the size, alignment and
        // in-memory representation of `u32`, as does `core`'s; `as_ptr`
        // points at that `u32`, valid for as long as `word` is borrowed, and
        // every access through either type is atomic.
        unsafe { core::sync::atomic::AtomicU32::from_ptr(word.as_ptr()) }
    }
    #[cfg(not(feature = "portable-atomic"))]
    word
}

/// The address of `word` as the OS calls take it (`core`'s atomic type),
/// without dereferencing it: a wake's word may dangle.
#[inline]
fn os_word_ptr(word: *const super::AtomicU32) -> *const core::sync::atomic::AtomicU32 {
    // Same layout under `portable-atomic` (see `os_word`); only the address
    // is used.
    word.cast()
}

/// The operating system's futex (see the [module docs](super)).
#[derive(Debug)]
pub enum Futex {}

#[cfg(not(any(target_os = "macos", target_os = "ios")))]
impl Backend for Futex {
    #[inline]
    fn yield_now() {
        std::thread::yield_now();
    }

    #[inline]
    fn wait(word: &super::AtomicU32, expected: u32) {
        atomic_wait::wait(os_word(word), expected);
    }

    #[inline]
    fn wake_one(word: *const super::AtomicU32) {
        // `atomic-wait` documents that the pointer may dangle.
        atomic_wait::wake_one(os_word_ptr(word));
    }

    #[inline]
    fn wake_all(word: *const super::AtomicU32) {
        atomic_wait::wake_all(os_word_ptr(word));
    }
}

impl TimedBackend for Futex {
    #[inline]
    fn now_nanos() -> u64 {
        platform::now_nanos()
    }

    #[inline]
    fn wait_until(word: &super::AtomicU32, expected: u32, deadline: u64) {
        platform::wait_until(os_word(word), expected, deadline);
    }
}

impl CurrentThread for Futex {
    #[inline]
    fn current_thread_id() -> NonZeroUsize {
        std::thread_local!(static ID: u8 = const { 0 });
        // The address of a thread-local is unique among live threads and
        // never zero.
        ID.with(|id| NonZeroUsize::new(core::ptr::from_ref(id).addr()))
            .expect("a thread-local's address is never null")
    }
}

#[cfg(unix)]
mod clock {
    /// Nanoseconds on `CLOCK_MONOTONIC`.
    #[inline]
    pub(super) fn now_nanos() -> u64 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC exists
        // on every unix this backend compiles for, so the call cannot fail.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
        let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
        secs.saturating_mul(1_000_000_000).saturating_add(nanos)
    }

    /// `nanos` on `CLOCK_MONOTONIC` as a timespec.
    #[allow(dead_code)]
    #[inline]
    pub(super) fn timespec(nanos: u64) -> libc::timespec {
        libc::timespec {
            tv_sec: libc::time_t::try_from(nanos / 1_000_000_000).unwrap_or(libc::time_t::MAX),
            // Below one billion: fits every platform's `c_long`.
            tv_nsec: (nanos % 1_000_000_000).try_into().unwrap_or(0),
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod platform {
    pub(super) use super::clock::now_nanos;
    use core::sync::atomic::AtomicU32;

    #[inline]
    pub(super) fn wait_until(word: &AtomicU32, expected: u32, deadline: u64) {
        let ts = super::clock::timespec(deadline);
        // SAFETY: FUTEX_WAIT_BITSET reads the u32 at `word` (valid while the
        // borrow lives) and an absolute CLOCK_MONOTONIC timespec (a valid
        // local); it writes nothing. Any error (EAGAIN: the word changed,
        // ETIMEDOUT, EINTR) is a return the caller re-checks.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT_BITSET | libc::FUTEX_PRIVATE_FLAG,
                expected,
                &raw const ts,
                core::ptr::null::<u32>(),
                u32::MAX,
            );
        }
    }
}

#[cfg(target_os = "freebsd")]
mod platform {
    pub(super) use super::clock::now_nanos;
    use core::sync::atomic::AtomicU32;

    #[inline]
    pub(super) fn wait_until(word: &AtomicU32, expected: u32, deadline: u64) {
        let mut timeout = libc::_umtx_time {
            _timeout: super::clock::timespec(deadline),
            _flags: libc::UMTX_ABSTIME,
            _clockid: libc::CLOCK_MONOTONIC as u32,
        };
        // SAFETY: UMTX_OP_WAIT_UINT_PRIVATE compares the u32 at `word` (valid
        // while borrowed) and sleeps until the absolute deadline described by
        // `timeout`, whose size travels in the `uaddr` argument as the
        // interface requires. Errors are returns the caller re-checks.
        unsafe {
            libc::_umtx_op(
                word.as_ptr().cast(),
                libc::UMTX_OP_WAIT_UINT_PRIVATE,
                libc::c_ulong::from(expected),
                core::ptr::without_provenance_mut(core::mem::size_of::<libc::_umtx_time>()),
                (&raw mut timeout).cast(),
            );
        }
    }
}

#[cfg(windows)]
mod platform {
    use core::sync::atomic::AtomicU32;
    use windows_sys::Win32::System::Performance::{
        QueryPerformanceCounter, QueryPerformanceFrequency,
    };
    use windows_sys::Win32::System::Threading::WaitOnAddress;

    #[inline]
    pub(super) fn now_nanos() -> u64 {
        let mut count = 0i64;
        let mut freq = 0i64;
        // SAFETY: both calls write one i64 through a valid pointer; they
        // cannot fail on Windows XP and later.
        unsafe {
            QueryPerformanceCounter(&raw mut count);
            QueryPerformanceFrequency(&raw mut freq);
        }
        let count = u128::try_from(count).unwrap_or(0);
        let freq = u128::try_from(freq).unwrap_or(1).max(1);
        u64::try_from(count * 1_000_000_000 / freq).unwrap_or(u64::MAX)
    }

    #[inline]
    pub(super) fn wait_until(word: &AtomicU32, expected: u32, deadline: u64) {
        let left = deadline.saturating_sub(now_nanos());
        // Round up so the wait never ends before the deadline; stay below
        // INFINITE (u32::MAX).
        let ms = u32::try_from(left.div_ceil(1_000_000)).unwrap_or(u32::MAX - 1);
        // SAFETY: WaitOnAddress compares 4 bytes at `word` (valid while
        // borrowed) with 4 bytes at `&expected` (a valid local).
        unsafe {
            WaitOnAddress(
                word.as_ptr().cast(),
                (&raw const expected).cast(),
                4,
                ms.min(u32::MAX - 1),
            );
        }
    }
}

#[cfg(any(target_os = "macos", target_os = "ios"))]
mod platform {
    pub(super) use super::clock::now_nanos;
    use core::ffi::c_void;
    use core::sync::atomic::AtomicU32;

    const UL_COMPARE_AND_WAIT: u32 = 1;
    const ULF_WAKE_ALL: u32 = 0x0000_0100;
    const ULF_NO_ERRNO: u32 = 0x0100_0000;

    unsafe extern "C" {
        // Part of libSystem's stable ABI since macOS 10.12; the same calls
        // libc++ uses for std::atomic::wait.
        fn __ulock_wait(operation: u32, addr: *mut c_void, value: u64, timeout_us: u32) -> i32;
        fn __ulock_wake(operation: u32, addr: *mut c_void, wake_value: u64) -> i32;
    }

    #[inline]
    pub(super) fn wait(word: &AtomicU32, expected: u32, timeout_us: u32) {
        // SAFETY: UL_COMPARE_AND_WAIT compares the u32 at `word` (valid while
        // borrowed) with `expected`; timeout 0 means no timeout.
        unsafe {
            __ulock_wait(
                UL_COMPARE_AND_WAIT | ULF_NO_ERRNO,
                word.as_ptr().cast(),
                u64::from(expected),
                timeout_us,
            );
        }
    }

    #[inline]
    pub(super) fn wake(word: *const AtomicU32, all: bool) {
        let flags = UL_COMPARE_AND_WAIT | ULF_NO_ERRNO | if all { ULF_WAKE_ALL } else { 0 };
        // SAFETY: waking only uses the address as a key; it may dangle.
        unsafe { __ulock_wake(flags, word.cast_mut().cast(), 0) };
    }

    #[inline]
    pub(super) fn wait_until(word: &AtomicU32, expected: u32, deadline: u64) {
        let left = deadline.saturating_sub(now_nanos());
        // Round up, and never pass 0 (which would mean "forever").
        let us = u32::try_from(left.div_ceil(1_000)).unwrap_or(u32::MAX).max(1);
        wait(word, expected, us);
    }
}

#[cfg(any(target_os = "macos", target_os = "ios"))]
impl Backend for Futex {
    #[inline]
    fn yield_now() {
        std::thread::yield_now();
    }

    #[inline]
    fn wait(word: &super::AtomicU32, expected: u32) {
        platform::wait(os_word(word), expected, 0);
    }

    #[inline]
    fn wake_one(word: *const super::AtomicU32) {
        platform::wake(os_word_ptr(word), false);
    }

    #[inline]
    fn wake_all(word: *const super::AtomicU32) {
        platform::wake(os_word_ptr(word), true);
    }
}
