//! Wait backends: how a primitive sleeps while its atomic word holds a value.
//!
//! Every primitive in this crate is an atomic state machine. When it must
//! block, it calls [`Backend::wait`] with the word and the value it saw; when
//! it makes progress that a sleeper may need, it calls [`Backend::wake_one`]
//! or [`Backend::wake_all`] (and only when its state says that someone
//! sleeps). That is the whole contract with the platform, so a kernel or an
//! RTOS plugs in its own wait queues by implementing this trait.
//!
//! Backends shipped here:
//!
//! - [`Futex`] (feature `std`): the operating system's futex (Linux, Android,
//!   FreeBSD, Windows `WaitOnAddress`, macOS `__ulock`), with timed waits
//!   against a monotonic clock.
//! - [`Spin`]: spins with a [`spin::relax::RelaxStrategy`], for bare metal.
//!   It has a clock, and hence timed methods, only when given one
//!   ([`Clock`]).
//!
//! # Writing a backend
//!
//! ```
//! use core_sync::backend::{AtomicU32, Backend};
//! use core::sync::atomic::Ordering;
//!
//! /// A backend for a single-core system that halts until the next interrupt.
//! struct WaitForInterrupt;
//!
//! impl Backend for WaitForInterrupt {
//!     fn wait(word: &AtomicU32, expected: u32) {
//!         if word.load(Ordering::Acquire) == expected {
//!             // A real kernel would park the task on a wait queue keyed by
//!             // `word`'s address; a spurious return is always allowed.
//!             core::hint::spin_loop();
//!         }
//!     }
//!     fn wake_one(_word: *const AtomicU32) {}
//!     fn wake_all(_word: *const AtomicU32) {}
//! }
//!
//! let lock = core_sync::Lock::<WaitForInterrupt>::with_backend();
//! lock.acquire();
//! assert!(lock.release().is_ok());
//! ```

use core::marker::PhantomData;
use core::num::NonZeroUsize;
use core::time::Duration;

pub use crate::sync::AtomicU32;

#[cfg(all(feature = "std", not(loom)))]
mod futex;
#[cfg(all(feature = "std", not(loom)))]
pub use futex::Futex;

#[cfg(loom)]
mod loom_backend;
#[cfg(loom)]
pub use loom_backend::Loom;

/// "Sleep while this word equals X" and "wake one / wake all".
///
/// # Contract
///
/// - [`wait`](Backend::wait) returns only after the word was seen to differ
///   from `expected`, a wake call on the same word, or spuriously. It must
///   not sleep through a wake that happens after the word was changed: the
///   comparison and the sleep are one atomic step, as with a futex.
/// - [`wake_one`](Backend::wake_one) wakes at least one thread sleeping on
///   the word, if any; [`wake_all`](Backend::wake_all) wakes every one.
/// - A wake uses the word's address only as a key, and must not read or
///   write through it: it takes a raw pointer, which may dangle. A waker's
///   last access to a word is the store that its sleepers wait for, and a
///   sleeper that sees it may return and free the word (a `Condition`
///   waiter's node on its stack) before the wake call is made. The address
///   may even belong to a new word by then; waking its sleepers is a
///   spurious wake, which they tolerate. (A futex wake on an address that
///   nobody waits on does nothing; `atomic-wait` takes the same contract.)
///
/// Spurious returns are always allowed: callers re-check their state.
pub trait Backend {
    /// How many times a primitive spins (re-reading its word) before it calls
    /// [`wait`](Backend::wait). Zero disables spinning. (`Lock` and
    /// `ReadWriteLock` spend twelve times this many spin hints but re-read
    /// their word rarely, with exponential backoff, so as not to slow down
    /// the holder.)
    const SPIN_LIMIT: u32 = 100;

