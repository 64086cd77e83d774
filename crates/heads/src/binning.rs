//! Per-class post-hoc calibrators of the softmax probabilities: `histogram_binning` and
//! `isotonic` (issue 24; the survey's post-hoc adjustment).
//!
//! Each maps every class's probability p_k through a function fitted one-vs-rest on the fit
//! split's (p_k, 1[y = k]), then renormalises the row (a row that maps to all zeros becomes
//! uniform, as scikit-learn's `CalibratedClassifierCV` does). The score is `u = 1 − max p̂`.
//!
//! - `histogram_binning`: `bins` equal-width bins ((m−1)/M, m/M] of p_k (§11's binning rule);
//!   a bin's value is the fraction of its fit rows with label k, an empty bin its mid-point.
//!   With `binning: equal_mass`, M groups of the fit rows' p_k in a stable sort instead (sizes
//!   differing by at most one, the first N mod M larger: §11's equal-mass rule); a value goes
//!   to the first group whose largest p_k is at least it, the last group above.
//! - `isotonic`: the isotonic (non-decreasing) least-squares regression of 1[y = k] on p_k, as
//!   scikit-learn's `IsotonicRegression(out_of_bounds="clip")`: equal p_k are merged first (mean
//!   target, weight = count), pool-adjacent-violators, then linear interpolation between the
//!   fitted points, clipped to their range.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;
use ueb_cache::SplitData;
use ueb_metrics::calibration::EqualWidthEdges;

use crate::error::HeadError;
use crate::head::{Head, check_classes, parse_json, write_json};

/// How `histogram_binning` cuts [0, 1].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Binning {
    /// Equal-width bins ((m−1)/M, m/M].
    #[default]
    EqualWidth,
    /// Equal-mass groups of the fit rows.
    EqualMass,
}

/// Settings of `histogram_binning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistogramBinningConfig {
    /// Bins per class (15).
    pub bins: usize,
    /// `equal_width` (default) or `equal_mass`.
    pub binning: Binning,
}

impl Default for HistogramBinningConfig {
    fn default() -> Self {
        Self {
            bins: 15,
            binning: Binning::EqualWidth,
        }
    }
}

impl HistogramBinningConfig {
    /// Checks 1 ≤ bins ≤ 10 000.
    ///
    /// # Errors
    /// [`HeadError::Config`] naming the value.
    pub fn validate(&self) -> Result<(), HeadError> {
        ueb_metrics::check_bins(self.bins).map_err(|e| HeadError::config("histogram_binning", e.to_string()))
    }
}

/// One class's fitted map from p_k to a calibrated value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum ClassMap {
    /// Equal-width bins and their values.
    Bins { values: Vec<f64> },
    /// Increasing x thresholds and their fitted y; linear in between, clipped outside.
    Isotonic { x: Vec<f64>, y: Vec<f64> },
    /// Equal-mass groups: each group's largest value and its value.
    Groups { upper: Vec<f64>, values: Vec<f64> },
}

impl ClassMap {
    fn apply(&self, p: f64, edges: Option<&EqualWidthEdges>) -> f64 {
        match self {
            ClassMap::Bins { values } => edges.map_or(0.0, |e| values[e.bin(p)]),
            ClassMap::Isotonic { x, y } => interpolate(x, y, p),
            ClassMap::Groups { upper, values } => {
                let g = upper.partition_point(|&u| u < p).min(values.len().saturating_sub(1));
                values.get(g).copied().unwrap_or(0.0)
            }
        }
    }
}

/// `np.interp(p, x, y)` for increasing `x`: the end values outside, linear inside.
fn interpolate(x: &[f64], y: &[f64], p: f64) -> f64 {
    let n = x.len();
    if n == 0 {
        return 0.0;
    }
    if p <= x[0] {
        return y[0];
    }
    if p >= x[n - 1] {
        return y[n - 1];
    }
    // The first threshold above p: x[j − 1] ≤ p < x[j].
    let j = x.partition_point(|&v| v <= p);
    let (x0, x1, y0, y1) = (x[j - 1], x[j], y[j - 1], y[j]);
    y0 + (p - x0) * (y1 - y0) / (x1 - x0)
}

