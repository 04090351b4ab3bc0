//! A firmware-style user of `core-sync`: a bare-metal program brings its own
//! wait backend and clock, the way a kernel or RTOS plugs in its wait queues.
//!
//! The backend here is the classic Cortex-M idiom: a waiter executes `WFE`
//! (sleep until an event or interrupt) while the word still holds the value
//! it saw, and every wake executes `SEV` (signal an event to every core).
//! A `SysTick` interrupt handler counts milliseconds, which gives the
//! primitives a clock and hence their timed methods.
//!
//! On other architectures (so that the example's tests run on a
//! development machine) `WFE`/`SEV` become a spin-loop hint and nothing.
#![no_std]

use core::sync::atomic::{AtomicU32, Ordering};
use core_sync::backend::{Backend, TimedBackend};

/// Milliseconds since boot, advanced by the `SysTick` interrupt.
static TICKS_MS: AtomicU32 = AtomicU32::new(0);

/// The `SysTick` interrupt handler: one tick per millisecond.
pub fn on_systick() {
    TICKS_MS.fetch_add(1, Ordering::Release);
}

/// Wait for an event: `WFE` on Arm, a spin hint elsewhere.
#[inline]
fn wait_for_event() {
    #[cfg(target_arch = "arm")]
    // SAFETY: WFE only suspends the core until the next event or interrupt;
    // it touches no memory and no registers the compiler relies on.
    unsafe {
        core::arch::asm!("wfe", options(nomem, nostack, preserves_flags));
    }
    #[cfg(not(target_arch = "arm"))]
    core::hint::spin_loop();
}

/// Signal an event to every core: `SEV` on Arm.
#[inline]
fn send_event() {
    #[cfg(target_arch = "arm")]
    // SAFETY: SEV only sets the event register of every core.
    unsafe {
        core::arch::asm!("sev", options(nomem, nostack, preserves_flags));
    }
}

/// The wait backend of this firmware: `WFE` to sleep, `SEV` to wake.
#[derive(Debug)]
pub enum WfeBackend {}

impl Backend for WfeBackend {
    // WFE is cheap to leave; a few spins first catch the common short hold.
    const SPIN_LIMIT: u32 = 16;

    fn wait(word: &AtomicU32, expected: u32) {
        // A spurious return is allowed: the primitive re-checks its state.
        if word.load(Ordering::Acquire) == expected {
            wait_for_event();
        }
    }

    fn wake_one(_word: *const AtomicU32) {
        send_event();
    }

    fn wake_all(_word: *const AtomicU32) {
        send_event();
    }
}

impl TimedBackend for WfeBackend {
    fn now_nanos() -> u64 {
        u64::from(TICKS_MS.load(Ordering::Acquire)) * 1_000_000
    }

    fn wait_until(word: &AtomicU32, expected: u32, _deadline: u64) {
        // The SysTick interrupt also ends a WFE, so the caller re-checks the
        // clock at least once per millisecond.
        Self::wait(word, expected);
    }
}

/// The firmware's lock type.
pub type Lock = core_sync::Lock<WfeBackend>;

/// A lock shared between the main loop and a task, in a `static`: no heap.
pub static BUS: Lock = Lock::with_backend();

/// A bounded critical section on the bus: gives up after `timeout_ms`
/// (needs the `SysTick` clock).
pub fn with_bus<R>(timeout_ms: u64, f: impl FnOnce() -> R) -> Option<R> {
    let guard = BUS.lock_timeout(core::time::Duration::from_millis(timeout_ms))?;
    let r = f();
    drop(guard);
    Some(r)
}
