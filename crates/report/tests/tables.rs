//! Snapshot tests of the table renderers on a fixed, hand-built long metrics frame.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use polars::prelude::*;
use ueb_report::tables::{mean_std, ranks};
use ueb_report::{CellKey, MetricTable, MetricValue, Significance, TABLE_METRICS, TableOptions, long_frame};

/// Three heads × (roberta/sst2, roberta/cola, electra/sst2) × seeds 0–2, with an undefined
/// value (alien, electra/sst2, seed 2), a head missing from one column (margin on cola) and a
/// tie (roberta/cola ECE).
fn frame() -> DataFrame {
    let columns = [("roberta", "sst2"), ("roberta", "cola"), ("electra", "sst2")];
    let heads = ["sr", "margin", "alien"];
    let mut rows = Vec::new();
    for (c, (b, d)) in columns.iter().enumerate() {
        for seed in 0..3u64 {
            for (h, head) in heads.iter().enumerate() {
                if *head == "margin" && *d == "cola" {
                    continue;
                }
                let base = 0.80 + 0.03 * h as f64 - 0.02 * c as f64 + 0.005 * seed as f64;
                let auc = if *head == "alien" && *b == "electra" && seed == 2 {
                    None
                } else {
                    Some(base)
                };
                let ece = if *d == "cola" && *head != "margin" {
                    0.05
                } else {
                    0.02 + 0.01 * h as f64 + 0.001 * seed as f64
                };
                let key = CellKey {
                    backbone: (*b).to_string(),
                    dataset: (*d).to_string(),
                    seed,
                };
                for (metric, v) in [
                    ("roc_auc", auc),
                    ("ece", Some(ece)),
                    ("nll", Some(0.5 - 0.1 * h as f64)),
                ] {
                    rows.push((
                        key.clone(),
                        (*head).to_string(),
                        MetricValue {
                            metric: metric.to_string(),
                            value: v,
                            ci_low: v.map(|x| x - 0.01),
                            ci_high: v.map(|x| x + 0.01),
                        },
                    ));
                }
            }
        }
    }
    long_frame(&rows).unwrap()
}

fn significance() -> Vec<Significance> {
    vec![
        Significance {
            metric: "roc_auc".into(),
            backbone: "roberta".into(),
            dataset: "sst2".into(),
            best: "alien".into(),
            runner_up: "margin".into(),
            difference: 0.03,
            p_value: 0.002,
        },
        Significance {
            metric: "roc_auc".into(),
            backbone: "roberta".into(),
            dataset: "cola".into(),
            best: "alien".into(),
            runner_up: "sr".into(),
            difference: 0.06,
            p_value: 0.2,
        },
    ]
}

fn table(metric: &str, ci: bool) -> MetricTable {
    table_with(metric, ci, &[])
}

fn table_with(metric: &str, ci: bool, classifier_heads: &[String]) -> MetricTable {
    let m = TABLE_METRICS.iter().find(|m| m.name == metric).copied().unwrap();
    MetricTable::from_long(
        &frame(),
        m,
        &significance(),
        1000,
        TableOptions { ci },
        classifier_heads,
    )
    .unwrap()
}

#[test]
fn roc_auc_markdown() {
    insta::assert_snapshot!("roc_auc_md", table("roc_auc", false).markdown());
}

#[test]
fn roc_auc_latex() {
    insta::assert_snapshot!("roc_auc_tex", table("roc_auc", false).latex());
}

#[test]
fn roc_auc_csv() {
    insta::assert_snapshot!("roc_auc_csv", table("roc_auc", false).csv().unwrap());
}

#[test]
fn ece_markdown_with_intervals_and_a_tie() {
    insta::assert_snapshot!("ece_md_ci", table("ece", true).markdown());
}

#[test]
fn nll_html() {
    insta::assert_snapshot!("nll_html", table("nll", false).html());
}

