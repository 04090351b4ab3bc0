//! The crate's error type.

use std::fmt;

/// Why a call of this crate failed.
///
/// Misuse (starting a process twice, submitting to a pool that was shut
/// down) is an error value, never a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// `start()` on a process that was already started (Python:
    /// `AssertionError: cannot start a process twice`).
    AlreadyStarted,
    /// `join()` on a process that was never started.
    NotStarted,
    /// The executor was shut down; it accepts no new work (Python:
    /// `RuntimeError: cannot schedule new futures after shutdown`).
    Shutdown,
    /// The pool is broken (Python's `BrokenProcessPool`): why.
    BrokenPool(String),
    /// A child process could not be started or refused to start: why (the
    /// operating system's error, a missing `procpool::init()`, another build
    /// of the executable, ...).
    Start(String),
    /// The function cannot be called in a child (it does not lie in the
    /// executable).
    Function(String),
    /// The arguments could not be encoded, or their frame is over the size
    /// limit.
    Encode(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::AlreadyStarted => f.write_str("the process was already started"),
            Error::NotStarted => f.write_str("the process was not started"),
            Error::Shutdown => f.write_str("cannot schedule new tasks after shutdown"),
            Error::BrokenPool(why) => write!(f, "the process pool is broken: {why}"),
            Error::Start(why) => write!(f, "could not start a child process: {why}"),
            Error::Function(why) | Error::Encode(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Error {}
