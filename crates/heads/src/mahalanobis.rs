//! Mahalanobis-distance heads (spec §6): class means and a tied covariance from the fit split
//! in f64; `u` = min over classes of the squared distance (no square root). The relative
//! variant subtracts the distance to the global mean under the global covariance.

use std::path::Path;

use faer::linalg::solvers::DenseSolveCore;
use faer::{Mat, MatRef, Side};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cache::{
    Classifier, ClassifierKind, ClassifierMeta, SplitData, Tensors, classifier_from_tensors, read_bytes, write_tensors,
};
use crate::error::HeadError;
use crate::head::{FitContext, Head, parse_json, write_json};

/// Which representation the distances are computed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureSpace {
    /// The cached features `h` (the classifier's input).
    #[default]
    Input,
    /// `act(dense(h))` of an `mlp` classifier (the reference applies spectral normalisation
    /// to `dense` first; we use the trained layer as it is).
    Dense,
}

/// Settings of the Mahalanobis heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MahalanobisConfig {
    /// `input` (default) or `dense`.
    pub features: FeatureSpace,
    /// Normalise every feature vector to unit L2 norm first ("MD l2 norm" in 2505.15443).
    pub l2_normalize: bool,
}

/// The inverse (or pseudo-inverse) of a covariance, and how it was obtained.
struct Precision {
    matrix: Mat<f64>,
    pseudo: bool,
}

/// Σ⁻¹ by Cholesky when Σ is numerically positive definite; otherwise the Moore–Penrose
/// pseudo-inverse from the eigendecomposition, dropping eigenvalues ≤ d·ε·λ_max (the
/// LAPACK/NumPy cut-off).
fn precision(cov: &Mat<f64>, head: &str) -> Result<Precision, HeadError> {
    let d = cov.nrows();
    let max_diag = (0..d).map(|i| cov[(i, i)]).fold(0.0f64, f64::max);
    if let Ok(llt) = cov.llt(Side::Lower) {
        let l = llt.L();
        let (lo, hi) = (0..d)
            .map(|i| l[(i, i)])
            .fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
        // The squared ratio of Cholesky diagonals bounds the eigenvalue spread from below.
        if lo > 0.0 && (lo / hi).powi(2) > d as f64 * f64::EPSILON {
            return Ok(Precision {
                matrix: llt.inverse(),
                pseudo: false,
            });
        }
    }
    let evd = cov
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| HeadError::fit(head, format!("eigendecomposition of the covariance failed: {e:?}")))?;
    let (u, s) = (evd.U(), evd.S().column_vector());
    let lambda_max = (0..d).map(|i| s[i]).fold(0.0f64, f64::max).max(max_diag * f64::EPSILON);
    let cutoff = d as f64 * f64::EPSILON * lambda_max;
    let mut scaled = u.to_owned();
    for j in 0..d {
        let inv = if s[j] > cutoff { 1.0 / s[j] } else { 0.0 };
        for i in 0..d {
            scaled[(i, j)] *= inv;
        }
    }
    Ok(Precision {
        matrix: &scaled * u.transpose(),
        pseudo: true,
    })
}

/// The feature rows (f64, row-major `[n, d]`) a head with `cfg` works on.
fn representation(
    cfg: &MahalanobisConfig,
    classifier: Option<&Classifier>,
    split: &SplitData,
    head: &str,
) -> Result<Vec<f64>, HeadError> {
    let mut x = match cfg.features {
        FeatureSpace::Input => split.features.iter().map(|&v| f64::from(v)).collect(),
        FeatureSpace::Dense => match classifier {
            Some(c) if c.kind == ClassifierKind::Mlp => c.hidden(&split.features),
            _ => {
                return Err(HeadError::config(
                    head,
                    "features: dense needs an mlp classifier (this cache's is linear)",
                ));
            }
        },
    };
    if cfg.l2_normalize {
        let d = split.dim();
        for row in x.chunks_exact_mut(d) {
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            if norm > 0.0 {
                row.iter_mut().for_each(|v| *v /= norm);
            }
        }
    }
    Ok(x)
}

/// Mean and (1/N-normalised) covariance of the rows of `x` around per-row centres.
fn centred_cov(x: &[f64], d: usize, centre: impl Fn(usize) -> usize, means: &Mat<f64>) -> Mat<f64> {
    let n = x.len() / d;
    let mut centred = Mat::<f64>::zeros(n, d);
    for i in 0..n {
        let c = centre(i);
        for j in 0..d {
            centred[(i, j)] = x[i * d + j] - means[(c, j)];
        }
    }
    let mut cov = centred.transpose() * &centred;
    for j in 0..d {
        for i in 0..d {
            cov[(i, j)] /= n as f64;
        }
    }
    cov
}

