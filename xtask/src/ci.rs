//! `cargo xtask ci`: the one test command.
//!
//! Each step is a cargo invocation; the run stops at the first failing step
//! and prints how long every step took. Targets and toolchain components
//! that a step needs are installed with `rustup` first; when that fails the
//! run stops with a message saying what to install by hand.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The `no_std` targets `core-sync` must build for, and the extra cargo
/// arguments and `RUSTFLAGS` each needs.
const NO_STD_TARGETS: &[(&str, &[&str], &str)] = &[
    ("thumbv7em-none-eabihf", &[], ""),
    ("riscv32imac-unknown-none-elf", &[], ""),
    // No compare-and-swap: atomics from portable-atomic; the final firmware
    // picks how to emulate CAS, here the single-core assumption.
    (
        "thumbv6m-none-eabi",
        &["--features", "portable-atomic"],
        "--cfg portable_atomic_unsafe_assume_single_core",
    ),
    ("wasm32-unknown-unknown", &[], ""),
];

/// Other operating systems the std crates are checked for.
const OS_TARGETS: &[&str] =
    &["aarch64-unknown-linux-gnu", "x86_64-apple-darwin", "x86_64-pc-windows-gnu"];

/// `core-sync`'s futex backend also supports FreeBSD.
const FUTEX_ONLY_TARGETS: &[&str] = &["x86_64-unknown-freebsd"];

/// One check: a name and the command that performs it.
struct Step {
    name: String,
    program: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    /// The step passes when the command fails and its output holds this.
    expect_failure_with: Option<&'static str>,
}

impl Step {
    fn cargo(name: impl Into<String>, args: &[&str]) -> Step {
        Step {
            name: name.into(),
            program: "cargo",
            args: args.iter().map(ToString::to_string).collect(),
            env: Vec::new(),
            expect_failure_with: None,
        }
    }

