//! The model-checking backend used under `cfg(loom)`.
//!
//! It models a futex faithfully enough for loom to find lost wake-ups:
//!
//! - A table of wait queues keyed by the word's address lives behind one
//!   loom `Mutex`. `wait` takes it, compares the word, and (if it still
//!   holds the expected value) sleeps on that address's `Condvar`, which
//!   releases the table atomically, as the kernel does. A waker changes the
//!   word before it calls `wake_*`, and `wake_*` takes the table, so a wake
//!   can never fall between a waiter's comparison and its sleep.
//! - `wake_one` notifies one sleeper of that address only; a primitive that
//!   wakes too few threads leaves one asleep, and loom reports the deadlock.
//! - Timed waits never sleep: they yield (a spurious return) and the clock
//!   (one per model thread) advances by one nanosecond on every reading, so
//!   a waiter with a timeout of a few nanoseconds retries a few times and
//!   then times out, at every point loom chooses relative to the other
//!   threads.

use super::{AtomicU32, Backend, CurrentThread, TimedBackend};
use crate::sync::Ordering;
use core::num::NonZeroUsize;
use loom::sync::{Arc, Condvar, Mutex};
use std::vec::Vec;

/// The loom backend (see the module docs).
#[derive(Debug)]
pub enum Loom {}

struct Queue {
    address: usize,
    sleepers: usize,
    condvar: Arc<Condvar>,
}

loom::lazy_static! {
    static ref TABLE: Mutex<Vec<Queue>> = Mutex::new(Vec::new());
}

/// The key of a word's wait queue. A wake's word may dangle: only its
/// address is used.
fn address(word: *const AtomicU32) -> usize {
    word.addr()
}

impl Backend for Loom {
    const SPIN_LIMIT: u32 = 0;

    fn wait(word: &AtomicU32, expected: u32) {
        let mut table = TABLE.lock().expect("the futex table is never poisoned");
        if word.load(Ordering::SeqCst) != expected {
            return;
        }
        let key = address(word);
        let condvar = match table.iter_mut().find(|q| q.address == key) {
            Some(queue) => {
                queue.sleepers += 1;
                Arc::clone(&queue.condvar)
            }
            None => {
                let condvar = Arc::new(Condvar::new());
                table.push(Queue { address: key, sleepers: 1, condvar: Arc::clone(&condvar) });
                condvar
            }
        };
        let mut table = condvar.wait(table).expect("the futex table is never poisoned");
        if let Some(i) = table.iter().position(|q| q.address == key) {
            table[i].sleepers -= 1;
            if table[i].sleepers == 0 {
                table.swap_remove(i);
            }
        }
    }

    fn wake_one(word: *const AtomicU32) {
        let table = TABLE.lock().expect("the futex table is never poisoned");
        if let Some(queue) = table.iter().find(|q| q.address == address(word)) {
            queue.condvar.notify_one();
        }
    }

    fn wake_all(word: *const AtomicU32) {
        let table = TABLE.lock().expect("the futex table is never poisoned");
        if let Some(queue) = table.iter().find(|q| q.address == address(word)) {
            queue.condvar.notify_all();
        }
    }
}

impl TimedBackend for Loom {
    /// A clock that ticks one nanosecond per reading, one per model thread.
    ///
    /// Per thread (a loom thread-local, fresh in every execution) rather
    /// than one process-wide counter: the test harness runs models in
    /// parallel, and ticks taken by another model made a timed wait's
    /// outcome, and so the execution, differ between runs of the same path
    /// (loom: "Is the model fully deterministic?"). A deadline is only ever
    /// compared with readings of the thread that set it.
    fn now_nanos() -> u64 {
        loom::thread_local!(static CLOCK: core::cell::Cell<u64> = core::cell::Cell::new(1));
        CLOCK.with(|clock| {
            let now = clock.get();
            clock.set(now + 1);
            now
        })
    }

    fn wait_until(_word: &AtomicU32, _expected: u32, _deadline: u64) {
        loom::thread::yield_now();
    }
}

impl CurrentThread for Loom {
    fn current_thread_id() -> NonZeroUsize {
        loom::thread_local!(static ID: u8 = 0);
        ID.with(|id| NonZeroUsize::new(core::ptr::from_ref(id).addr()))
            .expect("a thread-local's address is never null")
    }
}