/// A fitted Mahalanobis or relative-Mahalanobis head.
pub struct MahalanobisHead {
    cfg: MahalanobisConfig,
    relative: bool,
    /// Class means `[C, d]`.
    means: Mat<f64>,
    /// Σ⁻¹ `[d, d]` of the tied covariance.
    precision: Mat<f64>,
    /// Global mean `[1, d]` and Σ₀⁻¹ (relative variant only).
    global: Option<(Mat<f64>, Mat<f64>)>,
    /// The classifier, for `features: dense`.
    classifier: Option<Classifier>,
    pseudo_inverse: bool,
    fit_rows: usize,
}

impl MahalanobisHead {
    /// Fits class means and the tied covariance on the fit split with its gold labels.
    ///
    /// # Errors
    /// `features: dense` with a linear classifier, or a class with no sample in the fit split.
    pub fn fit(cfg: &MahalanobisConfig, relative: bool, ctx: &FitContext<'_>) -> Result<Self, HeadError> {
        let head = if relative {
            "relative_mahalanobis"
        } else {
            "mahalanobis"
        };
        let split = ctx.split(ctx.fit);
        let classifier = (cfg.features == FeatureSpace::Dense).then(|| ctx.cache.classifier.clone());
        let x = representation(cfg, classifier.as_ref(), split, head)?;
        let (d, c, n) = (split.dim(), split.num_classes(), split.n());
        let mut means = Mat::<f64>::zeros(c, d);
        let mut counts = vec![0usize; c];
        for (row, &y) in x.chunks_exact(d).zip(&split.labels) {
            counts[y as usize] += 1;
            for j in 0..d {
                means[(y as usize, j)] += row[j];
            }
        }
        if let Some(k) = counts.iter().position(|&m| m == 0) {
            return Err(HeadError::fit(
                head,
                format!("class {k} has no sample in the {} split", ctx.fit),
            ));
        }
        for k in 0..c {
            for j in 0..d {
                means[(k, j)] /= counts[k] as f64;
            }
        }
        let cov = centred_cov(&x, d, |i| split.labels[i] as usize, &means);
        let p = precision(&cov, head)?;
        let mut pseudo = p.pseudo;
        let global = if relative {
            let mut mu0 = Mat::<f64>::zeros(1, d);
            for row in x.chunks_exact(d) {
                for j in 0..d {
                    mu0[(0, j)] += row[j] / n as f64;
                }
            }
            let cov0 = centred_cov(&x, d, |_| 0, &mu0);
            let p0 = precision(&cov0, head)?;
            pseudo |= p0.pseudo;
            Some((mu0, p0.matrix))
        } else {
            None
        };
        Ok(Self {
            cfg: *cfg,
            relative,
            means,
            precision: p.matrix,
            global,
            classifier,
            pseudo_inverse: pseudo,
            fit_rows: n,
        })
    }

    /// Whether a covariance was singular and its pseudo-inverse was used (a warning for the
    /// user: some directions carry no information).
    pub fn used_pseudo_inverse(&self) -> bool {
        self.pseudo_inverse
    }

    pub(crate) fn load(dir: &Path, text: &str) -> Result<Self, HeadError> {
        #[derive(Deserialize)]
        struct Saved {
            head: String,
            config: MahalanobisConfig,
            num_classes: usize,
            dim: usize,
            pseudo_inverse: bool,
            fit_rows: usize,
            classifier: Option<ClassifierMeta>,
        }
        let s: Saved = parse_json(dir, text)?;
        let path = dir.join("head.safetensors");
        let bytes = read_bytes(&path)?;
        let t = Tensors::parse(&path, &bytes)?;
        let (c, d) = (s.num_classes, s.dim);
        let mat = |name: &str, r: usize, k: usize| -> Result<Mat<f64>, HeadError> {
            let v = t.f64(name, &[r, k])?;
            Ok(MatRef::from_row_major_slice(&v, r, k).to_owned())
        };
        let relative = s.head == "relative_mahalanobis";
        let classifier = match s.classifier {
            Some(meta) => Some(classifier_from_tensors(&t, meta, d, c)?),
            None => None,
        };
        Ok(Self {
            cfg: s.config,
            relative,
            means: mat("means", c, d)?,
            precision: mat("precision", d, d)?,
            global: if relative {
                Some((mat("global_mean", 1, d)?, mat("global_precision", d, d)?))
            } else {
                None
            },
            classifier,
            pseudo_inverse: s.pseudo_inverse,
            fit_rows: s.fit_rows,
        })
    }
}

