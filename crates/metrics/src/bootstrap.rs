//! Seeded percentile bootstrap intervals and a paired bootstrap test.
//!
//! Resample `b` draws its indices from its own random stream, derived from `(seed, b)`, so the
//! result is the same whatever the number of threads. The generator is `ueb-rng`'s
//! xoshiro256**, fixed by its published definition so that no dependency update can change a
//! published interval.

use ueb_rng::{Rng64, Xoshiro256};

use crate::error::{MetricsError, Outcome, Undefined};

/// Default number of bootstrap resamples.
pub const DEFAULT_RESAMPLES: usize = 1000;

/// Bootstrap settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootstrapConfig {
    /// Number of resamples `B`.
    pub resamples: usize,
    /// Seed of the resampling streams.
    pub seed: u64,
    /// Two-sided confidence level of the percentile interval, in (0, 1).
    pub confidence: f64,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            resamples: DEFAULT_RESAMPLES,
            seed: 0,
            confidence: 0.95,
        }
    }
}

/// The most resamples a bootstrap accepts: the values of every metric are kept for the
/// percentiles (8 bytes × metrics × resamples), and more would not move a 95% interval.
pub const MAX_RESAMPLES: usize = 1_000_000;

/// Validates a number of bootstrap resamples: 1 to [`MAX_RESAMPLES`].
///
/// # Errors
/// [`MetricsError::InvalidParameter`] naming the value.
pub fn check_resamples(resamples: usize) -> Result<(), MetricsError> {
    let reason = match resamples {
        0 => "at least one resample is needed",
        r if r > MAX_RESAMPLES => "at most 1000000 resamples (MAX_RESAMPLES)",
        _ => return Ok(()),
    };
    Err(MetricsError::InvalidParameter {
        name: "resamples",
        value: resamples.to_string(),
        reason,
    })
}

impl BootstrapConfig {
    pub(crate) fn validate(&self) -> Result<(), MetricsError> {
        check_resamples(self.resamples)?;
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return Err(MetricsError::InvalidParameter {
                name: "confidence",
                value: self.confidence.to_string(),
                reason: "must lie strictly between 0 and 1",
            });
        }
        Ok(())
    }
}

/// A percentile interval of bootstrap values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Lower percentile, (1 − confidence)/2.
    pub low: f64,
    /// Upper percentile, (1 + confidence)/2.
    pub high: f64,
    /// Resamples on which the statistic was defined (the others are left out).
    pub defined: usize,
}

/// Fills `out` with the `n` indices of resample `b`.
pub fn resample_indices(seed: u64, b: u64, n: usize, out: &mut Vec<usize>) {
    let mut rng = Xoshiro256::new(seed, b);
    out.clear();
    out.extend((0..n).map(|_| rng.below(n as u64) as usize));
}

/// Runs `stat` on every resample of `0..n`, in parallel over the available cores, with one
/// `init()` state per thread for scratch buffers. `stat(state, indices, out)` writes
/// `outputs` values. Returns `values[k][b]` for output `k` and resample `b`.
///
/// # Errors
/// Empty input, or an invalid configuration.
pub fn bootstrap_map<S, I, F>(
    n: usize,
    cfg: &BootstrapConfig,
    outputs: usize,
    init: I,
    stat: F,
) -> Result<Vec<Vec<Outcome>>, MetricsError>
where
    I: Fn() -> S + Sync,
    F: Fn(&mut S, &[usize], &mut [Outcome]) + Sync,
{
    cfg.validate()?;
    if n == 0 {
        return Err(MetricsError::Empty {
            what: "bootstrap input",
        });
    }
    let b_total = cfg.resamples;
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).min(b_total);
    let chunk = b_total.div_ceil(threads);
    let mut flat = vec![Ok(0.0); b_total * outputs]; // resample-major
    std::thread::scope(|scope| {
        for (t, part) in flat.chunks_mut(chunk * outputs).enumerate() {
            let (init, stat) = (&init, &stat);
            scope.spawn(move || {
                let mut state = init();
                let mut idx = Vec::with_capacity(n);
                for (j, out) in part.chunks_mut(outputs).enumerate() {
                    resample_indices(cfg.seed, (t * chunk + j) as u64, n, &mut idx);
                    stat(&mut state, &idx, out);
                }
            });
        }
    });
    Ok((0..outputs)
        .map(|k| (0..b_total).map(|b| flat[b * outputs + k]).collect())
        .collect())
}

