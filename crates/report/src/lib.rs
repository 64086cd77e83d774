//! `ueb report`: tables, figures and an HTML index of a results directory written by
//! `ueb run` (one or several shards).
//!
//! - **Tables** (`tables/<metric>.{md,tex,csv}`, and `tables/all.{md,tex}`): ROC-AUC × 100,
//!   PRR × 100, AURC × 100, ECE × 100, Brier, NLL; rows = heads, columns = backbone × dataset,
//!   cells = mean ± sample std over seeds, best per column in bold, average rank, and a `†`
//!   where the paired bootstrap test finds the best head better than the runner-up.
//! - **Figures** (`figures/<backbone>/<dataset>/seed-<k>/`, PNG and SVG): a reliability diagram
//!   per head, the risk–coverage curves of all heads, score histograms of correct vs wrong.
//! - **`index.html`**: the tables and figures on one static page.
//!
//! Metrics come from `metrics.parquet` where it is at least as new as a head stage's scores;
//! every other finished head stage (a shard that finished later, a run without the file) is
//! computed from its `scores.parquet` and `probs.safetensors` with [`head_metrics`], the same
//! function and settings (`plan.yaml`'s `metrics:`) as the runner's.

mod error;
pub mod figures;
pub mod font;
mod html;
pub mod parquet;
pub mod results;
pub mod stats;
pub mod tables;
mod text;

use std::path::{Path, PathBuf};

pub use error::{ReportError, Result};
pub use results::{CellKey, HeadData, Inventory, MetricSettings, MetricValue, PlanInfo, head_metrics, long_frame};
pub use tables::{MetricTable, Significance, TABLE_METRICS, TableMetric, TableOptions};

use crate::error::io;
use crate::figures::{ReliabilityFigure, RiskCoverageFigure, ScoreHistogramFigure, ScorePanel, write_figure};
use crate::results::{HeadStage, StoredMetrics};
use crate::stats::{Prepared, paired_test};

/// Which table formats to write (figures are always PNG and SVG).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Formats {
    /// Markdown tables.
    pub md: bool,
    /// LaTeX (booktabs) tables.
    pub tex: bool,
    /// CSV tables.
    pub csv: bool,
    /// `index.html`.
    pub html: bool,
}

impl Default for Formats {
    /// Every format.
    fn default() -> Self {
        Self {
            md: true,
            tex: true,
            csv: true,
            html: true,
        }
    }
}

impl Formats {
    /// Parses a comma-separated list of `md`, `tex`, `csv`, `html` (`markdown` and `latex` are
    /// accepted too).
    ///
    /// # Errors
    /// [`ReportError::UnknownFormat`] for any other word.
    pub fn parse(list: &str) -> Result<Self> {
        let mut f = Self {
            md: false,
            tex: false,
            csv: false,
            html: false,
        };
        for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word.to_ascii_lowercase().as_str() {
                "md" | "markdown" => f.md = true,
                "tex" | "latex" => f.tex = true,
                "csv" => f.csv = true,
                "html" => f.html = true,
                _ => return Err(ReportError::UnknownFormat(word.to_string())),
            }
        }
        Ok(f)
    }
}

/// Everything that [`write_report_with`] can be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOptions {
    /// Table formats.
    pub formats: Formats,
    /// Table options (bootstrap intervals in the cells).
    pub tables: TableOptions,
    /// Draw the figures.
    pub figures: bool,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            formats: Formats::default(),
            tables: TableOptions::default(),
            figures: true,
        }
    }
}

/// Kinds of figure, for the index page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FigureKind {
    /// Risk–coverage curves of every head of a cell.
    RiskCoverage,
    /// Score histograms of every head of a cell.
    Scores,
    /// The reliability diagram of one head.
    Reliability,
}

/// One figure written (both formats).
#[derive(Debug, Clone, PartialEq)]
pub struct FigureRef {
    /// Its cell.
    pub cell: CellKey,
    /// What it shows.
    pub kind: FigureKind,
    /// The head, for per-head figures.
    pub head: Option<String>,
    /// Path relative to the results directory, without extension (`.png` and `.svg` exist).
    pub stem: PathBuf,
    /// Size in pixels.
    pub size: (u32, u32),
}