#[test]
fn bold_rank_and_marker_follow_the_numbers() {
    let t = table("roc_auc", false);
    assert_eq!(t.heads, ["sr", "margin", "alien"]);
    assert_eq!(t.columns.len(), 3);
    // alien is best everywhere (higher is better) and significant only on roberta/sst2.
    assert!(t.best[2].iter().all(|&b| b));
    assert_eq!(t.marked, [Some(2), None, None]);
    assert_eq!(t.avg_rank[2], Some(1.0));
    // sr: rank 3, 2 (margin is absent on cola), 3.
    assert!((t.avg_rank[0].unwrap() - 8.0 / 3.0).abs() < 1e-12);
}

#[test]
fn lower_is_better_and_ties_share_ranks() {
    let t = table("ece", false);
    // On roberta/cola sr and alien tie at 0.05: both bold, both rank 1.5.
    assert!(t.best[0][1] && t.best[2][1]);
    assert_eq!(t.ranks[0][1], Some(1.5));
    assert_eq!(t.ranks[2][1], Some(1.5));
    assert_eq!(t.ranks[1][1], None);
    // Elsewhere sr has the lowest ECE.
    assert!(t.best[0][0] && !t.best[2][0]);
}

#[test]
fn partial_seeds_are_counted() {
    let t = table("roc_auc", false);
    let cell = t.cells[2][2].unwrap();
    assert_eq!(cell.n, 2);
    assert!(t.markdown().contains("(n=2)"));
}

#[test]
fn mean_and_sample_std() {
    let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]).unwrap();
    assert_eq!(m, 2.5);
    // Sample std (n − 1): sqrt(5/3).
    assert!((s.unwrap() - (5.0f64 / 3.0).sqrt()).abs() < 1e-15);
    assert_eq!(mean_std(&[7.0]), Some((7.0, None)));
    assert_eq!(mean_std(&[]), None);
}

#[test]
fn ranks_average_ties_and_skip_undefined() {
    let r = ranks(&[Some(0.9), Some(0.8), Some(0.9), None, Some(0.7)], true);
    assert_eq!(r, [Some(1.5), Some(3.0), Some(1.5), None, Some(4.0)]);
    let r = ranks(&[Some(0.1), Some(0.3), Some(0.2)], false);
    assert_eq!(r, [Some(1.0), Some(3.0), Some(2.0)]);
}

/// A head whose probabilities are the classifier's: in a table of a metric of the
/// probabilities its cells are the classifier's value, in italics, neither best nor ranked; in
/// an error-detection table it is an ordinary row.
#[test]
fn classifier_probabilities_are_marked_and_not_ranked() {
    let classifier = vec!["sr".to_string()];
    let plain = table("ece", false);
    let sr = plain.heads.iter().position(|h| h == "sr").unwrap();
    assert!(plain.best[sr][0], "sr has the lowest ECE of the fixture");
    let t = table_with("ece", false, &classifier);
    assert!(t.classifier[sr]);
    assert!(!t.best[sr].iter().any(|&b| b), "{:?}", t.best);
    assert!(t.ranks[sr].iter().all(Option::is_none));
    assert_eq!(t.avg_rank[sr], None);
    let margin = t.heads.iter().position(|h| h == "margin").unwrap();
    assert!(t.best[margin][0], "the best head with its own probabilities");
    let md = t.markdown();
    let row = md.lines().find(|l| l.starts_with("| sr |")).unwrap();
    assert!(row.contains(" *2.10 ± 0.10* |"), "{row}");
    assert!(
        md.contains("Italic: the head leaves the classifier's probabilities unchanged"),
        "{md}"
    );
    assert!(t.latex().contains("\\textit{$2.10 \\pm 0.10$}"));
    assert!(t.html().contains("<td><i>2.10 ± 0.10</i></td>"));
    let csv = t.csv().unwrap();
    assert!(csv.lines().any(|l| l.starts_with("sr,true,")), "{csv}");
    // Error detection is the head's own score: unchanged.
    let auc = table_with("roc_auc", false, &classifier);
    assert!(!auc.classifier.iter().any(|&c| c));
    assert_eq!(auc.markdown(), table("roc_auc", false).markdown());
}