/// Percentile interval of the defined values (linear interpolation between order statistics,
/// numpy's default), or `Err` when no resample was defined.
pub fn percentile_interval(values: &[Outcome], confidence: f64) -> Result<Interval, Undefined> {
    let mut v: Vec<f64> = values.iter().filter_map(|x| x.ok()).collect();
    if v.is_empty() {
        return Err(Undefined::NoDefinedResample);
    }
    v.sort_unstable_by(f64::total_cmp);
    let alpha = (1.0 - confidence) / 2.0;
    Ok(Interval {
        low: quantile_sorted(&v, alpha),
        high: quantile_sorted(&v, 1.0 - alpha),
        defined: v.len(),
    })
}

fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    let h = (v.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

/// Percentile bootstrap interval of one statistic of the samples `0..n`.
///
/// # Errors
/// Empty input or an invalid configuration. The inner `Err` says the statistic was undefined
/// on every resample.
pub fn bootstrap_ci<F>(n: usize, cfg: &BootstrapConfig, stat: F) -> Result<Result<Interval, Undefined>, MetricsError>
where
    F: Fn(&[usize]) -> Outcome + Sync,
{
    let values = bootstrap_map(n, cfg, 1, || (), |_, idx, out| out[0] = stat(idx))?;
    Ok(percentile_interval(&values[0], cfg.confidence))
}

/// Result of a paired bootstrap test of statistic A against statistic B on the same samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedTest {
    /// A − B on the full sample.
    pub difference: f64,
    /// Percentile interval of A − B over the resamples where both are defined.
    pub interval: Interval,
    /// Two-sided p-value of "no difference": 2·(min(#{d ≤ 0}, #{d ≥ 0}) + 1)/(B' + 1), capped
    /// at 1, with B' the resamples where both are defined (the +1 keeps a finite number of
    /// resamples from claiming p = 0).
    pub p_value: f64,
}

