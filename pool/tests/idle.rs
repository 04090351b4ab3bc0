//! An idle pool uses no CPU. Alone in its test binary, so that the process's
//! CPU time is the pool's.
#![cfg(not(loom))]

#[cfg(target_os = "linux")]
#[test]
fn an_idle_pool_uses_no_cpu() {
    use pool::ThreadPoolExecutor;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;
    use std::time::{Duration, Instant};

    /// This process's user + system CPU time, in clock ticks.
    fn cpu_ticks() -> u64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after_name.split(' ').collect();
        // utime and stime are fields 14 and 15 of stat(5); field 3 is
        // the first after the name.
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    let pool = ThreadPoolExecutor::new(4);
    // Make all four workers start: four tasks that wait for each other.
    let arrived = Arc::new(AtomicUsize::new(0));
    let futures: Vec<_> = (0..4)
        .map(|_| {
            let arrived = Arc::clone(&arrived);
            pool.submit(move || {
                arrived.fetch_add(1, Ordering::SeqCst);
                while arrived.load(Ordering::SeqCst) < 4 {
                    std::hint::spin_loop();
                }
            })
            .unwrap()
        })
        .collect();
    for f in &futures {
        f.result().unwrap();
    }
    assert_eq!(pool.worker_count(), 4);
    // Wait (polling an observable state) until every worker sleeps.
    let start = Instant::now();
    while pool.sleep_stats().0 < 4 {
        assert!(start.elapsed() < Duration::from_secs(30), "workers never went to sleep");
        thread::sleep(Duration::from_millis(1));
    }
    let before = cpu_ticks();
    thread::sleep(Duration::from_millis(250));
    let used = cpu_ticks() - before;
    assert_eq!(pool.worker_count(), 4, "the workers are still alive");
    // A clock tick is usually 10 ms; four spinning workers would use ~100.
    assert!(used <= 1, "an idle pool used {used} ticks of CPU in 250 ms");
}
