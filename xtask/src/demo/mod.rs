//! `cargo xtask demo`: each snippet of the Python memo the project re-creates,
//! run in Rust, with what happened.
//!
//! One file per topic; each exposes `run() -> Result<(), String>`.

mod condition;
mod locks;
mod pool;
mod procpool;
mod rwlock;
mod semaphores;
mod threads;

pub(crate) fn section(title: &str) {
    println!("\n## {title}");
}

pub(crate) fn snippet(python: &str, rust: &str) {
    println!("\n  python: {python}\n  rust:   {rust}");
}

pub(crate) fn result(what: impl AsRef<str>) {
    println!("  -> {}", what.as_ref());
}

/// Runs every demo section, stopping at the first that fails.
pub(crate) fn run() -> Result<(), String> {
    println!("# The Python memo, in Rust");
    section("threading");
    threads::run()?;
    locks::run()?;
    condition::run()?;
    semaphores::run()?;
    rwlock::run()?;
    section("concurrent.futures");
    pool::run()?;
    procpool::run()?;
    println!("\ndemo: done");
    Ok(())
}