    /// Gives the processor to another thread for a moment, where the
    /// platform can (`sched_yield` for the futex backend; a spin hint by
    /// default). A `Lock` or `ReadWriteLock` whose spinning did not see the
    /// holder leave yields a few times before it sleeps, which lets a holder
    /// that was preempted on a busy machine finish without the cost of a
    /// sleep and a wake.
    #[inline]
    fn yield_now() {
        core::hint::spin_loop();
    }

    /// Blocks while `word` holds `expected`, until woken (or spuriously).
    fn wait(word: &AtomicU32, expected: u32);

    /// Wakes one thread blocked in [`wait`](Backend::wait) on `word`.
    ///
    /// `word` is only a key: it may dangle, and must not be dereferenced
    /// (see the trait's contract). Callers pass `&word`, which coerces.
    fn wake_one(word: *const AtomicU32);

    /// Wakes every thread blocked in [`wait`](Backend::wait) on `word`.
    ///
    /// `word` is only a key: it may dangle, and must not be dereferenced
    /// (see the trait's contract).
    fn wake_all(word: *const AtomicU32);
}

/// A backend with a monotonic clock, which gives the primitives their timed
/// methods (`acquire_timeout`, `wait_timeout`, ...).
pub trait TimedBackend: Backend {
    /// The current time on a monotonic clock, in nanoseconds from an
    /// arbitrary origin that never changes while the program runs.
    fn now_nanos() -> u64;

    /// Blocks while `word` holds `expected`, until woken, spuriously, or
    /// until [`now_nanos`](TimedBackend::now_nanos) reaches `deadline`.
    ///
    /// The deadline is absolute so that a spurious wake-up and a retry never
    /// stretch the total wait. Callers re-check both their state and the
    /// clock after it returns.
    fn wait_until(word: &AtomicU32, expected: u32, deadline: u64);
}

/// The thread identity an owned lock (`RLock`) records as its owner.
pub trait CurrentThread {
    /// A non-zero value that identifies the calling thread among all threads
    /// alive at the same time.
    fn current_thread_id() -> NonZeroUsize;
}

/// A point in time on the clock of the [`TimedBackend`] `B`, or "never":
/// what every timed wait in the project counts down to.
///
/// A deadline is absolute, so a spurious wake-up and a retry never stretch
/// the total wait; `Duration::MAX` (or any timeout too large to represent)
/// never passes.
///
/// ```
/// use core_sync::backend::{AtomicU32, Deadline, Futex};
/// use std::time::Duration;
///
/// let word = AtomicU32::new(0);
/// let deadline = Deadline::<Futex>::after(Duration::from_millis(5));
/// // Sleep while the word holds 0, until the deadline.
/// while deadline.wait(&word, 0) {}
/// assert!(deadline.passed());
/// assert_eq!(deadline.remaining(), Some(Duration::ZERO));
/// assert!(Deadline::<Futex>::NEVER.remaining().is_none());
/// ```
pub struct Deadline<B> {
    nanos: u64,
    backend: PhantomData<fn() -> B>,
}

impl<B> Clone for Deadline<B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B> Copy for Deadline<B> {}

impl<B> PartialEq for Deadline<B> {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl<B> Eq for Deadline<B> {}

impl<B> core::fmt::Debug for Deadline<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.is_never() {
            f.write_str("Deadline(never)")
        } else {
            f.debug_tuple("Deadline").field(&self.nanos).finish()
        }
    }
}

impl<B> Deadline<B> {
    /// A deadline that never passes.
    pub const NEVER: Deadline<B> = Deadline { nanos: u64::MAX, backend: PhantomData };

    /// Whether this is [`NEVER`](Deadline::NEVER).
    #[inline]
    pub fn is_never(self) -> bool {
        self.nanos == u64::MAX
    }
}

impl<B: TimedBackend> Deadline<B> {
    /// `timeout` from now. A timeout too large to represent never passes.
    #[inline]
    pub fn after(timeout: Duration) -> Deadline<B> {
        let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        if nanos == u64::MAX {
            return Deadline::NEVER;
        }
        Deadline { nanos: B::now_nanos().saturating_add(nanos), backend: PhantomData }
    }

