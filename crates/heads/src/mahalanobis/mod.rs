//! Mahalanobis-distance heads (spec §6): class means and a tied covariance from the fit split
//! in f64; `u` = min over classes of the squared distance (no square root). The relative
//! variant subtracts the distance to the global mean under the global covariance.

use std::borrow::Cow;
use std::path::Path;

use faer::linalg::solvers::DenseSolveCore;
use faer::{Mat, MatRef, Side};
use serde::{Deserialize, Serialize};
use serde_json::json;

use ueb_cache::classifier::classifier_from_tensors;
use ueb_cache::tensors::{Tensors, read_bytes, write_tensors};
use ueb_cache::{Classifier, ClassifierKind, ClassifierMeta, HostClassifier, ScorePrecision, SplitData};
use ueb_kernels::gemm::{Operand, ShapeError};

use crate::error::HeadError;
use crate::head::{FitContext, Head, parse_json, write_json};

mod distance;

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
    /// The arithmetic of the scoring products (the factor, and `dense` for `features: dense`);
    /// the fit is f64 either way.
    #[serde(skip_serializing_if = "ScorePrecision::is_f64")]
    pub score_precision: ScorePrecision,
}

/// The inverse (or pseudo-inverse) of a covariance, and how it was obtained.
struct Precision {
    matrix: Mat<f64>,
    pseudo: bool,
    /// For a pseudo-inverse, its factor `V·diag(1/√s)` over the kept eigenpairs of Σ: what
    /// scores, without a second eigendecomposition (of the pseudo-inverse).
    factor: Option<Factor>,
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
            factor: None,
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
    let kept: Vec<(usize, f64)> = (0..d)
        .filter(|&j| s[j] > cutoff)
        .map(|j| (j, s[j].sqrt().recip()))
        .collect();
    Ok(Precision {
        matrix: &scaled * u.transpose(),
        pseudo: true,
        factor: Some(Factor::from_eigen(u, &kept)),
    })
}

/// The feature rows a head works on, row-major `[n, d]`.
enum Rows<'a> {
    /// The cached features as they are (`features: input` without normalisation), so that f32
    /// products take them without a round trip through f64.
    Cached(&'a [f32]),
    /// Rows computed in f64: normalised, or `dense` features.
    Computed(Vec<f64>),
}

/// Rows of a batch in the form its whitening takes them (see [`Whitening::takes_narrow`]).
enum Chunk<'a> {
    /// f64 rows (exact widenings of cached features, or computed rows).
    Wide(Cow<'a, [f64]>),
    /// f32 rows (the cached features, or computed rows rounded) for an f32 product.
    Narrow(Cow<'a, [f32]>),
}

impl Chunk<'_> {
    /// The rows in f64 (f32 rows widened, exactly).
    fn wide(&self) -> Cow<'_, [f64]> {
        match self {
            Chunk::Wide(x) => Cow::Borrowed(x),
            Chunk::Narrow(x) => Cow::Owned(ueb_kernels::convert::widen(x)),
        }
    }

    /// The rows in f32 (f64 rows rounded).
    fn narrow(&self) -> Cow<'_, [f32]> {
        match self {
            Chunk::Wide(x) => Cow::Owned(ueb_kernels::convert::narrow(x)),
            Chunk::Narrow(x) => Cow::Borrowed(x),
        }
    }

    /// The number of values.
    fn len(&self) -> usize {
        match self {
            Chunk::Wide(x) => x.len(),
            Chunk::Narrow(x) => x.len(),
        }
    }
}

impl Rows<'_> {
    /// Every row in f64 (the fit's arithmetic).
    fn wide(&self) -> Cow<'_, [f64]> {
        match self {
            Rows::Cached(f) => Cow::Owned(ueb_kernels::convert::widen(f)),
            Rows::Computed(x) => Cow::Borrowed(x),
        }
    }

    /// Rows `start..start + n` (of `d` values) as f32 rows if `narrow`, else as f64 rows.
    fn chunk(&self, start: usize, n: usize, d: usize, narrow: bool) -> Chunk<'_> {
        let range = start * d..(start + n) * d;
        match (self, narrow) {
            (Rows::Cached(f), true) => Chunk::Narrow(Cow::Borrowed(&f[range])),
            (Rows::Cached(f), false) => Chunk::Wide(Cow::Owned(ueb_kernels::convert::widen(&f[range]))),
            (Rows::Computed(x), true) => Chunk::Narrow(Cow::Owned(ueb_kernels::convert::narrow(&x[range]))),
            (Rows::Computed(x), false) => Chunk::Wide(Cow::Borrowed(&x[range])),
        }
    }
}

