//! The `readerwriterlock` package's semantics (`RWLockRead`, `RWLockWrite`,
//! `RWLockFair`, `RWLockFairD`) on `ReadWriteLock`, with each policy.
//!
//! Tests that need a thread to be blocked poll an observable state
//! (`waiting_writers`, `queued_readers`) instead of sleeping. With
//! `--no-default-features` the default backend spins and has no clock, so
//! the timed tests are compiled only with `std`.

#![cfg_attr(not(feature = "std"), allow(unused_imports, dead_code))]

mod common;

use core_sync::backend::{AtomicU32, Backend, Clock, Spin};
use core_sync::{
    Fair, ReadPreferring, ReadWriteLock, ReadWritePolicy, ReleaseError, RwLock, RwLockWriteGuard,
    WritePreferring,
};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// Generous upper bound for "returns promptly" on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(5);
/// How long a test polls for a state before it declares a hang.
const PATIENCE: Duration = Duration::from_secs(30);
/// Loop counts for the stress tests.
const ITERS: u64 = if cfg!(miri) { 50 } else { 4_000 };

/// Polls `cond` (yielding) until it holds; panics after [`PATIENCE`].
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "gave up waiting until {what}");
        thread::yield_now();
    }
}

/// Joins a thread that should finish; a thread still blocked after
/// [`PATIENCE`] fails the test instead of hanging it.
fn join<T>(handle: thread::JoinHandle<T>) -> T {
    let start = Instant::now();
    while !handle.is_finished() {
        assert!(start.elapsed() < PATIENCE, "a thread is still blocked after {PATIENCE:?}");
        thread::sleep(Duration::from_millis(1));
    }
    handle.join().unwrap()
}

fn new_lock<P: ReadWritePolicy>() -> Arc<ReadWriteLock<P>> {
    Arc::new(ReadWriteLock::with_policy())
}

// ----- basics -----

#[test]
fn size_is_at_most_eight_bytes() {
    assert_eq!(size_of::<ReadWriteLock>(), 8);
    assert_eq!(size_of::<ReadWriteLock<ReadPreferring>>(), 8);
    assert_eq!(size_of::<ReadWriteLock<WritePreferring>>(), 8);
    assert_eq!(size_of::<ReadWriteLock<Fair, Spin>>(), 8);
    assert_eq!(size_of::<Fair>() + size_of::<ReadPreferring>() + size_of::<WritePreferring>(), 0);
}

#[test]
fn static_locks_are_const_constructed() {
    static FAIR: ReadWriteLock = ReadWriteLock::new();
    static WRITERS_FIRST: ReadWriteLock<WritePreferring> = ReadWriteLock::with_policy();
    FAIR.acquire_read();
    WRITERS_FIRST.acquire_write();
    assert_eq!(FAIR.readers(), 1);
    assert!(WRITERS_FIRST.is_write_locked());
    FAIR.release_read().unwrap();
    WRITERS_FIRST.release_write().unwrap();
    assert!(format!("{FAIR:?}").contains("RWLockFair"));
    assert!(format!("{WRITERS_FIRST:?}").contains("RWLockWrite"));
}

fn release_when_not_held_is_an_error_and_changes_nothing<P: ReadWritePolicy>() {
    let rw = ReadWriteLock::<P>::with_policy();
    assert_eq!(rw.release_read(), Err(ReleaseError::NotLocked));
    assert_eq!(rw.release_write(), Err(ReleaseError::NotLocked));
    assert_eq!(rw.downgrade(), Err(ReleaseError::NotLocked));
    assert!(!rw.is_locked());

    rw.acquire_read();
    assert_eq!(rw.release_write(), Err(ReleaseError::NotLocked));
    assert_eq!(rw.downgrade(), Err(ReleaseError::NotLocked));
    assert_eq!(rw.readers(), 1);
    rw.release_read().unwrap();
    assert_eq!(rw.release_read(), Err(ReleaseError::NotLocked));
    assert!(!rw.is_locked());

    rw.acquire_write();
    assert_eq!(rw.release_read(), Err(ReleaseError::NotLocked));
    assert!(rw.is_write_locked());
    rw.release_write().unwrap();
    assert_eq!(rw.release_write(), Err(ReleaseError::NotLocked));

    // Still fully usable.
    assert!(rw.try_acquire_write());
    assert!(!rw.try_acquire_read());
    rw.release_write().unwrap();
    assert!(rw.try_acquire_read());
    rw.release_read().unwrap();
    assert!(!rw.is_locked());
}

#[test]
fn release_when_not_held_is_an_error_for_every_policy() {
    release_when_not_held_is_an_error_and_changes_nothing::<ReadPreferring>();
    release_when_not_held_is_an_error_and_changes_nothing::<WritePreferring>();
    release_when_not_held_is_an_error_and_changes_nothing::<Fair>();
}