/// What [`write_report`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportSummary {
    /// Files written (tables, figures, index), absolute or relative as the directory was given.
    pub written: Vec<PathBuf>,
    /// Head stages found (all shards).
    pub head_stages: usize,
    /// Head stages whose metrics were read from `metrics.parquet`.
    pub from_metrics_file: usize,
    /// Head stages whose metrics were computed from their scores (no fresh `metrics.parquet` row).
    pub computed: usize,
    /// `backbone/dataset/seed-k/head` of the plan with no finished head stage.
    pub missing: Vec<String>,
    /// Significance tests run (one per metric table and column with two heads or more).
    pub significance: Vec<Significance>,
    /// Figures written.
    pub figures: Vec<FigureRef>,
}

/// Writes tables in `formats` (and `index.html` when `formats.html`) and every figure for the
/// results directory `results_dir`, merging every shard present. `ueb run` calls this at the end.
///
/// # Errors
/// See [`write_report_with`].
pub fn write_report(results_dir: &Path, formats: Formats) -> Result<ReportSummary> {
    write_report_with(
        results_dir,
        &ReportOptions {
            formats,
            ..ReportOptions::default()
        },
    )
}

/// One loaded head stage.
struct Loaded<'a> {
    stage: &'a HeadStage,
    prepared: Prepared,
    metrics: Vec<MetricValue>,
    /// Whether the probabilities are the head's own (`Some(false)`: the classifier's).
    own_probabilities: Option<bool>,
}

/// The file stem of a cell's reliability diagram of the classifier's probabilities: `_` keeps
/// it apart from every `reliability-<head>`.
pub const CLASSIFIER_RELIABILITY: &str = "reliability_classifier";

fn value_of(metrics: &[MetricValue], name: &str) -> Option<f64> {
    metrics.iter().find(|m| m.metric == name).and_then(|m| m.value)
}

/// Figures of one cell (one seed of one column).
fn cell_figures(
    dir: &Path,
    cell: &CellKey,
    loaded: &[&Loaded<'_>],
    bins: usize,
    out: &mut Vec<FigureRef>,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    let rel = PathBuf::from("figures").join(cell.rel_dir());
    let cell_title = format!("{} / {} / seed {}", cell.backbone, cell.dataset, cell.seed);
    let mut push = |kind, head: Option<String>, stem: PathBuf, size, paths: [PathBuf; 3]| {
        written.extend(paths);
        out.push(FigureRef {
            cell: cell.clone(),
            kind,
            head,
            stem,
            size,
        });
    };
    let metric_err = |l: &Loaded<'_>| {
        let path = l.stage.dir.clone();
        move |source| ReportError::Metrics { path, source }
    };
    // Risk–coverage.
    let curves: Vec<figures::CurveInput<'_>> = loaded
        .iter()
        .map(|l| {
            (
                l.stage.head.as_str(),
                l.prepared.errors.as_slice(),
                l.prepared.score.as_slice(),
                value_of(&l.metrics, "aurc"),
            )
        })
        .collect();
    if let Some(first) = loaded.first() {
        let fig =
            RiskCoverageFigure::new(format!("Risk–coverage: {cell_title}"), &curves).map_err(metric_err(first))?;
        let stem = rel.join("risk-coverage");
        let paths = write_figure(&fig, &dir.join(&stem))?;
        push(FigureKind::RiskCoverage, None, stem, figures::Figure::size(&fig), paths);
    }
    // Score histograms.
    let panels: Vec<ScorePanel> = loaded
        .iter()
        .map(|l| {
            let auc = value_of(&l.metrics, "roc_auc").map_or_else(|| "undefined".to_string(), |v| format!("{v:.3}"));
            ScorePanel::new(
                format!("{} (ROC-AUC {auc})", l.stage.head),
                &l.prepared.errors,
                &l.prepared.score,
            )
        })
        .collect();
    if !panels.is_empty() {
        let fig = ScoreHistogramFigure::new(format!("Scores of correct vs wrong predictions: {cell_title}"), panels);
        let stem = rel.join("scores");
        let paths = write_figure(&fig, &dir.join(&stem))?;
        push(FigureKind::Scores, None, stem, figures::Figure::size(&fig), paths);
    }
    // Reliability diagrams: one per head with probabilities of its own, and one for the
    // classifier's probabilities, which the heads that leave them unchanged share (drawing it
    // under each of their names would present the classifier's calibration as theirs).
    let shared: Vec<&&Loaded<'_>> = loaded.iter().filter(|l| l.own_probabilities == Some(false)).collect();
    if let Some(first) = shared.first() {
        let names: Vec<&str> = shared.iter().map(|l| l.stage.head.as_str()).collect();
        let fig = ReliabilityFigure::new(
            format!(
                "Reliability of the classifier's probabilities (kept by {}): {cell_title}",
                names.join(", ")
            ),
            &first.prepared.pred,
            bins,
        )
        .map_err(metric_err(first))?;
        let stem = rel.join(CLASSIFIER_RELIABILITY);
        let paths = write_figure(&fig, &dir.join(&stem))?;
        push(FigureKind::Reliability, None, stem, figures::Figure::size(&fig), paths);
    }
    for l in loaded.iter().filter(|l| l.own_probabilities != Some(false)) {
        let fig = ReliabilityFigure::new(
            format!("Reliability of {}'s probabilities: {cell_title}", l.stage.head),
            &l.prepared.pred,
            bins,
        )
        .map_err(metric_err(l))?;
        let stem = rel.join(format!("reliability-{}", l.stage.head));
        let paths = write_figure(&fig, &dir.join(&stem))?;
        push(
            FigureKind::Reliability,
            Some(l.stage.head.clone()),
            stem,
            figures::Figure::size(&fig),
            paths,
        );
    }
    Ok(())
}

