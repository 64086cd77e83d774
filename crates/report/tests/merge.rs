//! The report merges the cells of several shards, computes metrics that `metrics.parquet`
//! lacks or that are newer than it, lists missing cells, and writes the same bytes twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use polars::prelude::*;
use ueb_report::{Formats, HeadData, MetricSettings, ReportOptions, head_metrics, write_report, write_report_with};

const HEADS: [&str; 2] = ["sr", "alien"];

/// Plan: tiny × {synth-a, synth-b} × seeds {0, 1}. "Shard 1" finished synth-a (both seeds),
/// "shard 2" only synth-b seed 0.
fn two_shards(root: &Path) {
    let cells = [
        ("tiny", "synth-a", 0),
        ("tiny", "synth-a", 1),
        ("tiny", "synth-b", 0),
        ("tiny", "synth-b", 1),
    ];
    common::write_plan(root, &cells, &HEADS, 10, 50);
    for (b, d, seed) in &cells[..3] {
        for h in HEADS {
            common::write_cell_head(root, b, d, *seed, h, 150);
        }
    }
}

fn no_figures() -> ReportOptions {
    ReportOptions {
        figures: false,
        ..ReportOptions::default()
    }
}

#[test]
fn report_merges_shards_and_lists_missing_cells() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    two_shards(root);
    let s = write_report_with(root, &no_figures()).unwrap();
    assert_eq!(s.head_stages, 6);
    assert_eq!((s.from_metrics_file, s.computed), (0, 6));
    assert_eq!(s.missing, ["tiny/synth-b/seed-1/sr", "tiny/synth-b/seed-1/alien"]);
    let md = std::fs::read_to_string(root.join("tables/roc_auc.md")).unwrap();
    assert!(
        md.contains("| head | tiny / synth-a | tiny / synth-b | avg. rank |"),
        "{md}"
    );
    assert!(md.contains("| sr |") && md.contains("| alien |"), "{md}");
    // synth-a has two seeds (mean ± std), synth-b one (mean only).
    let sr_row = md.lines().find(|l| l.starts_with("| sr |")).unwrap();
    assert_eq!(sr_row.matches('±').count(), 1, "{sr_row}");
    let csv = std::fs::read_to_string(root.join("tables/roc_auc.csv")).unwrap();
    assert!(
        csv.starts_with("head,classifier_probabilities,tiny/synth-a mean,tiny/synth-a std,tiny/synth-a n,"),
        "{csv}"
    );
    for name in ["prr", "aurc", "ece", "ece_score", "brier", "nll"] {
        for ext in ["md", "tex", "csv"] {
            assert!(root.join(format!("tables/{name}.{ext}")).is_file(), "{name}.{ext}");
        }
    }
    let html = std::fs::read_to_string(root.join("index.html")).unwrap();
    assert!(html.contains("tiny/synth-b/seed-1/alien"), "missing cells are listed");
}

#[test]
fn metrics_parquet_is_used_when_fresh_and_ignored_when_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    two_shards(root);
    // A metrics.parquet that only knows synth-a seed 0's sr, with a recognisable ROC-AUC.
    let mut df = df!(
        "backbone" => ["tiny"],
        "dataset" => ["synth-a"],
        "seed" => [0i64],
        "head" => ["sr"],
        "metric" => ["roc_auc"],
        "value" => [Some(0.123456f64)],
        "ci_low" => [None::<f64>],
        "ci_high" => [None::<f64>],
    )
    .unwrap();
    let path = root.join("metrics.parquet");
    ParquetWriter::new(std::fs::File::create(&path).unwrap())
        .finish(&mut df)
        .unwrap();
    let s = write_report_with(root, &no_figures()).unwrap();
    assert_eq!((s.from_metrics_file, s.computed), (1, 5));
    // The stored 0.123456 for seed 0 enters the mean with the computed seed 1.
    let frame_value = {
        let data = HeadData::load(&root.join("cells/tiny/synth-a/seed-1/sr")).unwrap();
        let m = head_metrics(
            &data,
            MetricSettings {
                bins: 10,
                bootstrap: 50,
            },
            1,
        )
        .unwrap();
        m.iter().find(|m| m.metric == "roc_auc").unwrap().value.unwrap()
    };
    let mean = 100.0 * (0.123456 + frame_value) / 2.0;
    let md = std::fs::read_to_string(root.join("tables/roc_auc.md")).unwrap();
    assert!(md.contains(&format!("{mean:.2} ±")), "{mean:.2} in {md}");

    // Scores newer than metrics.parquet: the stored row is stale and recomputed.
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let s = write_report_with(root, &no_figures()).unwrap();
    assert_eq!((s.from_metrics_file, s.computed), (0, 6));
}

#[test]
fn recomputed_metrics_are_the_runner_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("h");
    let (probs, labels, score) = common::synthetic(120, 3, 3, 0.2);
    common::write_head(&dir, &probs, &labels, &score);
    let data = HeadData::load(&dir).unwrap();
    assert_eq!((data.labels.len(), data.num_classes), (120, 3));
    let rows = head_metrics(
        &data,
        MetricSettings {
            bins: 15,
            bootstrap: 20,
        },
        4,
    )
    .unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r.metric.as_str()).collect();
    // The supplied score's error-detection metrics, then the calibration metrics.
    assert_eq!(&names[..7], ueb_metrics::ERROR_DETECTION_METRICS);
    assert_eq!(&names[7..], ueb_metrics::CALIBRATION_METRICS);
    assert!(rows.iter().all(|r| r.value.is_none() || r.ci_low.is_some()));
}

#[test]
fn report_with_figures_is_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    common::write_plan(root, &[("tiny", "synth", 0)], &HEADS, 10, 30);
    for h in HEADS {
        common::write_cell_head(root, "tiny", "synth", 0, h, 120);
    }
    let s = write_report(root, Formats::default()).unwrap();
    assert!(s.missing.is_empty());
    // Risk–coverage, scores, and one reliability diagram per head.
    assert_eq!(s.figures.len(), 4);
    for f in &s.figures {
        assert!(root.join(f.stem.with_extension("png")).is_file());
        assert!(root.join(f.stem.with_extension("svg")).is_file());
    }
    assert!(root.join("figures/tiny/synth/seed-0/reliability-alien.png").is_file());
    let read = |p: &str| std::fs::read(root.join(p)).unwrap();
    let first = (
        read("index.html"),
        read("tables/all.md"),
        read("tables/roc_auc.csv"),
        read("figures/tiny/synth/seed-0/risk-coverage.png"),
    );
    write_report(root, Formats::default()).unwrap();
    let second = (
        read("index.html"),
        read("tables/all.md"),
        read("tables/roc_auc.csv"),
        read("figures/tiny/synth/seed-0/risk-coverage.png"),
    );
    assert!(first == second, "same input, same bytes");
    let html = String::from_utf8(first.0).unwrap();
    assert!(html.contains("src=\"figures/tiny/synth/seed-0/reliability-sr.png\""));
}

#[test]
fn an_empty_directory_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = write_report(tmp.path(), Formats::default()).unwrap_err().to_string();
    assert!(err.contains("no finished cells"), "{err}");
}

#[test]
fn unknown_format_is_rejected() {
    assert!(Formats::parse("md,pdf").is_err());
    let f = Formats::parse("md, csv").unwrap();
    assert!(f.md && f.csv && !f.tex && !f.html);
}