#[test]
fn a_lock_taken_in_one_thread_may_be_released_in_another() {
    let rw = Arc::new(ReadWriteLock::new());
    rw.acquire_read();
    let other = Arc::clone(&rw);
    thread::spawn(move || other.release_read()).join().unwrap().unwrap();
    rw.acquire_write();
    let other = Arc::clone(&rw);
    thread::spawn(move || other.release_write()).join().unwrap().unwrap();
    assert!(!rw.is_locked());
}

fn many_readers_hold_it_together<P: ReadWritePolicy + 'static>() {
    const N: usize = 4;
    let rw = new_lock::<P>();
    let inside = Arc::new(Barrier::new(N + 1));
    let checked = Arc::new(Barrier::new(N + 1));
    let readers: Vec<_> = (0..N)
        .map(|_| {
            let (rw, inside, checked) =
                (Arc::clone(&rw), Arc::clone(&inside), Arc::clone(&checked));
            thread::spawn(move || {
                rw.acquire_read();
                inside.wait();
                let seen = rw.readers();
                checked.wait();
                rw.release_read().unwrap();
                seen
            })
        })
        .collect();
    inside.wait();
    // All N readers are inside at once, and a writer is kept out.
    assert_eq!(rw.readers(), N as u32);
    assert!(!rw.try_acquire_write());
    checked.wait();
    for r in readers {
        assert_eq!(join(r), N as u32);
    }
    assert!(!rw.is_locked());
}

#[test]
fn many_readers_hold_it_together_under_every_policy() {
    many_readers_hold_it_together::<ReadPreferring>();
    many_readers_hold_it_together::<WritePreferring>();
    many_readers_hold_it_together::<Fair>();
}

#[test]
#[cfg(feature = "std")]
fn guards_release_on_drop_and_on_panic() {
    let rw = ReadWriteLock::new();
    {
        let _a = rw.read();
        let _b = rw.read();
        assert_eq!(rw.readers(), 2);
        assert!(rw.try_write().is_none());
        assert!(rw.write_timeout(Duration::from_millis(1)).is_none());
    }
    {
        let _w = rw.write();
        assert!(rw.is_write_locked());
        assert!(rw.try_read().is_none());
        assert!(rw.read_timeout(Duration::from_millis(1)).is_none());
    }
    assert!(!rw.is_locked());
    let caught = std::panic::catch_unwind(|| {
        let _w = rw.write();
        panic!("inside the write lock");
    });
    assert!(caught.is_err());
    assert!(!rw.is_locked(), "a panic inside the write guard must release it");
    let caught = std::panic::catch_unwind(|| {
        let _r = rw.read();
        panic!("inside the read lock");
    });
    assert!(caught.is_err());
    assert!(!rw.is_locked(), "a panic inside the read guard must release it");
}

#[test]
fn a_full_reader_count_makes_new_readers_wait_instead_of_overflowing() {
    let rw = Arc::new(ReadWriteLock::new());
    let mut held = 0u32;
    while rw.try_acquire_read() {
        held += 1;
        assert!(held <= 1 << 20, "the reader count overflowed");
    }
    assert_eq!(held, 32_767);
    assert_eq!(rw.readers(), held);
    assert!(!rw.try_acquire_write());
    let waiter = {
        let rw = Arc::clone(&rw);
        thread::spawn(move || {
            rw.acquire_read();
            rw.release_read().unwrap();
        })
    };
    rw.release_read().unwrap();
    join(waiter);
    for _ in 1..held {
        rw.release_read().unwrap();
    }
    assert!(!rw.is_locked());
}

#[test]
fn the_write_guard_downgrades_to_a_read_guard() {
    let rw = ReadWriteLock::new();
    let w = rw.write();
    let r = w.downgrade();
    assert_eq!(rw.readers(), 1);
    assert!(!rw.is_write_locked());
    assert!(rw.try_acquire_read(), "another reader may join");
    rw.release_read().unwrap();
    assert!(rw.try_write().is_none());
    drop(r);
    assert!(!rw.is_locked());
}

// ----- a writer holds it alone: invariant stress -----

/// Data protected only by the lock under test.
struct Shared {
    value: UnsafeCell<u64>,
    readers_inside: AtomicUsize,
    writers_inside: AtomicUsize,
}
// SAFETY: `value` is written only under the write lock and read only under a
// read lock; a broken lock shows up as a failed invariant or a lost update,
// which is what the stress test checks.
unsafe impl Sync for Shared {}

impl Shared {
    fn enter_write(&self) {
        assert_eq!(self.writers_inside.fetch_add(1, Ordering::SeqCst), 0, "two writers inside");
        assert_eq!(self.readers_inside.load(Ordering::SeqCst), 0, "a reader inside with a writer");
    }
    fn leave_write(&self) {
        self.writers_inside.fetch_sub(1, Ordering::SeqCst);
    }
    fn enter_read(&self) {
        self.readers_inside.fetch_add(1, Ordering::SeqCst);
        assert_eq!(self.writers_inside.load(Ordering::SeqCst), 0, "a writer inside with a reader");
    }
    fn leave_read(&self) {
        self.readers_inside.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Clone, Copy)]