/// The best and runner-up heads of one column for `metric`, by mean over seeds.
fn best_two<'a>(loaded: &[Loaded<'a>], heads: &[String], metric: &TableMetric) -> Option<(String, String)> {
    let mut means: Vec<(f64, &String)> = heads
        .iter()
        .filter_map(|h| {
            let v: Vec<f64> = loaded
                .iter()
                .filter(|l| l.stage.head == *h)
                .filter_map(|l| value_of(&l.metrics, metric.name))
                .collect();
            tables::mean_std(&v).map(|(m, _)| (m, h))
        })
        .collect();
    let higher = metric.higher_is_better();
    means.sort_by(|a, b| {
        if higher {
            b.0.total_cmp(&a.0)
        } else {
            a.0.total_cmp(&b.0)
        }
    });
    match means.as_slice() {
        [first, second, ..] if first.0 != second.0 => Some((first.1.clone(), second.1.clone())),
        _ => None,
    }
}

fn write_file(path: &Path, text: &str, written: &mut Vec<PathBuf>) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    std::fs::write(path, text).map_err(io(path))?;
    written.push(path.to_path_buf());
    Ok(())
}

/// [`write_report`] with every option.
///
/// # Errors
/// No finished head stage; unreadable or invalid files (naming them); a figure that cannot be
/// drawn (no font: the error says where it looked and how to install one); a write error.
pub fn write_report_with(results_dir: &Path, options: &ReportOptions) -> Result<ReportSummary> {
    let inv = Inventory::scan(results_dir)?;
    let stored = StoredMetrics::read(results_dir)?;
    let settings = inv.metrics;
    let mut rows: Vec<(CellKey, String, MetricValue)> = Vec::new();
    let mut significance = Vec::new();
    let mut figures_out = Vec::new();
    let mut written = Vec::new();
    let (mut from_file, mut computed) = (0usize, 0usize);
    // (head, whether its probabilities are its own) of every stage.
    let mut own: Vec<(String, Option<bool>)> = Vec::new();

    for (backbone, dataset) in &inv.columns {
        let stages: Vec<&HeadStage> = inv
            .stages
            .iter()
            .filter(|s| s.cell.backbone == *backbone && s.cell.dataset == *dataset)
            .collect();
        let mut loaded: Vec<Loaded<'_>> = Vec::with_capacity(stages.len());
        for stage in stages {
            let data = HeadData::load(&stage.dir)?;
            own.push((stage.head.clone(), data.own_probabilities));
            let metric_err = |source| ReportError::Metrics {
                path: stage.dir.clone(),
                source,
            };
            let metrics = match stored.fresh_for(stage) {
                Some(m) => {
                    from_file += 1;
                    m.clone()
                }
                None => {
                    computed += 1;
                    head_metrics(&data, settings, stage.cell.seed).map_err(metric_err)?
                }
            };
            let prepared = Prepared::new(&data).map_err(metric_err)?;
            for m in &metrics {
                rows.push((stage.cell.clone(), stage.head.clone(), m.clone()));
            }
            loaded.push(Loaded {
                stage,
                prepared,
                metrics,
                own_probabilities: data.own_probabilities,
            });
        }
        let mut seeds: Vec<u64> = loaded.iter().map(|l| l.stage.cell.seed).collect();
        seeds.dedup();
        if options.figures {
            for &seed in &seeds {
                let cell = CellKey {
                    backbone: backbone.clone(),
                    dataset: dataset.clone(),
                    seed,
                };
                let in_cell: Vec<&Loaded<'_>> = loaded.iter().filter(|l| l.stage.cell.seed == seed).collect();
                cell_figures(
                    results_dir,
                    &cell,
                    &in_cell,
                    settings.bins,
                    &mut figures_out,
                    &mut written,
                )?;
            }
        }
        if settings.bootstrap > 0 {
            for metric in &TABLE_METRICS {
                let Some((best, runner_up)) = best_two(&loaded, &inv.heads, metric) else {
                    continue;
                };
                let (mut a, mut b) = (Vec::new(), Vec::new());
                for &seed in &seeds {
                    let find = |h: &str| {
                        loaded
                            .iter()
                            .find(|l| l.stage.cell.seed == seed && l.stage.head == h)
                            .map(|l| &l.prepared)
                    };
                    if let (Some(x), Some(y)) = (find(&best), find(&runner_up)) {
                        a.push(x);
                        b.push(y);
                    }
                }
                if let Some(t) = paired_test(metric.name, &a, &b, settings.bins, settings.bootstrap, 0) {
                    significance.push(Significance {
                        metric: metric.name.to_string(),
                        backbone: backbone.clone(),
                        dataset: dataset.clone(),
                        best,
                        runner_up,
                        difference: t.difference,
                        p_value: t.p_value,
                    });
                }
            }
        }
    }

    let df = long_frame(&rows)?;
    // Heads whose every stage says its probabilities are the classifier's.
    let classifier_heads: Vec<String> = inv
        .heads
        .iter()
        .filter(|h| {
            let mine: Vec<Option<bool>> = own.iter().filter(|(x, _)| x == *h).map(|(_, o)| *o).collect();
            !mine.is_empty() && mine.iter().all(|o| *o == Some(false))
        })
        .cloned()
        .collect();
    let mut tables = Vec::new();
    for metric in TABLE_METRICS {
        let t = MetricTable::from_long(
            &df,
            metric,
            &significance,
            settings.bootstrap,
            options.tables,
            &classifier_heads,
        )?;
        if !t.heads.is_empty() {
            tables.push(t);
        }
    }
    let tdir = results_dir.join("tables");
    let f = options.formats;
    if f.md {
        let mut all = String::new();
        for t in &tables {
            let md = t.markdown();
            write_file(&tdir.join(format!("{}.md", t.metric.name)), &md, &mut written)?;
            all.push_str(&md);
            all.push('\n');
        }
        write_file(&tdir.join("all.md"), &all, &mut written)?;
    }
    if f.tex {
        let mut all = String::new();
        for t in &tables {
            let tex = t.latex();
            write_file(&tdir.join(format!("{}.tex", t.metric.name)), &tex, &mut written)?;
            all.push_str(&tex);
            all.push('\n');
        }
        write_file(&tdir.join("all.tex"), &all, &mut written)?;
    }
    if f.csv {
        for t in &tables {
            write_file(&tdir.join(format!("{}.csv", t.metric.name)), &t.csv()?, &mut written)?;
        }
    }
    let summary = ReportSummary {
        written: Vec::new(),
        head_stages: inv.stages.len(),
        from_metrics_file: from_file,
        computed,
        missing: inv.missing.clone(),
        significance,
        figures: figures_out,
    };
    if f.html {
        let page = html::index(results_dir, &inv, &tables, &summary, f);
        write_file(&results_dir.join("index.html"), &page, &mut written)?;
    }
    Ok(ReportSummary { written, ..summary })
}
