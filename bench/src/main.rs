//! The benchmark behind `cargo xtask bench`: each primitive beside `std`,
//! `parking_lot`, `spin`, `rayon` and `CPython`, measured in the same run on
//! the same machine, printed as one table of ns per operation and ratios.
//!
//! Every figure is the median over several runs (min-max beside it); each
//! run's iteration count is calibrated so that it lasts about the target
//! time. The ratio is ours over the peer's median: below 1.00 we are faster.
//!
//! ```text
//! bench [--quick] [--runs N] [--target-ms MS] [--filter S]... [--json PATH]
//!       [--markdown] [--syscalls] [--no-python] [--list]
//! ```

mod harness;
mod json;
mod python;
mod report;
mod rows;
mod syscalls;

use std::process::ExitCode;
use std::time::Duration;

use harness::Config;
use report::{Figure, Measured};

const USAGE: &str = "usage: bench [options]   (normally run as `cargo xtask bench [options]`)

options:
  --quick          short runs (3 runs of ~20 ms; under a minute in all)
  --runs N         timed runs per figure (default 7)
  --target-ms MS   length of one run (default 100)
  --filter S       only rows whose id or name contains S (repeatable; comma-separated alternatives)
  --json PATH      also write every figure to PATH as JSON
  --markdown       print the table as Markdown
  --syscalls       also count futex system calls per operation (runs each row under strace)
  --no-python      skip CPython's figures
  --list           list the row ids and exit";

/// The command line.
#[allow(clippy::struct_excessive_bools, reason = "one field per command-line flag")]
struct Args {
    config: Config,
    quick: bool,
    filters: Vec<String>,
    json: Option<String>,
    markdown: bool,
    syscalls: bool,
    python: bool,
    list: bool,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        config: Config { runs: 7, target: Duration::from_millis(100) },
        quick: false,
        filters: Vec::new(),
        json: None,
        markdown: false,
        syscalls: false,
        python: true,
        list: false,
    };
    let (mut runs, mut target_ms) = (None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next().cloned().ok_or_else(|| format!("{name} needs a value\n\n{USAGE}"))
        };
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--runs" => {
                runs = Some(value("--runs")?.parse::<usize>().map_err(|e| format!("--runs: {e}"))?);
            }
            "--target-ms" => {
                target_ms = Some(
                    value("--target-ms")?
                        .parse::<u64>()
                        .map_err(|e| format!("--target-ms: {e}"))?,
                );
            }
            "--filter" => a.filters.extend(
                value("--filter")?.split(',').filter(|s| !s.is_empty()).map(str::to_lowercase),
            ),
            "--json" => a.json = Some(value("--json")?),
            "--markdown" => a.markdown = true,
            "--syscalls" => a.syscalls = true,
            "--no-python" => a.python = false,
            "--list" => a.list = true,
            other => return Err(format!("unknown option {other}\n\n{USAGE}")),
        }
    }
    if a.quick {
        a.config = Config { runs: 3, target: Duration::from_millis(20) };
    }
    if let Some(r) = runs {
        a.config.runs = r.max(1);
    }
    if let Some(t) = target_ms {
        a.config.target = Duration::from_millis(t.max(1));
    }
    Ok(a)
}

/// `bench --exec <row id> <implementation index> <iters>`: run one
/// implementation once, untimed; `--syscalls` counts what this does.
fn exec(args: &[String]) -> Result<(), String> {
    let [id, index, iters] = args else {
        return Err("--exec needs <row id> <implementation index> <iters>".into());
    };
    let index: usize = index.parse().map_err(|e| format!("index: {e}"))?;
    let iters: u64 = iters.parse().map_err(|e| format!("iters: {e}"))?;
    let rows = rows::all();
    let row = rows.iter().find(|r| r.id == id).ok_or_else(|| format!("no row {id}"))?;
    let imp = row.imp(index).ok_or_else(|| format!("row {id} has no implementation {index}"))?;
    (imp.run)(iters);
    Ok(())
}