enum Role {
    Reader,
    Writer,
    Downgrader,
    /// Timed reads and writes, through the stress run's timed step.
    Timed,
}

/// One timed acquire, critical section and release, given the iteration;
/// returns the writes done.
type TimedStep<P, B> = fn(&ReadWriteLock<P, B>, &Shared, u64) -> u64;

fn stress_one<P: ReadWritePolicy, B: Backend>(
    rw: &ReadWriteLock<P, B>,
    shared: &Shared,
    role: Role,
    iters: u64,
    timed: Option<TimedStep<P, B>>,
) -> u64 {
    let mut writes = 0;
    for i in 0..iters {
        match role {
            Role::Reader => {
                rw.acquire_read();
                shared.enter_read();
                // SAFETY: a read lock is held; writers are excluded.
                let _ = unsafe { *shared.value.get() };
                shared.leave_read();
                rw.release_read().unwrap();
            }
            Role::Writer => {
                rw.acquire_write();
                shared.enter_write();
                // SAFETY: the write lock is held.
                unsafe { *shared.value.get() += 1 };
                writes += 1;
                shared.leave_write();
                rw.release_write().unwrap();
            }
            Role::Downgrader => {
                rw.acquire_write();
                shared.enter_write();
                // SAFETY: the write lock is held.
                unsafe { *shared.value.get() += 1 };
                writes += 1;
                shared.leave_write();
                rw.downgrade().unwrap();
                shared.enter_read();
                shared.leave_read();
                rw.release_read().unwrap();
            }
            Role::Timed => writes += timed.expect("a timed step")(rw, shared, i),
        }
    }
    writes
}

#[cfg(feature = "std")]
fn timed_step<P: ReadWritePolicy, B: core_sync::TimedBackend>(
    rw: &ReadWriteLock<P, B>,
    shared: &Shared,
    i: u64,
) -> u64 {
    let timeout = Duration::from_micros(20 + (i % 5) * 40);
    if i.is_multiple_of(2) {
        if rw.acquire_write_timeout(timeout) {
            shared.enter_write();
            // SAFETY: the write lock is held.
            unsafe { *shared.value.get() += 1 };
            shared.leave_write();
            rw.release_write().unwrap();
            return 1;
        }
    } else if rw.acquire_read_timeout(timeout) {
        shared.enter_read();
        shared.leave_read();
        rw.release_read().unwrap();
    }
    0
}

fn stress<P: ReadWritePolicy + 'static, B: Backend + 'static>(
    rw: &'static ReadWriteLock<P, B>,
    roles: &[Role],
    iters: u64,
    timed: Option<TimedStep<P, B>>,
) {
    let shared: &'static Shared = common::leak(Shared {
        value: UnsafeCell::new(0),
        readers_inside: AtomicUsize::new(0),
        writers_inside: AtomicUsize::new(0),
    });
    let handles: Vec<_> = roles
        .iter()
        .map(|&role| thread::spawn(move || stress_one(rw, shared, role, iters, timed)))
        .collect();
    let writes: u64 = handles.into_iter().map(join).sum();
    assert!(!rw.is_locked());
    assert_eq!(rw.waiting_writers(), 0);
    assert_eq!(rw.queued_readers(), 0);
    rw.acquire_read();
    // SAFETY: every thread has been joined and a read lock is held.
    assert_eq!(unsafe { *shared.value.get() }, writes, "a write was lost");
    rw.release_read().unwrap();
}

fn leak<P: ReadWritePolicy + 'static, B: Backend + 'static>() -> &'static ReadWriteLock<P, B> {
    common::leak(ReadWriteLock::with_backend())
}

const MIXED: &[Role] = &[Role::Reader, Role::Reader, Role::Writer, Role::Writer, Role::Downgrader];

#[test]
fn stress_a_writer_holds_it_alone_read_preferring() {
    stress(leak::<ReadPreferring, core_sync::DefaultBackend>(), MIXED, ITERS, None);
}

#[test]
fn stress_a_writer_holds_it_alone_write_preferring() {
    stress(leak::<WritePreferring, core_sync::DefaultBackend>(), MIXED, ITERS, None);
}

#[test]
fn stress_a_writer_holds_it_alone_fair() {
    stress(leak::<Fair, core_sync::DefaultBackend>(), MIXED, ITERS, None);
}

#[test]
fn stress_on_the_spin_backend() {
    stress(leak::<Fair, Spin<spin::relax::Spin>>(), MIXED, ITERS / 4, None);
}

#[test]
#[cfg(feature = "std")]
fn stress_with_timed_readers_and_writers_leaves_no_trace() {
    let roles = &[Role::Reader, Role::Writer, Role::Timed, Role::Timed, Role::Downgrader];
    use core_sync::DefaultBackend as D;
    stress(leak::<Fair, D>(), roles, ITERS, Some(timed_step));
    stress(leak::<WritePreferring, D>(), roles, ITERS, Some(timed_step));
    stress(leak::<ReadPreferring, D>(), roles, ITERS, Some(timed_step));
}

