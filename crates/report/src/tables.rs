//! Per-metric tables: rows = heads, columns = backbone × dataset, cells = mean ± std over
//! seeds, best per column in bold, an average-rank column, and a marker where the paired
//! bootstrap test says the best head beats the runner-up. Rendered as Markdown, LaTeX
//! (booktabs), CSV (through polars) and HTML.

use std::fmt::Write as _;

use polars::prelude::*;

use crate::error::{Result, pl};

/// A metric shown as a table, with how its values are displayed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TableMetric {
    /// The §11 name (the `metric` column of the long table).
    pub name: &'static str,
    /// Human-readable title (plain text).
    pub title: &'static str,
    /// Title in LaTeX.
    pub title_tex: &'static str,
    /// Values are multiplied by this before display.
    pub scale: f64,
    /// Decimals shown.
    pub decimals: usize,
}

impl TableMetric {
    /// Whether the metric is computed from the head's probabilities (the calibration group:
    /// ECE, Brier, NLL, …): a head that leaves the classifier's probabilities as they are shows
    /// the classifier's value.
    pub fn from_probabilities(&self) -> bool {
        ueb_metrics::CALIBRATION_METRICS.contains(&self.name)
    }

    /// Whether a larger value is better (ueb-metrics' rule).
    pub fn higher_is_better(&self) -> bool {
        ueb_metrics::higher_is_better(self.name)
    }
}

/// The tables of a report, in order: ROC-AUC × 100 first, then PRR, AURC, ECE, Brier, NLL.
pub const TABLE_METRICS: [TableMetric; 7] = [
    TableMetric {
        name: "roc_auc",
        title: "ROC-AUC × 100",
        title_tex: "ROC-AUC $\\times 100$",
        scale: 100.0,
        decimals: 2,
    },
    TableMetric {
        name: "prr",
        title: "PRR × 100",
        title_tex: "PRR $\\times 100$",
        scale: 100.0,
        decimals: 2,
    },
    TableMetric {
        name: "aurc",
        title: "AURC × 100",
        title_tex: "AURC $\\times 100$",
        scale: 100.0,
        decimals: 2,
    },
    TableMetric {
        name: "ece",
        title: "ECE × 100",
        title_tex: "ECE $\\times 100$",
        scale: 100.0,
        decimals: 2,
    },
    // The score read as an error probability: ECE of the confidence 1 − u against correctness.
    // A head that does not change the probabilities (sr, mahalanobis, adue, alien) shows the
    // classifier's ECE in the ECE table; this table is its own (undefined when u leaves [0, 1]).
    TableMetric {
        name: "ece_score",
        title: "ECE of 1 − u as P(correct) × 100",
        title_tex: "ECE of $1-u$ as $P(\\text{correct}) \\times 100$",
        scale: 100.0,
        decimals: 2,
    },
    TableMetric {
        name: "brier",
        title: "Brier",
        title_tex: "Brier",
        scale: 1.0,
        decimals: 4,
    },
    TableMetric {
        name: "nll",
        title: "NLL",
        title_tex: "NLL",
        scale: 1.0,
        decimals: 4,
    },
];

/// The outcome of the paired bootstrap test of the best head against the runner-up in one
/// column of one metric's table.
#[derive(Debug, Clone, PartialEq)]
pub struct Significance {
    /// The §11 metric name.
    pub metric: String,
    /// Backbone of the column.
    pub backbone: String,
    /// Dataset of the column.
    pub dataset: String,
    /// The best head (by mean over seeds).
    pub best: String,
    /// The runner-up.
    pub runner_up: String,
    /// Mean over seeds of best − runner-up, on the full test sets (unscaled).
    pub difference: f64,
    /// Two-sided p-value of the paired bootstrap test.
    pub p_value: f64,
}

/// Significance level of the marker.
pub const SIGNIFICANCE_LEVEL: f64 = 0.05;

/// Table options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableOptions {
    /// Also show the mean over seeds of the per-seed bootstrap intervals.
    pub ci: bool,
}