    /// Whether the deadline has passed.
    #[inline]
    pub fn passed(self) -> bool {
        !self.is_never() && B::now_nanos() >= self.nanos
    }

    /// The time left (zero once passed), or `None` for a deadline that never
    /// passes.
    #[inline]
    pub fn remaining(self) -> Option<Duration> {
        (!self.is_never()).then(|| Duration::from_nanos(self.nanos.saturating_sub(B::now_nanos())))
    }

    /// Sleeps while `word` holds `expected`, until this deadline. Returns
    /// `false` when the deadline has passed (checked before the sleep),
    /// `true` when the caller should re-check its state.
    #[inline]
    pub fn wait(self, word: &AtomicU32, expected: u32) -> bool {
        if self.is_never() {
            B::wait(word, expected);
            return true;
        }
        if B::now_nanos() >= self.nanos {
            return false;
        }
        B::wait_until(word, expected, self.nanos);
        true
    }
}

/// Waits as [`Backend::wait`] and always reports "re-check", for the
/// untimed forms that share a slow path with the timed ones.
#[inline]
pub(crate) fn wait_forever<B: Backend>(word: &AtomicU32, expected: u32) -> bool {
    B::wait(word, expected);
    true
}

/// A monotonic clock for a bare-metal [`Spin`] backend (a `SysTick` counter, a
/// cycle counter scaled to nanoseconds, ...).
pub trait Clock {
    /// Nanoseconds since an arbitrary fixed origin; never decreases.
    fn now_nanos() -> u64;
}

/// The "no clock" marker: a [`Spin`] backend without one has no timed
/// methods.
#[derive(Debug)]
pub enum NoClock {}

/// A backend that spins: for bare metal, or anywhere a thread has nothing
/// better to do than to re-read the word.
///
/// `R` is how each spin relaxes (`spin::relax::Spin` issues the processor's
/// spin-loop hint; `spin::relax::Loop` does nothing). `C` is an optional
/// [`Clock`]: with one the primitives get their timed methods.
///
/// Wake calls cost nothing: a spinning waiter sees the word change by itself.
pub struct Spin<R = spin::relax::Spin, C = NoClock>(PhantomData<fn() -> R>, PhantomData<fn() -> C>);

impl<R: spin::relax::RelaxStrategy, C> Backend for Spin<R, C> {
    // The backend spins anyway; spinning in the primitive first is redundant.
    const SPIN_LIMIT: u32 = 0;

    #[inline]
    fn wait(word: &AtomicU32, expected: u32) {
        while word.load(crate::sync::Ordering::Relaxed) == expected {
            R::relax();
        }
    }

    #[inline]
    fn wake_one(_word: *const AtomicU32) {}

    #[inline]
    fn wake_all(_word: *const AtomicU32) {}
}

impl<R: spin::relax::RelaxStrategy, C: Clock> TimedBackend for Spin<R, C> {
    #[inline]
    fn now_nanos() -> u64 {
        C::now_nanos()
    }

    #[inline]
    fn wait_until(word: &AtomicU32, expected: u32, deadline: u64) {
        while word.load(crate::sync::Ordering::Relaxed) == expected && C::now_nanos() < deadline {
            R::relax();
        }
    }
}

/// The backend the primitives use unless told otherwise: [`Futex`] with the
/// `std` feature, [`Spin`] without it (and the model-checking backend under
/// `cfg(loom)`).
#[cfg(all(feature = "std", not(loom)))]
pub type DefaultBackend = Futex;

/// The backend the primitives use unless told otherwise: [`Futex`] with the
/// `std` feature, [`Spin`] without it (and the model-checking backend under
/// `cfg(loom)`).
#[cfg(all(not(feature = "std"), not(loom)))]
pub type DefaultBackend = Spin;

/// The backend the primitives use unless told otherwise: the model-checking
/// backend under `cfg(loom)`.
#[cfg(loom)]
pub type DefaultBackend = Loom;
