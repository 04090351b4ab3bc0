//! Starting a child process and keeping it: pipes, re-executing this
//! program, the handshake, and reaping.
//!
//! Every child has a *keeper* thread in the parent. It creates the pipes,
//! forks and executes the child (so that `PR_SET_PDEATHSIG`, which fires
//! when the thread that forked exits, fires only when the parent process
//! dies: the keeper outlives its child), performs the handshake, and then
//! waits for the child to exit and reaps it. A child is reaped only under
//! its handle's lock, and signals are sent under the same lock to a child
//! not yet reaped, so a signal never reaches a recycled pid.

use crate::identity;
use crate::sync::{Deadline, Flag, OneShot};
use crate::wire::{self, Frame, FrameReader, Hello, ReadError};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;

/// The environment variable that marks a process as a child of this crate:
/// `1:<parent pid>:<task fd>:<result fd>:<lifeline fd>:<stdout fd>`.
pub(crate) const ENV: &str = "PROCPOOL_WORKER";

/// The arguments a child is started with. A program that calls
/// [`init`](crate::init) never looks at them; a test binary's harness reads
/// them as "run only the test named `__procpool_worker_entry`, uncaptured,
/// on one thread", which is the test that [`test_entry!`](crate::test_entry)
/// defines.
pub(crate) const CHILD_ARGS: [&str; 3] =
    ["__procpool_worker_entry", "--nocapture", "--test-threads=1"];

/// Exit code of a child that refused to start (missing hook, handshake).
pub(crate) const EXIT_REFUSED: i32 = 70;
/// Exit code of a child that received bytes that are not the protocol.
pub(crate) const EXIT_PROTOCOL: i32 = 71;
/// Exit code of a pool worker whose initializer failed.
pub(crate) const EXIT_INIT_FAILED: i32 = 72;
/// Exit code of a child whose parent died.
pub(crate) const EXIT_ORPHANED: i32 = 73;

/// The exit code recorded when the status of a child was lost (someone else
/// reaped it, e.g. with `SIGCHLD` ignored).
pub(crate) const STATUS_LOST: i32 = i32::MIN;

/// Where a child is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not forked yet; a signal asked for meanwhile is sent right after.
    Spawning { pending_signal: Option<i32> },
    /// Forked, not reaped: `pid` is ours.
    Running { pid: i32 },
    /// Reaped, with its exit code (negative: the signal that ended it).
    Exited { pid: i32, code: i32 },
    /// Could not be started.
    Failed,
}

/// The parent's handle on one child process.
pub(crate) struct ChildHandle {
    state: core_sync::Mutex<State>,
    exited: Flag,
    on_exit: core_sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for ChildHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildHandle").field("state", &*self.state.lock()).finish_non_exhaustive()
    }
}

impl ChildHandle {
    fn new() -> ChildHandle {
        ChildHandle {
            state: core_sync::Mutex::new(State::Spawning { pending_signal: None }),
            exited: Flag::new(),
            on_exit: core_sync::Mutex::new(None),
        }
    }

    /// The child's pid, once forked.
    pub(crate) fn pid(&self) -> Option<u32> {
        match *self.state.lock() {
            State::Running { pid } | State::Exited { pid, .. } => Some(pid.cast_unsigned()),
            _ => None,
        }
    }

    /// Sends `signal` to the child if it is not yet reaped (or asks for it
    /// to be sent once forked). Returns whether it was sent or queued.
    pub(crate) fn signal(&self, signal: i32) -> bool {
        let mut state = self.state.lock();
        match &mut *state {
            State::Spawning { pending_signal } => {
                *pending_signal = Some(signal);
                true
            }
            State::Running { pid } => {
                // SAFETY: `kill` has no memory effects; `pid` is our
                // unreaped child (reaping takes this lock), so it cannot
                // have been recycled.
                unsafe { libc::kill(*pid, signal) == 0 }
            }
            State::Exited { .. } | State::Failed => false,
        }
    }

