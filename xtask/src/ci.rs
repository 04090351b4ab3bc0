//! `cargo xtask ci`: the one test command.
//!
//! Each step is a cargo (or rustup) invocation; the run stops at the first
//! failing step and prints how long every step took.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// One check: a name and the command that performs it.
struct Step {
    name: &'static str,
    program: &'static str,
    args: Vec<&'static str>,
    env: Vec<(&'static str, &'static str)>,
}

impl Step {
    fn cargo(name: &'static str, args: &[&'static str]) -> Step {
        Step { name, program: "cargo", args: args.to_vec(), env: Vec::new() }
    }

    fn env(mut self, key: &'static str, value: &'static str) -> Step {
        self.env.push((key, value));
        self
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn steps(_quick: bool) -> Vec<Step> {
    vec![
        Step::cargo("format", &["fmt", "--all", "--", "--check"]),
        Step::cargo(
            "clippy (workspace, all targets)",
            &["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"],
        ),
        Step::cargo(
            "clippy (core-sync, bare metal)",
            &[
                "clippy",
                "-p",
                "core-sync",
                "--no-default-features",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
        ),
        Step::cargo("tests and doc tests (workspace)", &["test", "--workspace", "--locked"]),
        Step::cargo(
            "tests (core-sync, bare-metal spin backend)",
            &["test", "-p", "core-sync", "--no-default-features", "--tests", "--locked"],
        ),
        Step::cargo("docs (warnings denied)", &["doc", "--workspace", "--no-deps", "--locked"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    ]
}

fn run_step(root: &Path, step: &Step) -> Result<Duration, String> {
    println!("\n==> {}: {} {}", step.name, step.program, step.args.join(" "));
    let start = Instant::now();
    let status = Command::new(step.program)
        .args(&step.args)
        .envs(step.env.iter().copied())
        .current_dir(root)
        .status()
        .map_err(|e| format!("{}: could not run {}: {e}", step.name, step.program))?;
    if status.success() {
        Ok(start.elapsed())
    } else {
        Err(format!("step failed: {} ({status})", step.name))
    }
}

/// Runs every step; `--quick` skips the slow model checking and miri.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let quick = args.iter().any(|a| a == "--quick");
    if let Some(other) = args.iter().find(|a| *a != "--quick") {
        return Err(format!("ci: unknown option {other}"));
    }
    let root = workspace_root();
    let total = Instant::now();
    let mut timings = Vec::new();
    for step in steps(quick) {
        let took = run_step(&root, &step)?;
        timings.push((step.name, took));
    }
    println!("\nci: every step passed");
    for (name, took) in &timings {
        println!("  {:>7.1}s  {name}", took.as_secs_f64());
    }
    println!("  {:>7.1}s  total", total.elapsed().as_secs_f64());
    Ok(())
}