    fn env(mut self, key: &'static str, value: impl Into<String>) -> Step {
        self.env.push((key, value.into()));
        self
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn steps(quick: bool) -> Vec<Step> {
    let mut steps = vec![
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
    ];
    for &(target, extra, rustflags) in NO_STD_TARGETS {
        let mut args = vec!["build", "-p", "core-sync", "--no-default-features", "--locked"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--target", target]);
        let mut step = Step::cargo(format!("core-sync no_std for {target}"), &args);
        if !rustflags.is_empty() {
            step = step.env("RUSTFLAGS", rustflags);
        }
        steps.push(step);
    }
    steps.push(Step::cargo(
        "firmware example (user wait backend) for thumbv7em-none-eabihf",
        &["build", "-p", "firmware-example", "--locked", "--target", "thumbv7em-none-eabihf"],
    ));
    for &target in OS_TARGETS {
        let unix = !target.contains("windows");
        let mut args = vec!["clippy", "--locked", "--target", target, "-p", "core-sync"];
        args.extend_from_slice(&["-p", "std-threads", "-p", "pool"]);
        if unix {
            args.extend_from_slice(&["-p", "procpool"]);
        }
        args.extend_from_slice(&["--", "-D", "warnings"]);
        steps.push(Step::cargo(format!("std crates check (clippy) for {target}"), &args));
        if !unix {
            // procpool is unix-only and says so at compile time.
            let mut step = Step::cargo(
                format!("procpool refuses {target} with a clear message"),
                &["check", "--locked", "--target", target, "-p", "procpool"],
            );
            step.expect_failure_with = Some("procpool supports Unix only");
            steps.push(step);
        }
    }
    for &target in FUTEX_ONLY_TARGETS {
        steps.push(Step::cargo(
            format!("core-sync futex backend check for {target}"),
            &["clippy", "--locked", "--target", target, "-p", "core-sync", "--", "-D", "warnings"],
        ));
    }
    if !quick {
        steps.push(
            Step::cargo(
                "loom models (core-sync)",
                &["test", "-p", "core-sync", "--release", "--locked", "--test", "loom"],
            )
            .env("RUSTFLAGS", "--cfg loom")
            .env("LOOM_MAX_PREEMPTIONS", "3")
            // A separate target dir keeps the --cfg loom build from
            // invalidating the normal one.
            .env("CARGO_TARGET_DIR", "target/loom"),
        );
        steps.push(
            Step::cargo(
                "loom models (pool sleep/wake)",
                &["test", "-p", "pool", "--release", "--locked", "--test", "loom"],
            )
            .env("RUSTFLAGS", "--cfg loom")
            .env("LOOM_MAX_PREEMPTIONS", "3")
            .env("CARGO_TARGET_DIR", "target/loom"),
        );
        steps.push(Step::cargo(
            "miri (core-sync tests, futex backend)",
            &["+nightly", "miri", "test", "-p", "core-sync", "--locked", "--tests"],
        ));
    }
    steps
}

/// Targets and components the steps need, installed with rustup.
fn ensure_toolchain(quick: bool) -> Result<(), String> {
    let mut targets: Vec<&str> = NO_STD_TARGETS.iter().map(|t| t.0).collect();
    targets.extend_from_slice(OS_TARGETS);
    targets.extend_from_slice(FUTEX_ONLY_TARGETS);
    let installed = output("rustup", &["target", "list", "--installed"])?;
    let missing: Vec<&str> =
        targets.iter().copied().filter(|t| !installed.lines().any(|l| l.trim() == *t)).collect();
    if !missing.is_empty() {
        println!("==> installing targets: {}", missing.join(" "));
        let mut args = vec!["target", "add"];
        args.extend_from_slice(&missing);
        run_quiet("rustup", &args).map_err(|e| {
            format!(
                "{e}\nci needs these targets; install them with: rustup target add {}",
                missing.join(" ")
            )
        })?;
    }
    if !quick {
        let nightly = output("rustup", &["+nightly", "component", "list", "--installed"]);
        let has_miri = nightly.as_ref().is_ok_and(|l| l.lines().any(|c| c.starts_with("miri")));
        if !has_miri {
            println!("==> installing the nightly toolchain with miri");
            run_quiet(
                "rustup",
                &["toolchain", "install", "nightly", "--profile", "minimal", "--component", "miri,rust-src"],
            )
            .map_err(|e| {
                format!(
                    "{e}\nci runs miri; install it with: rustup +nightly component add miri rust-src\n\
                     (or run `cargo xtask ci --quick` to skip loom and miri)"
                )
            })?;
        }
        run_quiet("cargo", &["+nightly", "miri", "setup"])
            .map_err(|e| format!("{e}\nmiri could not prepare its sysroot"))?;
    }
    Ok(())
}

fn output(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("could not run {program}: {e} (is rustup installed?)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("`{program} {}` failed ({})", args.join(" "), out.status))
    }
}

fn run_quiet(program: &str, args: &[&str]) -> Result<(), String> {
    let status = Command::new(program)
        .args(args)
        .status()
        .map_err(|e| format!("could not run {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed ({status})", args.join(" ")))
    }
}

fn run_step(root: &Path, step: &Step) -> Result<Duration, String> {
    println!("\n==> {}: {} {}", step.name, step.program, step.args.join(" "));
    let start = Instant::now();
    let mut command = Command::new(step.program);
    command.args(&step.args).envs(step.env.iter().map(|(k, v)| (k, v.as_str()))).current_dir(root);
    if let Some(needle) = step.expect_failure_with {
        let out = command.output().map_err(|e| format!("{}: could not run: {e}", step.name))?;
        let text = String::from_utf8_lossy(&out.stderr);
        return if !out.status.success() && text.contains(needle) {
            println!("failed as expected, with: {needle}");
            Ok(start.elapsed())
        } else {
            Err(format!("step {}: expected a failure saying {needle:?}\n{text}", step.name))
        };
    }
    let status = command
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
    ensure_toolchain(quick)?;
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
