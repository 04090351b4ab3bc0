//! The model-checking backend used under `cfg(loom)`.
//!
//! A wait yields to loom's scheduler when the word still holds the expected
//! value; the caller re-checks and waits again, so a wait is a spurious
//! return that loom can interleave with every other thread. Wakes are no-ops.

use super::{AtomicU32, Backend, CurrentThread, TimedBackend};
use crate::sync::Ordering;
use core::num::NonZeroUsize;

/// The loom backend (see the module docs).
#[derive(Debug)]
pub enum Loom {}

impl Backend for Loom {
    const SPIN_LIMIT: u32 = 0;

    fn wait(word: &AtomicU32, expected: u32) {
        if word.load(Ordering::Relaxed) == expected {
            loom::thread::yield_now();
        }
    }

    fn wake_one(_word: &AtomicU32) {}

    fn wake_all(_word: &AtomicU32) {}
}

impl TimedBackend for Loom {
    /// Time does not pass under loom: a timed wait times out only when its
    /// deadline is already behind the clock, which stays at zero.
    fn now_nanos() -> u64 {
        0
    }

    fn wait_until(word: &AtomicU32, expected: u32, _deadline: u64) {
        Self::wait(word, expected);
    }
}

impl CurrentThread for Loom {
    fn current_thread_id() -> NonZeroUsize {
        loom::thread_local!(static ID: u8 = 0);
        ID.with(|id| NonZeroUsize::new(core::ptr::from_ref(id).addr()))
            .expect("a thread-local's address is never null")
    }
}
