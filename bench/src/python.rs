//! `CPython`'s figures: runs `python/bench_threading.py` (compiled into the
//! binary) with `python3` and reads its JSON.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::harness::{Config, Sample};
use crate::json::{self, Value};

const SCRIPT: &str = include_str!("../python/bench_threading.py");

/// One `CPython` figure.
pub(crate) struct PyFigure {
    /// The row it belongs to.
    pub(crate) id: String,
    /// What was measured (`threading.Lock`).
    pub(crate) name: String,
    pub(crate) sample: Sample,
}

/// Everything the script measured.
pub(crate) struct PyFigures {
    /// `CPython 3.11.7`.
    pub(crate) label: String,
    pub(crate) rows: Vec<PyFigure>,
}

/// Runs the script for the rows `ids` (those it knows; others are skipped).
/// `Err` says why there are no figures (no `python3`, the script failed).
pub(crate) fn run(ids: &[&str], config: Config, quick: bool) -> Result<PyFigures, String> {
    let mut cmd = Command::new("python3");
    cmd.arg("-")
        .args(["--runs", &config.runs.to_string()])
        .args(["--target-ms", &config.target.as_millis().to_string()])
        .args(["--rows", &ids.join(",")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if quick {
        cmd.arg("--quick");
    }
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "python3 not found".to_string(),
        _ => format!("cannot run python3: {e}"),
    })?;
    // The script is small; write it all, then close stdin so Python runs it.
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(SCRIPT.as_bytes())
        .map_err(|e| format!("cannot feed the script to python3: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(format!("python3 failed ({})", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    parse(&text).map_err(|e| format!("unreadable output from python3: {e}"))
}

fn parse(text: &str) -> Result<PyFigures, String> {
    let doc = json::parse(text.trim())?;
    let implementation = doc.get("implementation").and_then(Value::as_str).unwrap_or("Python");
    let version = doc.get("version").and_then(Value::as_str).unwrap_or("?");
    let Some(Value::Obj(rows)) = doc.get("rows") else {
        return Err("no \"rows\" object".into());
    };
    let mut figures = Vec::new();
    for (id, row) in rows {
        let runs_ns = match row.get("runs_ns") {
            Some(Value::Arr(runs)) => runs.iter().filter_map(Value::as_f64).collect(),
            _ => return Err(format!("row {id} has no runs_ns")),
        };
        #[allow(clippy::cast_sign_loss)]
        let iters = row.get("iters").and_then(Value::as_f64).unwrap_or(0.0).max(0.0) as u64;
        figures.push(PyFigure {
            id: id.clone(),
            name: row.get("name").and_then(Value::as_str).unwrap_or("?").to_string(),
            sample: Sample { iters, runs_ns },
        });
    }
    Ok(PyFigures { label: format!("{implementation} {version}"), rows: figures })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_scripts_format() {
        let f = parse(
            r#"{"implementation": "CPython", "version": "3.12.1", "rows": {"lock/uncontended": {"name": "threading.Lock", "iters": 1000, "median_ns": 50.0, "min_ns": 40.0, "max_ns": 60.0, "runs_ns": [60.0, 40.0, 50.0]}}}"#,
        )
        .unwrap();
        assert_eq!(f.label, "CPython 3.12.1");
        assert_eq!(f.rows.len(), 1);
        assert_eq!(f.rows[0].id, "lock/uncontended");
        assert_eq!(f.rows[0].name, "threading.Lock");
        assert_eq!(f.rows[0].sample.iters, 1000);
        assert!((f.rows[0].sample.median() - 50.0).abs() < 1e-9);
    }

    #[test]
    fn script_ids_match_rust_rows() {
        // Every id the script measures must be a row of the Rust bench
        // (with every feature on), or its figure would never be shown.
        let known = [
            "lock/uncontended",
            "lock/contended-2",
            "rlock/reentrant",
            "semaphore/uncontended",
            "condition/ping-pong",
            "event/round-trip",
            "pool/submit-200k",
            "procpool/round-trip",
            "procpool/submit-20k",
            "procpool/startup",
        ];
        for id in known {
            assert!(SCRIPT.contains(&format!("\"{id}\"")), "{id} missing from the script");
        }
        for row in crate::rows::all() {
            if SCRIPT.contains(&format!("\"{}\"", row.id)) {
                assert!(known.contains(&row.id), "{} is in the script but not listed here", row.id);
            }
        }
    }
}
