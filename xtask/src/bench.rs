//! `cargo xtask bench`: builds the `bench` package in release mode and runs
//! it, passing the options through (see `cargo xtask bench --help`).
//!
//! `--features F` is for cargo (rows behind the bench's features, such as
//! `primitive-rows`); every other option goes to the benchmark binary.

use std::path::Path;
use std::process::Command;

/// Runs the benchmark with `args`.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .join("Cargo.toml");
    let mut cargo_args: Vec<String> = Vec::new();
    let mut bench_args: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--features" {
            let features = it.next().ok_or("--features needs a value")?;
            cargo_args.extend(["--features".to_string(), features.clone()]);
        } else if let Some(features) = arg.strip_prefix("--features=") {
            cargo_args.extend(["--features".to_string(), features.to_string()]);
        } else {
            bench_args.push(arg.clone());
        }
    }
    let status = Command::new("cargo")
        .arg("run")
        .arg("--release")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["--package", "bench"])
        .args(&cargo_args)
        .arg("--")
        .args(&bench_args)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("the benchmark failed ({status})")) }
}