    /// The exit code once reaped: `>= 0` the process's exit status,
    /// negative the signal that ended it, [`STATUS_LOST`] when unknown.
    pub(crate) fn exitcode(&self) -> Option<i32> {
        match *self.state.lock() {
            State::Exited { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether the child has been reaped (or never started).
    pub(crate) fn is_done(&self) -> bool {
        self.exited.is_set()
    }

    /// Waits until the child has exited and been reaped, or the deadline
    /// passes; returns whether it has.
    pub(crate) fn wait_deadline(&self, deadline: Deadline) -> bool {
        self.exited.wait_deadline(deadline)
    }

    /// Runs `f` once the child has exited (at once if it already has), on
    /// the keeper thread.
    pub(crate) fn on_exit(&self, f: Box<dyn FnOnce() + Send>) {
        let mut slot = self.on_exit.lock();
        if self.exited.is_set() {
            drop(slot);
            f();
        } else {
            *slot = Some(f);
        }
    }

    /// Marks the child done (its state already recorded) and runs the exit
    /// callback.
    fn finish(&self) {
        self.exited.set();
        let callback = self.on_exit.lock().take();
        if let Some(f) = callback {
            f();
        }
    }
}

/// Says in words how a child ended.
pub(crate) fn describe_exit(code: i32) -> String {
    if code == STATUS_LOST {
        "ended, its exit status lost".to_owned()
    } else if code < 0 {
        let sig = -code;
        match signal_name(sig) {
            Some(name) => format!("was killed by signal {sig} ({name})"),
            None => format!("was killed by signal {sig}"),
        }
    } else {
        format!("exited with code {code}")
    }
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => return None,
    })
}

/// A child that passed the handshake, with the parent's ends of its pipes.
#[derive(Debug)]
pub(crate) struct Connected {
    /// Frames to the child.
    pub(crate) to_child: File,
    /// Frames from the child.
    pub(crate) from_child: File,
    /// Bytes already read from `from_child` past the READY frame.
    pub(crate) leftover: Vec<u8>,
}

/// What to start.
pub(crate) struct SpawnRequest {
    /// The first frame.
    pub(crate) hello: Hello,
    /// Frames sent once the child is READY (a process's CALL, a worker's INIT).
    pub(crate) after_ready: Vec<u8>,
    /// Called once the handshake's outcome is in the slot.
    pub(crate) notify: Option<Box<dyn Fn() + Send + Sync>>,
}

impl SpawnRequest {
    fn publish(&self, slot: &OneShot<SpawnResult>, result: SpawnResult) {
        slot.put(result);
        if let Some(notify) = &self.notify {
            notify();
        }
    }
}

/// The outcome of a spawn, published by the keeper.
pub(crate) type SpawnResult = Result<Connected, String>;

/// Starts a child on a new keeper thread. The handshake's outcome arrives in
/// the returned slot.
///
/// # Errors
///
/// When the keeper thread cannot be created.
pub(crate) fn spawn(
    request: SpawnRequest,
) -> io::Result<(Arc<ChildHandle>, Arc<OneShot<SpawnResult>>)> {
    let handle = Arc::new(ChildHandle::new());
    let slot = Arc::new(OneShot::new());
    let (h, s) = (Arc::clone(&handle), Arc::clone(&slot));
    let spawned = std::thread::Builder::new()
        .name("procpool-keeper".into())
        .stack_size(128 * 1024)
        .spawn(move || keeper(&request, &h, &s));
    if let Err(e) = spawned {
        *handle.state.lock() = State::Failed;
        handle.finish();
        return Err(e);
    }
    Ok((handle, slot))
}

/// Blocks SIGPIPE in the calling thread (one of this crate's own): a write
/// to a child that died then fails with `EPIPE` instead of killing the
/// parent, even in a program that does not ignore SIGPIPE as Rust's
/// runtime does. (The signal stays pending on this thread, which never
/// unblocks it; a forked child starts with an empty mask and no pending
/// signal.)
pub(crate) fn block_sigpipe() {
    // SAFETY: builds a signal set on the stack and changes only the calling
    // thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut());
    }
}

