//! Golden tests for the curves: `reliability_bins` (equal width and equal mass, Wilson
//! intervals), `risk_coverage_curve` and `oracle_rejection_curve`, against values computed
//! independently by `tests/golden/generate.py` (numpy, scipy, torchmetrics). The layout of the
//! `curves` object is described in `tests/golden/README.md`.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{TOL, case_files, floats, load, predictions};
use serde_json::Value;
use ueb_metrics::{Binning, BuiltinScore, Predictions, oracle_rejection_curve, reliability_bins, risk_coverage_curve};

/// Collects mismatches and counts the values compared.
struct Checker {
    failures: Vec<String>,
    checked: usize,
}

impl Checker {
    /// A number: absolute tolerance, relative above 1.
    fn num(&mut self, what: impl FnOnce() -> String, got: f64, expected: f64) {
        self.checked += 1;
        let err = (got - expected).abs() / expected.abs().max(1.0);
        if got.is_nan() || err > TOL {
            self.failures.push(format!(
                "{}: got {got:.17e}, expected {expected:.17e} (error {err:.2e})",
                what()
            ));
        }
    }

    /// A number that may be missing: JSON null is NaN on the Rust side.
    fn num_or_nan(&mut self, what: impl FnOnce() -> String, got: f64, expected: &Value) {
        if expected.is_null() {
            self.checked += 1;
            if !got.is_nan() {
                self.failures
                    .push(format!("{}: got {got:.17e}, expected NaN (null)", what()));
            }
        } else {
            self.num(what, got, expected.as_f64().unwrap());
        }
    }

    /// An optional number: JSON null is `None`.
    fn opt(&mut self, what: impl Fn() -> String, got: Option<f64>, expected: &Value) {
        match (got, expected.as_f64()) {
            (Some(g), Some(e)) => self.num(what, g, e),
            (None, None) if expected.is_null() => self.checked += 1,
            (g, _) => {
                self.checked += 1;
                self.failures
                    .push(format!("{}: got {g:?}, expected {expected}", what()));
            }
        }
    }

    /// Counts and lengths must match exactly.
    fn exact(&mut self, what: impl FnOnce() -> String, got: u64, expected: u64) {
        self.checked += 1;
        if got != expected {
            self.failures
                .push(format!("{}: got {got}, expected {expected}", what()));
        }
    }
}

fn check_reliability(name: &str, pred: &Predictions, spec: &Value, ck: &mut Checker) {
    let bins = spec["bins"].as_u64().unwrap() as usize;
    let kind = spec["binning"].as_str().unwrap();
    let binning = match kind {
        "equal_width" => Binning::EqualWidth(bins),
        "equal_mass" => Binning::EqualMass(bins),
        other => panic!("{name}: unknown binning {other}"),
    };
    let got = reliability_bins(pred, binning).unwrap_or_else(|e| panic!("{name}: {kind}({bins}): {e}"));
    let expected = spec["out"].as_array().unwrap();
    ck.exact(
        || format!("{name}: {kind}({bins}): number of bins"),
        got.len() as u64,
        expected.len() as u64,
    );
    for (m, (g, e)) in got.iter().zip(expected).enumerate() {
        let at = |field: &str| format!("{name}: {kind}({bins}) bin {m}: {field}");
        ck.num_or_nan(|| at("lower"), g.lower, &e["lower"]);
        ck.num_or_nan(|| at("upper"), g.upper, &e["upper"]);
        ck.exact(|| at("count"), g.count, e["count"].as_u64().unwrap());
        ck.opt(|| at("mean_confidence"), g.mean_confidence, &e["mean_confidence"]);
        ck.opt(|| at("accuracy"), g.accuracy, &e["accuracy"]);
        let ew = &e["wilson"];
        match (g.wilson, ew.as_array()) {
            (Some((lo, hi)), Some(pair)) if pair.len() == 2 => {
                ck.num(|| at("wilson.low"), lo, pair[0].as_f64().unwrap());
                ck.num(|| at("wilson.high"), hi, pair[1].as_f64().unwrap());
            }
            (None, None) if ew.is_null() => ck.checked += 2,
            (gw, _) => {
                ck.checked += 2;
                ck.failures.push(format!("{}: got {gw:?}, expected {ew}", at("wilson")));
            }
        }
    }
}

