//! `Lock` and `Mutex<T>` rows: uncontended, and contended by 2 and 8
//! threads, beside `std::sync::Mutex`, `parking_lot::Mutex` and
//! `spin::Mutex`.

use std::cell::UnsafeCell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use super::{Row, imp, ok, on_threads};

/// Puts the measured lock at the start of its own 4 KiB page, the same for
/// every implementation.
///
/// On the stack, a lock's address relative to the loop's other stack
/// traffic (the `black_box` spill slot) changes from process to process
/// with the stack's randomized start, and with it (through 4 KiB aliasing
/// of loads and stores) the speed of the uncontended loop: ours and std's
/// each land on 12.1 or 13.6 ns per operation at random, which made single
/// runs show up to 1.2x between identical instruction sequences. On its own
/// page every implementation gets the same placement in every run.
#[repr(align(4096))]
pub(super) struct OwnPage<T>(pub(super) T);

impl<T> OwnPage<T> {
    /// `value` on a page of its own, on the heap.
    pub(super) fn boxed(value: T) -> Box<Self> {
        Box::new(OwnPage(value))
    }
}

pub(super) fn rows() -> Vec<Row> {
    vec![
        Row {
            id: "lock/uncontended",
            name: "Lock uncontended acquire+release",
            unit: "op",
            ours: imp("core_sync::Lock", uncontended::<core_sync::Lock>),
            peers: vec![
                imp("std::sync::Mutex<()>", uncontended::<std::sync::Mutex<()>>),
                imp("parking_lot::Mutex<()>", uncontended::<parking_lot::Mutex<()>>),
                imp("spin::Mutex<()>", uncontended::<spin::Mutex<()>>),
            ],
            fixed_iters: None,
            syscall_iters: 100_000,
        },
        Row {
            id: "mutex/uncontended",
            name: "Mutex<u64> uncontended lock, +1, unlock",
            unit: "op",
            ours: imp("core_sync::Mutex<u64>", mutex_uncontended::<core_sync::Mutex<u64>>),
            peers: vec![
                imp("std::sync::Mutex<u64>", mutex_uncontended::<std::sync::Mutex<u64>>),
                imp("parking_lot::Mutex<u64>", mutex_uncontended::<parking_lot::Mutex<u64>>),
                imp("spin::Mutex<u64>", mutex_uncontended::<spin::Mutex<u64>>),
            ],
            fixed_iters: None,
            syscall_iters: 100_000,
        },
        contended_row::<2>("lock/contended-2", "Lock contended, 2 threads, +1 under the lock"),
        contended_row::<8>("lock/contended-8", "Lock contended, 8 threads, +1 under the lock"),
    ]
}

fn contended_row<const THREADS: usize>(id: &'static str, name: &'static str) -> Row {
    Row {
        id,
        name,
        unit: "op",
        ours: imp("core_sync::Lock", contended::<LockCounter, THREADS>),
        peers: vec![
            imp("std::sync::Mutex<u64>", contended::<std::sync::Mutex<u64>, THREADS>),
            imp("parking_lot::Mutex<u64>", contended::<parking_lot::Mutex<u64>, THREADS>),
            imp("spin::Mutex<u64>", contended::<spin::Mutex<u64>, THREADS>),
        ],
        fixed_iters: None,
        // Enough for the threads to overlap although strace slows them.
        syscall_iters: 400_000,
    }
}

/// A lock taken and released with no data: Python's `acquire(); release()`.
trait UnitLock {
    fn new() -> Self;
    fn acquire_release(&self);
}

impl UnitLock for core_sync::Lock {
    fn new() -> Self {
        core_sync::Lock::new()
    }
    #[inline]
    fn acquire_release(&self) {
        self.acquire();
        ok(self.release());
    }
}

impl UnitLock for std::sync::Mutex<()> {
    fn new() -> Self {
        std::sync::Mutex::new(())
    }
    #[inline]
    fn acquire_release(&self) {
        drop(self.lock().expect("not poisoned"));
    }
}