/// Paired bootstrap test: both statistics are evaluated on the same resampled indices.
///
/// # Errors
/// Empty input or an invalid configuration. The inner `Err` says a statistic is undefined on
/// the full sample, or on every resample.
pub fn paired_bootstrap<S, I, F>(
    n: usize,
    cfg: &BootstrapConfig,
    init: I,
    stats: F,
) -> Result<Result<PairedTest, Undefined>, MetricsError>
where
    I: Fn() -> S + Sync,
    F: Fn(&mut S, &[usize]) -> (Outcome, Outcome) + Sync,
{
    let all: Vec<usize> = (0..n).collect();
    let (a, b) = stats(&mut init(), &all);
    let difference = match (a, b) {
        (Ok(a), Ok(b)) => a - b,
        (Err(u), _) | (_, Err(u)) => return Ok(Err(u)),
    };
    let values = bootstrap_map(n, cfg, 1, &init, |s, idx, out| {
        out[0] = match stats(s, idx) {
            (Ok(a), Ok(b)) => Ok(a - b),
            (Err(u), _) | (_, Err(u)) => Err(u),
        }
    })?;
    let interval = match percentile_interval(&values[0], cfg.confidence) {
        Ok(i) => i,
        Err(u) => return Ok(Err(u)),
    };
    let d: Vec<f64> = values[0].iter().filter_map(|x| x.ok()).collect();
    let le = d.iter().filter(|&&x| x <= 0.0).count();
    let ge = d.iter().filter(|&&x| x >= 0.0).count();
    let p_value = (2.0 * (le.min(ge) + 1) as f64 / (d.len() + 1) as f64).min(1.0);
    Ok(Ok(PairedTest {
        difference,
        interval,
        p_value,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_of_a_constant_is_the_constant() {
        let cfg = BootstrapConfig::default();
        let ci = bootstrap_ci(10, &cfg, |_| Ok(3.5)).unwrap().unwrap();
        assert_eq!((ci.low, ci.high, ci.defined), (3.5, 3.5, 1000));
    }

    #[test]
    fn same_seed_same_interval_and_seed_matters() {
        let x: Vec<f64> = (0..50).map(|i| (i * i % 17) as f64).collect();
        let mean = |idx: &[usize]| Ok(idx.iter().map(|&i| x[i]).sum::<f64>() / idx.len() as f64);
        let cfg = BootstrapConfig {
            resamples: 200,
            seed: 1,
            confidence: 0.9,
        };
        let a = bootstrap_ci(x.len(), &cfg, mean).unwrap().unwrap();
        let b = bootstrap_ci(x.len(), &cfg, mean).unwrap().unwrap();
        let c = bootstrap_ci(x.len(), &BootstrapConfig { seed: 2, ..cfg }, mean)
            .unwrap()
            .unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let full = x.iter().sum::<f64>() / x.len() as f64;
        assert!(a.low < full && full < a.high);
    }

    #[test]
    fn paired_test_of_identical_statistics_is_not_significant() {
        let x: Vec<f64> = (0..40).map(|i| (i * 7 % 11) as f64).collect();
        let cfg = BootstrapConfig {
            resamples: 300,
            seed: 5,
            confidence: 0.95,
        };
        let mean = |idx: &[usize]| Ok(idx.iter().map(|&i| x[i]).sum::<f64>() / idx.len() as f64);
        let t = paired_bootstrap(x.len(), &cfg, || (), |_, idx| (mean(idx), mean(idx)))
            .unwrap()
            .unwrap();
        assert_eq!(t.difference, 0.0);
        assert_eq!((t.interval.low, t.interval.high), (0.0, 0.0));
        assert_eq!(t.p_value, 1.0);
    }

    #[test]
    fn paired_test_detects_a_consistent_difference() {
        let x: Vec<f64> = (0..40).map(|i| (i * 7 % 11) as f64).collect();
        let cfg = BootstrapConfig {
            resamples: 999,
            seed: 5,
            confidence: 0.95,
        };
        let mean = |idx: &[usize]| idx.iter().map(|&i| x[i]).sum::<f64>() / idx.len() as f64;
        let t = paired_bootstrap(x.len(), &cfg, || (), |_, idx| (Ok(mean(idx) + 1.0), Ok(mean(idx))))
            .unwrap()
            .unwrap();
        assert!((t.difference - 1.0).abs() < 1e-12);
        // A beats B on every resample: p = 2·(0 + 1)/(999 + 1).
        assert!((t.p_value - 0.002).abs() < 1e-12, "{}", t.p_value);
    }

    #[test]
    fn paired_test_reports_undefined_statistics() {
        let cfg = BootstrapConfig {
            resamples: 10,
            seed: 0,
            confidence: 0.95,
        };
        let t = paired_bootstrap(5, &cfg, || (), |_, _| (Err(Undefined::NoErrors), Ok(1.0))).unwrap();
        assert_eq!(t, Err(Undefined::NoErrors));
    }

    #[test]
    fn invalid_configuration_is_an_error() {
        let bad = BootstrapConfig {
            resamples: 0,
            ..BootstrapConfig::default()
        };
        assert!(matches!(
            bootstrap_ci(3, &bad, |_| Ok(0.0)),
            Err(MetricsError::InvalidParameter { .. })
        ));
        let bad = BootstrapConfig {
            confidence: 1.0,
            ..BootstrapConfig::default()
        };
        assert!(matches!(
            bootstrap_ci(3, &bad, |_| Ok(0.0)),
            Err(MetricsError::InvalidParameter { .. })
        ));
        assert!(matches!(
            bootstrap_ci(0, &BootstrapConfig::default(), |_| Ok(0.0)),
            Err(MetricsError::Empty { .. })
        ));
    }
}
