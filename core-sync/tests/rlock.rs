//! Python's `threading.RLock` semantics, on the futex backend and on a
//! spinning bare-metal-style backend that brings its own thread ids.
//!
//! With `--no-default-features` the default backend cannot name threads, so
//! only the spinning backend's tests (and no timed test) are compiled.

#![cfg_attr(not(feature = "std"), allow(unused_imports, dead_code))]

use core_sync::backend::{AtomicU32, Backend, CurrentThread, Spin};
use core_sync::{RLock, RecursionOverflow, ReleaseError};
use std::cell::UnsafeCell;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Generous upper bound for "returns promptly" on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(5);

/// A bare-metal-style backend: it spins like [`Spin`] and names threads
/// itself (here with a thread-local's address; a kernel would use its task
/// id).
struct SpinIds;

impl Backend for SpinIds {
    const SPIN_LIMIT: u32 = 0;
    fn wait(word: &AtomicU32, expected: u32) {
        Spin::<spin::relax::Spin>::wait(word, expected);
    }
    fn wake_one(_word: *const AtomicU32) {}
    fn wake_all(_word: *const AtomicU32) {}
}

impl CurrentThread for SpinIds {
    fn current_thread_id() -> NonZeroUsize {
        thread_local!(static ID: u8 = const { 0 });
        ID.with(|id| NonZeroUsize::new(std::ptr::from_ref(id).addr())).unwrap()
    }
}

#[test]
fn size_is_at_most_sixteen_bytes() {
    assert!(size_of::<RLock<SpinIds>>() <= 16);
    #[cfg(target_pointer_width = "64")]
    assert_eq!(size_of::<RLock<SpinIds>>(), 16);
    #[cfg(feature = "std")]
    assert!(size_of::<RLock>() <= 16);
}

/// Python: an `RLock` acquired N times needs N releases, and no other thread
/// gets it before the last one.
fn n_acquires_need_n_releases<B: Backend + CurrentThread>(lock: &RLock<B>) {
    const N: u32 = 5;
    for _ in 0..N {
        lock.acquire().unwrap();
    }
    assert_eq!(lock.recursion_count(), N);
    for left in (1..=N).rev() {
        assert!(lock.locked());
        let other = thread::scope(|s| s.spawn(|| lock.try_acquire()).join().unwrap());
        assert!(!other, "another thread got the lock with {left} levels still held");
        lock.release().unwrap();
        assert_eq!(lock.recursion_count(), left - 1);
    }
    assert!(!lock.locked());
    thread::scope(|s| {
        s.spawn(|| {
            assert!(lock.try_acquire());
            lock.release().unwrap();
        });
    });
    assert_eq!(lock.release(), Err(ReleaseError::NotLocked));
}

#[test]
#[cfg(feature = "std")]
fn n_acquires_need_n_releases_futex() {
    n_acquires_need_n_releases(&RLock::new());
}

#[test]
fn n_acquires_need_n_releases_spin_backend() {
    n_acquires_need_n_releases(&RLock::<SpinIds>::with_backend());
}

/// A blocked `acquire` in another thread gets through only after the last
/// release.
fn blocked_acquirer_waits_for_the_last_release<B: Backend + CurrentThread>(lock: &RLock<B>) {
    let got_it = AtomicBool::new(false);
    lock.acquire().unwrap();
    lock.acquire().unwrap();
    lock.acquire().unwrap();
    thread::scope(|s| {
        let other = s.spawn(|| {
            lock.acquire().unwrap();
            got_it.store(true, Ordering::SeqCst);
            assert_eq!(lock.recursion_count(), 1);
            lock.release().unwrap();
        });
        lock.release().unwrap();
        lock.release().unwrap();
        // Holds in every interleaving; the pause only gives a broken lock the
        // chance to show itself.
        thread::sleep(Duration::from_millis(20));
        assert!(!got_it.load(Ordering::SeqCst), "acquired while one level was still held");
        lock.release().unwrap();
        other.join().unwrap();
    });
    assert!(got_it.load(Ordering::SeqCst));
    assert!(!lock.locked());
}

#[test]
#[cfg(feature = "std")]
fn blocked_acquirer_waits_for_the_last_release_futex() {
    blocked_acquirer_waits_for_the_last_release(&RLock::new());
}

#[test]
fn blocked_acquirer_waits_for_the_last_release_spin_backend() {
    blocked_acquirer_waits_for_the_last_release(&RLock::<SpinIds>::with_backend());
}

fn non_owner_release_is_an_error_and_changes_nothing<B: Backend + CurrentThread>(lock: &RLock<B>) {
    lock.acquire().unwrap();
    lock.acquire().unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            assert!(!lock.is_owned());
            assert_eq!(lock.recursion_count(), 0);
            assert_eq!(lock.release(), Err(ReleaseError::NotOwner));
            assert_eq!(lock.release_save(), Err(ReleaseError::NotOwner));
            assert!(!lock.try_acquire(), "the failed release freed the lock");
        });
    });
    assert!(lock.is_owned());
    assert_eq!(lock.recursion_count(), 2);
    lock.release().unwrap();
    lock.release().unwrap();
    assert_eq!(lock.release(), Err(ReleaseError::NotLocked));
}