// ----- policy guarantees -----

/// Three reader threads keep the read count above zero, each taking a new
/// read lock before it gives up its old one, while a writer waits. Returns
/// how many read locks were granted while the writer was waiting.
fn overlapping_readers_against_a_writer<P: ReadWritePolicy + 'static>() -> u64 {
    const READERS: usize = 3;
    let budget: u64 = if cfg!(miri) { 200 } else { 20_000 };
    let rw = new_lock::<P>();
    let ready = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let overtakes = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (rw, ready, stop) = (Arc::clone(&rw), Arc::clone(&ready), Arc::clone(&stop));
            let (ops, overtakes) = (Arc::clone(&ops), Arc::clone(&overtakes));
            thread::spawn(move || {
                rw.acquire_read();
                ready.fetch_add(1, Ordering::SeqCst);
                wait_until("the writer waits", || rw.waiting_writers() > 0);
                while !stop.load(Ordering::SeqCst) {
                    if rw.try_acquire_read() {
                        // The new read lock came before the old one went.
                        if rw.waiting_writers() > 0 {
                            overtakes.fetch_add(1, Ordering::SeqCst);
                        }
                        rw.release_read().unwrap();
                    } else {
                        rw.release_read().unwrap();
                        rw.acquire_read();
                    }
                    if ops.fetch_add(1, Ordering::SeqCst) + 1 >= budget {
                        stop.store(true, Ordering::SeqCst);
                    }
                }
                rw.release_read().unwrap();
            })
        })
        .collect();
    wait_until("every reader holds the lock", || ready.load(Ordering::SeqCst) == READERS);
    let writer = {
        let (rw, stop) = (Arc::clone(&rw), Arc::clone(&stop));
        thread::spawn(move || {
            rw.acquire_write();
            stop.store(true, Ordering::SeqCst);
            rw.release_write().unwrap();
        })
    };
    join(writer);
    for r in readers {
        join(r);
    }
    assert!(!rw.is_locked());
    overtakes.load(Ordering::SeqCst)
}

#[test]
fn write_preferring_a_waiting_writer_is_not_starved_by_overlapping_readers() {
    assert_eq!(overlapping_readers_against_a_writer::<WritePreferring>(), 0);
}

#[test]
fn fair_a_waiting_writer_is_not_starved_by_overlapping_readers() {
    assert_eq!(overlapping_readers_against_a_writer::<Fair>(), 0);
}

#[test]
fn read_preferring_overlapping_readers_keep_a_waiting_writer_out() {
    // The same harness, with the policy that gives no such guarantee: every
    // reader operation overtakes the writer until the readers stop.
    let budget = if cfg!(miri) { 200 } else { 20_000 };
    assert!(overlapping_readers_against_a_writer::<ReadPreferring>() >= budget - 3);
}

#[test]
fn read_preferring_new_readers_join_while_a_writer_waits() {
    let rw = new_lock::<ReadPreferring>();
    rw.acquire_read();
    let writer = {
        let rw = Arc::clone(&rw);
        thread::spawn(move || {
            rw.acquire_write();
            let readers_inside = rw.readers();
            rw.release_write().unwrap();
            readers_inside
        })
    };
    wait_until("the writer waits", || rw.waiting_writers() == 1);
    assert!(rw.try_acquire_read(), "a new reader joins the current one");
    let blocking = {
        let rw = Arc::clone(&rw);
        thread::spawn(move || {
            rw.acquire_read();
            rw.release_read().unwrap();
        })
    };
    join(blocking);
    assert_eq!(rw.readers(), 2);
    assert_eq!(rw.waiting_writers(), 1, "the writer still waits");
    rw.release_read().unwrap();
    rw.release_read().unwrap();
    assert_eq!(join(writer), 0);
    assert!(!rw.is_locked());
}

fn new_readers_wait_behind_a_waiting_writer<P: ReadWritePolicy + 'static>() {
    let rw = new_lock::<P>();
    let writer_done = Arc::new(AtomicBool::new(false));
    rw.acquire_read();
    let writer = {
        let (rw, done) = (Arc::clone(&rw), Arc::clone(&writer_done));
        thread::spawn(move || {
            rw.acquire_write();
            done.store(true, Ordering::SeqCst);
            rw.release_write().unwrap();
        })
    };
    wait_until("the writer waits", || rw.waiting_writers() == 1);
    assert!(!rw.try_acquire_read(), "a new reader must not overtake a waiting writer");
    let reader = {
        let (rw, done) = (Arc::clone(&rw), Arc::clone(&writer_done));
        thread::spawn(move || {
            rw.acquire_read();
            let after_writer = done.load(Ordering::SeqCst);
            rw.release_read().unwrap();
            after_writer
        })
    };
    rw.release_read().unwrap();
    join(writer);
    assert!(join(reader), "the reader got in before the waiting writer");
    assert!(!rw.is_locked());
}