/// The feature rows a head with `cfg` works on.
fn representation<'a>(
    cfg: &MahalanobisConfig,
    classifier: Option<&(Classifier, HostClassifier)>,
    split: &'a SplitData,
    head: &str,
) -> Result<Rows<'a>, HeadError> {
    let mut x = match cfg.features {
        FeatureSpace::Input if !cfg.l2_normalize => return Ok(Rows::Cached(&split.features)),
        FeatureSpace::Input => ueb_kernels::convert::widen(&split.features),
        FeatureSpace::Dense => match classifier {
            Some((c, host)) if c.kind == ClassifierKind::Mlp => {
                let mut out = Vec::with_capacity(split.features.len());
                host.forward_blocks(&split.features, true, |_, hidden, _| out.extend_from_slice(hidden))?;
                out
            }
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
    Ok(Rows::Computed(x))
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

/// A factor `F` of a precision matrix, `P = F·Fᵀ`, column-major `[d, r]`: the lower Cholesky
/// factor of `P` (r = d), or `V·diag(√λ)` over kept eigenpairs (r = their number).
struct Factor {
    values: Vec<f64>,
    dim: usize,
    rank: usize,
    /// Whether `values` is lower-triangular (its upper triangle is zeros and never read).
    lower: bool,
    /// Whether the factor cannot be derived again from the saved precision matrix (it came
    /// from the covariance's eigendecomposition) and is saved with the head.
    saved: bool,
}

impl Factor {
    /// `U[:, j]·w` for every kept `(j, w)`: a factor of `U·diag(w²)·Uᵀ`.
    fn from_eigen(u: MatRef<'_, f64>, kept: &[(usize, f64)]) -> Self {
        let d = u.nrows();
        Self {
            values: kept
                .iter()
                .flat_map(|&(j, w)| (0..d).map(move |i| u[(i, j)] * w))
                .collect(),
            dim: d,
            rank: kept.len(),
            lower: false,
            saved: true,
        }
    }

    /// The factor of a precision matrix: Cholesky when it is sound (see [`sound_cholesky`]),
    /// else the eigendecomposition, dropping eigenvalues ≤ d·ε·λ_max. A function of `p` alone,
    /// so a loaded head gets the fitted head's factor bit for bit.
    fn of_precision(p: &Mat<f64>) -> Result<Self, String> {
        let d = p.nrows();
        if let Some(llt) = sound_cholesky(p) {
            let l = llt.L();
            let values = (0..d * d)
                .map(|k| {
                    let (i, j) = (k % d, k / d);
                    if i >= j { l[(i, j)] } else { 0.0 }
                })
                .collect();
            return Ok(Self {
                values,
                dim: d,
                rank: d,
                lower: true,
                saved: false,
            });
        }
        let evd = p
            .self_adjoint_eigen(Side::Lower)
            .map_err(|e| format!("eigendecomposition of the precision matrix failed: {e:?}"))?;
        let (u, s) = (evd.U(), evd.S().column_vector());
        let lambda_max = (0..d).map(|i| s[i]).fold(0.0f64, f64::max);
        let cutoff = d as f64 * f64::EPSILON * lambda_max;
        let kept: Vec<(usize, f64)> = (0..d).filter(|&j| s[j] > cutoff).map(|j| (j, s[j].sqrt())).collect();
        Ok(Self {
            saved: false,
            ..Self::from_eigen(u, &kept)
        })
    }

    /// `x·F` `[n, r]`, column-major, for row-major `x` `[n, d]`: batches of up to 4 rows as dot
    /// products that stream the factor once ([`ueb_kernels::dots::ColumnDots`]), larger ones with
    /// [`ueb_kernels::product::product`] into a column-major destination (a row-major one is
    /// slower with both faer and gemm: decision B9).
    fn map(&self, x: &[f64]) -> Result<Vec<f64>, ShapeError> {
        let f = self;
        let (d, r) = (f.dim, f.rank);
        let n = x.len() / d.max(1);
        let work = if f.lower { n * d * (d + 1) / 2 } else { n * d * r };
        let threads = if work >= PARALLEL_DOTS_WORK {
            ueb_kernels::threads()
        } else {
            1
        };
        let mut out = vec![0.0; n * r];
        match n {
            1 => self.map_by_dots::<1>(x, threads, &mut out),
            2 => self.map_by_dots::<2>(x, threads, &mut out),
            3 => self.map_by_dots::<3>(x, threads, &mut out),
            4 => self.map_by_dots::<4>(x, threads, &mut out),
            _ => ueb_kernels::product::product(Operand::rows(x, n, d, d), &f.values, r, f.lower, &mut out)?,
        }
        Ok(out)
    }

    /// `x·F` (column-major `[R, r]`) for `R ≤ 4` rows as dot products with the factor's
    /// columns, the columns split between `threads` threads in runs of equal work.
    fn map_by_dots<const R: usize>(&self, x: &[f64], threads: usize, out: &mut [f64]) {
        let (d, r) = (self.dim, self.rank);
        let rows: [&[f64]; R] = std::array::from_fn(|i| &x[i * d..(i + 1) * d]);
        let bounds = ueb_kernels::dots::balanced_runs(r, d, self.lower, threads, 1);
        let op = |first: usize, out: &mut [f64]| {
            ueb_kernels::dots::column_dots(ueb_kernels::dots::ColumnDots::<R> {
                rows,
                factor: &self.values,
                dim: d,
                lower: self.lower,
                first,
                out,
            });
        };
        rayon::scope(|scope| {
            let mut rest = &mut out[..];
            let mut runs = Vec::new();
            for w in bounds.windows(2) {
                let (run, tail) = rest.split_at_mut((w[1] - w[0]) * R);
                runs.push((w[0], run));
                rest = tail;
            }
            let mut runs = runs.into_iter();
            let first = runs.next();
            for (k0, run) in runs {
                scope.spawn(move |_| op(k0, run));
            }
            if let Some((k0, run)) = first {
                op(k0, run);
            }
        });
    }
}

/// A precision matrix in factored form and centres mapped through the factor, so that a
/// squared distance is `‖x·F − μ·F‖²`: one product per row of `x`, half of it skipped when `F`
/// is triangular, instead of the expanded `xᵀPx − 2xᵀPμ + μᵀPμ` (which also loses digits to
/// cancellation when `x` is near a centre).
struct Whitening {
    factor: Factor,
    /// `μ·F` for every centre `[k, r]`, row-major (one centre after the other).
    centres: Vec<f64>,
    /// With [`ScorePrecision::F32`]: what scores instead of `factor` and `centres`.
    narrow: Option<Narrow>,
}

/// The factor rounded to f32 once, `F̃`, and the centres mapped through it (in f64), so that a
/// distance `‖x·F̃ − μ·F̃‖²` compares like with like and only the sums of `x·F̃` are f32.
struct Narrow {
    /// `F̃`, column-major `[d, r]` like the factor (so also `F̃ᵀ` row-major `[r, d]`).
    values: Vec<f32>,
    /// `μ·F̃` `[k, r]`, row-major.
    centres: Vec<f64>,
}

/// Multiply–adds of a few-row product (streaming dot products) from which its columns are
/// split between the rayon pool's threads (a task starts in a few microseconds; each core then
/// streams its part of the factor, which at d = 768 stays in its own L2 cache between calls).
const PARALLEL_DOTS_WORK: usize = 1 << 18;

impl Whitening {
    /// Maps `centres` `[k, d]` through `factor` (and through its f32 rounding, to score in
    /// `precision` f32).
    fn new(factor: Factor, centres: &Mat<f64>, precision: ScorePrecision) -> Result<Self, ShapeError> {
        let (d, rank, k) = (factor.dim, factor.rank, centres.nrows());
        let mu: Vec<f64> = (0..k).flat_map(|c| (0..d).map(move |j| centres[(c, j)])).collect();
        let row_major =
            |mapped: Vec<f64>| -> Vec<f64> { (0..k * rank).map(|e| mapped[(e % rank) * k + e / rank]).collect() };
        let narrow = match precision {
            ScorePrecision::F64 => None,
            ScorePrecision::F32 => {
                let values = ueb_kernels::convert::narrow(&factor.values);
                let rounded = Factor {
                    values: ueb_kernels::convert::widen(&values),
                    saved: false,
                    ..factor
                };
                Some(Narrow {
                    centres: row_major(rounded.map(&mu)?),
                    values,
                })
            }
        };
        Ok(Self {
            centres: row_major(factor.map(&mu)?),
            factor,
            narrow,
        })
    }

    /// Whether a batch of `n` rows is mapped by an f32 product, which takes f32 rows
    /// ([`Chunk::Narrow`]); other batches take f64 rows.
    fn takes_narrow(&self, n: usize) -> bool {
        self.narrow.is_some() && n > NARROW_DOT_ROWS
    }

    /// The squared distance of every row of `x` `[n, d]` (row-major) to its nearest centre.
    /// `x` comes in the form [`Whitening::takes_narrow`] asks for; another form is converted
    /// (f64 rows rounded to f32 for an f32 product, f32 rows widened).
    fn min_sq_distances(&self, x: &Chunk<'_>) -> Result<Vec<f64>, ShapeError> {
        let (d, r) = (self.factor.dim, self.factor.rank);
        let n = x.len() / d.max(1);
        if r == 0 {
            // P = 0: every direction was dropped, every distance is 0.
            return Ok(vec![0.0; n]);
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut best = vec![f64::INFINITY; n];
        // The nearest centre of each mapped row, `y` column-major `[n, r]` (f64 or f32).
        fn distances<Y: ueb_kernels::gemm::Element>(y: &[Y], centres: &[f64], best: &mut [f64]) {
            let (n, r) = (best.len(), y.len() / best.len().max(1));
            distance::min_sq_distances(distance::MinSqDistances {
                y,
                rows: n,
                centres,
                rank: r,
                out: best,
                first: 0,
            });
        }
        match &self.narrow {
            None => distances(&self.factor.map(&x.wide())?[..], &self.centres, &mut best),
            Some(narrow) if n <= NARROW_DOT_ROWS => {
                distances(&narrow.dots(&self.factor, &x.wide())[..], &narrow.centres, &mut best);
            }
            Some(narrow) => distances(
                &narrow.product(&self.factor, &x.narrow())?[..],
                &narrow.centres,
                &mut best,
            ),
        }
        Ok(best)
    }
}

/// Batches up to this many rows are mapped through the f32 factor by dot products in f64
/// (memory-bound: the f32 factor halves the bytes, and f32 sums would gain nothing).
const NARROW_DOT_ROWS: usize = 4;

impl Narrow {
    /// `x·F̃` `[n, r]`, column-major, for row-major f64 `x` `[n, d]` (`f` gives the shape), by
    /// dot products in f64 on the f32 factor: for batches of up to [`NARROW_DOT_ROWS`] rows.
    fn dots(&self, f: &Factor, x: &[f64]) -> Vec<f64> {
        let (d, r) = (f.dim, f.rank);
        let n = x.len() / d.max(1);
        let mut rows = vec![0.0; n * r];
        ueb_kernels::dots::factor_dots(x, &self.values, d, f.lower, &mut rows);
        (0..n * r).map(|e| rows[(e % n) * r + e / n]).collect()
    }

    /// `x·F̃` `[n, r]`, column-major, for row-major f32 `x` `[n, d]`: an f32 product, f32 sums.
    fn product(&self, f: &Factor, x: &[f32]) -> Result<Vec<f32>, ShapeError> {
        let (d, r) = (f.dim, f.rank);
        let n = x.len() / d.max(1);
        let mut y = vec![0.0f32; n * r];
        ueb_kernels::product::product(Operand::rows(x, n, d, d), &self.values, r, f.lower, &mut y)?;
        Ok(y)
    }
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
    /// The classifier, for `features: dense`, and its weights widened once for scoring.
    classifier: Option<(Classifier, HostClassifier)>,
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
        // The fit's features come from an f64 pass whatever the scoring precision.
        let with = |precision| {
            (cfg.features == FeatureSpace::Dense).then(|| {
                let c = &ctx.cache.classifier;
                (c.clone(), HostClassifier::with_precision(c, precision))
            })
        };
        let rows = representation(cfg, with(ScorePrecision::F64).as_ref(), split, head)?;
        let x = rows.wide();
        let classifier = with(cfg.score_precision);
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
        // The factor comes with a pseudo-inverse; a Cholesky factor is derived from the
        // precision matrix, as `load` derives it, so that both score with the same bits.
        let whiten = |p: Precision, centres: &Mat<f64>| -> Result<(Mat<f64>, Whitening), HeadError> {
            let factor = match p.factor {
                Some(f) => f,
                None => Factor::of_precision(&p.matrix).map_err(|e| HeadError::fit(head, e))?,
            };
            Ok((p.matrix, Whitening::new(factor, centres, cfg.score_precision)?))
        };
        let cov = centred_cov(&x, d, |i| split.labels[i] as usize, &means);
        let p = precision(&cov, head)?;
        let mut pseudo = p.pseudo;
        let (precision_matrix, whitening) = whiten(p, &means)?;
        let (global, global_whitening) = if relative {
            let mut mu0 = Mat::<f64>::zeros(1, d);
            for row in x.chunks_exact(d) {
                for j in 0..d {
                    mu0[(0, j)] += row[j] / n as f64;
                }
            }
            let cov0 = centred_cov(&x, d, |_| 0, &mu0);
            let p0 = precision(&cov0, head)?;
            pseudo |= p0.pseudo;
            let (p0, w0) = whiten(p0, &mu0)?;
            (Some((mu0, p0)), Some(w0))
        } else {
            (None, None)
        };
        Ok(Self {
            cfg: *cfg,
            relative,
            means,
            precision: precision_matrix,
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
            Some(meta) => {
                let classifier = classifier_from_tensors(&t, meta, d, c)?;
                let host = HostClassifier::with_precision(&classifier, s.config.score_precision);
                Some((classifier, host))
            }
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
        // A factor saved with the head (a pseudo-inverse's), else the one derived from the
        // precision matrix.
        let whiten = |p: &Mat<f64>, name: &str, centres: &Mat<f64>| -> Result<Whitening, HeadError> {
            let factor = if t.has(name) {
                let rank = t.rows(name)?;
                if rank > d {
                    return Err(meta_err(format!("`{name}` has {rank} rows, more than d = {d}")));
                }
                Factor {
                    values: t.f64(name, &[rank, d])?,
                    dim: d,
                    rank,
                    lower: false,
                    saved: true,
                }
            } else {
                Factor::of_precision(p).map_err(meta_err)?
            };
            Ok(Whitening::new(factor, centres, s.config.score_precision)?)
        };
        let whitening = whiten(&precision, "precision_factor", &means)?;
        let global_whitening = match &global {
            Some((mu0, p0)) => Some(whiten(p0, "global_precision_factor", mu0)?),
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
            // Both whitenings have the head's precision, so they take the same form.
            let xb = x.chunk(start, rows, d, self.whitening.takes_narrow(rows));
            let md = self.whitening.min_sq_distances(&xb)?;
            match &self.global_whitening {
                Some(g) => u.extend(md.iter().zip(g.min_sq_distances(&xb)?).map(|(m, b)| m - b)),
                None => u.extend(md),
            }
        }
        // The product kernels leave the upper vector state dirty; the caller's libm calls would pay.
        ueb_kernels::clear_upper_state();
        Ok(u)
    }

    fn summary(&self) -> serde_json::Value {
        json!({"features": self.cfg.features, "l2_normalize": self.cfg.l2_normalize, "score_precision": self.cfg.score_precision,
            "pseudo_inverse": self.pseudo_inverse, "fit_rows": self.fit_rows})
    }

    fn save(&self, dir: &Path) -> Result<(), HeadError> {
        let (c, d) = (self.means.nrows(), self.means.ncols());
        write_json(
            dir,
            &json!({"head": self.name(), "config": self.cfg, "num_classes": c, "dim": d, "pseudo_inverse": self.pseudo_inverse,
                "fit_rows": self.fit_rows, "classifier": self.classifier.as_ref().map(|(c, _)| c.meta())}),
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
        // A factor that cannot be derived from the precision matrix again (a pseudo-inverse's):
        // Fᵀ `[r, d]`, the column-major `F`. Readers that do not know it ignore it and use the
        // precision matrix.
        let factors = [
            ("precision_factor", Some(&self.whitening)),
            ("global_precision_factor", self.global_whitening.as_ref()),
        ];
        for (name, w) in factors {
            if let Some(f) = w.map(|w| &w.factor).filter(|f| f.saved) {
                f64s.push((name, f.values.clone(), vec![f.rank, d]));
            }
        }
        let f32s = self.classifier.as_ref().map(|(c, _)| c.tensors()).unwrap_or_default();
        let f64_refs: Vec<(&str, &[f64], Vec<usize>)> = f64s.iter().map(|(n, v, s)| (*n, &v[..], s.clone())).collect();
        Ok(write_tensors(&dir.join("head.safetensors"), &f32s, &[], &f64_refs)?)
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
        // (dot products), 1–3 threads, and 9 rows (matrix products).
        for (d, rank) in [(37, 80), (40, 25)] {
            let (p, centres, x) = problem(d, rank, 3, 9);
            let w = Whitening::new(Factor::of_precision(&p).unwrap(), &centres, ScorePrecision::F64).unwrap();
            assert_eq!(w.factor.lower, rank >= d);
            let want = direct(&p, &centres, &x);
            let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let check = |got: &[f64], rows: &[f64], what: &str| {
                for (g, w) in got.iter().zip(rows) {
                    assert!((g - w).abs() <= 1e-12 * scale, "{what}: {g} vs {w}");
                }
            };
            // f32 products: f32 dots of the rounded factor for 1–4 rows, f32 sums for 9.
            let w32 = Whitening::new(Factor::of_precision(&p).unwrap(), &centres, ScorePrecision::F32).unwrap();
            for n in [1, 2, 3, 4, 9] {
                let rows = Rows::Computed(x[..n * d].to_vec());
                let got = w32.min_sq_distances(&rows.chunk(0, n, d, w32.takes_narrow(n))).unwrap();
                // Rows that f32 holds exactly (cached features) give the same bits in either
                // form; so do computed rows for the f32 product, which rounds them either way.
                let x32 = ueb_kernels::convert::narrow(&x[..n * d]);
                let cached = Rows::Cached(&x32);
                let forms = |rows: &Rows<'_>| {
                    [true, false].map(|narrow| w32.min_sq_distances(&rows.chunk(0, n, d, narrow)).unwrap())
                };
                let [a, b] = forms(&cached);
                assert_eq!(a, b, "f32, {n} cached rows, either form");
                if n > NARROW_DOT_ROWS {
                    let [a, b] = forms(&rows);
                    assert_eq!(a, b, "f32, {n} computed rows, either form");
                }
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() <= 1e-6 * scale, "f32, {n} rows: {g} vs {w}");
                }
            }
            let wide = |n: usize| Chunk::Wide(Cow::Borrowed(&x[..n * d]));
            check(&w.min_sq_distances(&wide(9)).unwrap(), &want, "9 rows");
            for n in 1..=4 {
                let got = w.min_sq_distances(&wide(n)).unwrap();
                check(&got, &want[..n], &format!("{n} rows"));
                // The split between threads does not change a bit.
                let one = w.factor.map(&x[..n * d]).unwrap();
                for threads in 2..=3 {
                    let mut split = vec![0.0; one.len()];
                    match n {
                        1 => w.factor.map_by_dots::<1>(&x[..d], threads, &mut split),
                        2 => w.factor.map_by_dots::<2>(&x[..2 * d], threads, &mut split),
                        3 => w.factor.map_by_dots::<3>(&x[..3 * d], threads, &mut split),
                        _ => w.factor.map_by_dots::<4>(&x[..4 * d], threads, &mut split),
                    }
                    assert_eq!(split, one, "{n} rows on {threads} threads");
                }
            }
        }
    }
}
