//! `isotonic` and `histogram_binning` against scikit-learn's `IsotonicRegression` and a numpy
//! implementation of the definition (`fixtures/make_binning_fixture.py`), and their save/load
//! round trip.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use serde_json::Value;
use ueb_cache::SplitData;
use ueb_heads::Head;
use ueb_heads::beta::BetaHead;
use ueb_heads::binning::{Binning, BinningHead, HistogramBinningConfig};
use ueb_heads::classical::{MatrixScalingHead, VectorScalingConfig};
use ueb_heads::platt::PlattHead;

fn fixture() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/binning.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn split(fx: &Value, name: &str) -> SplitData {
    let c = fx["num_classes"].as_u64().unwrap_or(2) as usize;
    let logits: Vec<f32> = fx[name]["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    // A split without labels (the binary test rows) gets class 0 everywhere: only scored.
    let n = logits.len() / c;
    let labels: Vec<i64> = fx[name]["labels"]
        .as_array()
        .map_or_else(|| vec![0; n], |a| a.iter().map(|v| v.as_i64().unwrap()).collect());
    SplitData {
        features: vec![0.0; n],
        logits,
        labels,
        group: None,
        dim: 1,
        num_classes: c,
    }
}

fn close(got: &[f64], want: &Value, what: &str, tol: f64) {
    let want: Vec<f64> = want.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(got.len(), want.len(), "{what}");
    let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst <= tol, "{what}: worst |difference| {worst:e}");
}

#[test]
fn per_class_calibrators_match_scikit_learn_and_the_definition() {
    let fx = fixture();
    let (val, test) = (split(&fx, "val"), split(&fx, "test"));
    let bins = fx["bins"].as_u64().unwrap() as usize;
    let tmp = tempfile::tempdir().unwrap();
    // Platt's (a, b) are an optimum scikit-learn's L-BFGS reaches to its tolerance only.
    let heads: [(&str, Box<dyn Head>, f64); 6] = [
        ("isotonic", Box::new(BinningHead::fit_isotonic(&val).unwrap()), 1e-12),
        (
            "histogram_binning",
            Box::new(
                BinningHead::fit_histogram(
                    &HistogramBinningConfig {
                        bins,
                        binning: Binning::EqualWidth,
                    },
                    &val,
                )
                .unwrap(),
            ),
            1e-12,
        ),
        (
            "histogram_binning_equal_mass",
            Box::new(
                BinningHead::fit_histogram(
                    &HistogramBinningConfig {
                        bins,
                        binning: Binning::EqualMass,
                    },
                    &val,
                )
                .unwrap(),
            ),
            1e-12,
        ),
        ("platt", Box::new(PlattHead::fit(&val).unwrap()), 1e-6),
        // betacal's procedure with scikit-learn's solver run to tol = 1e-14.
        ("beta", Box::new(BetaHead::fit(&val).unwrap()), 1e-9),
        (
            "matrix_scaling",
            Box::new(
                MatrixScalingHead::fit(
                    &VectorScalingConfig {
                        gradient_tolerance: 1e-12,
                        max_iterations: 10_000,
                    },
                    &val,
                )
                .unwrap(),
            ),
            1e-6,
        ),
    ];
    for (name, head, tol) in heads {
        let p = head.probabilities(&test).unwrap().unwrap();
        close(&p, &fx[name], name, tol);
        // The score is 1 − max p̂ of those probabilities.
        let u = head.score(&test).unwrap();
        for (row, ui) in p.chunks_exact(3).zip(&u) {
            assert_eq!(*ui, 1.0 - row.iter().copied().fold(f64::MIN, f64::max));
        }
        // Saved and loaded, the same numbers.
        let dir = tmp.path().join(name);
        head.save(&dir).unwrap();
        let back = ueb_heads::load(&dir).unwrap();
        assert_eq!(back.name(), name.trim_end_matches("_equal_mass"));
        assert_eq!(back.probabilities(&test).unwrap().unwrap(), p, "{name}");
    }
    // Two classes: one fit on z₁ − z₀.
    let (bv, bt) = (split(&fx["binary"], "val"), split(&fx["binary"], "test"));
    let head = PlattHead::fit(&bv).unwrap();
    close(
        &head.probabilities(&bt).unwrap().unwrap(),
        &fx["binary"]["platt"],
        "platt, binary",
        1e-6,
    );

    // Beta calibration, two classes (one map on p₁), and betacal's own output, whose L-BFGS
    // stops at scikit-learn's default tolerance.
    let head = BetaHead::fit(&bv).unwrap();
    let p = head.probabilities(&bt).unwrap().unwrap();
    close(&p, &fx["binary"]["beta"], "beta, binary", 1e-9);
    close(&p, &fx["binary"]["beta_betacal"], "beta, binary, against betacal", 2e-4);
    let p = BetaHead::fit(&val).unwrap().probabilities(&test).unwrap().unwrap();
    close(&p, &fx["beta_betacal"], "beta, against betacal", 5e-4);
    // A U-shaped label rate gives a < 0 (refitted with a = 0), a cap-shaped one b < 0.
    for case in fx["beta_refit"].as_array().unwrap() {
        let shape = case["shape"].as_str().unwrap();
        let (v, t) = (split(case, "val"), split(case, "test"));
        let head = BetaHead::fit(&v).unwrap();
        let map = head.summary();
        let zero = if shape == "u" { "a" } else { "b" };
        assert_eq!(map[zero][0], 0.0, "{shape}: {map}");
        let want = case["map"].as_array().unwrap();
        let got = [&map["a"][0], &map["b"][0], &map["c"][0]];
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g.as_f64().unwrap() - w.as_f64().unwrap()).abs() < 2e-3,
                "{shape}: {map} vs betacal {want:?}"
            );
        }
        let p = head.probabilities(&t).unwrap().unwrap();
        close(&p, &case["beta"], &format!("beta, {shape}"), 1e-9);
        close(
            &p,
            &case["beta_betacal"],
            &format!("beta, {shape}, against betacal"),
            2e-4,
        );
    }

    // Bad settings and inputs are errors.
    let zero = HistogramBinningConfig {
        bins: 0,
        ..HistogramBinningConfig::default()
    };
    assert!(BinningHead::fit_histogram(&zero, &val).is_err());
    let mut empty = val.clone();
    empty.labels.clear();
    empty.logits.clear();
    empty.features.clear();
    assert!(BinningHead::fit_isotonic(&empty).is_err());
}