/// Weighted isotonic (non-decreasing) regression of `targets` on increasing unique `x`, by
/// pool-adjacent-violators.
fn pava(targets: &[f64], weights: &[f64]) -> Vec<f64> {
    // Blocks: (mean, weight, length).
    let mut blocks: Vec<(f64, f64, usize)> = Vec::with_capacity(targets.len());
    for (&t, &w) in targets.iter().zip(weights) {
        blocks.push((t, w, 1));
        while blocks.len() > 1 {
            let (m1, w1, l1) = blocks[blocks.len() - 1];
            let (m0, w0, l0) = blocks[blocks.len() - 2];
            if m0 <= m1 {
                break;
            }
            blocks.truncate(blocks.len() - 2);
            let w = w0 + w1;
            blocks.push(((m0 * w0 + m1 * w1) / w, w, l0 + l1));
        }
    }
    blocks
        .into_iter()
        .flat_map(|(m, _, l)| std::iter::repeat_n(m, l))
        .collect()
}

/// Rows of per-class probabilities (`[n, c]`) divided by their sums, as scikit-learn's
/// `CalibratedClassifierCV` does; a row summing to 0 becomes uniform.
pub(crate) fn renormalise_rows(p: &mut [f64], c: usize) {
    for row in p.chunks_exact_mut(c) {
        let sum: f64 = row.iter().sum();
        if sum == 0.0 {
            row.fill(1.0 / c as f64);
        } else {
            row.iter_mut().for_each(|v| *v /= sum);
        }
    }
}

