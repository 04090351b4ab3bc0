//! Rows for `RLock`, `Semaphore`, `ReadWriteLock`, `Condition` and `Event`
//! (feature `primitive-rows`); on by default.

use std::cell::UnsafeCell;
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use core_sync::{Condition, Event, Lock, RLock, ReadWriteLock, Semaphore};

use super::locks::OwnPage;
use super::{Row, imp, ok, on_threads};

pub(super) fn rows() -> Vec<Row> {
    vec![
        Row {
            id: "rlock/reentrant",
            name: "RLock re-entrant acquire+release while owned",
            unit: "op",
            ours: imp("core_sync::RLock", rlock_ours),
            peers: vec![imp("parking_lot::ReentrantMutex<()>", rlock_parking_lot)],
            fixed_iters: None,
            syscall_iters: 100_000,
        },
        Row {
            id: "semaphore/uncontended",
            name: "Semaphore uncontended acquire+release",
            unit: "op",
            ours: imp("core_sync::Semaphore", semaphore_ours),
            peers: vec![imp("core_sync::Lock", lock_ours)],
            fixed_iters: None,
            syscall_iters: 100_000,
        },
        Row {
            id: "rwlock/read-uncontended",
            name: "ReadWriteLock read acquire+release, uncontended",
            unit: "op",
            ours: imp("core_sync::ReadWriteLock", read_uncontended::<RwCounter>),
            peers: vec![
                imp("std::sync::RwLock<u64>", read_uncontended::<std::sync::RwLock<u64>>),
                imp("parking_lot::RwLock<u64>", read_uncontended::<parking_lot::RwLock<u64>>),
                imp("spin::RwLock<u64>", read_uncontended::<spin::RwLock<u64>>),
            ],
            fixed_iters: None,
            syscall_iters: 100_000,
        },
        Row {
            id: "rwlock/read-mostly-2",
            name: "ReadWriteLock read-mostly, 2 threads, 1 write per 100 reads",
            unit: "op",
            ours: imp("core_sync::ReadWriteLock", read_mostly::<RwCounter>),
            peers: vec![
                imp("std::sync::RwLock<u64>", read_mostly::<std::sync::RwLock<u64>>),
                imp("parking_lot::RwLock<u64>", read_mostly::<parking_lot::RwLock<u64>>),
                imp("spin::RwLock<u64>", read_mostly::<spin::RwLock<u64>>),
            ],
            fixed_iters: None,
            syscall_iters: 400_000,
        },
        Row {
            id: "condition/ping-pong",
            name: "Condition ping-pong between 2 threads",
            unit: "round trip",
            ours: imp("core_sync::Condition", condition_ours),
            peers: vec![
                imp("std::sync::Condvar+Mutex", condvar_std),
                imp("parking_lot::Condvar+Mutex", condvar_parking_lot),
            ],
            fixed_iters: None,
            syscall_iters: 5_000,
        },
        Row {
            id: "event/round-trip",
            name: "Event set/wait round trip between 2 threads",
            unit: "round trip",
            ours: imp("core_sync::Event", event_ours),
            peers: vec![imp("std Mutex<bool>+Condvar", event_std)],
            fixed_iters: None,
            syscall_iters: 5_000,
        },
    ]
}

// --- RLock ---------------------------------------------------------------

/// Held once, then acquired and released again `iters` times: the cost of
/// re-entry by the owner.
fn rlock_ours(iters: u64) -> Duration {
    let rlock = OwnPage::boxed(RLock::new());
    let rlock = &rlock.0;
    ok(rlock.acquire());
    let start = Instant::now();
    for _ in 0..iters {
        let r = black_box(rlock);
        ok(r.acquire());
        ok(r.release());
    }
    let elapsed = start.elapsed();
    ok(rlock.release());
    elapsed
}

fn rlock_parking_lot(iters: u64) -> Duration {
    let m = OwnPage::boxed(parking_lot::ReentrantMutex::new(()));
    let m = &m.0;
    let _outer = m.lock();
    let start = Instant::now();
    for _ in 0..iters {
        drop(black_box(m).lock());
    }
    start.elapsed()
}