/// Squared Mahalanobis distances of the rows of `x` `[n, d]` to each row of `centres` `[k, d]`
/// under `prec`: `xᵀPx − 2 xᵀPμ + μᵀPμ`, as matrix products. Returns `[n, k]`.
fn sq_distances(x: MatRef<'_, f64>, centres: &Mat<f64>, prec: &Mat<f64>) -> Mat<f64> {
    let xp = x * prec; // [n, d]
    let cross = &xp * centres.transpose(); // [n, k]
    let mp = centres * prec; // [k, d]
    let (n, k, d) = (x.nrows(), centres.nrows(), x.ncols());
    let mu_p_mu: Vec<f64> = (0..k)
        .map(|c| (0..d).map(|j| mp[(c, j)] * centres[(c, j)]).sum())
        .collect();
    let mut out = Mat::<f64>::zeros(n, k);
    for i in 0..n {
        let x_p_x: f64 = (0..d).map(|j| xp[(i, j)] * x[(i, j)]).sum();
        for c in 0..k {
            out[(i, c)] = x_p_x - 2.0 * cross[(i, c)] + mu_p_mu[c];
        }
    }
    out
}

impl Head for MahalanobisHead {
    fn name(&self) -> &'static str {
        if self.relative {
            "relative_mahalanobis"
        } else {
            "mahalanobis"
        }
    }

    fn score(&self, split: &SplitData) -> Result<Vec<f64>, HeadError> {
        let (c, d) = (self.means.nrows(), self.means.ncols());
        if split.dim() != d || split.num_classes() != c {
            return Err(HeadError::config(
                self.name(),
                format!(
                    "fitted for d = {d}, C = {c}; the split has d = {}, C = {}",
                    split.dim(),
                    split.num_classes()
                ),
            ));
        }
        let x = representation(&self.cfg, self.classifier.as_ref(), split, self.name())?;
        let n = split.n();
        let mut u = Vec::with_capacity(n);
        for start in (0..n).step_by(4096) {
            let rows = 4096.min(n - start);
            let xb = MatRef::from_row_major_slice(&x[start * d..(start + rows) * d], rows, d);
            let dist = sq_distances(xb, &self.means, &self.precision);
            let base = self.global.as_ref().map(|(mu0, p0)| sq_distances(xb, mu0, p0));
            for i in 0..rows {
                let md = (0..c).map(|k| dist[(i, k)]).fold(f64::INFINITY, f64::min);
                u.push(match &base {
                    Some(b) => md - b[(i, 0)],
                    None => md,
                });
            }
        }
        Ok(u)
    }

    fn summary(&self) -> serde_json::Value {
        json!({"features": self.cfg.features, "l2_normalize": self.cfg.l2_normalize, "pseudo_inverse": self.pseudo_inverse, "fit_rows": self.fit_rows})
    }

    fn save(&self, dir: &Path) -> Result<(), HeadError> {
        let (c, d) = (self.means.nrows(), self.means.ncols());
        write_json(
            dir,
            &json!({"head": self.name(), "config": self.cfg, "num_classes": c, "dim": d, "pseudo_inverse": self.pseudo_inverse,
                "fit_rows": self.fit_rows, "classifier": self.classifier.as_ref().map(Classifier::meta)}),
        )?;
        let flat = |m: &Mat<f64>| -> Vec<f64> {
            (0..m.nrows())
                .flat_map(|i| (0..m.ncols()).map(move |j| m[(i, j)]))
                .collect()
        };
        let mut f64s: Vec<(&str, Vec<f64>, Vec<usize>)> = vec![
            ("means", flat(&self.means), vec![c, d]),
            ("precision", flat(&self.precision), vec![d, d]),
        ];
        if let Some((mu0, p0)) = &self.global {
            f64s.push(("global_mean", flat(mu0), vec![1, d]));
            f64s.push(("global_precision", flat(p0), vec![d, d]));
        }
        let f32s = self.classifier.as_ref().map(Classifier::tensors).unwrap_or_default();
        let f64_refs: Vec<(&str, &[f64], Vec<usize>)> = f64s.iter().map(|(n, v, s)| (*n, &v[..], s.clone())).collect();
        write_tensors(&dir.join("head.safetensors"), &f32s, &[], &f64_refs)
    }
}
