//! `ueb eval`: the §11 metric report for predictions stored in files.

use anyhow::{Result, anyhow, bail};
use clap::Args;
use serde_json::{Map, Value, json};
use ueb_metrics::{BootstrapConfig, Entry, MetricsError, NamedScore, Predictions, Report, ReportConfig, Undefined};

use crate::input::{self, Role, Source};
use crate::stdio::{out, outln};

/// Arguments of `ueb eval`.
#[derive(Debug, Args)]
#[command(after_help = "\
FILES: .npy (any float or integer dtype), .csv/.tsv (one row per sample; a header line is \
detected), .parquet, .safetensors (tensors `probs`/`logits`/`labels`/`scores`). Append \
`#NAME` to pick a column or tensor, e.g. `--scores cell.parquet#score`. A 1-D --probs file is \
read as P(class 1) of a binary classifier, a 1-D --logits file as its logit.
SCORES: higher = more uncertain; each is reported under its file stem, or under NAME with \
`--scores NAME=FILE`. The built-in scores sr, entropy and margin are always reported.")]
pub(crate) struct EvalArgs {
    /// Predicted probabilities, [N, C]; rows must sum to 1 within 1e-4.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "logits",
        conflicts_with = "logits"
    )]
    probs: Option<String>,
    /// Logits, [N, C]; turned into probabilities with a stable softmax.
    #[arg(long, value_name = "FILE")]
    logits: Option<String>,
    /// True labels, [N], integers in 0..C.
    #[arg(long, value_name = "FILE")]
    labels: String,
    /// An extra uncertainty score, [N] (repeatable).
    #[arg(long = "scores", value_name = "[NAME=]FILE")]
    scores: Vec<String>,
    /// Number of bins of every binned metric.
    #[arg(long, default_value_t = ueb_metrics::DEFAULT_BINS, value_name = "M", value_parser = positive)]
    bins: usize,
    /// Percentile bootstrap intervals with B resamples (B defaults to 1000).
    #[arg(long, value_name = "B", num_args = 0..=1, default_missing_value = "1000", value_parser = positive)]
    bootstrap: Option<usize>,
    /// Seed of the bootstrap resampling.
    #[arg(long, default_value_t = 0, value_name = "S")]
    seed: u64,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(format!("`{s}` is not a positive whole number")),
    }
}

/// Matrix file size from which `ueb eval` reads it on a second thread.
const PARALLEL_READ_BYTES: u64 = 1 << 20;

/// A supplied score file with the name it is reported under.
struct ScoreInput {
    name: String,
    source: Source,
    values: Vec<f64>,
    header_candidate: bool,
}

