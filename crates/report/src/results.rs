//! Reading a results directory (`docs/runner.md`): the resolved plan, the finished head stages
//! of every shard, `metrics.parquet`, and the per-head metric computation shared with `ueb run`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use polars::prelude::*;
use ueb_metrics::{BootstrapConfig, NamedScore, Predictions, Report, ReportConfig};

use crate::error::{ReportError, Result, io, pl};

/// File name of a head stage's scores (`index, label, prediction, correct, score, confidence`).
pub const SCORES_FILE: &str = "scores.parquet";
/// File name of a head stage's probabilities (f64 tensor `probs`, `[N, C]`).
pub const PROBS_FILE: &str = "probs.safetensors";
/// The metadata key of [`PROBS_FILE`] that says whose probabilities it holds.
pub const PROBS_SOURCE_KEY: &str = "probabilities";
/// [`PROBS_SOURCE_KEY`]: the head's own (a calibrator).
pub const PROBS_FROM_HEAD: &str = "head";
/// [`PROBS_SOURCE_KEY`]: the classifier's, unchanged (a head that only scores).
pub const PROBS_FROM_CLASSIFIER: &str = "classifier";
/// File name of the long-form metrics table.
pub const METRICS_FILE: &str = "metrics.parquet";

/// Metric settings of an experiment (`metrics:` in `plan.yaml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricSettings {
    /// Bins of every binned metric.
    pub bins: usize,
    /// Bootstrap resamples (0: no intervals, and no significance test).
    pub bootstrap: usize,
}

impl Default for MetricSettings {
    /// The runner's defaults: 15 bins, 1000 resamples.
    fn default() -> Self {
        Self {
            bins: ueb_metrics::DEFAULT_BINS,
            bootstrap: 1000,
        }
    }
}

/// One cell of a plan: backbone × dataset × seed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CellKey {
    /// Backbone name.
    pub backbone: String,
    /// Dataset name.
    pub dataset: String,
    /// Seed.
    pub seed: u64,
}

impl CellKey {
    /// `backbone/dataset/seed-k`, the cell's place under `cells/`.
    pub fn rel_dir(&self) -> PathBuf {
        PathBuf::from(&self.backbone)
            .join(&self.dataset)
            .join(format!("seed-{}", self.seed))
    }
}

/// What the report needs from `plan.yaml`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlanInfo {
    /// The experiment's name.
    pub name: Option<String>,
    /// Head names in plan order.
    pub heads: Vec<String>,
    /// Cells in plan order.
    pub cells: Vec<CellKey>,
    /// Metric settings.
    pub metrics: MetricSettings,
}

fn yaml_str(v: &serde_yaml_ng::Value) -> Option<String> {
    match v {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The name of one entry of `heads:` (`- sr`, `- !alien {...}` or `- alien: {...}`), or the
/// label of a head run under another name (`- {as: alien-no-anchor, head: !alien {...}}`).
fn head_name(v: &serde_yaml_ng::Value) -> Option<String> {
    use serde_yaml_ng::Value;
    if let Some(label) = v.get("as") {
        return yaml_str(label);
    }
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Tagged(t) => Some(t.tag.to_string().trim_start_matches('!').to_string()),
        Value::Mapping(m) if m.len() == 1 => m.iter().next().and_then(|(k, _)| yaml_str(k)),
        _ => None,
    }
}

impl PlanInfo {
    /// Parses the resolved plan written by `ueb run`; only the fields above are read.
    ///
    /// # Errors
    /// Invalid YAML, or a plan without the expected fields.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|source| ReportError::Yaml {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |reason: &str| ReportError::Invalid {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let mut plan = PlanInfo {
            name: v.get("name").and_then(yaml_str),
            ..Default::default()
        };
        if let Some(m) = v.get("metrics") {
            if let Some(b) = m.get("bins").and_then(serde_yaml_ng::Value::as_u64) {
                plan.metrics.bins = usize::try_from(b).map_err(|_| invalid("metrics.bins is too large"))?;
            }
            if let Some(b) = m.get("bootstrap").and_then(serde_yaml_ng::Value::as_u64) {
                plan.metrics.bootstrap = usize::try_from(b).map_err(|_| invalid("metrics.bootstrap is too large"))?;
            }
        }
        if let Some(heads) = v.get("heads").and_then(serde_yaml_ng::Value::as_sequence) {
            for h in heads {
                plan.heads
                    .push(head_name(h).ok_or_else(|| invalid("an entry of heads: has no name"))?);
            }
        }
        if let Some(cells) = v.get("cells").and_then(serde_yaml_ng::Value::as_sequence) {
            for c in cells {
                let field = |k: &str| c.get(k).and_then(yaml_str);
                match (
                    field("backbone"),
                    field("dataset"),
                    c.get("seed").and_then(serde_yaml_ng::Value::as_u64),
                ) {
                    (Some(backbone), Some(dataset), Some(seed)) => plan.cells.push(CellKey {
                        backbone,
                        dataset,
                        seed,
                    }),
                    _ => return Err(invalid("a cell without backbone, dataset and seed")),
                }
            }
        }
        Ok(plan)
    }
}

