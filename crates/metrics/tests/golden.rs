//! Golden tests: every §11 metric against values computed independently by
//! `tests/golden/generate.py` (scikit-learn, torchmetrics, numpy). See `tests/golden/README.md`.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{TOL, case_files, floats, load, predictions};
use serde_json::Value;
use ueb_metrics::{NamedScore, Report, ReportConfig};

/// Compares one metric; `expected` null means "undefined".
fn check(
    case: &str,
    group: &str,
    name: &str,
    got: Result<f64, ueb_metrics::Undefined>,
    expected: &Value,
    failures: &mut Vec<String>,
) {
    match (got, expected.as_f64()) {
        (Ok(g), Some(e)) => {
            let err = (g - e).abs() / e.abs().max(1.0);
            if err > TOL || g.is_nan() {
                failures.push(format!(
                    "{case}: {group}.{name}: got {g:.17e}, expected {e:.17e} (error {err:.2e})"
                ));
            }
        }
        (Err(_), None) if expected.is_null() => {}
        (g, _) => failures.push(format!("{case}: {group}.{name}: got {g:?}, expected {expected}")),
    }
}

#[test]
fn golden_cases_match_independent_implementations() {
    let files = case_files();
    assert!(
        files.len() >= 15,
        "expected at least 15 golden cases, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in &files {
        let case = load(path);
        let name = case["name"].as_str().unwrap();
        let pred = predictions(&case);
        let custom: Vec<(String, Vec<f64>)> = case["scores"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), floats(v))).collect())
            .unwrap_or_default();
        let named: Vec<NamedScore<'_>> = custom.iter().map(|(n, v)| NamedScore { name: n, values: v }).collect();
        let cfg = ReportConfig {
            bins: case["bins"].as_u64().unwrap() as usize,
            bootstrap: None,
        };
        let report = Report::compute(&pred, &named, &cfg).unwrap_or_else(|e| panic!("{name}: {e}"));

        let expected = &case["expected"];
        for e in &report.calibration {
            check(
                name,
                "calibration",
                e.name,
                e.value,
                &expected["calibration"][e.name],
                &mut failures,
            );
            checked += 1;
        }
        let ed = expected["error_detection"].as_object().unwrap();
        assert_eq!(ed.len(), report.error_detection.len(), "{name}: score count");
        for s in &report.error_detection {
            for e in &s.entries {
                check(name, &s.name, e.name, e.value, &ed[&s.name][e.name], &mut failures);
                checked += 1;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} golden values differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