/// Runs `ueb eval`.
pub(crate) fn run(args: &EvalArgs) -> Result<()> {
    let (matrix_arg, role) = match (&args.probs, &args.logits) {
        (Some(p), None) => (p, Role::Probs),
        (None, Some(l)) => (l, Role::Logits),
        _ => bail!("give exactly one of --probs and --logits"),
    };
    let matrix_src = Source::parse(matrix_arg);
    let labels_src = Source::parse(&args.labels);
    // The matrix is the largest file: when it is big, read it while this thread reads the
    // others (for small files a thread costs more than it saves).
    let big = std::fs::metadata(&matrix_src.path).is_ok_and(|m| m.len() > PARALLEL_READ_BYTES);
    let (matrix, labels, scores) = if !big {
        (
            input::read(&matrix_src, role),
            input::read_labels(&labels_src),
            read_scores(&args.scores),
        )
    } else {
        std::thread::scope(|scope| {
            let matrix = scope.spawn(|| input::read(&matrix_src, role));
            let labels = input::read_labels(&labels_src);
            let scores = read_scores(&args.scores);
            let matrix = matrix.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (matrix, labels, scores)
        })
    };
    let (matrix, labels, scores) = (matrix?, labels?, scores?);
    // The matrix's rows are certain (its header is detected by its width); a single-column file
    // whose first line is `0` is matched against them.
    let mut labels_read = labels;
    input::reconcile_header(
        &mut labels_read.values,
        labels_read.header_candidate,
        matrix.rows,
        &labels_src,
        &matrix_src,
    );
    let labels = labels_read.values;
    let mut scores = scores;
    for s in &mut scores {
        input::reconcile_header(&mut s.values, s.header_candidate, matrix.rows, &s.source, &matrix_src);
    }

    let (data, num_classes) = if matrix.one_dimensional {
        (binary_columns(&matrix.data, role), 2)
    } else {
        (matrix.data, matrix.cols)
    };
    let pred = match role {
        Role::Probs => Predictions::from_probs(data, num_classes, &labels),
        _ => Predictions::from_logits(&data, num_classes, &labels),
    }
    .map_err(|e| attribute(e, &matrix_src, &labels_src))?;

    let named: Vec<NamedScore<'_>> = scores
        .iter()
        .map(|s| NamedScore {
            name: &s.name,
            values: &s.values,
        })
        .collect();
    let cfg = ReportConfig {
        bins: args.bins,
        bootstrap: args.bootstrap.map(|resamples| BootstrapConfig {
            resamples,
            seed: args.seed,
            ..BootstrapConfig::default()
        }),
    };
    let report = Report::compute(&pred, &named, &cfg).map_err(|e| match e {
        MetricsError::InScore { ref name, ref inner } => match scores.iter().find(|s| &s.name == name) {
            Some(s) => anyhow!("{}: {inner}", s.source),
            None => anyhow!(e),
        },
        other => anyhow!(other),
    })?;

    if args.json {
        outln!("{}", serde_json::to_string_pretty(&to_json(&report))?);
    } else {
        out!("{}", render_tables(&report));
    }
    Ok(())
}

/// A 1-D binary input as two columns: probabilities `[1 − p, p]`, logits `[0, z]` (the same
/// softmax as a sigmoid of `z`).
fn binary_columns(v: &[f64], role: Role) -> Vec<f64> {
    v.iter()
        .flat_map(|&x| if role == Role::Probs { [1.0 - x, x] } else { [0.0, x] })
        .collect()
}

/// Puts the file name in front of a validation error about the data in it.
fn attribute(err: MetricsError, matrix: &Source, labels: &Source) -> anyhow::Error {
    match err {
        MetricsError::LabelOutOfRange { .. } | MetricsError::LengthMismatch { what: "labels", .. } => {
            anyhow!("{labels}: {err}")
        }
        _ => anyhow!("{matrix}: {err}"),
    }
}

fn read_scores(args: &[String]) -> Result<Vec<ScoreInput>> {
    let mut out: Vec<ScoreInput> = Vec::with_capacity(args.len());
    for arg in args {
        let (name, file) = match arg.split_once('=') {
            Some((n, f)) if !n.is_empty() && !n.contains(['/', '\\']) => (n.to_string(), f),
            _ => {
                let src = Source::parse(arg);
                let stem = src
                    .path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("score")
                    .to_string();
                (stem, arg.as_str())
            }
        };
        let source = Source::parse(file);
        if ueb_metrics::BUILTIN_SCORES.contains(&name.as_str()) {
            bail!(
                "--scores {arg}: `{name}` is a built-in score; report it under another name with `--scores NAME={file}`"
            );
        }
        if let Some(prev) = out.iter().find(|s| s.name == name) {
            bail!(
                "--scores {arg}: the name `{name}` is already used by {}; use `--scores NAME={file}`",
                prev.source
            );
        }
        let array = input::read(&source, Role::Scores)?;
        out.push(ScoreInput {
            name,
            source,
            values: array.data,
            header_candidate: array.header_candidate,
        });
    }
    Ok(out)
}