/// One finished head stage found on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadStage {
    /// Its cell.
    pub cell: CellKey,
    /// The head's name (its directory name).
    pub head: String,
    /// The head stage's directory.
    pub dir: PathBuf,
    /// Modification time of its `scores.parquet`.
    pub modified: Option<SystemTime>,
}

/// Everything found in a results directory, in report order.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    /// The results directory.
    pub dir: PathBuf,
    /// `plan.yaml`, when present.
    pub plan: Option<PlanInfo>,
    /// Metric settings (the plan's, or the runner's defaults without a plan).
    pub metrics: MetricSettings,
    /// Head names: the plan's order, then any others found, sorted.
    pub heads: Vec<String>,
    /// (backbone, dataset) columns: the plan's order, then any others found, sorted.
    pub columns: Vec<(String, String)>,
    /// Finished head stages, by column, seed and head order.
    pub stages: Vec<HeadStage>,
    /// (cell, head) pairs of the plan with no finished head stage, as `backbone/dataset/seed-k/head`.
    pub missing: Vec<String>,
}

fn sorted_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        // Temporary directories of unfinished stages start with a dot.
        if name.starts_with('.') || !path.is_dir() {
            continue;
        }
        out.push((name, path));
    }
    out.sort();
    Ok(out)
}

/// The distinct items of `found`: those in `preferred` in its order, then the rest as they come.
fn plan_order<T: PartialEq + Clone>(preferred: &[T], found: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for f in preferred.iter().filter(|p| found.contains(p)).chain(found) {
        if !out.contains(f) {
            out.push(f.clone());
        }
    }
    out
}

impl Inventory {
    /// Scans `dir`: reads `plan.yaml` if there is one and lists every finished head stage under
    /// `cells/` (whichever shard wrote it).
    ///
    /// # Errors
    /// An unreadable directory or `plan.yaml`; [`ReportError::NoCells`] when nothing is finished.
    pub fn scan(dir: &Path) -> Result<Self> {
        let plan_path = dir.join("plan.yaml");
        let plan = match std::fs::read_to_string(&plan_path) {
            Ok(text) => Some(PlanInfo::parse(&text, &plan_path)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&plan_path)(e)),
        };
        let mut found = Vec::new();
        let cells = dir.join("cells");
        for (backbone, bdir) in sorted_dirs(&cells)? {
            for (dataset, ddir) in sorted_dirs(&bdir)? {
                let mut seeds: Vec<(u64, PathBuf)> = sorted_dirs(&ddir)?
                    .into_iter()
                    .filter_map(|(name, p)| Some((name.strip_prefix("seed-")?.parse().ok()?, p)))
                    .collect();
                seeds.sort();
                for (seed, sdir) in seeds {
                    for (head, hdir) in sorted_dirs(&sdir)? {
                        let scores = hdir.join(SCORES_FILE);
                        if !scores.is_file() || !hdir.join(PROBS_FILE).is_file() {
                            continue;
                        }
                        let modified = std::fs::metadata(&scores).and_then(|m| m.modified()).ok();
                        found.push(HeadStage {
                            cell: CellKey {
                                backbone: backbone.clone(),
                                dataset: dataset.clone(),
                                seed,
                            },
                            head,
                            dir: hdir,
                            modified,
                        });
                    }
                }
            }
        }
        if found.is_empty() {
            return Err(ReportError::NoCells { dir: dir.to_path_buf() });
        }
        let empty = PlanInfo::default();
        let p = plan.as_ref().unwrap_or(&empty);
        let mut found_heads: Vec<String> = found.iter().map(|s| s.head.clone()).collect();
        found_heads.sort();
        found_heads.dedup();
        let heads = plan_order(&p.heads, &found_heads);
        let mut found_cols: Vec<(String, String)> = found
            .iter()
            .map(|s| (s.cell.backbone.clone(), s.cell.dataset.clone()))
            .collect();
        found_cols.dedup();
        let plan_cols: Vec<(String, String)> = p
            .cells
            .iter()
            .map(|c| (c.backbone.clone(), c.dataset.clone()))
            .collect();
        let columns = plan_order(&plan_cols, &found_cols);
        let col_pos = |s: &HeadStage| {
            columns
                .iter()
                .position(|(b, d)| *b == s.cell.backbone && *d == s.cell.dataset)
        };
        let head_pos = |s: &HeadStage| heads.iter().position(|h| *h == s.head);
        found.sort_by_key(|s| (col_pos(s), s.cell.seed, head_pos(s)));
        let mut missing = Vec::new();
        for c in &p.cells {
            for h in &p.heads {
                if !found.iter().any(|s| s.cell == *c && s.head == *h) {
                    missing.push(format!("{}/{h}", c.rel_dir().display()));
                }
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            metrics: p.metrics,
            plan,
            heads,
            columns,
            stages: found,
            missing,
        })
    }
}

