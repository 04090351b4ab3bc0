//! The memo's `readerwriterlock` lines.

use super::{result, section, snippet};
use core_sync::ReadWriteLock;
use std::sync::{Arc, Barrier};
use std::thread;

pub(crate) fn run() -> Result<(), String> {
    section("readerwriterlock");
    snippet(
        "rw = readerwriterlock.rwlock.RWLockFair()",
        "let rw = core_sync::ReadWriteLock::new();",
    );
    let rw = Arc::new(ReadWriteLock::new());
    result(format!("{} bytes, fair: neither readers nor writers starve", size_of_val(&*rw)));

    snippet(
        "r = rw.gen_rlock(); r.acquire() ... r.release()   (shared, in 3 threads)",
        "rw.acquire_read(); ... rw.release_read()?;",
    );
    let inside = Arc::new(Barrier::new(3));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (rw, inside) = (Arc::clone(&rw), Arc::clone(&inside));
            thread::spawn(move || {
                rw.acquire_read();
                inside.wait(); // all three hold it at once
                let together = rw.readers();
                let writer_kept_out = !rw.try_acquire_write();
                inside.wait();
                rw.release_read().map(|()| (together, writer_kept_out))
            })
        })
        .collect();
    for reader in readers {
        let (together, writer_kept_out) =
            reader.join().map_err(|_| "thread panicked")?.map_err(|e| e.to_string())?;
        if together != 3 || !writer_kept_out {
            return Err(format!(
                "readers together: {together}, writer kept out: {writer_kept_out}"
            ));
        }
    }
    result("3 readers held it at the same time; a writer's try failed meanwhile");

    snippet(
        "w = rw.gen_wlock(); w.acquire() ... w.release()   (exclusive)",
        "rw.acquire_write(); ... rw.release_write()?;",
    );
    rw.acquire_write();
    let other = Arc::clone(&rw);
    let (read, wrote) =
        thread::spawn(move || (other.try_acquire_read(), other.try_acquire_write()))
            .join()
            .map_err(|_| "thread panicked")?;
    result(format!("while written: another reader got in = {read}, another writer = {wrote}"));
    rw.release_write().map_err(|e| e.to_string())?;
    match rw.release_write() {
        Err(e) => result(format!("releasing it again is an error, as in Python: \"{e}\"")),
        Ok(()) => return Err("a second release succeeded".into()),
    }

    snippet("RWLockFairD: w.downgrade()", "let r = rw.write().downgrade();");
    let reading = rw.write().downgrade();
    result(format!(
        "now a reader: readers() = {}, write-locked = {}",
        rw.readers(),
        rw.is_write_locked()
    ));
    drop(reading);
    Ok(())
}
