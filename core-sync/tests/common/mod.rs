//! Helpers shared by the behaviour tests.

/// Moves `value` to the heap for the rest of the test binary's life, for
/// tests that hand `&'static` state to spawned threads.
///
/// The allocation stays reachable from a `static`, so miri's leak checker
/// (which `cargo xtask ci` runs over these tests) does not count it, and
/// still reports any allocation that is truly lost.
#[allow(dead_code)]
pub(crate) fn leak<T: Sync + 'static>(value: T) -> &'static T {
    static KEPT: core_sync::Mutex<Vec<&'static (dyn Sync + 'static)>> =
        core_sync::Mutex::new(Vec::new());
    let kept: &'static T = Box::leak(Box::new(value));
    KEPT.lock().push(kept);
    kept
}
