//! `active_count()` against `enumerate()`, alone in its test binary so that
//! no other test's threads change the count.

use std::sync::Arc;
use std::time::Duration;

use core_sync::Lock;
use std_threads::{Thread, active_count, enumerate};

#[test]
fn active_count_counts_main_and_live_started_threads() {
    let before = active_count();
    assert_eq!(before, enumerate().len());
    assert_eq!(before, 1, "only the main thread (harness threads are dummies, not counted)");

    let gate = Arc::new(Lock::new());
    gate.acquire();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let g = Arc::clone(&gate);
            Thread::new(move || {
                g.acquire();
                let _ = g.release();
            })
            .daemon(true)
            .start()
            .unwrap()
        })
        .collect();
    assert_eq!(active_count(), before + 3);
    assert_eq!(enumerate().len(), before + 3);

    // A dummy thread asking for its record is not counted.
    std::thread::spawn(|| drop(std_threads::current_thread())).join().unwrap();
    assert_eq!(active_count(), before + 3);

    gate.release().unwrap();
    for h in handles {
        assert!(h.join_timeout(Duration::from_secs(10)));
        h.join().unwrap();
    }
    assert_eq!(active_count(), before);
}
