//! The measuring harness: calibrate an iteration count, time several runs,
//! keep every run's ns per operation.
//!
//! A benchmark is a plain `fn(iters) -> Duration`: it sets up what it needs
//! (threads, a pool), runs `iters` operations, and returns only the time the
//! operations took. Calibration grows `iters` until one run lasts about the
//! target time; then each of the runs uses that count, and the figures are the
//! median and the min-max spread of ns per operation over the runs.

use std::time::Duration;

/// Runs `iters` operations and returns how long they took (setup excluded).
pub(crate) type BenchFn = fn(u64) -> Duration;

/// How long and how often to measure.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    /// Timed runs per implementation (the median is over these).
    pub(crate) runs: usize,
    /// The length one run aims for.
    pub(crate) target: Duration,
}

/// The figures of one implementation in one row.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    /// Operations per run.
    pub(crate) iters: u64,
    /// ns per operation, one entry per run, in run order.
    pub(crate) runs_ns: Vec<f64>,
}

impl Sample {
    fn sorted(&self) -> Vec<f64> {
        let mut v = self.runs_ns.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The median over the runs, ns per operation.
    pub(crate) fn median(&self) -> f64 {
        let v = self.sorted();
        let n = v.len();
        if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            v[n / 2]
        } else {
            f64::midpoint(v[n / 2 - 1], v[n / 2])
        }
    }

    /// The fastest run, ns per operation.
    pub(crate) fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    /// The slowest run, ns per operation.
    pub(crate) fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }
}

/// ns per operation of one run.
fn per_op(elapsed: Duration, iters: u64) -> f64 {
    elapsed.as_nanos() as f64 / iters.max(1) as f64
}

/// Grows the iteration count until one run takes about `target`. The runs
/// made while calibrating also warm caches, the branch predictor and lazily
/// started thread pools.
fn calibrate(bench: BenchFn, target: Duration) -> u64 {
    const MAX_ITERS: u64 = 1 << 40;
    let mut iters: u64 = 1;
    loop {
        let elapsed = bench(iters);
        if elapsed >= target / 4 || iters >= MAX_ITERS {
            let scale = target.as_secs_f64() / elapsed.as_secs_f64().max(1e-9);
            return scaled(iters, scale.clamp(0.25, 4.0)).clamp(1, MAX_ITERS);
        }
        // Jump at most 100x at a time: the first runs are the noisiest.
        let scale = (target.as_secs_f64() / elapsed.as_secs_f64().max(1e-9)).clamp(2.0, 100.0);
        iters = scaled(iters, scale).max(iters + 1);
    }
}

#[allow(clippy::cast_sign_loss)]
fn scaled(iters: u64, factor: f64) -> u64 {
    // `factor` is positive and bounded; the product fits easily.
    (iters as f64 * factor).round().max(1.0) as u64
}

/// Measures the implementations of one row side by side: calibrate each
/// (or take `fixed` operations per run, for rows defined by a batch size),
/// then `config.runs` rounds in which every implementation runs once.
///
/// Interleaving matters on a shared or virtual machine, whose speed drifts
/// over seconds (a neighbour's load, where the hypervisor places the
/// virtual processors): measured one after the other, two implementations
/// can land in different regimes and their ratio shows the drift, not the
/// code. Run by run, each round sees the same machine. The order rotates
/// from round to round so that no implementation always runs first.
pub(crate) fn measure_interleaved(
    benches: &[BenchFn],
    fixed: Option<u64>,
    config: Config,
) -> Vec<Sample> {
    let iters: Vec<u64> = benches
        .iter()
        .map(|&bench| match fixed {
            Some(n) => {
                // One untimed warm-up run.
                bench(n);
                n
            }
            None => calibrate(bench, config.target),
        })
        .collect();
    let mut samples: Vec<Sample> = iters
        .iter()
        .map(|&iters| Sample { iters, runs_ns: Vec::with_capacity(config.runs) })
        .collect();
    let n = benches.len();
    for round in 0..config.runs.max(1) {
        for k in 0..n {
            let i = (round + k) % n;
            samples[i].runs_ns.push(per_op(benches[i](iters[i]), iters[i]));
        }
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max_of_runs() {
        let s = Sample { iters: 1, runs_ns: vec![5.0, 1.0, 3.0] };
        assert!((s.median() - 3.0).abs() < 1e-12);
        assert!((s.min() - 1.0).abs() < 1e-12);
        assert!((s.max() - 5.0).abs() < 1e-12);
        let even = Sample { iters: 1, runs_ns: vec![4.0, 1.0, 2.0, 3.0] };
        assert!((even.median() - 2.5).abs() < 1e-12);
    }

    #[test]
    fn calibration_reaches_the_target() {
        // A fake benchmark that "takes" 1 us per operation.
        fn fake(iters: u64) -> Duration {
            Duration::from_micros(iters)
        }
        let iters = calibrate(fake, Duration::from_millis(50));
        assert!((40_000..=60_000).contains(&iters), "{iters}");
    }

    #[test]
    fn interleaved_runs_every_implementation_each_round() {
        fn one_us(iters: u64) -> Duration {
            Duration::from_micros(iters)
        }
        fn two_us(iters: u64) -> Duration {
            Duration::from_micros(2 * iters)
        }
        let config = Config { runs: 3, target: Duration::from_millis(10) };
        let samples = measure_interleaved(&[one_us, two_us], Some(100), config);
        assert_eq!(samples.len(), 2);
        for (s, ns) in samples.iter().zip([1000.0, 2000.0]) {
            assert_eq!(s.iters, 100);
            assert_eq!(s.runs_ns, vec![ns; 3]);
        }
    }
}