/// The test-split data of one head stage.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadData {
    /// Gold labels.
    pub labels: Vec<i64>,
    /// The head's probabilities, row-major `[N, C]`.
    pub probs: Vec<f64>,
    /// Number of classes `C`.
    pub num_classes: usize,
    /// The head's score `u` (higher = more uncertain).
    pub score: Vec<f64>,
    /// Whether `probs` are the head's own (`Some(true)`) or the classifier's (`Some(false)`);
    /// `None` for a stage written before the file said so.
    pub own_probabilities: Option<bool>,
}

impl HeadData {
    /// Reads `scores.parquet` (columns `label` and `score`) and `probs.safetensors` of a head
    /// stage directory.
    ///
    /// # Errors
    /// Unreadable files, missing columns or tensors, nulls, or shapes that disagree.
    pub fn load(dir: &Path) -> Result<Self> {
        let scores_path = dir.join(SCORES_FILE);
        let (labels, score) = crate::parquet::read_labels_and_scores(&scores_path)?;
        let probs_path = dir.join(PROBS_FILE);
        let bytes = std::fs::read(&probs_path).map_err(io(&probs_path))?;
        let st_err = |source| ReportError::Safetensors {
            path: probs_path.clone(),
            source,
        };
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(st_err)?;
        let t = st.tensor("probs").map_err(st_err)?;
        let invalid = |reason: String| ReportError::Invalid {
            path: probs_path.clone(),
            reason,
        };
        let (n, c) = match t.shape() {
            [n, c] => (*n, *c),
            s => return Err(invalid(format!("tensor probs has shape {s:?}, expected [N, C]"))),
        };
        if n != labels.len() {
            return Err(invalid(format!(
                "tensor probs has {n} rows but {} has {}",
                scores_path.display(),
                labels.len()
            )));
        }
        let probs: Vec<f64> = match t.dtype() {
            safetensors::Dtype::F64 => t
                .data()
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect(),
            safetensors::Dtype::F32 => t
                .data()
                .chunks_exact(4)
                .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
            d => return Err(invalid(format!("tensor probs has dtype {d:?}, expected F64 or F32"))),
        };
        if probs.len() != n * c {
            return Err(invalid("tensor probs: data does not match its shape".into()));
        }
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(st_err)?;
        let own_probabilities = match meta.metadata().as_ref().and_then(|m| m.get(PROBS_SOURCE_KEY)) {
            None => None,
            Some(v) if v == PROBS_FROM_HEAD => Some(true),
            Some(v) if v == PROBS_FROM_CLASSIFIER => Some(false),
            Some(v) => {
                return Err(invalid(format!(
                    "metadata {PROBS_SOURCE_KEY} is `{v}`, expected `{PROBS_FROM_HEAD}` or `{PROBS_FROM_CLASSIFIER}`"
                )));
            }
        };
        Ok(Self {
            labels,
            probs,
            num_classes: c,
            score,
            own_probabilities,
        })
    }

    /// The head's predictions as `ueb-metrics` reads them.
    ///
    /// # Errors
    /// Invalid probabilities or labels (see [`Predictions::from_probs`]).
    pub fn predictions(&self) -> std::result::Result<Predictions, ueb_metrics::MetricsError> {
        Predictions::from_probs(self.probs.as_slice(), self.num_classes, &self.labels)
    }
}

/// One metric of one head stage.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricValue {
    /// The §11 name.
    pub metric: String,
    /// The value; `None` when undefined.
    pub value: Option<f64>,
    /// Lower end of the bootstrap interval.
    pub ci_low: Option<f64>,
    /// Upper end of the bootstrap interval.
    pub ci_high: Option<f64>,
}