/// The isotonic map of class `k` from the fit rows.
fn fit_isotonic(probs: &[f64], labels: &[i64], c: usize, k: usize) -> ClassMap {
    let mut pairs: Vec<(f64, f64)> = probs
        .chunks_exact(c)
        .zip(labels)
        .map(|(row, &y)| (row[k], f64::from(u8::from(y as usize == k))))
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Equal p_k merged: mean target, weight = count (scikit-learn's `_make_unique`).
    let (mut x, mut t, mut w) = (Vec::new(), Vec::new(), Vec::new());
    for (p, target) in pairs {
        match x.last() {
            Some(&last) if last == p => {
                let i = w.len() - 1;
                t[i] += target;
                w[i] += 1.0;
            }
            _ => {
                x.push(p);
                t.push(target);
                w.push(1.0);
            }
        }
    }
    for (ti, wi) in t.iter_mut().zip(&w) {
        *ti /= wi;
    }
    let y = pava(&t, &w);
    ClassMap::Isotonic { x, y }
}

/// The histogram-binning map of class `k` from the fit rows.
fn fit_bins(probs: &[f64], labels: &[i64], c: usize, k: usize, edges: &EqualWidthEdges, bins: usize) -> ClassMap {
    let mut hits = vec![0u64; bins];
    let mut count = vec![0u64; bins];
    for (row, &y) in probs.chunks_exact(c).zip(labels) {
        let b = edges.bin(row[k]);
        count[b] += 1;
        hits[b] += u64::from(y as usize == k);
    }
    let values = (0..bins)
        .map(|b| {
            if count[b] == 0 {
                (b as f64 + 0.5) / bins as f64
            } else {
                hits[b] as f64 / count[b] as f64
            }
        })
        .collect();
    ClassMap::Bins { values }
}

/// The equal-mass map of class `k` from the fit rows.
fn fit_groups(probs: &[f64], labels: &[i64], c: usize, k: usize, bins: usize) -> ClassMap {
    let mut rows: Vec<(f64, bool)> = probs
        .chunks_exact(c)
        .zip(labels)
        .map(|(row, &y)| (row[k], y as usize == k))
        .collect();
    // Stable: equal values keep their row order, as §11's grouping rule sorts.
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = rows.len();
    let (mut upper, mut values, mut start) = (Vec::new(), Vec::new(), 0);
    for g in 0..bins {
        let size = n / bins + usize::from(g < n % bins);
        if size == 0 {
            continue;
        }
        let group = &rows[start..start + size];
        start += size;
        upper.push(group.iter().fold(f64::NEG_INFINITY, |m, r| m.max(r.0)));
        values.push(group.iter().filter(|r| r.1).count() as f64 / size as f64);
    }
    ClassMap::Groups { upper, values }
}

/// A fitted per-class calibrator (`histogram_binning` or `isotonic`).
#[derive(Debug, Clone, PartialEq)]
pub struct BinningHead {
    name: &'static str,
    maps: Vec<ClassMap>,
    edges: Option<EqualWidthEdges>,
    bins: usize,
    num_classes: usize,
}

impl BinningHead {
    /// Fits `histogram_binning` on `split`.
    ///
    /// # Errors
    /// Invalid settings or an empty split.
    pub fn fit_histogram(cfg: &HistogramBinningConfig, split: &SplitData) -> Result<Self, HeadError> {
        cfg.validate()?;
        let (c, probs) = Self::fit_data("histogram_binning", split)?;
        let (maps, edges) = match cfg.binning {
            Binning::EqualWidth => {
                let edges = EqualWidthEdges::new(cfg.bins);
                let maps = (0..c)
                    .map(|k| fit_bins(&probs, &split.labels, c, k, &edges, cfg.bins))
                    .collect();
                (maps, Some(edges))
            }
            Binning::EqualMass => {
                let maps = (0..c)
                    .map(|k| fit_groups(&probs, &split.labels, c, k, cfg.bins))
                    .collect();
                (maps, None)
            }
        };
        Ok(Self {
            name: "histogram_binning",
            maps,
            edges,
            bins: cfg.bins,
            num_classes: c,
        })
    }

    /// Fits `isotonic` on `split`.
    ///
    /// # Errors
    /// An empty split.
    pub fn fit_isotonic(split: &SplitData) -> Result<Self, HeadError> {
        let (c, probs) = Self::fit_data("isotonic", split)?;
        let maps = (0..c).map(|k| fit_isotonic(&probs, &split.labels, c, k)).collect();
        Ok(Self {
            name: "isotonic",
            maps,
            edges: None,
            bins: 0,
            num_classes: c,
        })
    }

    fn fit_data(name: &str, split: &SplitData) -> Result<(usize, Vec<f64>), HeadError> {
        if split.n() == 0 {
            return Err(HeadError::fit(name, "the fit split is empty"));
        }
        Ok((split.num_classes(), split.probs()))
    }

    /// Calibrated probabilities `[n, C]` of `split`, rows renormalised.
    fn calibrated(&self, split: &SplitData) -> Result<Vec<f64>, HeadError> {
        check_classes(self.name, split, self.num_classes)?;
        let c = self.num_classes;
        let mut out = split.probs();
        for row in out.chunks_exact_mut(c) {
            for (k, p) in row.iter_mut().enumerate() {
                *p = self.maps[k].apply(*p, self.edges.as_ref());
            }
        }
        renormalise_rows(&mut out, c);
        Ok(out)
    }

    pub(crate) fn load(dir: &Path, text: &str) -> Result<Self, HeadError> {
        #[derive(Deserialize)]
        struct Saved {
            head: String,
            bins: usize,
            maps: Vec<ClassMap>,
        }
        let saved: Saved = parse_json(dir, text)?;
        let name = match saved.head.as_str() {
            "histogram_binning" => "histogram_binning",
            _ => "isotonic",
        };
        let bad = |reason: &str| HeadError::Meta {
            path: dir.join("head.json"),
            reason: reason.to_string(),
        };
        let equal_mass = saved.maps.iter().all(|m| matches!(m, ClassMap::Groups { .. }));
        let edges = if name == "histogram_binning" && equal_mass {
            for m in &saved.maps {
                let ok = matches!(m, ClassMap::Groups { upper, values } if upper.len() == values.len() && !values.is_empty() && upper.windows(2).all(|w| w[0] <= w[1]));
                if !ok {
                    return Err(bad(
                        "every class needs non-decreasing group bounds `upper` with one value each",
                    ));
                }
            }
            None
        } else if name == "histogram_binning" {
            ueb_metrics::check_bins(saved.bins).map_err(|e| bad(&e.to_string()))?;
            for m in &saved.maps {
                if !matches!(m, ClassMap::Bins { values } if values.len() == saved.bins) {
                    return Err(bad("every class needs `bins` bin values"));
                }
            }
            Some(EqualWidthEdges::new(saved.bins))
        } else {
            for m in &saved.maps {
                let ok = matches!(m, ClassMap::Isotonic { x, y } if x.len() == y.len() && !x.is_empty() && x.windows(2).all(|w| w[0] < w[1]));
                if !ok {
                    return Err(bad("every class needs increasing thresholds `x` with one `y` each"));
                }
            }
            None
        };
        if saved.maps.len() < 2 {
            return Err(bad("a calibrator needs at least two classes"));
        }
        Ok(Self {
            name,
            num_classes: saved.maps.len(),
            maps: saved.maps,
            edges,
            bins: saved.bins,
        })
    }
}

impl Head for BinningHead {
    fn name(&self) -> &'static str {
        self.name
    }

    calibrated_outputs!(num_classes);

    fn summary(&self) -> serde_json::Value {
        match self.name {
            "histogram_binning" => json!({"bins": self.bins}),
            _ => json!({"thresholds_per_class": self.maps.iter().map(|m| match m {
                ClassMap::Isotonic { x, .. } => x.len(),
                ClassMap::Bins { values } | ClassMap::Groups { values, .. } => values.len(),
            }).collect::<Vec<_>>()}),
        }
    }

    fn save(&self, dir: &Path) -> Result<(), HeadError> {
        write_json(dir, &json!({"head": self.name, "bins": self.bins, "maps": self.maps}))
    }
}