fn main() -> ExitCode {
    #[cfg(unix)]
    procpool::init(); // the process-pool rows' workers are this binary
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("--exec") {
        exec(&args[1..])
    } else if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        Ok(())
    } else {
        parse_args(&args).and_then(|a| run(&a))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let all = rows::all();
    if args.list {
        for row in &all {
            println!("{:<26} {}", row.id, row.name);
        }
        if let Some(note) = rows::pending_note() {
            println!("({note})");
        }
        return Ok(());
    }
    let selected = select(&all, &args.filters);
    if selected.is_empty() {
        return Err(format!("no row matches {:?}; see --list", args.filters));
    }
    let machine = report::Machine::detect();
    eprintln!("bench: {}", machine.describe());

    let mut measured: Vec<Measured<'_>> =
        selected.iter().map(|row| measure_row(row, args)).collect();
    let mut notes: Vec<String> = rows::pending_note().map(String::from).into_iter().collect();
    let python = if args.python {
        add_python(&mut measured, args, &mut notes)
    } else {
        notes.push("CPython figures skipped (--no-python)".into());
        None
    };
    if args.syscalls {
        count_syscalls(&mut measured, &mut notes);
    }

    let report = report::Report {
        machine,
        config: args.config,
        quick: args.quick,
        python,
        syscalls: args.syscalls,
        rows: measured,
        notes,
    };
    print!("{}", if args.markdown { report.markdown() } else { report.text() });
    if let Some(path) = &args.json {
        std::fs::write(path, report.json().to_pretty())
            .map_err(|e| format!("cannot write {path}: {e}"))?;
        eprintln!("bench: figures written to {path}");
    }
    Ok(())
}

/// The rows whose id or name contains one of `filters` (all when none).
fn select<'a>(all: &'a [rows::Row], filters: &[String]) -> Vec<&'a rows::Row> {
    all.iter()
        .filter(|r| {
            filters.is_empty()
                || filters.iter().any(|f| {
                    r.id.to_lowercase().contains(f.as_str())
                        || r.name.to_lowercase().contains(f.as_str())
                })
        })
        .collect()
}

/// Measures ours and every Rust peer of `row`, their runs interleaved (see
/// [`harness::measure_interleaved`]).
fn measure_row<'a>(row: &'a rows::Row, args: &Args) -> Measured<'a> {
    let fixed = row.fixed_iters.map(|(full, quick)| if args.quick { quick } else { full });
    let imps: Vec<_> = row.imps().collect();
    let names: Vec<&str> = imps.iter().map(|imp| imp.name).collect();
    eprintln!("  {} : {}", row.id, names.join(", "));
    let runs: Vec<harness::BenchFn> = imps.iter().map(|imp| imp.run).collect();
    let mut figures: Vec<Figure> = harness::measure_interleaved(&runs, fixed, args.config)
        .into_iter()
        .zip(names)
        .map(|(sample, name)| Figure { name: name.to_string(), sample, futex_per_op: None })
        .collect();
    let ours = figures.remove(0);
    Measured { row, ours, peers: figures }
}

/// Adds `CPython`'s figures as one more peer of the rows it has; returns its
/// version, or `None` with a note saying why there are no figures.
fn add_python(
    measured: &mut [Measured<'_>],
    args: &Args,
    notes: &mut Vec<String>,
) -> Option<String> {
    let ids: Vec<&str> = measured.iter().map(|m| m.row.id).collect();
    match python::run(&ids, args.config, args.quick) {
        Ok(py) => {
            for fig in py.rows {
                if let Some(m) = measured.iter_mut().find(|m| m.row.id == fig.id) {
                    m.peers.push(Figure {
                        name: format!("CPython {}", fig.name),
                        sample: fig.sample,
                        futex_per_op: None,
                    });
                }
            }
            Some(py.label)
        }
        Err(why) => {
            notes.push(format!("CPython figures skipped: {why}"));
            None
        }
    }
}

/// Fills in futex calls per operation for ours and the Rust peers.
fn count_syscalls(measured: &mut [Measured<'_>], notes: &mut Vec<String>) {
    if let Err(why) = syscalls::available() {
        notes.push(format!("futex calls per operation: {why}"));
        return;
    }
    for m in measured.iter_mut() {
        let row = m.row;
        eprintln!("  {} : counting futex calls", row.id);
        m.ours.futex_per_op = Some(syscalls::per_op(row, 0));
        for (i, peer) in m.peers.iter_mut().enumerate() {
            // The Python figures come from the script, not from a row.
            if row.imp(i + 1).is_some_and(|imp| imp.name == peer.name) {
                peer.futex_per_op = Some(syscalls::per_op(row, i + 1));
            }
        }
    }
    // Say why a count failed, once per distinct reason.
    let failures = measured
        .iter()
        .flat_map(|m| std::iter::once(&m.ours).chain(&m.peers))
        .filter_map(|f| f.futex_per_op.as_ref()?.as_ref().err());
    for why in failures {
        let note = format!("futex count failed: {why}");
        if !notes.contains(&note) {
            notes.push(note);
        }
    }
}