/// A pipe whose both ends are close-on-exec.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    {
        // SAFETY: `fds` is a valid array of two ints for `pipe2` to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        // SAFETY: `fds` is a valid array of two ints for `pipe` to fill.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        for fd in fds {
            // SAFETY: `fd` was just returned by `pipe`. (Without `pipe2`, a
            // fork by another thread between the two calls can leak the fd
            // into that thread's child: a known limit on macOS.)
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Forks and executes the child with its ends of the pipes.
fn start(handle: &ChildHandle) -> io::Result<(i32, File, File, OwnedFd)> {
    let (task_r, task_w) = pipe()?;
    let (result_r, result_w) = pipe()?;
    let (life_r, life_w) = pipe()?;
    // The parent's stdout, for the child to restore once its hook runs;
    // until then the child writes to /dev/null (a test harness's banner,
    // anything the program does before the hook).
    // SAFETY: `fcntl(F_DUPFD_CLOEXEC)` duplicates fd 1 or fails.
    let stdout_dup = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
    // SAFETY: a new fd (when >= 0) that only this function owns.
    let stdout_dup = (stdout_dup >= 0).then(|| unsafe { OwnedFd::from_raw_fd(stdout_dup) });
    let inherit = [
        task_r.as_raw_fd(),
        result_w.as_raw_fd(),
        life_r.as_raw_fd(),
        stdout_dup.as_ref().map_or(-1, AsRawFd::as_raw_fd),
    ];
    let value = format!(
        "1:{}:{}:{}:{}:{}",
        std::process::id(),
        inherit[0],
        inherit[1],
        inherit[2],
        inherit[3]
    );
    let mut command = Command::new(identity::executable()?);
    command.args(CHILD_ARGS).env(ENV, value).stdin(Stdio::null()).stdout(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and makes
    // only async-signal-safe calls (fcntl, prctl) on fds it was given.
    unsafe {
        command.pre_exec(move || {
            for fd in inherit {
                if fd >= 0 && libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            #[cfg(any(target_os = "linux", target_os = "android"))]
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn()?;
    let pid = child.id().cast_signed();
    // Dropping a `std::process::Child` neither waits nor kills: the keeper
    // reaps the pid itself.
    drop(child);
    let pending = {
        let mut state = handle.state.lock();
        let pending = match *state {
            State::Spawning { pending_signal } => pending_signal,
            _ => None,
        };
        *state = State::Running { pid };
        pending
    };
    if let Some(signal) = pending {
        handle.signal(signal);
    }
    drop((task_r, result_w, life_r, stdout_dup));
    Ok((pid, File::from(task_w), File::from(result_r), life_w))
}

/// The keeper: start, handshake, publish, wait, reap.
fn keeper(request: &SpawnRequest, handle: &ChildHandle, slot: &OneShot<SpawnResult>) {
    block_sigpipe();
    let (pid, mut to_child, from_child, lifeline) = match start(handle) {
        Ok(started) => started,
        Err(e) => {
            *handle.state.lock() = State::Failed;
            handle.finish();
            request.publish(slot, Err(format!("could not start a child process: {e}")));
            return;
        }
    };
    match handshake(request, &mut to_child, from_child) {
        Ok((from_child, leftover)) => {
            // A write to a child that died fails; its death is noticed
            // through its exit.
            let _ = to_child.write_all(&request.after_ready);
            request.publish(slot, Ok(Connected { to_child, from_child, leftover }));
        }
        Err(why) => {
            // A child that refused (or was not a child of ours at all, as a
            // program without the hook) must not go on running.
            handle.signal(libc::SIGKILL);
            drop(to_child);
            let code = reap(pid, handle);
            let message = match why {
                Handshake::Refused(message) => message,
                Handshake::Ended(detail) => format!(
                    "the child process (pid {pid}) {} before it reached `procpool::init()` \
                     ({detail}); call `procpool::init()` first thing in `main` (in a test binary, \
                     put `procpool::test_entry!();` in the test file)",
                    describe_exit(code)
                ),
            };
            request.publish(slot, Err(message));
            drop(lifeline);
            return;
        }
    }
    reap(pid, handle);
    drop(lifeline);
}

enum Handshake {
    /// The child said why it refused.
    Refused(String),
    /// The child closed its pipe or sent something else.
    Ended(String),
}

fn handshake(
    request: &SpawnRequest,
    to_child: &mut File,
    from_child: File,
) -> Result<(File, Vec<u8>), Handshake> {
    let mut hello = Vec::with_capacity(64);
    wire::put_hello(&mut hello, &request.hello);
    // A child that is already gone makes this fail; its reply (or its end
    // of the pipe closing) says why.
    let _ = to_child.write_all(&hello);
    let mut reader = FrameReader::new(from_child, wire::DEFAULT_MAX_FRAME);
    let outcome = match reader.next(|| {}) {
        Ok(Frame::Ready { build_id, .. }) if build_id == request.hello.build_id => Ok(()),
        Ok(Frame::Ready { build_id, .. }) => Err(Handshake::Refused(format!(
            "the child process runs another build of the program (build id {}, expected {})",
            identity::hex(&build_id),
            identity::hex(&request.hello.build_id)
        ))),
        Ok(Frame::Refused(message)) => Err(Handshake::Refused(message.into_owned())),
        Ok(other) => Err(Handshake::Ended(format!("it sent {other:?} instead of READY"))),
        Err(ReadError::Eof) => Err(Handshake::Ended("it closed its pipe without a word".into())),
        Err(e) => Err(Handshake::Ended(format!("its reply was not a frame: {e}"))),
    };
    outcome.map(|()| reader.into_parts())
}

/// Waits for `pid` to exit, then reaps it under the handle's lock and
/// records its exit code.
fn reap(pid: i32, handle: &ChildHandle) -> i32 {
    loop {
        // SAFETY: an all-zero `siginfo_t` is a valid value for `waitid` to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // Wait without reaping: the pid stays ours until we take the lock.
        // SAFETY: `info` is a valid out-pointer.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                libc::id_t::try_from(pid).unwrap_or_default(),
                &raw mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
    }
    let mut state = handle.state.lock();
    let mut status = 0;
    let code = loop {
        // SAFETY: `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &raw mut status, 0) };
        if r == pid {
            break if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else if libc::WIFSIGNALED(status) {
                -libc::WTERMSIG(status)
            } else {
                STATUS_LOST
            };
        }
        if r == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        break STATUS_LOST;
    };
    *state = State::Exited { pid, code };
    drop(state);
    handle.finish();
    code
}

/// Reads the fds a parent handed this child, from the value of [`ENV`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChildFds {
    pub(crate) parent: u32,
    pub(crate) task: RawFd,
    pub(crate) result: RawFd,
    pub(crate) lifeline: RawFd,
    pub(crate) stdout: RawFd,
}

impl ChildFds {
    /// Parses the environment variable's value.
    pub(crate) fn parse(value: &str) -> Option<ChildFds> {
        let mut parts = value.split(':');
        if parts.next()? != "1" {
            return None;
        }
        let parent = parts.next()?.parse().ok()?;
        let mut fd = || parts.next()?.parse::<RawFd>().ok();
        let fds = ChildFds { parent, task: fd()?, result: fd()?, lifeline: fd()?, stdout: fd()? };
        (parts.next().is_none() && fds.task >= 0 && fds.result >= 0 && fds.lifeline >= 0)
            .then_some(fds)
    }
}