/// One table cell: statistics of one head in one column over seeds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellStats {
    /// Mean of the defined per-seed values (unscaled).
    pub mean: f64,
    /// Sample standard deviation (n − 1) of the defined values; `None` with one value.
    pub std: Option<f64>,
    /// Seeds with a defined value.
    pub n: usize,
    /// Mean over seeds of the bootstrap interval ends, when every defined seed has one.
    pub ci: Option<(f64, f64)>,
}

/// One metric's table.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricTable {
    /// The metric.
    pub metric: TableMetric,
    /// Row names, in order.
    pub heads: Vec<String>,
    /// Column (backbone, dataset) pairs, in order.
    pub columns: Vec<(String, String)>,
    /// `cells[h][c]`: `None` when the head has no defined value in the column.
    pub cells: Vec<Vec<Option<CellStats>>>,
    /// Seeds present in each column (any head).
    pub seeds: Vec<usize>,
    /// `best[h][c]`: the head's mean is the column's best (ties all bold).
    pub best: Vec<Vec<bool>>,
    /// `ranks[h][c]`: rank in the column (1 = best, ties share the mean rank).
    pub ranks: Vec<Vec<Option<f64>>>,
    /// Mean rank over the columns where the head is ranked.
    pub avg_rank: Vec<Option<f64>>,
    /// `marked[c]`: the row whose best cell carries the significance marker.
    pub marked: Vec<Option<usize>>,
    /// `classifier[h]`: in a table of a metric of the probabilities, the head leaves the
    /// classifier's probabilities unchanged, so its cells are the classifier's value: shown in
    /// italics, neither bold nor ranked.
    pub classifier: Vec<bool>,
    /// Resamples of the significance test (for the caption; 0 = no test ran).
    pub resamples: usize,
    /// Options.
    pub options: TableOptions,
}

/// The long table's rows for one metric, as plain vectors.
struct LongRows {
    backbone: Vec<String>,
    dataset: Vec<String>,
    seed: Vec<i64>,
    head: Vec<String>,
    value: Vec<Option<f64>>,
    ci_low: Vec<Option<f64>>,
    ci_high: Vec<Option<f64>>,
}

fn strings(df: &DataFrame, name: &str) -> PolarsResult<Vec<String>> {
    Ok(df
        .column(name)?
        .str()?
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect())
}

fn floats(df: &DataFrame, name: &str) -> PolarsResult<Vec<Option<f64>>> {
    Ok(df.column(name)?.cast(&DataType::Float64)?.f64()?.iter().collect())
}

fn long_rows(df: &DataFrame, metric: &str) -> PolarsResult<LongRows> {
    let mask = df.column("metric")?.str()?.equal(metric);
    let f = df.filter(&mask)?;
    Ok(LongRows {
        backbone: strings(&f, "backbone")?,
        dataset: strings(&f, "dataset")?,
        seed: f
            .column("seed")?
            .cast(&DataType::Int64)?
            .i64()?
            .iter()
            .map(Option::unwrap_or_default)
            .collect(),
        head: strings(&f, "head")?,
        value: floats(&f, "value")?,
        ci_low: floats(&f, "ci_low")?,
        ci_high: floats(&f, "ci_high")?,
    })
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) -> usize {
    match v.iter().position(|y| *y == x) {
        Some(p) => p,
        None => {
            v.push(x);
            v.len() - 1
        }
    }
}

/// Mean and sample standard deviation (n − 1; `None` for one value).
pub fn mean_std(v: &[f64]) -> Option<(f64, Option<f64>)> {
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let std = (v.len() > 1).then(|| (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)).sqrt());
    Some((mean, std))
}

/// Ranks of `values` (1 = best; `higher` says which direction is better); ties share the mean
/// of their ranks; `None` values are not ranked.
pub fn ranks(values: &[Option<f64>], higher: bool) -> Vec<Option<f64>> {
    values
        .iter()
        .map(|v| {
            let v = (*v)?;
            let (mut better, mut equal) = (0usize, 0usize);
            for w in values.iter().flatten() {
                if *w == v {
                    equal += 1;
                } else if (higher && *w > v) || (!higher && *w < v) {
                    better += 1;
                }
            }
            // Ranks better+1 ..= better+equal, averaged.
            Some(better as f64 + (equal as f64 + 1.0) / 2.0)
        })
        .collect()
}

