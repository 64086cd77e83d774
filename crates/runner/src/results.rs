//! A run's results once every cell is done: `metrics.parquet` (every metric of every head
//! stage, one definition shared with `ueb report`) and the end-of-run summary table.

use std::path::Path;

use crate::error::{Context, Result};
use crate::plan::Plan;
use ueb_report::parquet::{MetricRow, metrics_to_bytes};
use ueb_report::results::{CellKey, SCORES_FILE};

/// Metrics of every (cell, head), or `None` when some cell of the plan is not finished yet.
///
/// # Errors
/// A scores file that cannot be read, or a metric that cannot be computed, naming the stage.
pub fn collect_metrics(plan: &Plan, out: &Path) -> Result<Option<Vec<MetricRow>>> {
    let mut rows = Vec::new();
    for cell in &plan.cells {
        for spec in &plan.heads {
            let dir = out.join("cells").join(cell.rel_dir()).join(&spec.label);
            if !dir.join(SCORES_FILE).is_file() {
                return Ok(None);
            }
            // One reader of a head stage's files, the report's.
            let data = ueb_report::HeadData::load(&dir)?;
            let settings = ueb_report::MetricSettings {
                bins: plan.metrics.bins,
                bootstrap: plan.metrics.bootstrap,
            };
            // One definition of a head stage's metrics, shared with `ueb report` (which
            // recomputes them for shards whose metrics.parquet is missing or stale).
            let values =
                ueb_report::head_metrics(&data, settings, cell.seed).with_context(|| format!("{}", dir.display()))?;
            let key = CellKey {
                backbone: cell.backbone.clone(),
                dataset: cell.dataset.clone(),
                seed: cell.seed,
            };
            rows.extend(values.into_iter().map(|v| (key.clone(), spec.label.clone(), v)));
        }
    }
    Ok(Some(rows))
}

/// Writes `rows` as `metrics.parquet` at `path`, atomically.
///
/// # Errors
/// I/O or Parquet errors naming the file.
pub fn write_metrics(rows: &[MetricRow], path: &Path) -> Result<()> {
    crate::write_atomic(path, &metrics_to_bytes(rows)?)
}

/// The end-of-run summary as data: per backbone × dataset × head × metric (in plan order, metrics
/// in their `metrics.parquet` order), the mean and sample standard deviation over the seeds
/// whose value is defined, how many those are, and how many seeds ran. `std` is `null` below two
/// values, `mean` with none.
pub fn summary_json(plan: &Plan, rows: &[MetricRow]) -> serde_json::Value {
    let mut groups: Vec<(String, String)> = Vec::new();
    for c in &plan.cells {
        let g = (c.backbone.clone(), c.dataset.clone());
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let mut out = Vec::new();
    for (b, d) in &groups {
        for spec in &plan.heads {
            let here: Vec<&MetricRow> = rows
                .iter()
                .filter(|(cell, head, _)| &cell.backbone == b && &cell.dataset == d && *head == spec.label)
                .collect();
            let mut metrics: Vec<&str> = Vec::new();
            for (_, _, v) in &here {
                if !metrics.contains(&v.metric.as_str()) {
                    metrics.push(&v.metric);
                }
            }
            for metric in metrics {
                let all: Vec<&MetricRow> = here.iter().copied().filter(|(_, _, v)| v.metric == metric).collect();
                let v: Vec<f64> = all.iter().filter_map(|(_, _, v)| v.value).collect();
                // The tables' mean and sample std, so both say the same numbers.
                let stats = ueb_report::tables::mean_std(&v);
                let (mean, std) = (stats.map(|s| s.0), stats.and_then(|s| s.1));
                out.push(serde_json::json!({
                    "backbone": b,
                    "dataset": d,
                    "head": spec.label,
                    "metric": metric,
                    "mean": mean,
                    "std": std,
                    "defined": v.len(),
                    "seeds": all.len(),
                }));
            }
        }
    }
    serde_json::Value::Array(out)
}

/// Mean ± std (sample) of the values, or `–` when none is defined.
fn mean_std(v: &[f64]) -> String {
    match ueb_report::tables::mean_std(v) {
        None => "–".into(),
        Some((mean, None)) => format!("{mean:.2}"),
        Some((mean, Some(sd))) => format!("{mean:.2} ± {sd:.2}"),
    }
}

/// The end-of-run table: ROC-AUC × 100 and ECE × 100 per head and backbone × dataset.
pub fn summary(plan: &Plan, rows: &[MetricRow]) -> String {
    let mut groups: Vec<(String, String)> = Vec::new();
    for c in &plan.cells {
        let g = (c.backbone.clone(), c.dataset.clone());
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let mut s = String::from("| head |");
    for (b, d) in &groups {
        s.push_str(&format!(" {b} / {d}: ROC-AUC×100 | ECE×100 |"));
    }
    s.push_str("\n|---|");
    s.push_str(&"---|---|".repeat(groups.len()));
    for spec in &plan.heads {
        s.push_str(&format!("\n| {} |", spec.label));
        for (b, d) in &groups {
            for metric in ["roc_auc", "ece"] {
                let v: Vec<f64> = rows
                    .iter()
                    .filter(|(cell, head, v)| {
                        &cell.backbone == b && &cell.dataset == d && *head == spec.label && v.metric == metric
                    })
                    .filter_map(|(_, _, v)| v.value.map(|x| 100.0 * x))
                    .collect();
                s.push_str(&format!(" {} |", mean_std(&v)));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std_with_two_decimals() {
        assert_eq!(mean_std(&[]), "–");
        assert_eq!(mean_std(&[81.234]), "81.23");
        assert_eq!(mean_std(&[1.0, 2.0, 3.0]), "2.00 ± 1.00");
    }
}
