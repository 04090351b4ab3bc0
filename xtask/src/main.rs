//! The project's maintenance commands, run as `cargo xtask <command>`:
//!
//! - `ci [--quick]`: every check CI runs (see [`ci`]).
//! - `demo`: the Python memo's snippets, in Rust, with what happened.
//! - `bench [options]`: every primitive beside its peers (see [`mod@bench`]).

mod bench;
mod ci;
mod demo;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  ci [--quick]   run every check CI runs (--quick skips loom and miri)
  demo           walk through the Python memo's snippets in Rust
  bench [--quick] [--filter S] [--json PATH] [--syscalls] [--features F]
                 ns/op of every primitive beside std, parking_lot, spin, rayon
                 and CPython, with ratios (--help for every option)";

fn main() -> ExitCode {
    procpool::init(); // the demo starts worker processes of this program
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(&args[1..]),
        Some("demo") => demo::run(),
        Some("bench") => bench::run(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown or missing command\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