impl UnitLock for parking_lot::Mutex<()> {
    fn new() -> Self {
        parking_lot::Mutex::new(())
    }
    #[inline]
    fn acquire_release(&self) {
        drop(self.lock());
    }
}

impl UnitLock for spin::Mutex<()> {
    fn new() -> Self {
        spin::Mutex::new(())
    }
    #[inline]
    fn acquire_release(&self) {
        drop(self.lock());
    }
}

/// Acquire and release, one thread, never contended.
fn uncontended<L: UnitLock>(iters: u64) -> Duration {
    let lock = OwnPage::boxed(L::new());
    let start = Instant::now();
    for _ in 0..iters {
        // `black_box` keeps the compiler from merging iterations.
        black_box(&lock.0).acquire_release();
    }
    start.elapsed()
}

/// A counter behind a lock: one increment is the critical section.
pub(super) trait CounterLock: Sync {
    fn new() -> Self;
    fn increment(&self);
    fn get(&self) -> u64;
}

/// `core_sync::Lock` guarding a plain counter, as a Python program guards a
/// shared variable.
pub(super) struct LockCounter {
    lock: core_sync::Lock,
    count: UnsafeCell<u64>,
}

// SAFETY: `count` is only read or written while `lock` is held, so accesses
// from different threads never overlap; the lock's Acquire/Release orderings
// make each increment visible to the next holder.
unsafe impl Sync for LockCounter {}

impl CounterLock for LockCounter {
    fn new() -> Self {
        LockCounter { lock: core_sync::Lock::new(), count: UnsafeCell::new(0) }
    }
    #[inline]
    fn increment(&self) {
        self.lock.acquire();
        // SAFETY: the lock is held (see the `Sync` impl).
        unsafe { *self.count.get() += 1 };
        ok(self.lock.release());
    }
    fn get(&self) -> u64 {
        self.lock.acquire();
        // SAFETY: the lock is held (see the `Sync` impl).
        let n = unsafe { *self.count.get() };
        ok(self.lock.release());
        n
    }
}

impl CounterLock for core_sync::Mutex<u64> {
    fn new() -> Self {
        core_sync::Mutex::new(0)
    }
    #[inline]
    fn increment(&self) {
        *self.lock() += 1;
    }
    fn get(&self) -> u64 {
        *self.lock()
    }
}

impl CounterLock for std::sync::Mutex<u64> {
    fn new() -> Self {
        std::sync::Mutex::new(0)
    }
    #[inline]
    fn increment(&self) {
        *self.lock().expect("not poisoned") += 1;
    }
    fn get(&self) -> u64 {
        *self.lock().expect("not poisoned")
    }
}

impl CounterLock for parking_lot::Mutex<u64> {
    fn new() -> Self {
        parking_lot::Mutex::new(0)
    }
    #[inline]
    fn increment(&self) {
        *self.lock() += 1;
    }
    fn get(&self) -> u64 {
        *self.lock()
    }
}

impl CounterLock for spin::Mutex<u64> {
    fn new() -> Self {
        spin::Mutex::new(0)
    }
    #[inline]
    fn increment(&self) {
        *self.lock() += 1;
    }
    fn get(&self) -> u64 {
        *self.lock()
    }
}

/// Lock, increment, unlock, one thread.
fn mutex_uncontended<M: CounterLock>(iters: u64) -> Duration {
    let m = OwnPage::boxed(M::new());
    let start = Instant::now();
    for _ in 0..iters {
        black_box(&m.0).increment();
    }
    let elapsed = start.elapsed();
    assert_eq!(m.0.get(), iters);
    elapsed
}

/// `THREADS` threads share `iters` increments of one counter; ns per
/// operation is the wall time over the total count.
fn contended<M: CounterLock, const THREADS: usize>(iters: u64) -> Duration {
    let m = M::new();
    let elapsed = on_threads(THREADS, iters, |_, ops| {
        for _ in 0..ops {
            black_box(&m).increment();
        }
    });
    assert_eq!(m.get(), iters, "a lock let two threads in");
    elapsed
}
