//! `std-threads` row: start a thread and join it, beside `std::thread`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use super::{Row, imp, ok};

pub(super) fn rows() -> Vec<Row> {
    vec![Row {
        id: "thread/spawn-join",
        name: "Thread start + join (returns a value)",
        unit: "thread",
        ours: imp("std_threads::Thread", spawn_join_ours),
        peers: vec![imp("std::thread::spawn", spawn_join_std)],
        fixed_iters: None,
        syscall_iters: 200,
    }]
}

fn spawn_join_ours(iters: u64) -> Duration {
    let start = Instant::now();
    for i in 0..iters {
        let handle = ok(std_threads::Thread::new(move || black_box(i)).start());
        assert_eq!(handle.join().ok(), Some(i));
    }
    start.elapsed()
}

fn spawn_join_std(iters: u64) -> Duration {
    let start = Instant::now();
    for i in 0..iters {
        let handle = std::thread::spawn(move || black_box(i));
        assert_eq!(handle.join().ok(), Some(i));
    }
    start.elapsed()
}