fn entry_json(e: &Entry, obj: &mut Map<String, Value>) {
    match (e.value, e.interval) {
        (Err(why), _) => {
            obj.insert(e.name.to_string(), Value::Null);
            obj.insert(format!("{}_reason", e.name), json!(why.reason()));
        }
        (Ok(v), None) => {
            obj.insert(e.name.to_string(), json!(v));
        }
        (Ok(v), Some(ci)) => {
            let (lo, hi) = match ci {
                Ok(i) => (json!(i.low), json!(i.high)),
                Err(_) => (Value::Null, Value::Null),
            };
            obj.insert(e.name.to_string(), json!({"value": v, "ci_low": lo, "ci_high": hi}));
            if let Err(why) = ci {
                obj.insert(format!("{}_reason", e.name), json!(why.reason()));
            }
        }
    }
}

/// The `--json` object: `{"n", "num_classes", "calibration": {...}, "error_detection": {...}}`.
fn to_json(report: &Report) -> Value {
    let mut calibration = Map::new();
    for e in &report.calibration {
        entry_json(e, &mut calibration);
    }
    let mut detection = Map::new();
    for s in &report.error_detection {
        let mut obj = Map::new();
        for e in &s.entries {
            entry_json(e, &mut obj);
        }
        detection.insert(s.name.clone(), Value::Object(obj));
    }
    json!({
        "n": report.n,
        "num_classes": report.num_classes,
        "calibration": calibration,
        "error_detection": detection,
    })
}

fn cell(e: &Entry, notes: &mut Vec<Undefined>) -> String {
    match e.value {
        Err(why) => {
            let k = notes.iter().position(|&n| n == why).unwrap_or_else(|| {
                notes.push(why);
                notes.len() - 1
            });
            format!("undefined[{}]", k + 1)
        }
        Ok(v) => match e.interval {
            Some(Ok(ci)) => format!("{v:.4} [{:.4}, {:.4}]", ci.low, ci.high),
            _ => format!("{v:.4}"),
        },
    }
}

/// Left-aligned first column, right-aligned others, two spaces between.
fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |r: &[String]| {
        let mut s = format!("{:<w$}", r[0], w = width[0]);
        for c in 1..cols {
            s.push_str(&format!("  {:>w$}", r[c], w = width[c]));
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header);
    out.push_str(&"-".repeat(width.iter().sum::<usize>() + 2 * (cols - 1)));
    out.push('\n');
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

fn render_tables(report: &Report) -> String {
    let mut notes = Vec::new();
    let mut out = format!(
        "{} samples, {} classes, {} bins{}\n\n",
        report.n,
        report.num_classes,
        report.bins,
        report.bootstrap.map_or(String::new(), |b| format!(
            ", {:.0}% bootstrap intervals ({} resamples, seed {})",
            b.confidence * 100.0,
            b.resamples,
            b.seed
        ))
    );
    let rows: Vec<Vec<String>> = report
        .calibration
        .iter()
        .map(|e| vec![e.name.to_string(), cell(e, &mut notes)])
        .collect();
    out.push_str(&table(&["calibration".into(), "value".into()], &rows));
    out.push('\n');
    let mut header = vec!["error detection".to_string()];
    header.extend(report.error_detection.iter().map(|s| s.name.clone()));
    let rows: Vec<Vec<String>> = ueb_metrics::ERROR_DETECTION_METRICS
        .iter()
        .enumerate()
        .map(|(m, name)| {
            let mut r = vec![name.to_string()];
            r.extend(report.error_detection.iter().map(|s| cell(&s.entries[m], &mut notes)));
            r
        })
        .collect();
    out.push_str(&table(&header, &rows));
    if !notes.is_empty() {
        out.push('\n');
        for (k, why) in notes.iter().enumerate() {
            out.push_str(&format!("[{}] {}\n", k + 1, why.reason()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_columns_expand() {
        assert_eq!(binary_columns(&[0.25], Role::Probs), vec![0.75, 0.25]);
        assert_eq!(binary_columns(&[2.0], Role::Logits), vec![0.0, 2.0]);
    }

    #[test]
    fn table_aligns() {
        let t = table(&["a".into(), "bb".into()], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "a    bb\n-------\nxyz   1\n");
    }
}