/// The metrics `ueb run` writes into `metrics.parquet` for one head stage: the error-detection
/// metrics of the head's score, then the calibration metrics of its probabilities, with
/// bootstrap intervals (seeded by the cell's `seed`) when `settings.bootstrap > 0`.
///
/// This is the one place that defines those rows; `ueb report` recomputes missing or stale
/// ones with it.
///
/// # Errors
/// Invalid probabilities, labels or scores.
pub fn head_metrics(
    data: &HeadData,
    settings: MetricSettings,
    seed: u64,
) -> std::result::Result<Vec<MetricValue>, ueb_metrics::MetricsError> {
    let pred = data.predictions()?;
    let cfg = ReportConfig {
        bins: settings.bins,
        bootstrap: (settings.bootstrap > 0).then(|| BootstrapConfig {
            resamples: settings.bootstrap,
            seed,
            ..Default::default()
        }),
    };
    // Under a neutral name: the built-in scores already use `sr`, `entropy` and `margin`.
    let report = Report::compute(
        &pred,
        &[NamedScore {
            name: "u",
            values: &data.score,
        }],
        &cfg,
    )?;
    let supplied = report
        .error_detection
        .last()
        .map(|s| s.entries.clone())
        .unwrap_or_default();
    Ok(supplied
        .iter()
        .chain(&report.calibration)
        .map(|e| {
            let (lo, hi) = match e.interval {
                Some(Ok(i)) => (Some(i.low), Some(i.high)),
                _ => (None, None),
            };
            MetricValue {
                metric: e.name.to_string(),
                value: e.value.ok(),
                ci_low: lo,
                ci_high: hi,
            }
        })
        .collect())
}

/// Rows of an existing `metrics.parquet`, by (cell, head), with the file's modification time.
#[derive(Debug, Clone, Default)]
pub struct StoredMetrics {
    /// When the file was written.
    pub modified: Option<SystemTime>,
    /// Rows by (cell, head).
    pub rows: HashMap<(CellKey, String), Vec<MetricValue>>,
}

impl StoredMetrics {
    /// Reads `metrics.parquet` of a results directory; an absent file gives no rows.
    ///
    /// # Errors
    /// An unreadable file or missing columns.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(METRICS_FILE);
        if !path.is_file() {
            return Ok(Self::default());
        }
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let mut rows: HashMap<(CellKey, String), Vec<MetricValue>> = HashMap::new();
        for (cell, head, value) in crate::parquet::read_metrics(&path)? {
            rows.entry((cell, head)).or_default().push(value);
        }
        Ok(Self { modified, rows })
    }

    /// The stored rows of a head stage, when the file is at least as new as its scores.
    pub fn fresh_for(&self, stage: &HeadStage) -> Option<&Vec<MetricValue>> {
        let fresh = match (self.modified, stage.modified) {
            (Some(m), Some(s)) => m >= s,
            _ => false,
        };
        if !fresh {
            return None;
        }
        self.rows.get(&(stage.cell.clone(), stage.head.clone()))
    }
}

/// The long-form metrics table (`backbone, dataset, seed, head, metric, value, ci_low,
/// ci_high`) of `rows`, in the given order.
///
/// # Errors
/// A polars error while building the frame.
pub fn long_frame(rows: &[crate::parquet::MetricRow]) -> Result<DataFrame> {
    let s = |f: &dyn Fn(&crate::parquet::MetricRow) -> String| rows.iter().map(f).collect::<Vec<String>>();
    let o = |f: &dyn Fn(&MetricValue) -> Option<f64>| rows.iter().map(|r| f(&r.2)).collect::<Vec<Option<f64>>>();
    let seed: Vec<i64> = rows
        .iter()
        .map(|r| i64::try_from(r.0.seed).unwrap_or(i64::MAX))
        .collect();
    DataFrame::new_infer_height(vec![
        Column::new("backbone".into(), s(&|r| r.0.backbone.clone())),
        Column::new("dataset".into(), s(&|r| r.0.dataset.clone())),
        Column::new("seed".into(), seed),
        Column::new("head".into(), s(&|r| r.1.clone())),
        Column::new("metric".into(), s(&|r| r.2.metric.clone())),
        Column::new("value".into(), o(&|m| m.value)),
        Column::new("ci_low".into(), o(&|m| m.ci_low)),
        Column::new("ci_high".into(), o(&|m| m.ci_high)),
    ])
    .map_err(pl("metrics table"))
}
