//! `ueb score` end to end on a cache written from the heads' numpy/scipy fixture
//! (`crates/heads/tests/fixtures/make_classical_fixture.py`), and its bad-input messages.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use common::{floats, read_npy, ueb, write_cache};

#[test]
fn scores_match_the_fixture_in_every_output_format() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let fx = write_cache(&cache);
    let cfg = dir.path().join("md.yaml");
    std::fs::write(&cfg, "features: dense\nl2_normalize: true\n").unwrap();
    for (head, config, expected) in [
        ("temperature", None, floats(&fx["temperature"]["test_scores"])),
        ("mahalanobis", Some(&cfg), floats(&fx["mahalanobis"]["dense_l2"]["md"])),
        ("relative_mahalanobis", None, floats(&fx["mahalanobis"]["input"]["rmd"])),
    ] {
        let out = dir.path().join(format!("{head}.npy"));
        let mut cmd = ueb();
        cmd.args([
            "score",
            "--cache",
            cache.to_str().unwrap(),
            "--head",
            head,
            "--out",
            out.to_str().unwrap(),
        ]);
        if let Some(c) = config {
            cmd.args(["--config", c.to_str().unwrap()]);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{head}: {}", String::from_utf8_lossy(&o.stderr));
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.contains("error-detection ROC-AUC"), "{stdout}");
        let u = read_npy(&out);
        assert_eq!(u.len(), expected.len());
        for (g, w) in u.iter().zip(&expected) {
            assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{head}: {g} vs {w}");
        }
    }
    // A calibrator's probabilities: rows of the split, whose 1 − max is the fixture's score
    // (numpy/scipy); in every format; a head without probabilities of its own is refused.
    let expected = floats(&fx["temperature"]["test_scores"]);
    for ext in ["csv", "npy", "parquet"] {
        let probs = dir.path().join(format!("probs.{ext}"));
        let o = ueb()
            .args(["score", "--head", "temperature", "--cache"])
            .arg(&cache)
            .arg("--out")
            .arg(dir.path().join("t.npy"))
            .arg("--probs-out")
            .arg(&probs)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        if ext == "csv" {
            let text = std::fs::read_to_string(&probs).unwrap();
            let mut lines = text.lines();
            assert_eq!(lines.next(), Some("p0,p1,p2"));
            let rows: Vec<Vec<f64>> = lines
                .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
                .collect();
            assert_eq!(rows.len(), expected.len());
            for (row, u) in rows.iter().zip(&expected) {
                let max = row.iter().copied().fold(f64::MIN, f64::max);
                assert!((1.0 - max - u).abs() <= 1e-5, "{row:?} vs u = {u}");
                assert!((row.iter().sum::<f64>() - 1.0).abs() <= 1e-12);
            }
        }
        // Every format reads back as probabilities in ueb eval (shape [N, 3], rows sum to 1).
        let labels = dir.path().join("labels.csv");
        let y: String = (0..expected.len()).map(|i| format!("{}\n", i % 3)).collect();
        std::fs::write(&labels, y).unwrap();
        let o = ueb()
            .args(["eval", "--probs"])
            .arg(&probs)
            .arg("--labels")
            .arg(&labels)
            .arg("--json")
            .output()
            .unwrap();
        assert!(o.status.success(), "{ext}: {}", String::from_utf8_lossy(&o.stderr));
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(report["num_classes"], 3, "{ext}");
    }
    let o = ueb()
        .args(["score", "--head", "sr", "--cache"])
        .arg(&cache)
        .arg("--out")
        .arg(dir.path().join("sr.npy"))
        .arg("--probs-out")
        .arg(dir.path().join("none.npy"))
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("outputs no probabilities of its own"),
        "{e}"
    );
    assert!(
        !dir.path().join("sr.npy").exists(),
        "written before --probs-out was refused"
    );

    // --json: one object a script can read, with the same ROC-AUC the text prints.
    let o = ueb()
        .args(["score", "--head", "temperature", "--json", "--cache"])
        .arg(&cache)
        .arg("--out")
        .arg(dir.path().join("j.npy"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["head"], "temperature");
    assert_eq!(v["fit"], "val");
    assert_eq!(v["n"], expected.len());
    assert!(v["summary"]["temperature"].as_f64().is_some(), "{v}");
    // The ROC-AUC of the scores written, over the test split's errors.
    let u = read_npy(&dir.path().join("j.npy"));
    let (fc, _) = ueb_cache::FeatureCache::load(&cache).unwrap();
    let errors = fc.split(ueb_cache::Split::Test).errors();
    let want = ueb_metrics::ErrorDetection::with_default_bins(&errors, &u)
        .unwrap()
        .roc_auc
        .unwrap();
    assert_eq!(v["roc_auc"].as_f64(), Some(want), "{v}");

    // The same scores as CSV (shortest round-trip text) and Parquet, read back by ueb eval.
    for ext in ["csv", "parquet"] {
        let out = dir.path().join(format!("sr.{ext}"));
        let o = ueb()
            .args([
                "score",
                "--cache",
                cache.to_str().unwrap(),
                "--head",
                "sr",
                "--out",
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(out.exists());
    }
    let csv = std::fs::read_to_string(dir.path().join("sr.csv")).unwrap();
    assert!(csv.starts_with("u\n") && csv.lines().count() == 91, "{}", &csv[..40]);
}

#[test]
fn bad_input_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    write_cache(&cache);
    let out = dir.path().join("u.npy");
    let run = |args: &[&str]| {
        let o = ueb().arg("score").args(args).output().unwrap();
        assert!(!o.status.success(), "{args:?} should fail");
        let e = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!e.contains("panicked"), "{e}");
        e
    };
    let c = cache.to_str().unwrap();
    let o = out.to_str().unwrap();
    let e = run(&["--cache", c, "--head", "nope", "--out", o]);
    assert!(e.contains("unknown head") && e.contains("mahalanobis"), "{e}");
    let e = run(&[
        "--cache",
        dir.path().join("missing").to_str().unwrap(),
        "--head",
        "sr",
        "--out",
        o,
    ]);
    assert!(e.contains("meta.json"), "{e}");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "features: dense\nl2_normalise: true\n").unwrap();
    let e = run(&[
        "--cache",
        c,
        "--head",
        "mahalanobis",
        "--config",
        bad.to_str().unwrap(),
        "--out",
        o,
    ]);
    assert!(
        e.contains("bad.yaml") && e.contains("l2_normalise") && e.contains("line 2"),
        "{e}"
    );
    let e = run(&[
        "--cache",
        c,
        "--head",
        "sr",
        "--config",
        bad.to_str().unwrap(),
        "--out",
        o,
    ]);
    assert!(e.contains("has no settings"), "{e}");
    let e = run(&[
        "--cache",
        c,
        "--head",
        "sr",
        "--out",
        dir.path().join("u.txt").to_str().unwrap(),
    ]);
    assert!(e.contains("unsupported output type"), "{e}");
    let e = run(&["--cache", c, "--head", "sr", "--split", "dev", "--out", o]);
    assert!(e.contains("unknown split `dev`"), "{e}");
    let e = run(&["--cache", c, "--head", "sr", "--device", "tpu", "--out", o]);
    assert!(e.contains("unknown device"), "{e}");
}
