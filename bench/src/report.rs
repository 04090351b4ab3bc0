//! The table (text or Markdown) and the JSON document.

use std::fmt::Write as _;

use crate::harness::{Config, Sample};
use crate::json::Value;
use crate::rows::Row;

/// One implementation's figures in a row.
pub(crate) struct Figure {
    pub(crate) name: String,
    pub(crate) sample: Sample,
    /// Futex calls per operation when `--syscalls` asked for them (`Err`:
    /// why the count failed).
    pub(crate) futex_per_op: Option<Result<f64, String>>,
}

/// A measured row.
pub(crate) struct Measured<'a> {
    pub(crate) row: &'a Row,
    pub(crate) ours: Figure,
    pub(crate) peers: Vec<Figure>,
}

/// The machine the figures come from.
pub(crate) struct Machine {
    nproc: usize,
    cpu: String,
    load: Option<String>,
}

impl Machine {
    pub(crate) fn detect() -> Machine {
        let nproc = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = ["model name", "Hardware", "cpu model", "uarch"]
            .iter()
            .find_map(|key| {
                cpuinfo.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_string())
                })
            })
            .unwrap_or_else(|| "unknown CPU".to_string());
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
        Machine { nproc, cpu, load }
    }

    pub(crate) fn describe(&self) -> String {
        let mut s = format!(
            "{} CPUs (nproc), {}, {}/{}",
            self.nproc,
            self.cpu,
            std::env::consts::OS,
            std::env::consts::ARCH
        );
        if let Some(load) = &self.load {
            let _ = write!(s, ", load average {load} at start");
        }
        s
    }
}

/// Everything one run of the bench produced.
pub(crate) struct Report<'a> {
    pub(crate) machine: Machine,
    pub(crate) config: Config,
    pub(crate) quick: bool,
    /// `CPython 3.11.7` when its figures are in.
    pub(crate) python: Option<String>,
    pub(crate) syscalls: bool,
    pub(crate) rows: Vec<Measured<'a>>,
    pub(crate) notes: Vec<String>,
}

