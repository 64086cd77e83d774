//! Mahalanobis-distance heads (spec §6): class means and a tied covariance from the fit split
//! in f64; `u` = min over classes of the squared distance (no square root). The relative
//! variant subtracts the distance to the global mean under the global covariance.

use std::path::Path;

use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::linalg::solvers::DenseSolveCore;
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};
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

/// The Cholesky factorisation of a symmetric matrix when it is numerically positive definite:
/// it succeeds and the squared ratio of its smallest to largest diagonal entry (a lower bound
/// of the eigenvalue spread's inverse) is above d·ε.
fn sound_cholesky(m: &Mat<f64>) -> Option<faer::linalg::solvers::Llt<f64>> {
    let d = m.nrows();
    let llt = m.llt(Side::Lower).ok()?;
    let l = llt.L();
    let (lo, hi) = (0..d)
        .map(|i| l[(i, i)])
        .fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
    (lo > 0.0 && (lo / hi).powi(2) > d as f64 * f64::EPSILON).then_some(llt)
}

/// Σ⁻¹ by Cholesky when Σ is numerically positive definite; otherwise the Moore–Penrose
/// pseudo-inverse from the eigendecomposition, dropping eigenvalues ≤ d·ε·λ_max (the
/// LAPACK/NumPy cut-off).
fn precision(cov: &Mat<f64>, head: &str) -> Result<Precision, HeadError> {
    let d = cov.nrows();
    let max_diag = (0..d).map(|i| cov[(i, i)]).fold(0.0f64, f64::max);
    if let Some(llt) = sound_cholesky(cov) {
        return Ok(Precision {
            matrix: llt.inverse(),
            pseudo: false,
        });
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

/// A precision matrix in factored form, `P = F·Fᵀ`, and centres mapped through the factor, so
/// that a squared distance is `‖x·F − μ·F‖²`: one product per row of `x`, half of it skipped
/// when `F` is triangular, instead of the expanded `xᵀPx − 2xᵀPμ + μᵀPμ` (which also loses
/// digits to cancellation when `x` is near a centre). Computed from the precision matrix alone
/// (at fit and at load), so a saved head scores with the same bits after loading.
struct Whitening {
    /// `F`, column-major `[d, r]`: the lower Cholesky factor of `P` (r = d), or `V·diag(√λ)`
    /// over the kept eigenpairs of `P` when `P` is singular or too ill-conditioned for Cholesky.
    factor: Vec<f64>,
    dim: usize,
    rank: usize,
    /// Whether `factor` is lower-triangular.
    lower: bool,
    /// `μ·F` for every centre `[k, r]`, row-major.
    centres: Vec<f64>,
}

/// Multiply–adds of a product below which one thread is faster than starting or waking others.
const PARALLEL_WORK: usize = 1 << 21;

impl Whitening {
    /// Factors `p` (Cholesky when its diagonal spread passes the test of [`precision`], else the
    /// eigendecomposition, dropping eigenvalues ≤ d·ε·λ_max) and maps `centres` `[k, d]`.
    fn new(p: &Mat<f64>, centres: &Mat<f64>) -> Result<Self, String> {
        let d = p.nrows();
        let (factor, rank, lower) = match sound_cholesky(p) {
            Some(llt) => {
                let l = llt.L();
                // Column-major; the upper triangle is never read, zeros keep it defined.
                let factor = (0..d * d)
                    .map(|k| {
                        let (i, j) = (k % d, k / d);
                        if i >= j { l[(i, j)] } else { 0.0 }
                    })
                    .collect();
                (factor, d, true)
            }
            None => {
                let evd = p
                    .self_adjoint_eigen(Side::Lower)
                    .map_err(|e| format!("eigendecomposition of the precision matrix failed: {e:?}"))?;
                let (u, s) = (evd.U(), evd.S().column_vector());
                let lambda_max = (0..d).map(|i| s[i]).fold(0.0f64, f64::max);
                let cutoff = d as f64 * f64::EPSILON * lambda_max;
                let kept: Vec<usize> = (0..d).filter(|&j| s[j] > cutoff).collect();
                let factor = kept
                    .iter()
                    .flat_map(|&j| {
                        let scale = s[j].sqrt();
                        (0..d).map(move |i| u[(i, j)] * scale)
                    })
                    .collect();
                (factor, kept.len(), false)
            }
        };
        let mut w = Self {
            factor,
            dim: d,
            rank,
            lower,
            centres: Vec::new(),
        };
        let mu: Vec<f64> = (0..centres.nrows())
            .flat_map(|c| (0..d).map(move |j| centres[(c, j)]))
            .collect();
        w.centres = w.map(&mu);
        Ok(w)
    }

    /// `x·F` `[n, r]`, row-major, for row-major `x` `[n, d]`: batches of up to 4 rows as dot
    /// products that stream the factor once ([`crate::simd::ColumnDots`]), larger ones with
    /// faer's blocked kernels.
    fn map(&self, x: &[f64]) -> Vec<f64> {
        let (d, r) = (self.dim, self.rank);
        let n = x.len() / d.max(1);
        let work = if self.lower { n * d * (d + 1) / 2 } else { n * d * r };
        let threads = if work >= PARALLEL_WORK {
            crate::host::threads()
        } else {
            1
        };
        let mut out = vec![0.0; n * r];
        match n {
            1 => self.map_by_dots::<1>(x, threads, &mut out),
            2 => self.map_by_dots::<2>(x, threads, &mut out),
            3 => self.map_by_dots::<3>(x, threads, &mut out),
            4 => self.map_by_dots::<4>(x, threads, &mut out),
            _ => {
                let par = if threads > 1 { Par::rayon(0) } else { Par::Seq };
                let x = MatRef::from_row_major_slice(x, n, d);
                let f = MatRef::from_column_major_slice(&self.factor, d, r);
                let dst = MatMut::from_row_major_slice_mut(&mut out, n, r);
                if self.lower {
                    triangular::matmul(
                        dst,
                        BlockStructure::Rectangular,
                        Accum::Replace,
                        x,
                        BlockStructure::Rectangular,
                        f,
                        BlockStructure::TriangularLower,
                        1.0,
                        par,
                    );
                } else {
                    matmul(dst, Accum::Replace, x, f, 1.0, par);
                }
            }
        }
        out
    }

    /// `x·F` for `R ≤ 4` rows as dot products with the factor's columns, the columns
    /// split between `threads` threads in runs of equal work.
    fn map_by_dots<const R: usize>(&self, x: &[f64], threads: usize, out: &mut [f64]) {
        let (d, r) = (self.dim, self.rank);
        let rows: [&[f64]; R] = std::array::from_fn(|i| &x[i * d..(i + 1) * d]);
        // Column-major results (R per column), transposed into `out` at the end.
        let mut by_col = vec![0.0; r * R];
        // Multiply–adds of the columns before column k (column k of a triangular factor has
        // d − k entries).
        let work_before = |k: usize| {
            if self.lower {
                k * d - k * k.saturating_sub(1) / 2
            } else {
                k * d
            }
        };
        let total = work_before(r);
        let mut bounds = vec![0];
        for t in 1..threads {
            let target = total / threads * t;
            // The first column whose preceding work reaches the target (work_before increases).
            let (mut lo, mut hi) = (bounds[bounds.len() - 1], r);
            while lo < hi {
                let mid = (lo + hi) / 2;
                if work_before(mid) < target {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            bounds.push(lo);
        }
        bounds.push(r);
        let op = |first: usize, out: &mut [f64]| {
            crate::simd::column_dots(crate::simd::ColumnDots::<R> {
                rows,
                factor: &self.factor,
                dim: d,
                lower: self.lower,
                first,
                out,
            });
        };
        std::thread::scope(|scope| {
            let mut rest = &mut by_col[..];
            let mut runs = Vec::new();
            for w in bounds.windows(2) {
                let (run, tail) = rest.split_at_mut((w[1] - w[0]) * R);
                runs.push((w[0], run));
                rest = tail;
            }
            let mut runs = runs.into_iter();
            let first = runs.next();
            for (k0, run) in runs {
                scope.spawn(move || op(k0, run));
            }
            if let Some((k0, run)) = first {
                op(k0, run);
            }
        });
        for (k, col) in by_col.chunks_exact(R).enumerate() {
            for (i, v) in col.iter().enumerate() {
                out[i * r + k] = *v;
            }
        }
    }

    /// The squared distance of every row of `x` `[n, d]` (row-major) to its nearest centre.
    fn min_sq_distances(&self, x: &[f64]) -> Vec<f64> {
        let r = self.rank;
        if r == 0 {
            // P = 0: every direction was dropped, every distance is 0.
            return vec![0.0; x.len() / self.dim.max(1)];
        }
        let y = self.map(x);
        y.chunks_exact(r)
            .map(|row| {
                self.centres
                    .chunks_exact(r)
                    .map(|mu| sq_distance(row, mu))
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    }
}

/// `‖a − b‖²` with eight independent partial sums, which LLVM keeps in one vector register.
fn sq_distance(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    for (x, y) in a8.zip(b8) {
        for k in 0..8 {
            let t = x[k] - y[k];
            acc[k] += t * t;
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// A fitted Mahalanobis or relative-Mahalanobis head.
pub struct MahalanobisHead {
    cfg: MahalanobisConfig,
    relative: bool,
    /// Class means `[C, d]`.
    means: Mat<f64>,
    /// Σ⁻¹ `[d, d]` of the tied covariance (what is saved).
    precision: Mat<f64>,
    /// `precision` factored, with the class means mapped: what scores.
    whitening: Whitening,
    /// Global mean `[1, d]` and Σ₀⁻¹ (relative variant only).
    global: Option<(Mat<f64>, Mat<f64>)>,
    /// Σ₀⁻¹ factored, with the global mean mapped (relative variant only).
    global_whitening: Option<Whitening>,
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
        let fit_err = |e: String| HeadError::fit(head, e);
        let whitening = Whitening::new(&p.matrix, &means).map_err(fit_err)?;
        let global_whitening = match &global {
            Some((mu0, p0)) => Some(Whitening::new(p0, mu0).map_err(fit_err)?),
            None => None,
        };
        Ok(Self {
            cfg: *cfg,
            relative,
            means,
            precision: p.matrix,
            whitening,
            global,
            global_whitening,
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
        let means = mat("means", c, d)?;
        let precision = mat("precision", d, d)?;
        let global = if relative {
            Some((mat("global_mean", 1, d)?, mat("global_precision", d, d)?))
        } else {
            None
        };
        let meta_err = |reason: String| HeadError::Meta {
            path: path.clone(),
            reason,
        };
        let whitening = Whitening::new(&precision, &means).map_err(meta_err)?;
        let global_whitening = match &global {
            Some((mu0, p0)) => Some(Whitening::new(p0, mu0).map_err(meta_err)?),
            None => None,
        };
        Ok(Self {
            cfg: s.config,
            relative,
            means,
            precision,
            whitening,
            global,
            global_whitening,
            classifier,
            pseudo_inverse: s.pseudo_inverse,
            fit_rows: s.fit_rows,
        })
    }
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
            let xb = &x[start * d..(start + rows) * d];
            let md = self.whitening.min_sq_distances(xb);
            match &self.global_whitening {
                Some(g) => u.extend(md.iter().zip(g.min_sq_distances(xb)).map(|(m, b)| m - b)),
                None => u.extend(md),
            }
        }
        // faer's kernels leave the upper vector state dirty; the caller's libm calls would pay.
        crate::simd::clear_upper_state();
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

#[cfg(test)]
mod tests {
    use super::*;
    use ueb_rng::{Rng64, Xoshiro256};

    fn gaussian(rng: &mut Xoshiro256) -> f64 {
        let (u1, u2) = (1.0 - rng.unit(), rng.unit());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// A random precision matrix `A·Aᵀ/m` of rank `rank` (full rank when `rank ≥ d`), centres and
    /// rows.
    fn problem(d: usize, rank: usize, k: usize, n: usize) -> (Mat<f64>, Mat<f64>, Vec<f64>) {
        let mut rng = Xoshiro256::new(7, d as u64 * 1000 + rank as u64);
        let a = Mat::<f64>::from_fn(d, rank, |_, _| gaussian(&mut rng));
        let mut p = &a * a.transpose();
        for j in 0..d {
            for i in 0..d {
                p[(i, j)] /= rank as f64;
            }
        }
        let centres = Mat::<f64>::from_fn(k, d, |_, _| gaussian(&mut rng));
        let x = (0..n * d).map(|_| gaussian(&mut rng)).collect();
        (p, centres, x)
    }

    /// `min_c (x − μ_c)ᵀ P (x − μ_c)` of every row, the textbook way.
    fn direct(p: &Mat<f64>, centres: &Mat<f64>, x: &[f64]) -> Vec<f64> {
        let d = p.nrows();
        x.chunks_exact(d)
            .map(|row| {
                (0..centres.nrows())
                    .map(|c| {
                        let v = Mat::<f64>::from_fn(d, 1, |i, _| row[i] - centres[(c, i)]);
                        (v.transpose() * p * &v)[(0, 0)]
                    })
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    }

    #[test]
    fn every_product_path_gives_the_distances() {
        // Full rank (Cholesky factor) and rank-deficient (eigen factor); batches of 1–4 rows
        // (dot products), 1–3 threads, and 9 rows (faer's kernels).
        for (d, rank) in [(37, 80), (40, 25)] {
            let (p, centres, x) = problem(d, rank, 3, 9);
            let w = Whitening::new(&p, &centres).unwrap();
            assert_eq!(w.lower, rank >= d);
            let want = direct(&p, &centres, &x);
            let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let check = |got: &[f64], rows: &[f64], what: &str| {
                for (g, w) in got.iter().zip(rows) {
                    assert!((g - w).abs() <= 1e-12 * scale, "{what}: {g} vs {w}");
                }
            };
            check(&w.min_sq_distances(&x), &want, "9 rows");
            for n in 1..=4 {
                let got = w.min_sq_distances(&x[..n * d]);
                check(&got, &want[..n], &format!("{n} rows"));
                // The split between threads does not change a bit.
                let one = w.map(&x[..n * d]);
                for threads in 2..=3 {
                    let mut split = vec![0.0; one.len()];
                    match n {
                        1 => w.map_by_dots::<1>(&x[..d], threads, &mut split),
                        2 => w.map_by_dots::<2>(&x[..2 * d], threads, &mut split),
                        3 => w.map_by_dots::<3>(&x[..3 * d], threads, &mut split),
                        _ => w.map_by_dots::<4>(&x[..4 * d], threads, &mut split),
                    }
                    assert_eq!(split, one, "{n} rows on {threads} threads");
                }
            }
        }
    }
}
