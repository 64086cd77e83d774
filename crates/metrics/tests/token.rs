//! The token-task metrics against independent implementations: entity-level precision, recall
//! and F1 against seqeval 1.2.2 (`tests/token/make_entities_fixture.py`: every gold sentence's
//! entities and the micro-averaged scores, to the last digit), and sentence-level error
//! detection against numpy and scikit-learn (`tests/token/make_sentences_fixture.py`).

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use serde_json::Value;
use ueb_metrics::{
    ENTITY_METRICS, ErrorDetection, MetricsError, SentenceAggregate, entities, entity_scores, sentence_error_detection,
    sentence_rows,
};

fn sentences(v: &Value) -> Vec<Vec<String>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s.as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn entity_scores_equal_seqeval() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/token/entities.json");
    let fx: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (gold, pred) = (sentences(&case["gold"]), sentences(&case["predicted"]));
        for (s, want) in gold.iter().zip(case["gold_entities"].as_array().unwrap()) {
            let got: Vec<(String, u64, u64)> = entities(s)
                .into_iter()
                .map(|e| (e.kind, e.start as u64, e.end as u64))
                .collect();
            let want: Vec<(String, u64, u64)> = want
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e[0].as_str().unwrap().to_string(),
                        e[1].as_u64().unwrap(),
                        e[2].as_u64().unwrap(),
                    )
                })
                .collect();
            assert_eq!(got, want, "{name}: entities of {s:?}");
        }
        let scores = entity_scores(&gold, &pred).unwrap();
        for (metric, got) in ENTITY_METRICS.iter().zip(scores.values()) {
            let want = case[*metric].as_f64().unwrap();
            assert_eq!(got, want, "{name}: {metric}");
        }
    }
}

#[test]
fn mismatched_sentences_are_errors() {
    let gold = vec![vec!["B-PER", "O"], vec!["O"]];
    let e = entity_scores(&gold, &gold[..1]).unwrap_err();
    assert!(
        matches!(
            e,
            MetricsError::LengthMismatch {
                expected: 2,
                found: 1,
                ..
            }
        ),
        "{e}"
    );
    let pred = vec![vec!["B-PER", "O"], vec!["O", "O"]];
    let e = entity_scores(&gold, &pred).unwrap_err().to_string();
    assert_eq!(e, "sentence 1: 2 predicted tags for 1 words");
}

#[test]
fn sentence_rows_and_metrics_equal_numpy_and_scikit_learn() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/token/sentences.json");
    let fx: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let group: Vec<i64> = fx["group"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let errors: Vec<bool> = fx["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_bool().unwrap())
        .collect();
    let u: Vec<f64> = fx["u"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let all = sentence_error_detection(&group, &errors, &u, 15).unwrap();
    for aggregate in SentenceAggregate::ALL {
        let key = if aggregate == SentenceAggregate::Max {
            "max"
        } else {
            "sum"
        };
        let want = &fx[key];
        let (e, s) = sentence_rows(&group, &errors, &u, aggregate).unwrap();
        let we: Vec<bool> = want["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_bool().unwrap())
            .collect();
        let ws: Vec<f64> = want["u"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(e, we, "{key}: sentence errors");
        assert_eq!(s, ws, "{key}: sentence scores");
        let d = ErrorDetection::with_default_bins(&e, &s).unwrap();
        for (metric, got) in [
            ("roc_auc", d.roc_auc),
            ("aupr_error", d.aupr_error),
            ("aupr_success", d.aupr_success),
        ] {
            let w = want[metric].as_f64().unwrap();
            let g = got.unwrap();
            assert!((g - w).abs() <= 1e-12, "{key} {metric}: {g} vs scikit-learn {w}");
            let named = format!("{}{metric}", aggregate.prefix());
            let listed = all.iter().find(|(n, _)| *n == named).unwrap().1.unwrap();
            assert_eq!(listed, g, "{named}");
        }
    }
    assert_eq!(all.len(), 14);
    assert_eq!(all[0].0, "sentence_max_roc_auc");
    assert_eq!(all[13].0, "sentence_sum_ece_score");

    // A NaN word score is an error naming its row, not a maximum that skips it.
    let mut bad = u.clone();
    bad[7] = f64::NAN;
    let e = sentence_rows(&group, &errors, &bad, SentenceAggregate::Max)
        .unwrap_err()
        .to_string();
    assert!(e.contains("scores: row 7 is NaN"), "{e}");
    let e = sentence_rows(&group[..3], &errors, &u, SentenceAggregate::Sum)
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected 3 rows"), "{e}");
}