/// A figure in ns: more digits for small ones.
fn ns(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x < 10.0 {
        format!("{x:.2}")
    } else if x < 1000.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

fn figure(s: &Sample) -> String {
    format!("{} ({}-{})", ns(s.median()), ns(s.min()), ns(s.max()))
}

fn futex(f: &Figure) -> String {
    match &f.futex_per_op {
        None => "-".into(),
        Some(Ok(x)) if *x == 0.0 => "0".into(),
        Some(Ok(x)) if *x < 0.01 => format!("{x:.1e}"),
        Some(Ok(x)) => format!("{x:.3}"),
        Some(Err(_)) => "n/a".into(),
    }
}

impl Report<'_> {
    fn header_lines(&self) -> Vec<String> {
        let mut lines = vec![format!("machine: {}", self.machine.describe())];
        lines.push(format!(
            "method: {} runs per figure of ~{} ms each{}; figures are ns per operation, median (min-max over the runs); ours/peer is the ratio of medians, below 1.00 means ours is faster",
            self.config.runs,
            self.config.target.as_millis(),
            if self.quick { " (--quick: rough figures)" } else { "" },
        ));
        if let Some(py) = &self.python {
            lines.push(format!(
                "CPython: {py}, measured the same way by bench/python/bench_threading.py"
            ));
        }
        lines
    }

    /// The table as cells: a header row, then one line per peer.
    fn cells(&self) -> Vec<Vec<String>> {
        let mut header = vec!["operation".to_string(), "ours ns/op".to_string()];
        if self.syscalls {
            header.push("futex/op".into());
        }
        header.extend(["peer".to_string(), "peer ns/op".to_string()]);
        if self.syscalls {
            header.push("futex/op".into());
        }
        header.push("ours/peer".into());
        let mut table = vec![header];
        for m in &self.rows {
            let op = if m.row.unit == "op" {
                m.row.name.to_string()
            } else {
                format!("{} [ns per {}]", m.row.name, m.row.unit)
            };
            let lines = m.peers.len().max(1);
            for i in 0..lines {
                let mut line = Vec::new();
                if i == 0 {
                    line.push(op.clone());
                    line.push(figure(&m.ours.sample));
                    if self.syscalls {
                        line.push(futex(&m.ours));
                    }
                } else {
                    line.push(String::new());
                    line.push(String::new());
                    if self.syscalls {
                        line.push(String::new());
                    }
                }
                if let Some(p) = m.peers.get(i) {
                    line.push(p.name.clone());
                    line.push(figure(&p.sample));
                    if self.syscalls {
                        line.push(futex(p));
                    }
                    let ratio = m.ours.sample.median() / p.sample.median();
                    line.push(if ratio.is_finite() { format!("{ratio:.2}") } else { "-".into() });
                } else {
                    // A row with no peer: dashes in the peer columns.
                    let n = if self.syscalls { 4 } else { 3 };
                    line.extend(std::iter::repeat_n("-".to_string(), n));
                }
                table.push(line);
            }
        }
        table
    }

    /// Plain text, columns aligned.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        for l in self.header_lines() {
            let _ = writeln!(out, "{l}");
        }
        out.push('\n');
        let cells = self.cells();
        let widths: Vec<usize> = (0..cells[0].len())
            .map(|c| cells.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        // Numbers right-aligned, names left-aligned.
        let numeric = |header: &str| {
            header.contains("ns/op") || header == "futex/op" || header == "ours/peer"
        };
        for (r, row) in cells.iter().enumerate() {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c > 0 {
                    line.push_str("  ");
                }
                if numeric(&cells[0][c]) {
                    let _ = write!(line, "{cell:>w$}", w = widths[c]);
                } else {
                    let _ = write!(line, "{cell:<w$}", w = widths[c]);
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
            if r == 0 {
                let total = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
                let _ = writeln!(out, "{}", "-".repeat(total));
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }

    /// A Markdown table, for the README.
    pub(crate) fn markdown(&self) -> String {
        let mut out = String::new();
        for l in self.header_lines() {
            let _ = writeln!(out, "{l}  ");
        }
        out.push('\n');
        let cells = self.cells();
        for (r, row) in cells.iter().enumerate() {
            // Names such as `Mutex<u64>` would read as HTML tags: code spans
            // for implementations, escaped brackets in operation names.
            let row: Vec<String> = row
                .iter()
                .zip(&cells[0])
                .map(|(cell, header)| match header.as_str() {
                    _ if r == 0 || cell.is_empty() || cell == "-" => cell.clone(),
                    "peer" => format!("`{cell}`"),
                    "operation" => cell.replace('<', "\\<").replace('>', "\\>"),
                    _ => cell.clone(),
                })
                .collect();
            let _ = writeln!(out, "| {} |", row.join(" | "));
            if r == 0 {
                let _ = writeln!(out, "|{}", " --- |".repeat(row.len()));
            }
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        out
    }

    /// Every figure, for tools.
    pub(crate) fn json(&self) -> Value {
        let s = |x: &str| Value::Str(x.to_string());
        let figure = |f: &Figure, ours_median: Option<f64>| {
            let mut members = vec![
                ("impl".to_string(), s(&f.name)),
                ("iters".to_string(), Value::Num(f.sample.iters as f64)),
                ("median_ns".to_string(), Value::num(f.sample.median())),
                ("min_ns".to_string(), Value::num(f.sample.min())),
                ("max_ns".to_string(), Value::num(f.sample.max())),
                (
                    "runs_ns".to_string(),
                    Value::Arr(f.sample.runs_ns.iter().map(|&x| Value::num(x)).collect()),
                ),
                (
                    "futex_per_op".to_string(),
                    match &f.futex_per_op {
                        Some(Ok(x)) => Value::num(*x),
                        Some(Err(e)) => s(e),
                        None => Value::Null,
                    },
                ),
            ];
            if let Some(ours) = ours_median {
                members.push(("ratio".to_string(), Value::num(ours / f.sample.median())));
            }
            Value::Obj(members)
        };
        let rows = self
            .rows
            .iter()
            .map(|m| {
                Value::Obj(vec![
                    ("id".to_string(), s(m.row.id)),
                    ("name".to_string(), s(m.row.name)),
                    ("unit".to_string(), s(&format!("ns per {}", m.row.unit))),
                    ("ours".to_string(), figure(&m.ours, None)),
                    (
                        "peers".to_string(),
                        Value::Arr(
                            m.peers
                                .iter()
                                .map(|p| figure(p, Some(m.ours.sample.median())))
                                .collect(),
                        ),
                    ),
                ])
            })
            .collect();
        Value::Obj(vec![
            (
                "machine".to_string(),
                Value::Obj(vec![
                    ("nproc".to_string(), Value::Num(self.machine.nproc as f64)),
                    ("cpu".to_string(), s(&self.machine.cpu)),
                    ("os".to_string(), s(std::env::consts::OS)),
                    ("arch".to_string(), s(std::env::consts::ARCH)),
                    ("loadavg".to_string(), self.machine.load.as_deref().map_or(Value::Null, s)),
                ]),
            ),
            (
                "config".to_string(),
                Value::Obj(vec![
                    ("runs".to_string(), Value::Num(self.config.runs as f64)),
                    ("target_ms".to_string(), Value::Num(self.config.target.as_millis() as f64)),
                    ("quick".to_string(), Value::Bool(self.quick)),
                    ("syscalls".to_string(), Value::Bool(self.syscalls)),
                ]),
            ),
            ("python".to_string(), self.python.as_deref().map_or(Value::Null, s)),
            ("rows".to_string(), Value::Arr(rows)),
            ("notes".to_string(), Value::Arr(self.notes.iter().map(|n| s(n)).collect())),
        ])
    }
}
