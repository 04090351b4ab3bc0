//! The child's side: the hook at the top of `main`, the handshake, and the
//! loops of a `Process` child and of a pool worker.

use crate::child::{
    CHILD_ARGS, ChildFds, ENV, EXIT_INIT_FAILED, EXIT_ORPHANED, EXIT_PROTOCOL, EXIT_REFUSED,
};
use crate::identity::{self, Outcome, QUIET_PANICS};
use crate::wire::{self, Frame, FrameReader, ReadError, Role};
use std::fs::File;
use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, RawFd};

/// The entry hook: call it first thing in `main` (Python's
/// `if __name__ == "__main__":` guard).
///
/// In the program the user started, it returns at once and does nothing. In
/// a process that this crate started as a child (a [`Process`](crate::Process)
/// or a pool worker, marked by an environment variable and handed its pipes),
/// it never returns: it runs what the parent sends and exits.
///
/// Whatever `main` does *before* this call also happens in every child, as
/// with Python's spawn start method: keep it the first statement. (Output
/// the child writes to stdout before this call is discarded.)
///
/// ```
/// procpool::init(); // first thing in `main`
/// // ... the program, which may start processes and pools
/// ```
pub fn init() {
    let Some(value) = std::env::var_os(ENV) else { return };
    let Some(fds) = value.to_str().and_then(ChildFds::parse) else {
        eprintln!(
            "procpool: the {ENV} environment variable is malformed; this process is not a valid child"
        );
        std::process::exit(EXIT_REFUSED);
    };
    // SAFETY: `init` is documented to be the first statement of `main`,
    // before the program starts threads; in a test binary the harness's
    // main thread is blocked waiting for the entry test. Removing the
    // variable keeps it from leaking to processes that this child starts.
    unsafe { std::env::remove_var(ENV) };
    child_main(fds)
}

/// Defines the test that a test binary's children enter through: put
/// `procpool::test_entry!();` once in every test file (integration test
/// crate) that starts processes or pools.
///
/// A child of a test binary is the same binary started with arguments that
/// make the harness run only this test, which calls [`init`]. In the parent
/// run the test does nothing and passes.
///
/// ```
/// procpool::test_entry!();
/// ```
#[macro_export]
macro_rules! test_entry {
    () => {
        /// The entry point of this test binary's procpool children.
        #[test]
        fn __procpool_worker_entry() {
            $crate::init();
        }
    };
}

const _: () = assert!(!CHILD_ARGS[0].is_empty());

/// Refuses to start a child from a process that was started as a child but
/// never ran [`init`]: such a process is running the parent's `main` again,
/// and starting children from it would start the program again and again.
///
/// The process tells its parent why (through the pipe the parent reads) and
/// on stderr, then exits.
pub(crate) fn refuse_if_hook_missing() {
    let Some(value) = std::env::var_os(ENV) else { return };
    let message = "procpool: this program was started as a child process but `procpool::init()` \
                   was not called at the top of `main` (in a test binary: `procpool::test_entry!();` \
                   is missing from the test file), so it ran `main` again instead of the task; \
                   refusing to start more processes";
    eprintln!("{message}");
    if let Some(fds) = value.to_str().and_then(ChildFds::parse) {
        let mut frame = Vec::new();
        wire::put_refused(&mut frame, message);
        // SAFETY: the fd was inherited from the parent for exactly this
        // pipe; `ManuallyDrop` leaves it open (the process exits next).
        let mut out = ManuallyDrop::new(unsafe { File::from_raw_fd(fds.result) });
        let _ = out.write_all(&frame);
    }
    std::process::exit(EXIT_REFUSED);
}

/// Writes one REFUSED frame, says it on stderr, and exits.
fn refuse(out: &mut File, message: &str) -> ! {
    eprintln!("procpool: {message}");
    let mut frame = Vec::new();
    wire::put_refused(&mut frame, message);
    let _ = out.write_all(&frame);
    std::process::exit(EXIT_REFUSED);
}