fn check_risk_coverage(name: &str, score: &str, errors: &[bool], u: &[f64], expected: &Value, ck: &mut Checker) {
    let got = risk_coverage_curve(errors, u).unwrap_or_else(|e| panic!("{name}: risk_coverage({score}): {e}"));
    let cov = floats(&expected["coverage"]);
    let risk = floats(&expected["risk"]);
    let thr = floats(&expected["threshold"]);
    assert!(
        cov.len() == risk.len() && cov.len() == thr.len(),
        "{name}: ragged curve {score}"
    );
    ck.exact(
        || format!("{name}: risk_coverage({score}): number of points"),
        got.len() as u64,
        cov.len() as u64,
    );
    for (i, g) in got.iter().enumerate().take(cov.len()) {
        let at = |field: &str| format!("{name}: risk_coverage({score}) point {i}: {field}");
        ck.num(|| at("coverage"), g.coverage, cov[i]);
        ck.num(|| at("risk"), g.risk, risk[i]);
        ck.num(|| at("threshold"), g.threshold, thr[i]);
    }
}

fn check_oracle(name: &str, errors: &[bool], expected: &Value, ck: &mut Checker) {
    let max_points = expected["max_points"].as_u64().unwrap() as usize;
    let got = oracle_rejection_curve(errors, max_points);
    let rej = floats(&expected["rejection"]);
    let quality = floats(&expected["quality"]);
    assert_eq!(rej.len(), quality.len(), "{name}: ragged oracle curve");
    ck.exact(
        || format!("{name}: oracle_rejection(max_points={max_points}): number of points"),
        got.len() as u64,
        rej.len() as u64,
    );
    for (i, g) in got.iter().enumerate().take(rej.len()) {
        let at = |field: &str| format!("{name}: oracle_rejection(max_points={max_points}) point {i}: {field}");
        ck.num(|| at("rejection"), g.rejection, rej[i]);
        ck.num(|| at("quality"), g.quality, quality[i]);
    }
}

#[test]
fn golden_curves_match_independent_implementations() {
    let files = case_files();
    assert!(
        files.len() >= 15,
        "expected at least 15 golden cases, found {}",
        files.len()
    );
    let mut ck = Checker {
        failures: Vec::new(),
        checked: 0,
    };
    let (mut reliability_specs, mut rc_curves, mut oracle_curves) = (0, 0, 0);
    for path in &files {
        let case = load(path);
        let name = case["name"].as_str().unwrap();
        let pred = predictions(&case);
        let curves = &case["curves"];
        assert!(curves.is_object(), "{name}: no curves (regenerate the golden cases)");

        let rel = curves["reliability"].as_array().unwrap();
        assert!(
            rel.iter().any(|s| s["binning"] == "equal_width") && rel.iter().any(|s| s["binning"] == "equal_mass"),
            "{name}: both binnings must be present"
        );
        for spec in rel {
            check_reliability(name, &pred, spec, &mut ck);
            reliability_specs += 1;
        }

        let errors = pred.error_vec();
        let rc = curves["risk_coverage"].as_object().unwrap();
        assert!(rc.contains_key("sr"), "{name}: no sr risk-coverage curve");
        for (score, expected) in rc {
            let u = if score == "sr" {
                BuiltinScore::Sr.compute(&pred)
            } else {
                floats(&case["scores"][score.as_str()])
            };
            check_risk_coverage(name, score, &errors, &u, expected, &mut ck);
            rc_curves += 1;
        }

        let oracle = curves["oracle_rejection"].as_array().unwrap();
        assert!(
            oracle.iter().any(|o| o["max_points"] == 0),
            "{name}: no unthinned oracle curve"
        );
        for expected in oracle {
            check_oracle(name, &errors, expected, &mut ck);
            oracle_curves += 1;
        }
    }
    println!(
        "{} golden curve values checked in {} files ({reliability_specs} reliability binnings, {rc_curves} \
         risk-coverage curves, {oracle_curves} oracle curves)",
        ck.checked,
        files.len()
    );
    assert!(
        ck.failures.is_empty(),
        "{} of {} golden curve values differ (first 50):\n{}",
        ck.failures.len(),
        ck.checked,
        ck.failures.iter().take(50).cloned().collect::<Vec<_>>().join("\n")
    );
}
