//! `dirichlet` against the authors' dirichletcal 0.5.3 (`fixtures/make_dirichlet_fixture.py`): a
//! fixed (λ, μ), the cross-validated choice of (λ, μ) and its refit, and the save/load round
//! trip.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use serde_json::Value;
use ueb_cache::SplitData;
use ueb_heads::Head;
use ueb_heads::dirichlet::{DirichletConfig, DirichletHead};

fn fixture() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dirichlet.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn split(fx: &Value, name: &str) -> SplitData {
    let c = fx["num_classes"].as_u64().unwrap() as usize;
    let logits: Vec<f32> = floats(&fx[name]["logits"]).into_iter().map(|v| v as f32).collect();
    let labels: Vec<i64> = fx[name]["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let n = labels.len();
    SplitData {
        features: vec![0.0; n],
        logits,
        labels,
        group: None,
        dim: 1,
        num_classes: c,
    }
}

fn worst(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)
}

#[test]
fn dirichlet_matches_dirichletcal() {
    let fx = fixture();
    let (val, test) = (split(&fx, "val"), split(&fx, "test"));
    let fixed = &fx["fixed"];
    let cfg = DirichletConfig {
        lambdas: vec![fixed["lambda"].as_f64().unwrap()],
        mus: vec![fixed["mu"].as_f64().unwrap()],
        ..DirichletConfig::default()
    };
    let head = DirichletHead::fit(&cfg, &val).unwrap();
    let p = head.probabilities(&test).unwrap().unwrap();
    let d = worst(&p, &floats(&fixed["probs_converged"]));
    // dirichletcal's Newton reaches the optimum here (a gradient 1-norm of 1e-13).
    assert!(
        d <= 1e-12,
        "fixed (λ, μ): probabilities differ from dirichletcal's by {d:e}"
    );
    let s = head.summary();
    let d = worst(&floats(&s["weight"]), &floats(&fixed["weight"]));
    assert!(d <= 1e-10, "fixed (λ, μ): W differs by {d:e}: {s}");
    let d = worst(&floats(&s["bias"]), &floats(&fixed["bias"]));
    assert!(d <= 1e-10, "fixed (λ, μ): b differs by {d:e}: {s}");

    // Cross-validation: the same held-out NLL per (λ, μ), the same choice, the same refit. The
    // folds' fits stop at tolerances on both sides (dirichletcal's gradient 1-norm of 1e-8,
    // L-BFGS's end point here): their scores agree to 1e-8, three orders under the 4e-4 gap
    // between the best pair and the next.
    let cv = &fx["cv"];
    let cfg = DirichletConfig {
        lambdas: floats(&cv["lambdas"]),
        mus: floats(&cv["mus"]),
        folds: cv["folds"].as_u64().unwrap() as usize,
        ..DirichletConfig::default()
    };
    let head = DirichletHead::fit(&cfg, &val).unwrap();
    let s = head.summary();
    let got: Vec<f64> = s["cv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["cv_nll"].as_f64().unwrap())
        .collect();
    let d = worst(&got, &floats(&cv["mean_nll"]));
    assert!(d <= 1e-8, "cross-validated NLL differs by {d:e}: {s}");
    assert_eq!(s["lambda"], cv["best"]["lambda"], "{s}");
    assert_eq!(s["mu"], cv["best"]["mu"], "{s}");
    let p = head.probabilities(&test).unwrap().unwrap();
    let d = worst(&p, &floats(&cv["probs"]));
    assert!(d <= 1e-9, "refit: probabilities differ by {d:e}");
    let u = head.score(&test).unwrap();
    for (row, ui) in p.chunks_exact(4).zip(&u) {
        assert_eq!(*ui, 1.0 - row.iter().copied().fold(f64::MIN, f64::max));
    }

    // Saved and loaded, the same numbers.
    let tmp = tempfile::tempdir().unwrap();
    head.save(tmp.path()).unwrap();
    let back = ueb_heads::load(tmp.path()).unwrap();
    assert_eq!(back.name(), "dirichlet");
    assert_eq!(back.probabilities(&test).unwrap().unwrap(), p);
}

#[test]
fn dirichlet_settings_and_small_splits_are_clear_errors() {
    let fx = fixture();
    let val = split(&fx, "val");
    let bad = |cfg: DirichletConfig, want: &str| {
        let e = DirichletHead::fit(&cfg, &val).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    };
    bad(
        DirichletConfig {
            lambdas: vec![],
            ..DirichletConfig::default()
        },
        "lambdas must be a non-empty list",
    );
    bad(
        DirichletConfig {
            mus: vec![-1.0],
            ..DirichletConfig::default()
        },
        "mus must be a non-empty list of finite weights",
    );
    bad(
        DirichletConfig {
            folds: 1,
            ..DirichletConfig::default()
        },
        "folds must be at least 2",
    );
    let mut tiny = val.clone();
    tiny.labels.truncate(3);
    tiny.logits.truncate(12);
    tiny.features.truncate(3);
    let e = DirichletHead::fit(&DirichletConfig::default(), &tiny)
        .unwrap_err()
        .to_string();
    assert!(e.contains("5 folds need at least"), "{e}");
}
