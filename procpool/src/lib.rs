//! Python's `multiprocessing.Process` and `ProcessPoolExecutor` for Rust,
//! robust to crashing workers.
//!
//! | Python | Rust |
//! | --- | --- |
//! | `if __name__ == "__main__":` | [`procpool::init()`](init), the first statement of `main` |
//! | `multiprocessing.Process(target=f, args=(x,))` | [`Process::new(f, x)`](Process::new) |
//! | `p.start()`, `p.join()`, `p.exitcode`, `p.terminate()` | [`start`](Process::start), [`join`](Process::join), [`exitcode`](Process::exitcode), [`terminate`](Process::terminate) |
//! | `ProcessPoolExecutor(max_workers=5)` | [`ProcessPoolExecutor::builder().max_workers(5).build()?`](ProcessPoolExecutor::builder) |
//! | `pool.submit(f, x)` | [`pool.submit(f, x)?`](ProcessPoolExecutor::submit), a [`pool::Future`] |
//! | `pool.map(f, items, chunksize=k)` | [`pool.map(f, items, k)?`](ProcessPoolExecutor::map) |
//! | `pool.shutdown(wait=True, cancel_futures=False)` | [`pool.shutdown(true, false)`](ProcessPoolExecutor::shutdown) |
//! | `BrokenProcessPool` | [`TaskError::BrokenPool`], [`Error::BrokenPool`] |
//!
//! ```no_run
//! use procpool::ProcessPoolExecutor;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     procpool::init(); // children enter here; in the parent it returns at once
//!     let pool = ProcessPoolExecutor::builder().max_workers(4).build()?;
//!     let futures: Vec<_> = (0..8).map(|x| pool.submit(square, x)).collect::<Result<_, _>>()?;
//!     for f in futures {
//!         println!("{}", f.into_result()?);
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # In tests
//!
//! A test binary's `main` belongs to the test harness, so it cannot call
//! [`init`] first. Put [`procpool::test_entry!();`](test_entry) once in each
//! integration test file that starts processes: it defines a test named
//! `__procpool_worker_entry` that calls [`init`]. A child of a test binary
//! is started with arguments that make the harness run only that test
//! (`__procpool_worker_entry --nocapture --test-threads=1`), so `cargo
//! test` works unchanged, filters included. (A test binary with
//! `harness = false` calls [`init`] first in its own `main`, as a program
//! does.)
//!
//! # Processes of the same program
//!
//! A child is a fresh process of the running executable (Python's *spawn*
//! start method: safe in a multi-threaded parent, unlike `fork`), started
//! with an environment variable that marks it and handed three pipes, and
//! nothing else: nothing listens on a socket. It enters through
//! [`init`], which a program calls first thing in `main`; a test binary puts
//! [`test_entry!()`](test_entry) in each test file instead. Whatever `main`
//! does before `init` happens again in every child (as code before Python's
//! `__main__` guard does), so make it the first statement.
//!
//! A program that forgets the hook does not fork-bomb: its child runs `main`
//! again, and the first time that copy tries to start a process it stops,
//! tells the parent (and its stderr) in one line what is missing, and exits;
//! the parent's call fails with that message. A child that exits or hangs
//! without ever answering the handshake is reported (or killed after the
//! start timeout) the same way.
//!
//! # How a function is named in the child
//!
//! Tasks are plain functions: a parameter of type `fn(A) -> R`, to which a
//! function item or a non-capturing closure coerces, with `A` and `R`
//! `serde` types. No registration. The parent sends, in each CALL frame:
//!
//! - the offset, from a fixed function of this crate (the *anchor*), of the
//!   function `f` itself, and of `entry::<A, R>`, the entry point that
//!   decodes `A`, calls `f`, and encodes `R` (offsets, not addresses, so
//!   address-space randomisation does not matter);
//! - a hash of `type_name::<A>()` and `type_name::<R>()`;
//! - a MAC of those three values: SipHash-2-4 keyed with a random 128-bit
//!   secret that the parent generated for that child and sent it over its
//!   pipe in the handshake.
//!
//! The checks, in order:
//!
//! 1. **In the parent, before sending**: `f` must lie in the same loaded
//!    object as the anchor (`dladdr`); a function of a shared library,
//!    mapped at another offset in the child, is refused with
//!    [`Error::Function`].
//! 2. **At the handshake**: the child computes the build id of the
//!    executable it runs (device, inode, size and modification time of the
//!    file, the offsets of this crate's entry points, crate and protocol
//!    versions) and refuses to run anything when the parent's differs: a
//!    child of a rebuilt or replaced executable is an error, never a jump
//!    into different code. On Linux the child is started from
//!    `/proc/self/exe`, so it runs the very file the parent runs even if
//!    its path was replaced meanwhile.
//! 3. **On every CALL, before any address is formed**: the child recomputes
//!    the MAC with its secret. Bytes the parent did not write — corrupted,
//!    truncated, misframed or written by anyone else — fail this check
//!    (but for a 2^-64 chance) and the call is refused as an error for that
//!    task; they can never name an address.
//! 4. **At the destination**: the entry point compares the type hash with
//!    its own before it decodes the arguments.
//!
//! Why function pointers and not zero-sized closure types: the peers that
//! call a closure in a child by conjuring a value of its zero-sized type
//! (`mitosis`, early `procspawn`) are unsound, because a zero-sized type may
//! carry an invariant its constructor established (procspawn#18). Here no
//! value is conjured: the only thing the child reconstructs is a function
//! pointer that the parent took from a real `fn(A) -> R`, and capturing
//! closures (whose captures the child could not have) do not coerce to one,
//! so they do not compile.
//!
//! Limits: the function must be compiled into the executable (not a shared
//! library; where the loader cannot tell, as in a fully static executable,
//! which has no shared libraries, the first check passes); parent and child
//! must run the same file; the MAC protects the pipe, not a child from code
//! that already runs inside it; the type hash compares type *names*, which
//! is a last check, not a proof; each child starts with fresh statics (use
//! a pool's initializer for per-worker state), as in Python; arguments and
//! results must be `serde` types (no references, no open files or sockets).
//!
//! # Transport
//!
//! Length-prefixed frames (a 4-byte length, a kind byte, fixed fields, a
//! payload) with a size limit (256 MiB by default). Payloads are encoded
//! with `postcard`: a compact, fast, actively maintained `serde` format with
//! a stable wire format in 1.x (bincode, which `procspawn` uses, is flagged
//! unmaintained in RUSTSEC-2025-0141). A malformed, truncated or oversized
//! frame is an error for that task or that child, never a panic, a hang, or
//! an allocation beyond the bytes actually received.
//!
//! # Children, exits and signals
//!
//! Each child is forked by a *keeper* thread of the parent that lives until
//! it has reaped that child, so every child is reaped (no zombies), and a
//! signal is never sent to a pid that was already reaped and recycled.
//! Children die with their parent: on Linux through `PR_SET_PDEATHSIG`
//! (set in the child before exec; it fires when the forking thread dies,
//! which is why the keeper outlives the child), and everywhere through a
//! *lifeline* pipe whose end only the parent holds: a thread in the child
//! exits the process when it closes. When the parent exits normally, as in
//! Python, it waits for its non-daemon [`Process`] children and terminates
//! (then waits for) the daemon ones. The crate's own threads block
//! SIGPIPE, so a write to a dead child is an `EPIPE` error, never a signal
//! that kills the parent. (A thread that submits to an idle pool writes the
//! call into the worker's pipe itself, which saves a thread hop, but only
//! while the process ignores SIGPIPE, as Rust and Python programs do from
//! the start; otherwise its call goes through the pool's manager thread.)
//!
//! # Platforms
//!
//! Unix: Linux in full; macOS and FreeBSD build (without
//! `PR_SET_PDEATHSIG` the lifeline pipe alone ends orphaned children; macOS
//! has no `pipe2`, so a fork by another thread between creating a pipe and
//! marking it close-on-exec can leak that pipe into its child). Other
//! targets fail to compile with a message saying so.
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(unix))]
compile_error!(
    "procpool supports Unix only (Linux, and macOS): it starts children with fork/exec, hands them \
     pipes and reaps them with waitpid; there is no Windows or WASM implementation"
);

#[cfg(unix)]
mod child;
#[cfg(unix)]
mod error;
#[cfg(unix)]
mod executor;
#[cfg(unix)]
mod identity;
#[cfg(unix)]
mod process;
#[cfg(unix)]
mod sync;
#[cfg(unix)]
mod wire;
#[cfg(unix)]
mod worker;

#[cfg(unix)]
pub use error::Error;
#[cfg(unix)]
pub use executor::{Builder, MapResults, ProcessPoolExecutor};
#[cfg(unix)]
pub use process::Process;
#[cfg(unix)]
pub use worker::init;

pub use core_sync;
pub use pool;
pub use pool::{Future, TaskError};