impl MetricTable {
    /// Builds the table of `metric` from a long-form frame (`backbone, dataset, seed, head,
    /// metric, value, ci_low, ci_high`). Rows and columns keep their order of first appearance.
    ///
    /// # Errors
    /// A frame without those columns or with other types.
    pub fn from_long(
        df: &DataFrame,
        metric: TableMetric,
        significance: &[Significance],
        resamples: usize,
        options: TableOptions,
        classifier_heads: &[String],
    ) -> Result<Self> {
        let rows = long_rows(df, metric.name).map_err(pl("metrics table"))?;
        let (mut heads, mut columns): (Vec<String>, Vec<(String, String)>) = (Vec::new(), Vec::new());
        // values[h][c] = per-seed (value, ci)
        type SeedValue = (Option<f64>, Option<(f64, f64)>);
        let mut values: Vec<Vec<Vec<SeedValue>>> = Vec::new();
        let mut seeds: Vec<Vec<i64>> = Vec::new();
        for i in 0..rows.head.len() {
            let h = push_unique(&mut heads, rows.head[i].clone());
            let c = push_unique(&mut columns, (rows.backbone[i].clone(), rows.dataset[i].clone()));
            if values.len() <= h {
                values.resize_with(h + 1, Vec::new);
            }
            if seeds.len() <= c {
                seeds.resize_with(c + 1, Vec::new);
            }
            push_unique(&mut seeds[c], rows.seed[i]);
            let ci = match (rows.ci_low[i], rows.ci_high[i]) {
                (Some(l), Some(u)) => Some((l, u)),
                _ => None,
            };
            let row = &mut values[h];
            if row.len() <= c {
                row.resize_with(c + 1, Vec::new);
            }
            row[c].push((rows.value[i], ci));
        }
        let cells: Vec<Vec<Option<CellStats>>> = (0..heads.len())
            .map(|h| {
                (0..columns.len())
                    .map(|c| {
                        let v = values.get(h).and_then(|r| r.get(c))?;
                        let defined: Vec<&SeedValue> = v.iter().filter(|x| x.0.is_some()).collect();
                        let vals: Vec<f64> = defined.iter().filter_map(|x| x.0).collect();
                        let (mean, std) = mean_std(&vals)?;
                        let cis: Vec<(f64, f64)> = defined.iter().filter_map(|x| x.1).collect();
                        let ci = (cis.len() == defined.len()).then(|| {
                            let k = cis.len() as f64;
                            (
                                cis.iter().map(|x| x.0).sum::<f64>() / k,
                                cis.iter().map(|x| x.1).sum::<f64>() / k,
                            )
                        });
                        Some(CellStats {
                            mean,
                            std,
                            n: vals.len(),
                            ci,
                        })
                    })
                    .collect()
            })
            .collect();
        let higher = metric.higher_is_better();
        let classifier: Vec<bool> = heads
            .iter()
            .map(|h| metric.from_probabilities() && classifier_heads.contains(h))
            .collect();
        let mut best = vec![vec![false; columns.len()]; heads.len()];
        let mut rank_table = vec![vec![None; columns.len()]; heads.len()];
        for c in 0..columns.len() {
            // The classifier's value repeated under a head's name is not that head's result.
            let col: Vec<Option<f64>> = cells
                .iter()
                .zip(&classifier)
                .map(|(r, &cl)| if cl { None } else { r[c].map(|s| s.mean) })
                .collect();
            for (h, r) in ranks(&col, higher).into_iter().enumerate() {
                rank_table[h][c] = r;
            }
            let top = col.iter().flatten().copied().reduce(
                |a, b| {
                    if (higher && b > a) || (!higher && b < a) { b } else { a }
                },
            );
            for h in 0..heads.len() {
                best[h][c] = top.is_some() && col[h] == top;
            }
        }
        let avg_rank = rank_table
            .iter()
            .map(|r| {
                let v: Vec<f64> = r.iter().flatten().copied().collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
            })
            .collect();
        let marked = columns
            .iter()
            .enumerate()
            .map(|(c, (b, d))| {
                let s = significance
                    .iter()
                    .find(|s| s.metric == metric.name && s.backbone == *b && s.dataset == *d)?;
                let h = heads.iter().position(|x| *x == s.best)?;
                let unique_best = best.iter().filter(|r| r[c]).count() == 1;
                (s.p_value < SIGNIFICANCE_LEVEL && best[h][c] && unique_best).then_some(h)
            })
            .collect();
        Ok(Self {
            metric,
            heads,
            columns,
            cells,
            seeds: seeds.iter().map(Vec::len).collect(),
            best,
            ranks: rank_table,
            avg_rank,
            marked,
            classifier,
            resamples,
            options,
        })
    }