fn set_cloexec(fd: RawFd) {
    // SAFETY: fcntl on an fd number; failure is harmless here.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

fn child_main(fds: ChildFds) -> ! {
    if fds.stdout >= 0 {
        // SAFETY: the parent handed us its stdout at this fd; after the dup
        // the extra fd is closed.
        unsafe {
            libc::dup2(fds.stdout, 1);
            libc::close(fds.stdout);
        }
    }
    // Processes this child starts must not inherit its pipes.
    for fd in [fds.task, fds.result, fds.lifeline] {
        set_cloexec(fd);
    }
    // The parent may have died before `PR_SET_PDEATHSIG` took effect.
    // (Or the variable leaked into a process that no parent of ours started:
    // say so rather than exit silently.)
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() }.cast_unsigned() != fds.parent {
        eprintln!(
            "procpool: this process was started as a child of process {}, which is not its parent \
             (any more); exiting (is {ENV} set in the environment by mistake?)",
            fds.parent
        );
        std::process::exit(EXIT_ORPHANED);
    }
    // SAFETY: these fds were inherited for exactly these pipes and nothing
    // else in this process owns them.
    let (input, mut output) =
        unsafe { (File::from_raw_fd(fds.task), File::from_raw_fd(fds.result)) };
    let mut reader = FrameReader::new(input, wire::DEFAULT_MAX_FRAME);
    let hello = match reader.next(|| {}) {
        Ok(Frame::Hello(hello)) => hello,
        Ok(_) => refuse(&mut output, "the first frame from the parent was not a handshake"),
        Err(e) => refuse(&mut output, &format!("no handshake from the parent: {e}")),
    };
    let build_id = match identity::build_id() {
        Ok(id) => id,
        Err(e) => refuse(&mut output, &format!("cannot identify this executable: {e}")),
    };
    if hello.build_id != build_id {
        refuse(
            &mut output,
            &format!(
                "refusing to run code for another build of this program: the parent's build id is \
                 {}, this executable's is {} (the executable was rebuilt or replaced)",
                identity::hex(&hello.build_id),
                identity::hex(&build_id)
            ),
        );
    }
    reader.set_max(hello.max_frame);
    let mut out = Vec::with_capacity(256);
    wire::put_ready(&mut out, std::process::id(), &build_id);
    if output.write_all(&out).is_err() {
        std::process::exit(EXIT_ORPHANED);
    }
    out.clear();
    // Started after READY, off the parent's critical path: until now a
    // parent that died ended the handshake's read (end of input), and the
    // watch sees a lifeline already closed at once.
    start_lifeline_watch(fds.lifeline);
    match hello.role {
        Role::Process => run_process(&hello.secret, reader),
        Role::Worker => run_worker(&hello, reader, output, out),
    }
}

/// Exits when the parent's end of the lifeline closes: the parent died
/// (a backstop for `PR_SET_PDEATHSIG`, and the only watch where that does
/// not exist).
fn start_lifeline_watch(fd: RawFd) {
    let watch = move || {
        let mut byte = [0u8; 1];
        loop {
            // SAFETY: reads into a valid one-byte buffer.
            let n = unsafe { libc::read(fd, byte.as_mut_ptr().cast(), 1) };
            if n == 0
                || (n < 0
                    && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted)
            {
                // SAFETY: `_exit` ends the process at once, without running
                // anything of the (orphaned) program.
                unsafe { libc::_exit(EXIT_ORPHANED) };
            }
        }
    };
    if std::thread::Builder::new()
        .name("procpool-lifeline".into())
        .stack_size(32 * 1024)
        .spawn(watch)
        .is_err()
    {
        std::process::exit(EXIT_ORPHANED);
    }
}