#[test]
fn write_preferring_and_fair_new_readers_wait_behind_a_waiting_writer() {
    new_readers_wait_behind_a_waiting_writer::<WritePreferring>();
    new_readers_wait_behind_a_waiting_writer::<Fair>();
}

/// Two writer threads hand the lock to each other, each holding it until
/// the other is queued, so a writer waits at every release; a reader asks
/// for the lock in the middle. Returns how many write releases passed over
/// the queued reader before it got in (capped at 50).
fn a_reader_against_a_stream_of_writers<P: ReadWritePolicy + 'static>() -> u64 {
    const CAP: u64 = 50;
    let rw = new_lock::<P>();
    let stop = Arc::new(AtomicBool::new(false));
    let passed_over = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let (rw, stop, passed_over) =
                (Arc::clone(&rw), Arc::clone(&stop), Arc::clone(&passed_over));
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    rw.acquire_write();
                    while !stop.load(Ordering::SeqCst) && rw.waiting_writers() == 0 {
                        thread::yield_now();
                    }
                    if rw.queued_readers() > 0
                        && passed_over.fetch_add(1, Ordering::SeqCst) + 1 >= CAP
                    {
                        stop.store(true, Ordering::SeqCst);
                    }
                    rw.release_write().unwrap();
                }
            })
        })
        .collect();
    wait_until("the writers take turns", || rw.is_write_locked() && rw.waiting_writers() > 0);
    let reader = {
        let (rw, stop) = (Arc::clone(&rw), Arc::clone(&stop));
        thread::spawn(move || {
            rw.acquire_read();
            stop.store(true, Ordering::SeqCst);
            rw.release_read().unwrap();
        })
    };
    join(reader);
    for w in writers {
        join(w);
    }
    assert!(!rw.is_locked());
    passed_over.load(Ordering::SeqCst)
}

#[test]
fn fair_waiting_readers_are_not_starved_by_a_stream_of_writers() {
    // The first write release that sees the reader queued lets it in.
    assert!(a_reader_against_a_stream_of_writers::<Fair>() <= 1);
}

#[test]
fn write_preferring_a_stream_of_writers_keeps_a_reader_out() {
    // The same harness, with the policy that gives no such guarantee.
    assert!(a_reader_against_a_stream_of_writers::<WritePreferring>() >= 50);
}

/// A writer holds the lock with a reader and a writer queued behind it;
/// returns the lock once the holder has released, both waiters still inside
/// or queued (each waits for `go` before it lets go).
fn release_with_a_reader_and_a_writer_queued<P: ReadWritePolicy + 'static>(
    check: impl FnOnce(&ReadWriteLock<P>),
) {
    let rw = new_lock::<P>();
    let go = Arc::new(AtomicBool::new(false));
    rw.acquire_write();
    let reader = {
        let (rw, go) = (Arc::clone(&rw), Arc::clone(&go));
        thread::spawn(move || {
            rw.acquire_read();
            wait_until("go", || go.load(Ordering::SeqCst));
            rw.release_read().unwrap();
        })
    };
    wait_until("the reader queues", || rw.queued_readers() == 1);
    let writer = {
        let (rw, go) = (Arc::clone(&rw), Arc::clone(&go));
        thread::spawn(move || {
            rw.acquire_write();
            wait_until("go", || go.load(Ordering::SeqCst));
            rw.release_write().unwrap();
        })
    };
    wait_until("the writer queues", || rw.waiting_writers() == 1);
    rw.release_write().unwrap();
    // The release has already decided who holds the lock now.
    check(&rw);
    go.store(true, Ordering::SeqCst);
    join(reader);
    join(writer);
    assert!(!rw.is_locked());
}

#[test]
fn fair_and_read_preferring_a_releasing_writer_admits_waiting_readers_first() {
    fn readers_first<P: ReadWritePolicy>(rw: &ReadWriteLock<P>) {
        assert_eq!(rw.readers(), 1, "the queued reader holds the lock");
        assert_eq!(rw.waiting_writers(), 1);
        assert!(!rw.is_write_locked());
    }
    release_with_a_reader_and_a_writer_queued::<Fair>(readers_first);
    release_with_a_reader_and_a_writer_queued::<ReadPreferring>(readers_first);
}

#[test]
fn write_preferring_a_releasing_writer_hands_over_to_the_next_writer() {
    release_with_a_reader_and_a_writer_queued::<WritePreferring>(|rw| {
        assert!(rw.is_write_locked(), "the queued writer holds the lock");
        assert_eq!(rw.queued_readers(), 1, "the reader still waits");
    });
}