    fn fmt(&self, x: f64) -> String {
        format!("{:.*}", self.metric.decimals, x * self.metric.scale)
    }

    /// The cell's text without markup: `mean ± std`, `[lo, hi]` when asked, `(n=k)` when only
    /// k of the column's seeds are defined; `None` for an undefined cell.
    fn cell_parts(&self, h: usize, c: usize, pm: &str) -> Option<(String, String)> {
        let s = self.cells[h][c]?;
        let mut main = self.fmt(s.mean);
        if let Some(sd) = s.std {
            main.push_str(pm);
            main.push_str(&self.fmt(sd));
        }
        let mut extra = String::new();
        if self.options.ci
            && let Some((lo, hi)) = s.ci
        {
            extra.push_str(&format!(" [{}, {}]", self.fmt(lo), self.fmt(hi)));
        }
        if s.n < self.seeds[c] {
            extra.push_str(&format!(" (n={})", s.n));
        }
        Some((main, extra))
    }

    fn direction(&self) -> &'static str {
        if self.metric.higher_is_better() {
            "higher is better"
        } else {
            "lower is better"
        }
    }

    fn legend(&self) -> String {
        let mut s = String::from(
            "Mean ± sample std (n − 1) over seeds; best per column in bold; avg. rank over columns (1 = best, \
             ties share the mean rank); – undefined; (n=k): only k seeds defined.",
        );
        if self.options.ci {
            s.push_str(" [lo, hi]: mean over seeds of the per-seed 95% bootstrap intervals.");
        }
        if self.classifier.iter().any(|&c| c) {
            s.push_str(
                " Italic: the head leaves the classifier's probabilities unchanged, so the value is the \
                 classifier's (not ranked); the ece_score table holds such a head's own calibration.",
            );
        }
        if self.resamples > 0 {
            s.push_str(&format!(
                " †: the paired bootstrap test ({} resamples of the test set, shared by all seeds) finds the best \
                 head better than the runner-up (p < {SIGNIFICANCE_LEVEL}).",
                self.resamples
            ));
        }
        s
    }

    fn avg_rank_text(&self, h: usize) -> String {
        self.avg_rank[h].map_or_else(|| "–".to_string(), |r| format!("{r:.2}"))
    }

    fn best_avg_rank(&self, h: usize) -> bool {
        let best = self.avg_rank.iter().flatten().copied().reduce(f64::min);
        best.is_some() && self.avg_rank[h] == best
    }

    /// GitHub-flavoured Markdown, with a heading and a legend line.
    pub fn markdown(&self) -> String {
        let mut s = format!("### {} ({})\n\n| head |", self.metric.title, self.direction());
        for (b, d) in &self.columns {
            let _ = write!(s, " {} / {} |", md_escape(b), md_escape(d));
        }
        s.push_str(" avg. rank |\n|:---|");
        s.push_str(&"---:|".repeat(self.columns.len() + 1));
        s.push('\n');
        for (h, head) in self.heads.iter().enumerate() {
            let _ = write!(s, "| {} |", md_escape(head));
            for c in 0..self.columns.len() {
                match self.cell_parts(h, c, " ± ") {
                    None => s.push_str(" – |"),
                    Some((main, extra)) => {
                        let main = if self.best[h][c] {
                            format!("**{main}**")
                        } else if self.classifier[h] {
                            format!("*{main}*")
                        } else {
                            main
                        };
                        let mark = if self.marked[c] == Some(h) { "†" } else { "" };
                        let _ = write!(s, " {main}{mark}{extra} |");
                    }
                }
            }
            let r = self.avg_rank_text(h);
            let r = if self.best_avg_rank(h) { format!("**{r}**") } else { r };
            let _ = writeln!(s, " {r} |");
        }
        let _ = writeln!(s, "\n{}", self.legend());
        s
    }

    /// A LaTeX `table` with a booktabs `tabular` (needs `\usepackage{booktabs}`): backbones
    /// span their datasets in a first header row.
    pub fn latex(&self) -> String {
        let n = self.columns.len();
        let mut s = String::from("% Generated by `ueb report`; needs \\usepackage{booktabs}.\n");
        s.push_str("\\begin{table}[t]\n\\centering\n");
        let _ = writeln!(
            s,
            "\\caption{{{} ({}). {}}}",
            self.metric.title_tex,
            self.direction(),
            tex_text(&self.legend())
        );
        let _ = writeln!(s, "\\label{{tab:{}}}", self.metric.name.replace('_', "-"));
        let _ = writeln!(s, "\\begin{{tabular}}{{l{}c}}\n\\toprule", "c".repeat(n));
        // Backbone spans.
        let mut spans: Vec<(String, usize, usize)> = Vec::new(); // (backbone, first col, count)
        for (c, (b, _)) in self.columns.iter().enumerate() {
            match spans.last_mut() {
                Some((last, _, k)) if *last == *b => *k += 1,
                _ => spans.push((b.clone(), c, 1)),
            }
        }
        s.push_str(" &");
        for (b, _, k) in &spans {
            let _ = write!(s, " \\multicolumn{{{k}}}{{c}}{{{}}} &", tex_escape(b));
        }
        s.push_str(" \\\\\n");
        for (_, first, k) in &spans {
            let _ = write!(s, "\\cmidrule(lr){{{}-{}}} ", first + 2, first + k + 1);
        }
        s.push_str("\nHead");
        for (_, d) in &self.columns {
            let _ = write!(s, " & {}", tex_escape(d));
        }
        s.push_str(" & Avg.\\ rank \\\\\n\\midrule\n");
        for (h, head) in self.heads.iter().enumerate() {
            s.push_str(&tex_escape(head));
            for c in 0..n {
                match self.cell_parts(h, c, " \\pm ") {
                    None => s.push_str(" & --"),
                    Some((main, extra)) => {
                        let main = if self.best[h][c] {
                            format!("$\\mathbf{{{main}}}$")
                        } else if self.classifier[h] {
                            format!("\\textit{{${main}$}}")
                        } else {
                            format!("${main}$")
                        };
                        let mark = if self.marked[c] == Some(h) { "$^\\dagger$" } else { "" };
                        let _ = write!(s, " & {main}{mark}{}", tex_escape(&extra));
                    }
                }
            }
            let r = self.avg_rank_text(h).replace('–', "--");
            let r = if self.best_avg_rank(h) {
                format!("\\textbf{{{r}}}")
            } else {
                r
            };
            let _ = writeln!(s, " & {r} \\\\");
        }
        s.push_str("\\bottomrule\n\\end{tabular}\n\\end{table}\n");
        s
    }

    /// The table as a polars frame: `head`, `classifier_probabilities` (see
    /// [`MetricTable::classifier`]), then per column `<backbone>/<dataset> mean`,
    /// `… std`, `… n` (and `… ci_low`, `… ci_high` when asked), `… best`, `… significant`,
    /// then `avg_rank`. Values are on the display scale (e.g. ROC-AUC × 100), unrounded.
    ///
    /// # Errors
    /// A polars error while building the frame.
    pub fn frame(&self) -> Result<DataFrame> {
        let scale = self.metric.scale;
        let mut cols = vec![
            Column::new("head".into(), self.heads.clone()),
            Column::new("classifier_probabilities".into(), self.classifier.clone()),
        ];
        for (c, (b, d)) in self.columns.iter().enumerate() {
            let name = |what: &str| PlSmallStr::from(format!("{b}/{d} {what}"));
            let get = |f: &dyn Fn(&CellStats) -> Option<f64>| -> Vec<Option<f64>> {
                self.cells.iter().map(|r| r[c].as_ref().and_then(f)).collect()
            };
            cols.push(Column::new(name("mean"), get(&|s| Some(s.mean * scale))));
            cols.push(Column::new(name("std"), get(&|s| s.std.map(|x| x * scale))));
            let n: Vec<u32> = self
                .cells
                .iter()
                .map(|r| r[c].map_or(0, |s| u32::try_from(s.n).unwrap_or(u32::MAX)))
                .collect();
            cols.push(Column::new(name("n"), n));
            if self.options.ci {
                cols.push(Column::new(name("ci_low"), get(&|s| s.ci.map(|x| x.0 * scale))));
                cols.push(Column::new(name("ci_high"), get(&|s| s.ci.map(|x| x.1 * scale))));
            }
            let best: Vec<bool> = self.best.iter().map(|r| r[c]).collect();
            cols.push(Column::new(name("best"), best));
            let sig: Vec<bool> = (0..self.heads.len()).map(|h| self.marked[c] == Some(h)).collect();
            cols.push(Column::new(name("significant"), sig));
        }
        cols.push(Column::new("avg_rank".into(), self.avg_rank.clone()));
        DataFrame::new_infer_height(cols).map_err(pl(format!("table {}", self.metric.name)))
    }

    /// CSV of [`MetricTable::frame`], written by polars.
    ///
    /// # Errors
    /// A polars error.
    pub fn csv(&self) -> Result<String> {
        let mut df = self.frame()?;
        let mut buf = Vec::new();
        CsvWriter::new(&mut buf)
            .finish(&mut df)
            .map_err(pl(format!("table {}", self.metric.name)))?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// An HTML `<table>` (with a caption and the legend) for the index page.
    pub fn html(&self) -> String {
        let mut s = format!(
            "<table class=\"metric\" id=\"table-{}\">\n<caption>{} <span class=\"dir\">({})</span></caption>\n<thead><tr><th>head</th>",
            self.metric.name,
            html_escape(self.metric.title),
            self.direction()
        );
        for (b, d) in &self.columns {
            let _ = write!(s, "<th>{}<br>{}</th>", html_escape(b), html_escape(d));
        }
        s.push_str("<th>avg. rank</th></tr></thead>\n<tbody>\n");
        for (h, head) in self.heads.iter().enumerate() {
            let _ = write!(s, "<tr><th>{}</th>", html_escape(head));
            for c in 0..self.columns.len() {
                match self.cell_parts(h, c, " ± ") {
                    None => s.push_str("<td>–</td>"),
                    Some((main, extra)) => {
                        let main = if self.best[h][c] {
                            format!("<b>{main}</b>")
                        } else if self.classifier[h] {
                            format!("<i>{main}</i>")
                        } else {
                            main
                        };
                        let mark = if self.marked[c] == Some(h) {
                            "<sup>†</sup>"
                        } else {
                            ""
                        };
                        let extra = if extra.is_empty() {
                            String::new()
                        } else {
                            format!("<span class=\"extra\">{}</span>", html_escape(&extra))
                        };
                        let _ = write!(s, "<td>{main}{mark}{extra}</td>");
                    }
                }
            }
            let r = self.avg_rank_text(h);
            let r = if self.best_avg_rank(h) {
                format!("<b>{r}</b>")
            } else {
                r
            };
            let _ = writeln!(s, "<td>{r}</td></tr>");
        }
        let _ = write!(
            s,
            "</tbody>\n</table>\n<p class=\"legend\">{}</p>\n",
            html_escape(&self.legend())
        );
        s
    }
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('*', "\\*").replace('_', "\\_")
}

/// Escapes LaTeX's special characters in plain text.
pub fn tex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(ch);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            _ => out.push(ch),
        }
    }
    out
}

/// Plain text with the legend's Unicode symbols as LaTeX math.
fn tex_text(s: &str) -> String {
    tex_escape(s)
        .replace('±', "$\\pm$")
        .replace('−', "$-$")
        .replace('–', "--")
        .replace('†', "$^\\dagger$")
        .replace('<', "$<$")
}

/// Escapes `&`, `<`, `>` and `"` for HTML text and attributes.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
