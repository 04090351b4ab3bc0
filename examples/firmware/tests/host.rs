//! The firmware backend, exercised with real threads on the host (where
//! WFE/SEV become spin hints), and a thread standing in for `SysTick`.

use firmware_example::{BUS, Lock, on_systick, with_bus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

#[test]
fn user_backend_gives_mutual_exclusion_and_timeouts() {
    static STOP: AtomicBool = AtomicBool::new(false);
    let systick = thread::spawn(|| {
        while !STOP.load(Ordering::Relaxed) {
            thread::sleep(std::time::Duration::from_millis(1));
            on_systick();
        }
    });

    static COUNTER_LOCK: Lock = Lock::with_backend();
    static mut COUNTER: u32 = 0;
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..if cfg!(miri) { 50 } else { 20_000 } {
                    let _g = COUNTER_LOCK.lock();
                    // SAFETY: COUNTER is only touched under COUNTER_LOCK.
                    unsafe { COUNTER += 1 };
                }
            });
        }
    });
    let _g = COUNTER_LOCK.lock();
    // SAFETY: COUNTER_LOCK is held and the writers are joined.
    let total = unsafe { COUNTER };
    assert_eq!(total, 2 * if cfg!(miri) { 50 } else { 20_000 });

    // The bus is free: the closure runs. Held elsewhere: the timed acquire
    // gives up once the SysTick clock passes the deadline.
    assert_eq!(with_bus(10, || 7), Some(7));
    BUS.acquire();
    assert_eq!(with_bus(5, || 7), None);
    BUS.release().unwrap();

    STOP.store(true, Ordering::Relaxed);
    systick.join().unwrap();
}