// --- Semaphore -----------------------------------------------------------

fn semaphore_ours(iters: u64) -> Duration {
    let sem = OwnPage::boxed(Semaphore::new(1));
    let start = Instant::now();
    for _ in 0..iters {
        let s = black_box(&sem.0);
        s.acquire();
        ok(s.release());
    }
    start.elapsed()
}

/// The same loop on our own `Lock`: the Semaphore's target is a ratio to it.
fn lock_ours(iters: u64) -> Duration {
    let lock = OwnPage::boxed(Lock::new());
    let start = Instant::now();
    for _ in 0..iters {
        let l = black_box(&lock.0);
        l.acquire();
        ok(l.release());
    }
    start.elapsed()
}

// --- ReadWriteLock -------------------------------------------------------

/// A counter behind a read-write lock: a read returns it, a write adds one.
trait ReadWrite: Sync {
    fn new() -> Self;
    fn read(&self) -> u64;
    fn write_increment(&self);
}

/// Our `ReadWriteLock` (default policy, `Fair`) guarding a plain counter.
struct RwCounter {
    lock: ReadWriteLock,
    count: UnsafeCell<u64>,
}

// SAFETY: `count` is read only under a read lock and written only under the
// write lock, which excludes every reader and writer; the lock's orderings
// publish each write to later readers.
unsafe impl Sync for RwCounter {}

impl ReadWrite for RwCounter {
    fn new() -> Self {
        RwCounter { lock: ReadWriteLock::new(), count: UnsafeCell::new(0) }
    }
    #[inline]
    fn read(&self) -> u64 {
        self.lock.acquire_read();
        // SAFETY: a read lock is held (see the `Sync` impl).
        let n = unsafe { *self.count.get() };
        ok(self.lock.release_read());
        n
    }
    #[inline]
    fn write_increment(&self) {
        self.lock.acquire_write();
        // SAFETY: the write lock is held (see the `Sync` impl).
        unsafe { *self.count.get() += 1 };
        ok(self.lock.release_write());
    }
}

impl ReadWrite for std::sync::RwLock<u64> {
    fn new() -> Self {
        std::sync::RwLock::new(0)
    }
    #[inline]
    fn read(&self) -> u64 {
        *self.read().expect("not poisoned")
    }
    #[inline]
    fn write_increment(&self) {
        *self.write().expect("not poisoned") += 1;
    }
}

impl ReadWrite for parking_lot::RwLock<u64> {
    fn new() -> Self {
        parking_lot::RwLock::new(0)
    }
    #[inline]
    fn read(&self) -> u64 {
        *self.read()
    }
    #[inline]
    fn write_increment(&self) {
        *self.write() += 1;
    }
}

impl ReadWrite for spin::RwLock<u64> {
    fn new() -> Self {
        spin::RwLock::new(0)
    }
    #[inline]
    fn read(&self) -> u64 {
        *self.read()
    }
    #[inline]
    fn write_increment(&self) {
        *self.write() += 1;
    }
}

fn read_uncontended<L: ReadWrite>(iters: u64) -> Duration {
    let lock = OwnPage::boxed(L::new());
    let start = Instant::now();
    for _ in 0..iters {
        black_box(black_box(&lock.0).read());
    }
    start.elapsed()
}

/// Two threads; every 100th operation of each is a write, the rest reads.
fn read_mostly<L: ReadWrite>(iters: u64) -> Duration {
    let lock = L::new();
    let writes = std::sync::atomic::AtomicU64::new(0);
    let elapsed = on_threads(2, iters, |_, ops| {
        let mut mine = 0;
        for i in 0..ops {
            if i % 100 == 99 {
                black_box(&lock).write_increment();
                mine += 1;
            } else {
                black_box(black_box(&lock).read());
            }
        }
        writes.fetch_add(mine, Ordering::Relaxed);
    });
    assert_eq!(lock.read(), writes.load(Ordering::Relaxed), "a write was lost");
    elapsed
}

// --- Condition -----------------------------------------------------------