#[test]
#[cfg(feature = "std")]
fn non_owner_release_is_an_error_and_changes_nothing_futex() {
    non_owner_release_is_an_error_and_changes_nothing(&RLock::new());
}

#[test]
fn non_owner_release_is_an_error_and_changes_nothing_spin_backend() {
    non_owner_release_is_an_error_and_changes_nothing(&RLock::<SpinIds>::with_backend());
}

#[test]
fn release_of_an_unlocked_rlock_is_an_error() {
    let lock = RLock::<SpinIds>::with_backend();
    assert_eq!(lock.release(), Err(ReleaseError::NotLocked));
    assert_eq!(lock.release_save(), Err(ReleaseError::NotLocked));
    assert!(!lock.locked());
    assert!(!lock.is_owned());
    lock.acquire().unwrap();
    assert_eq!(lock.recursion_count(), 1);
    lock.release().unwrap();
}

/// Python raises `OverflowError` past the counter's range. The depth is
/// set to `u32::MAX` through `acquire_restore` (what `Condition.wait` uses);
/// the overflow checks are those of `acquire`, `try_acquire`, `lock`.
fn depth_overflow_is_an_error<B: Backend + CurrentThread>(lock: &RLock<B>) {
    lock.acquire_restore(NonZeroU32::MAX).unwrap();
    assert_eq!(lock.recursion_count(), u32::MAX);
    assert_eq!(lock.acquire(), Err(RecursionOverflow));
    assert!(!lock.try_acquire());
    assert!(lock.try_lock().is_none());
    assert_eq!(lock.lock().err(), Some(RecursionOverflow));
    assert_eq!(lock.acquire_restore(NonZeroU32::MIN), Err(RecursionOverflow));
    // Nothing changed: not wrapped to zero, still owned at full depth.
    assert_eq!(lock.recursion_count(), u32::MAX);
    assert!(lock.is_owned());
    // One level less, and one more fits again.
    lock.release().unwrap();
    assert_eq!(lock.recursion_count(), u32::MAX - 1);
    lock.acquire().unwrap();
    assert_eq!(lock.acquire(), Err(RecursionOverflow));
    assert_eq!(lock.release_save(), Ok(NonZeroU32::MAX));
    assert!(!lock.locked());
    // Restoring more levels on top of held ones adds them, up to the limit.
    lock.acquire().unwrap();
    assert_eq!(lock.acquire_restore(NonZeroU32::MAX), Err(RecursionOverflow));
    assert_eq!(lock.recursion_count(), 1);
    lock.acquire_restore(NonZeroU32::new(u32::MAX - 1).unwrap()).unwrap();
    assert_eq!(lock.recursion_count(), u32::MAX);
    assert_eq!(lock.release_save(), Ok(NonZeroU32::MAX));
}

#[test]
#[cfg(feature = "std")]
fn depth_overflow_is_an_error_futex() {
    let lock = RLock::new();
    depth_overflow_is_an_error(&lock);
    lock.acquire_restore(NonZeroU32::MAX).unwrap();
    assert!(!lock.acquire_timeout(Duration::ZERO));
    assert!(!lock.acquire_timeout(Duration::from_millis(1)));
    assert!(lock.lock_timeout(Duration::from_millis(1)).is_none());
    assert_eq!(lock.recursion_count(), u32::MAX);
    assert_eq!(lock.release_save(), Ok(NonZeroU32::MAX));
}

#[test]
fn depth_overflow_is_an_error_spin_backend() {
    depth_overflow_is_an_error(&RLock::<SpinIds>::with_backend());
}

#[test]
fn release_save_and_acquire_restore_round_trip() {
    let lock = RLock::<SpinIds>::with_backend();
    for _ in 0..3 {
        lock.acquire().unwrap();
    }
    let saved = lock.release_save().unwrap();
    assert_eq!(saved.get(), 3);
    assert!(!lock.locked());
    // Free for another thread while saved.
    thread::scope(|s| {
        s.spawn(|| {
            assert!(lock.try_acquire());
            lock.release().unwrap();
        });
    });
    lock.acquire_restore(saved).unwrap();
    assert_eq!(lock.recursion_count(), 3);
}

#[test]
#[cfg(feature = "std")]
fn acquire_timeout_waits_for_the_owner_but_reenters_at_once() {
    let lock = RLock::new();
    assert!(lock.acquire_timeout(Duration::from_millis(1)));
    assert!(lock.acquire_timeout(Duration::ZERO), "the owner re-enters without waiting");
    assert_eq!(lock.recursion_count(), 2);
    thread::scope(|s| {
        s.spawn(|| {
            assert!(!lock.acquire_timeout(Duration::ZERO));
            let timeout = Duration::from_millis(50);
            let start = Instant::now();
            assert!(!lock.acquire_timeout(timeout));
            let took = start.elapsed();
            assert!(took >= timeout && took < timeout + SLACK, "took {took:?}");
        });
    });
    lock.release().unwrap();
    lock.release().unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            let guard = lock.lock_timeout(Duration::from_millis(50)).expect("free");
            assert!(guard.rlock().is_owned());
        });
    });
    assert!(!lock.locked());
}