#[test]
fn queued_readers_are_admitted_together() {
    const N: usize = 3;
    let rw = new_lock::<Fair>();
    let go = Arc::new(AtomicBool::new(false));
    rw.acquire_write();
    let readers: Vec<_> = (0..N)
        .map(|_| {
            let (rw, go) = (Arc::clone(&rw), Arc::clone(&go));
            thread::spawn(move || {
                rw.acquire_read();
                wait_until("go", || go.load(Ordering::SeqCst));
                rw.release_read().unwrap();
            })
        })
        .collect();
    wait_until("the readers queue", || rw.queued_readers() == N as u32);
    rw.release_write().unwrap();
    assert_eq!(rw.readers(), N as u32, "one release admits every queued reader");
    go.store(true, Ordering::SeqCst);
    for r in readers {
        join(r);
    }
    assert!(!rw.is_locked());
}

fn downgrade_admits_waiting_readers_and_no_writer<P: ReadWritePolicy + 'static>() {
    let rw = new_lock::<P>();
    let go = Arc::new(AtomicBool::new(false));
    rw.acquire_write();
    let reader = {
        let (rw, go) = (Arc::clone(&rw), Arc::clone(&go));
        thread::spawn(move || {
            rw.acquire_read();
            wait_until("go", || go.load(Ordering::SeqCst));
            rw.release_read().unwrap();
        })
    };
    wait_until("the reader queues", || rw.queued_readers() == 1);
    let writer = {
        let rw = Arc::clone(&rw);
        thread::spawn(move || {
            rw.acquire_write();
            let readers_inside = rw.readers();
            rw.release_write().unwrap();
            readers_inside
        })
    };
    wait_until("the writer queues", || rw.waiting_writers() == 1);
    rw.downgrade().unwrap();
    assert_eq!(rw.readers(), 2, "the downgraded writer and the waiting reader");
    assert!(!rw.is_write_locked(), "no writer slipped in");
    assert_eq!(rw.waiting_writers(), 1);
    go.store(true, Ordering::SeqCst);
    join(reader);
    assert!(!rw.is_write_locked());
    rw.release_read().unwrap();
    assert_eq!(join(writer), 0);
    assert!(!rw.is_locked());
}

#[test]
fn downgrade_admits_waiting_readers_and_no_writer_under_every_policy() {
    downgrade_admits_waiting_readers_and_no_writer::<ReadPreferring>();
    downgrade_admits_waiting_readers_and_no_writer::<WritePreferring>();
    downgrade_admits_waiting_readers_and_no_writer::<Fair>();
}

// ----- timeouts -----

#[cfg(feature = "std")]
fn a_timed_out_writer_takes_back_its_waiting_mark<P: ReadWritePolicy + 'static>() {
    let rw = new_lock::<P>();
    rw.acquire_read();
    let writer = {
        let rw = Arc::clone(&rw);
        thread::spawn(move || rw.acquire_write_timeout(Duration::from_millis(300)))
    };
    wait_until("the writer waits", || rw.waiting_writers() == 1);
    assert!(!rw.try_acquire_read(), "the waiting writer holds new readers back");
    // A reader that blocks behind the waiting writer...
    let readers_seen = Arc::new(AtomicU32::new(0));
    let parked = {
        let (rw, seen) = (Arc::clone(&rw), Arc::clone(&readers_seen));
        thread::spawn(move || {
            rw.acquire_read();
            seen.store(rw.readers(), Ordering::SeqCst);
            rw.release_read().unwrap();
        })
    };
    assert!(!join(writer), "the writer timed out");
    // ... gets in once the writer gave up, while the first reader still reads.
    wait_until("the blocked reader gets in", || readers_seen.load(Ordering::SeqCst) != 0);
    assert_eq!(readers_seen.load(Ordering::SeqCst), 2);
    join(parked);
    assert_eq!(rw.waiting_writers(), 0);
    assert!(rw.try_acquire_read());
    rw.release_read().unwrap();
    rw.release_read().unwrap();
    assert!(rw.try_acquire_write());
    rw.release_write().unwrap();
}

#[test]
#[cfg(feature = "std")]
fn a_timed_out_writer_takes_back_its_waiting_mark_under_every_policy() {
    a_timed_out_writer_takes_back_its_waiting_mark::<WritePreferring>();
    a_timed_out_writer_takes_back_its_waiting_mark::<Fair>();
}

#[cfg(feature = "std")]
fn a_timed_out_writer_leaves_other_writers_waiting<P: ReadWritePolicy + 'static>() {
    let rw = new_lock::<P>();
    rw.acquire_read();
    let timed = {
        let rw = Arc::clone(&rw);
        thread::spawn(move || rw.acquire_write_timeout(Duration::from_millis(200)))
    };
    let patient = {
        let rw = Arc::clone(&rw);
        thread::spawn(move || {
            rw.acquire_write();
            rw.release_write().unwrap();
        })
    };
    wait_until("both writers wait", || rw.waiting_writers() == 2);
    assert!(!join(timed));
    assert_eq!(rw.waiting_writers(), 1);
    assert!(!rw.try_acquire_read(), "the other writer still holds new readers back");
    rw.release_read().unwrap();
    join(patient);
    assert!(!rw.is_locked());
    assert_eq!(rw.waiting_writers(), 0);
}

