//! `--syscalls`: futex system calls per operation, counted by re-running this
//! binary under `strace -f -c -e trace=futex` for one implementation of one
//! row with a fixed iteration count, once with that count and once with
//! none (thread start and exit make futex calls too), and dividing the
//! difference.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::rows::Row;

/// Whether `strace` can be run here; `Err` says why not.
pub(crate) fn available() -> Result<(), String> {
    if !cfg!(target_os = "linux") {
        return Err("n/a (strace needs Linux)".into());
    }
    match Command::new("strace").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("n/a (strace -V failed: {s})")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("n/a (strace not found)".into()),
        Err(e) => Err(format!("n/a (strace: {e})")),
    }
}

/// Futex calls per operation of implementation `index` (0: ours) of `row`.
pub(crate) fn per_op(row: &Row, index: usize) -> Result<f64, String> {
    let n = row.syscall_iters.max(1);
    let with = count(row.id, index, n)?;
    let without = count(row.id, index, 0)?;
    Ok(with.saturating_sub(without) as f64 / n as f64)
}

/// Runs `bench --exec <id> <index> <iters>` under strace and returns the
/// number of futex calls of the whole process.
fn count(id: &str, index: usize, iters: u64) -> Result<u64, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let out = std::env::temp_dir().join(format!(
        "bench-futex-{}-{}-{index}-{iters}.txt",
        std::process::id(),
        id.replace('/', "_"),
    ));
    let status = Command::new("strace")
        .args(["-f", "-c", "-e", "trace=futex", "-o"])
        .arg(&out)
        .arg(&exe)
        .args(["--exec", id, &index.to_string(), &iters.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("strace: {e}"))?;
    let text = std::fs::read_to_string(&out);
    let _ = std::fs::remove_file(&out);
    if !status.status.success() {
        let err = String::from_utf8_lossy(&status.stderr);
        let last = err.lines().last().unwrap_or("").trim();
        return Err(format!("strace failed ({}): {last}", status.status));
    }
    let text =
        text.map_err(|e| format!("no strace summary in {}: {e}", Path::new(&out).display()))?;
    Ok(futex_calls(&text))
}

/// The `calls` column of the `futex` line of an `strace -c` summary (no line:
/// no calls). The columns are `% time, seconds, usecs/call, calls, [errors],
/// syscall`.
fn futex_calls(summary: &str) -> u64 {
    summary
        .lines()
        .map(str::split_whitespace)
        .map(Iterator::collect::<Vec<_>>)
        .find(|cols| cols.last() == Some(&"futex") && cols.len() >= 5)
        .and_then(|cols| cols[3].parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::futex_calls;

    #[test]
    fn reads_an_strace_summary() {
        let with_errors = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
100.00    0.000410           3       123        17 futex
------ ----------- ----------- --------- --------- ----------------
100.00    0.000410           3       123        17 total
";
        assert_eq!(futex_calls(with_errors), 123);
        let without_errors = "100.00    0.000010           5         2           futex\n";
        assert_eq!(futex_calls(without_errors), 2);
        let none =
            "% time     seconds  usecs/call     calls    errors syscall\n100.00 0.0 0 0 total\n";
        assert_eq!(futex_calls(none), 0);
    }
}
