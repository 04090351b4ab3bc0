//! The atomics every primitive is built on, chosen in one place: `core`'s,
//! `portable-atomic`'s (targets without compare-and-swap) or `loom`'s (model
//! checking). The primitives import from here and nowhere else.

#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::atomic::AtomicPtr;
#[cfg(loom)]
pub use loom::sync::atomic::AtomicU32;
#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::atomic::AtomicUsize;

#[cfg(all(not(loom), feature = "portable-atomic"))]
#[allow(unused_imports)]
pub(crate) use portable_atomic::AtomicPtr;
#[cfg(all(not(loom), feature = "portable-atomic"))]
pub use portable_atomic::AtomicU32;
#[cfg(all(not(loom), feature = "portable-atomic"))]
#[allow(unused_imports)]
pub(crate) use portable_atomic::AtomicUsize;

#[cfg(all(not(loom), not(feature = "portable-atomic")))]
#[allow(unused_imports)]
pub(crate) use core::sync::atomic::AtomicPtr;
#[cfg(all(not(loom), not(feature = "portable-atomic")))]
pub use core::sync::atomic::AtomicU32;
#[cfg(all(not(loom), not(feature = "portable-atomic")))]
#[allow(unused_imports)]
pub(crate) use core::sync::atomic::AtomicUsize;

pub(crate) use core::sync::atomic::Ordering;

/// A hint to the processor that this thread is spinning.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}