#[test]
#[cfg(feature = "std")]
fn a_timed_out_writer_leaves_other_writers_waiting_under_every_policy() {
    a_timed_out_writer_leaves_other_writers_waiting::<WritePreferring>();
    a_timed_out_writer_leaves_other_writers_waiting::<Fair>();
}

#[cfg(feature = "std")]
fn a_timed_out_reader_leaves_the_queue<P: ReadWritePolicy + 'static>() {
    let rw = new_lock::<P>();
    rw.acquire_write();
    let reader = {
        let rw = Arc::clone(&rw);
        thread::spawn(move || rw.acquire_read_timeout(Duration::from_millis(200)))
    };
    wait_until("the reader queues", || rw.queued_readers() == 1);
    assert!(!join(reader), "the reader timed out");
    assert_eq!(rw.queued_readers(), 0);
    rw.release_write().unwrap();
    // No read lock was granted to the reader that left.
    assert!(!rw.is_locked());
    assert!(rw.try_acquire_write());
    rw.release_write().unwrap();
}

#[test]
#[cfg(feature = "std")]
fn a_timed_out_reader_leaves_the_queue_under_every_policy() {
    a_timed_out_reader_leaves_the_queue::<ReadPreferring>();
    a_timed_out_reader_leaves_the_queue::<WritePreferring>();
    a_timed_out_reader_leaves_the_queue::<Fair>();
}

#[test]
#[cfg(feature = "std")]
fn fair_a_reader_timing_out_behind_a_waiting_writer_blocks_nobody() {
    let rw = new_lock::<Fair>();
    rw.acquire_read();
    let writer = {
        let rw = Arc::clone(&rw);
        thread::spawn(move || {
            rw.acquire_write();
            rw.release_write().unwrap();
        })
    };
    wait_until("the writer waits", || rw.waiting_writers() == 1);
    assert!(!rw.acquire_read_timeout(Duration::from_millis(50)));
    rw.release_read().unwrap();
    join(writer);
    assert!(!rw.is_locked());
}

#[test]
#[cfg(feature = "std")]
fn timed_acquires_wait_at_least_the_timeout() {
    let rw = ReadWriteLock::new();
    let timeout = Duration::from_millis(100);
    rw.acquire_read();
    let start = Instant::now();
    assert!(!rw.acquire_write_timeout(timeout));
    let took = start.elapsed();
    assert!(took >= timeout && took < timeout + SLACK, "returned after {took:?}");
    rw.release_read().unwrap();

    rw.acquire_write();
    let start = Instant::now();
    assert!(!rw.acquire_read_timeout(timeout));
    let took = start.elapsed();
    assert!(took >= timeout && took < timeout + SLACK, "returned after {took:?}");
    let start = Instant::now();
    assert!(!rw.acquire_read_timeout(Duration::ZERO));
    assert!(!rw.acquire_write_timeout(Duration::ZERO));
    assert!(start.elapsed() < SLACK);
    rw.release_write().unwrap();
    assert!(!rw.is_locked());
    assert!(rw.acquire_read_timeout(Duration::ZERO));
    rw.release_read().unwrap();
}

#[test]
#[cfg(feature = "std")]
fn huge_timeouts_wait_forever_without_overflow() {
    for timeout in [Duration::MAX, Duration::from_secs(u64::MAX / 2)] {
        let rw = Arc::new(ReadWriteLock::new());
        rw.acquire_write();
        let released = Arc::new(AtomicBool::new(false));
        let (rw2, r2) = (Arc::clone(&rw), Arc::clone(&released));
        let reader = thread::spawn(move || {
            let got = rw2.acquire_read_timeout(timeout);
            let after = r2.load(Ordering::SeqCst);
            rw2.release_read().unwrap();
            got && after
        });
        wait_until("the reader queues", || rw.queued_readers() == 1);
        released.store(true, Ordering::SeqCst);
        rw.release_write().unwrap();
        assert!(join(reader));

        rw.acquire_read();
        let (rw2, r2) = (Arc::clone(&rw), Arc::clone(&released));
        r2.store(false, Ordering::SeqCst);
        let writer = thread::spawn(move || {
            let got = rw2.acquire_write_timeout(timeout);
            let after = r2.load(Ordering::SeqCst);
            rw2.release_write().unwrap();
            got && after
        });
        wait_until("the writer waits", || rw.waiting_writers() == 1);
        released.store(true, Ordering::SeqCst);
        rw.release_read().unwrap();
        assert!(join(writer));
    }
}