/// A `Process` child: one CALL, then exit 0, or 1 if the function panicked
/// (the panic hook has printed its message on stderr).
fn run_process(secret: &[u8; 16], mut reader: FrameReader<File>) -> ! {
    let mut scratch = Vec::new();
    let code = match reader.next(|| {}) {
        Ok(Frame::Call(call)) => match identity::run_call(secret, false, &call, &mut scratch) {
            Outcome::Returned => 0,
            Outcome::Panicked(_) => 1,
            Outcome::Failed(message) => {
                eprintln!("procpool: {message}");
                1
            }
        },
        Ok(other) => {
            eprintln!("procpool: expected a call from the parent, got {other:?}");
            EXIT_PROTOCOL
        }
        Err(ReadError::Eof) => EXIT_ORPHANED,
        Err(e) => {
            eprintln!("procpool: no call from the parent: {e}");
            EXIT_PROTOCOL
        }
    };
    std::process::exit(code)
}

/// Writes all buffered frames to the parent; exits if the parent is gone.
fn flush(output: &mut File, out: &mut Vec<u8>) {
    if !out.is_empty() {
        if output.write_all(out).is_err() {
            std::process::exit(EXIT_ORPHANED);
        }
        out.clear();
    }
}

/// A pool worker: an optional INIT, then CALLs until the parent closes the
/// pipe (or `max_tasks` ran). Calls are read in batches (one read takes
/// every frame the pipe holds); each result is written as soon as it exists.
fn run_worker(
    hello: &wire::Hello,
    mut reader: FrameReader<File>,
    mut output: File,
    mut out: Vec<u8>,
) -> ! {
    install_quiet_panic_hook();
    let max = hello.max_frame;
    let mut done: u64 = 0;
    loop {
        let frame = reader.next(|| flush(&mut output, &mut out));
        match frame {
            Ok(Frame::Init(call)) => {
                let mut scratch = Vec::new();
                let failure = match quietly(|| {
                    identity::run_call(&hello.secret, true, &call, &mut scratch)
                }) {
                    Outcome::Returned => None,
                    Outcome::Panicked(m) => Some(format!("the initializer panicked: {m}")),
                    Outcome::Failed(m) => Some(format!("the initializer could not run: {m}")),
                };
                if let Some(message) = failure {
                    wire::put_init_failed(&mut out, &message, max);
                    flush(&mut output, &mut out);
                    std::process::exit(EXIT_INIT_FAILED);
                }
            }
            Ok(Frame::Call(call)) => {
                let task = call.task;
                let start = wire::begin_ok(&mut out, task);
                match quietly(|| identity::run_call(&hello.secret, false, &call, &mut out)) {
                    Outcome::Returned => {
                        if let Err(e) = wire::end_ok(&mut out, start, max) {
                            wire::put_failed(
                                &mut out,
                                task,
                                &format!("the result could not be sent: {e}"),
                                max,
                            );
                        }
                    }
                    Outcome::Panicked(message) => {
                        out.truncate(start);
                        wire::put_panic(&mut out, task, &message, max);
                    }
                    Outcome::Failed(message) => {
                        out.truncate(start);
                        wire::put_failed(&mut out, task, &message, max);
                    }
                }
                done += 1;
                if hello.max_tasks != 0 && done >= hello.max_tasks {
                    flush(&mut output, &mut out);
                    std::process::exit(0);
                }
                // Each result goes out as soon as it exists: the next call
                // may take long, and this one's caller should not wait for it.
                flush(&mut output, &mut out);
            }
            Err(ReadError::Eof) => {
                flush(&mut output, &mut out);
                std::process::exit(0);
            }
            Ok(other) => {
                eprintln!("procpool worker: unexpected frame from the parent: {other:?}");
                flush(&mut output, &mut out);
                std::process::exit(EXIT_PROTOCOL);
            }
            Err(e) => {
                eprintln!("procpool worker: bad input from the parent: {e}");
                flush(&mut output, &mut out);
                std::process::exit(EXIT_PROTOCOL);
            }
        }
    }
}

fn quietly<T>(f: impl FnOnce() -> T) -> T {
    QUIET_PANICS.with(|q| q.set(true));
    let r = f();
    QUIET_PANICS.with(|q| q.set(false));
    r
}

/// A pool task's panic goes to the parent as the task's error, as a Python
/// worker sends its exception back instead of printing it; other panics
/// (in threads a task started) still print.
fn install_quiet_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !QUIET_PANICS.with(std::cell::Cell::get) {
            default(info);
        }
    }));
}