#[test]
#[cfg(feature = "std")]
fn guards_nest_and_release_on_panic() {
    static LOCK: RLock = RLock::new();
    fn recurse(n: u32) -> u32 {
        let _guard = LOCK.lock().unwrap();
        if n == 0 { LOCK.recursion_count() } else { recurse(n - 1) }
    }
    assert_eq!(recurse(9), 10);
    assert!(!LOCK.locked());
    let caught = std::panic::catch_unwind(|| {
        let _outer = LOCK.lock().unwrap();
        let _inner = LOCK.lock().unwrap();
        panic!("inside");
    });
    assert!(caught.is_err());
    assert!(!LOCK.locked(), "a panic inside the guards must release every level");
}

#[test]
fn a_guard_released_by_hand_does_not_release_another_owner() {
    let lock = RLock::<SpinIds>::with_backend();
    let step = Barrier::new(2);
    let guard = lock.lock().unwrap();
    lock.release().unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            lock.acquire().unwrap();
            step.wait();
            step.wait();
            assert!(lock.is_owned());
            lock.release().unwrap();
        });
        step.wait();
        drop(guard); // not the owner any more: must change nothing
        assert!(lock.locked());
        step.wait();
    });
    assert!(!lock.locked());
}

#[test]
fn is_owned_tells_the_owner_apart() {
    let lock = RLock::<SpinIds>::with_backend();
    assert!(!lock.is_owned());
    lock.acquire().unwrap();
    assert!(lock.is_owned());
    thread::scope(|s| {
        s.spawn(|| assert!(!lock.is_owned()));
    });
    lock.release().unwrap();
    assert!(!lock.is_owned());
}

/// A plain (non-atomic) counter; the lock under test is its only protection.
struct Counter(UnsafeCell<u64>);
// SAFETY: every access happens while holding the lock under test; a broken
// lock shows up as a lost update, which is what the tests check.
unsafe impl Sync for Counter {}

const PER_THREAD: u64 = if cfg!(miri) { 200 } else { 50_000 };

fn hammer<B: Backend + CurrentThread>(lock: &RLock<B>, per_thread: u64) -> u64 {
    let counter = Counter(UnsafeCell::new(0));
    let shared = &counter;
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..per_thread {
                    lock.acquire().unwrap();
                    lock.acquire().unwrap(); // re-entered, as recursion would
                    // SAFETY: the lock is held, so no other thread touches it.
                    unsafe { *shared.0.get() += 1 };
                    assert_eq!(lock.recursion_count(), 2);
                    lock.release().unwrap();
                    lock.release().unwrap();
                }
            });
        }
    });
    assert!(!lock.locked());
    counter.0.into_inner()
}

#[test]
#[cfg(feature = "std")]
fn stress_four_threads_exact_total_futex() {
    assert_eq!(hammer(&RLock::new(), PER_THREAD), 4 * PER_THREAD);
}

#[test]
fn stress_four_threads_exact_total_spin_backend() {
    let per_thread = PER_THREAD / 10;
    assert_eq!(hammer(&RLock::<SpinIds>::with_backend(), per_thread), 4 * per_thread);
}

#[test]
#[cfg(feature = "std")]
fn lock_api_reentrant_mutex_reenters_and_excludes() {
    use std::cell::Cell;
    let m = core_sync::ReentrantMutex::new(Cell::new(0u64));
    {
        let a = m.lock();
        let b = m.lock();
        b.set(b.get() + 1);
        assert_eq!(a.get(), 1);
        thread::scope(|s| {
            s.spawn(|| {
                assert!(m.try_lock().is_none());
                assert!(m.try_lock_for(Duration::from_millis(5)).is_none());
            });
        });
    }
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..PER_THREAD / 10 {
                    let outer = m.lock();
                    let inner = m.lock();
                    inner.set(inner.get() + 1);
                    drop(outer);
                }
            });
        }
    });
    assert_eq!(m.lock().get(), 1 + 4 * (PER_THREAD / 10));
}

#[test]
fn lock_api_reentrant_mutex_on_another_backend() {
    use core_sync::{Lock, ThreadIdOf};
    type SpinReentrant<T> = lock_api::ReentrantMutex<Lock<SpinIds>, ThreadIdOf<SpinIds>, T>;
    let m = SpinReentrant::new(7);
    let a = m.lock();
    let b = m.lock();
    assert_eq!(*a + *b, 14);
    thread::scope(|s| {
        s.spawn(|| assert!(m.try_lock().is_none()));
    });
}