/// Two threads take turns: each waits until `turn` is its own, hands the
/// turn to the other and notifies. One round trip is two hand-offs.
fn condition_ours(iters: u64) -> Duration {
    let cond = Condition::with_lock(Lock::new());
    // Written only while `cond`'s lock is held; an atomic only so that the
    // closure can share it without `unsafe`.
    let turn = AtomicU32::new(0);
    let player = |me: u32| {
        cond.acquire();
        for _ in 0..iters {
            while turn.load(Ordering::Relaxed) != me {
                ok(cond.wait());
            }
            turn.store(1 - me, Ordering::Relaxed);
            ok(cond.notify(1));
        }
        ok(cond.release());
    };
    ping_pong(iters, &player)
}

fn condvar_std(iters: u64) -> Duration {
    let pair = (std::sync::Mutex::new(0u32), std::sync::Condvar::new());
    let player = |me: u32| {
        let (turn, cv) = &pair;
        let mut guard = turn.lock().expect("not poisoned");
        for _ in 0..iters {
            while *guard != me {
                guard = cv.wait(guard).expect("not poisoned");
            }
            *guard = 1 - me;
            cv.notify_one();
        }
    };
    ping_pong(iters, &player)
}

fn condvar_parking_lot(iters: u64) -> Duration {
    let pair = (parking_lot::Mutex::new(0u32), parking_lot::Condvar::new());
    let player = |me: u32| {
        let (turn, cv) = &pair;
        let mut guard = turn.lock();
        for _ in 0..iters {
            while *guard != me {
                cv.wait(&mut guard);
            }
            *guard = 1 - me;
            cv.notify_one();
        }
    };
    ping_pong(iters, &player)
}

/// Runs `player(0)` and `player(1)` on two threads; the wall time is the
/// time of all the round trips (spawning excluded).
fn ping_pong(iters: u64, player: &(dyn Fn(u32) + Sync)) -> Duration {
    // `on_threads` splits `iters` between the threads; here each thread
    // plays every round, so ask for 2 * iters.
    on_threads(2, iters * 2, |t, _| player(t as u32))
}

// --- Event ---------------------------------------------------------------

/// The event interface both implementations share.
trait EventLike: Sync {
    fn new() -> Self;
    fn set(&self);
    fn wait(&self);
    fn clear(&self);
}

impl EventLike for Event {
    fn new() -> Self {
        Event::new()
    }
    fn set(&self) {
        Event::set(self);
    }
    fn wait(&self) {
        Event::wait(self);
    }
    fn clear(&self) {
        Event::clear(self);
    }
}

/// An event the way one is written with std alone: a flag and a condvar.
struct StdEvent {
    flag: std::sync::Mutex<bool>,
    cv: std::sync::Condvar,
}

impl EventLike for StdEvent {
    fn new() -> Self {
        StdEvent { flag: std::sync::Mutex::new(false), cv: std::sync::Condvar::new() }
    }
    fn set(&self) {
        *self.flag.lock().expect("not poisoned") = true;
        self.cv.notify_all();
    }
    fn wait(&self) {
        let mut flag = self.flag.lock().expect("not poisoned");
        while !*flag {
            flag = self.cv.wait(flag).expect("not poisoned");
        }
    }
    fn clear(&self) {
        *self.flag.lock().expect("not poisoned") = false;
    }
}

/// Two events, two threads: A sets `ping` and waits for `pong`; B waits for
/// `ping`, clears it and sets `pong`. Each clears what it waited for before
/// the other can set it again, so no round is skipped.
fn event_round_trip<E: EventLike>(iters: u64) -> Duration {
    let (ping, pong) = (E::new(), E::new());
    let player = |me: u32| {
        for _ in 0..iters {
            if me == 0 {
                ping.set();
                pong.wait();
                pong.clear();
            } else {
                ping.wait();
                ping.clear();
                pong.set();
            }
        }
    };
    ping_pong(iters, &player)
}

fn event_ours(iters: u64) -> Duration {
    event_round_trip::<Event>(iters)
}

fn event_std(iters: u64) -> Duration {
    event_round_trip::<StdEvent>(iters)
}