/// A user-provided clock makes the spin backend timed.
struct StdClock;
impl Clock for StdClock {
    fn now_nanos() -> u64 {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

#[test]
fn spin_backend_with_a_clock_has_timeouts() {
    let rw: ReadWriteLock<Fair, Spin<spin::relax::Spin, StdClock>> = ReadWriteLock::with_backend();
    rw.acquire_write();
    let start = Instant::now();
    assert!(!rw.acquire_read_timeout(Duration::from_millis(30)));
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert_eq!(rw.queued_readers(), 0);
    rw.release_write().unwrap();
    assert!(rw.acquire_read_timeout(Duration::from_millis(30)));
    assert!(!rw.acquire_write_timeout(Duration::from_millis(30)));
    assert_eq!(rw.waiting_writers(), 0);
    rw.release_read().unwrap();
}

// ----- no system call when nobody waits -----

static WAITS: AtomicUsize = AtomicUsize::new(0);
static WAKES: AtomicUsize = AtomicUsize::new(0);

/// A spinning backend that counts its calls.
enum Counting {}
impl Backend for Counting {
    const SPIN_LIMIT: u32 = 0;
    fn wait(word: &AtomicU32, expected: u32) {
        WAITS.fetch_add(1, Ordering::SeqCst);
        while word.load(Ordering::SeqCst) == expected {
            thread::yield_now();
        }
    }
    fn wake_one(_word: *const AtomicU32) {
        WAKES.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_all(_word: *const AtomicU32) {
        WAKES.fetch_add(1, Ordering::SeqCst);
    }
}

fn uncontended_use_makes_no_backend_call<P: ReadWritePolicy>() {
    let rw: ReadWriteLock<P, Counting> = ReadWriteLock::with_backend();
    for _ in 0..3 {
        rw.acquire_read();
        assert!(rw.try_acquire_read());
        rw.release_read().unwrap();
        rw.release_read().unwrap();
        rw.acquire_write();
        rw.downgrade().unwrap();
        rw.release_read().unwrap();
        assert!(rw.try_acquire_write());
        rw.release_write().unwrap();
        drop(rw.read());
        drop(rw.write());
    }
}

#[test]
fn wake_calls_happen_only_when_someone_waits() {
    uncontended_use_makes_no_backend_call::<ReadPreferring>();
    uncontended_use_makes_no_backend_call::<WritePreferring>();
    uncontended_use_makes_no_backend_call::<Fair>();
    assert_eq!(WAITS.load(Ordering::SeqCst), 0);
    assert_eq!(WAKES.load(Ordering::SeqCst), 0);

    // A waiting writer: the last reader's release wakes it, once.
    let rw: &'static ReadWriteLock<Fair, Counting> = leak();
    rw.acquire_read();
    let writer = thread::spawn(move || {
        rw.acquire_write();
        rw.release_write().unwrap();
    });
    wait_until("the writer waits", || rw.waiting_writers() == 1);
    rw.release_read().unwrap();
    assert_eq!(WAKES.load(Ordering::SeqCst), 1);
    join(writer);
    assert_eq!(WAKES.load(Ordering::SeqCst), 1, "nobody waited at the writer's release");
}

// ----- lock_api -----

#[test]
fn lock_api_rwlock_protects_data() {
    let data = Arc::new(RwLock::new(0u64));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let data = Arc::clone(&data);
            thread::spawn(move || {
                let mut last = 0;
                for _ in 0..ITERS {
                    if i % 2 == 0 {
                        *data.write() += 1;
                    } else {
                        let now = *data.read();
                        assert!(now >= last, "a reader saw the value go back");
                        last = now;
                    }
                }
            })
        })
        .collect();
    for h in handles {
        join(h);
    }
    assert_eq!(*data.read(), 2 * ITERS);

    let r1 = data.read();
    let r2 = data.read();
    assert!(data.is_locked() && !data.is_locked_exclusive());
    assert!(data.try_write().is_none());
    drop((r1, r2));
    let w = data.write();
    assert!(data.is_locked_exclusive());
    assert!(data.try_read().is_none());
    let r = RwLockWriteGuard::downgrade(w);
    assert!(!data.is_locked_exclusive());
    assert!(data.try_read().is_some(), "readers join after a downgrade");
    assert!(data.try_write().is_none());
    drop(r);
    assert!(!data.is_locked());
}

#[test]
#[cfg(feature = "std")]
fn lock_api_rwlock_timed_forms() {
    let data = RwLock::new(String::from("a"));
    let r = data.read();
    assert!(data.try_write_for(Duration::from_millis(5)).is_none());
    assert!(data.try_read_for(Duration::from_millis(5)).is_some());
    drop(r);
    let w = data.try_write_for(Duration::from_millis(5)).expect("free lock");
    assert!(data.try_read_for(Duration::from_millis(5)).is_none());
    assert!(data.try_write_for(Duration::ZERO).is_none());
    drop(w);
    let until = <core_sync::DefaultBackend as core_sync::TimedBackend>::now_nanos() + 5_000_000;
    data.try_write_until(until).expect("free lock").push('b');
    assert_eq!(*data.try_read_until(until + 5_000_000).expect("free lock"), "ab");
}
