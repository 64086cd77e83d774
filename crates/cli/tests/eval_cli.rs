//! `ueb eval` end to end: every input format against the golden case `random_c3_probs`
//! (files written by numpy, pyarrow and safetensors: `fixtures/make_fixtures.py`), and every
//! bad-input case with the message it must print.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn golden(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../metrics/tests/golden/cases")
        .join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn ueb() -> Command {
    Command::cargo_bin("ueb").unwrap()
}

/// Runs `ueb eval ARGS --json` and parses its output.
fn eval_json(args: &[&str]) -> Value {
    let out = ueb().arg("eval").args(args).arg("--json").output().unwrap();
    assert!(
        out.status.success(),
        "ueb eval {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs `ueb eval ARGS`, expects failure, returns stderr.
fn eval_fails(args: &[&str]) -> String {
    let out = ueb().arg("eval").args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "ueb eval {args:?} should fail");
    assert!(!stderr.contains("panicked"), "panic instead of an error: {stderr}");
    stderr
}

/// Compares the JSON report with a golden case's expected values (1e-9), for the given scores.
fn assert_matches_golden(report: &Value, case: &Value, scores: &[&str]) {
    let exp = &case["expected"];
    assert_eq!(report["n"], case["labels"].as_array().unwrap().len());
    assert_eq!(report["num_classes"], case["num_classes"]);
    let close = |got: &Value, want: &Value, what: &str| match (got.as_f64(), want.as_f64()) {
        (Some(g), Some(w)) => assert!((g - w).abs() <= 1e-9 * w.abs().max(1.0), "{what}: {g} vs {w}"),
        _ => assert!(got.is_null() && want.is_null(), "{what}: {got} vs {want}"),
    };
    for (name, want) in exp["calibration"].as_object().unwrap() {
        close(&report["calibration"][name], want, name);
    }
    for score in scores {
        for (name, want) in exp["error_detection"][score].as_object().unwrap() {
            close(
                &report["error_detection"][score][name],
                want,
                &format!("{score}.{name}"),
            );
        }
    }
}

const ALL: [&str; 5] = ["sr", "entropy", "margin", "noisy_sr", "uniform_random"];

#[test]
fn npy_matches_golden() {
    let r = eval_json(&[
        "--probs",
        &fixture("probs.npy"),
        "--labels",
        &fixture("labels.npy"),
        "--scores",
        &fixture("noisy_sr.npy"),
        "--scores",
        &fixture("uniform_random.npy"),
    ]);
    assert_matches_golden(&r, &golden("random_c3_probs"), &ALL);
}

#[test]
fn npy_layouts_and_dtypes_give_identical_reports() {
    let base = eval_json(&["--probs", &fixture("probs.npy"), "--labels", &fixture("labels.npy")]);
    for (probs, labels) in [
        ("probs_fortran.npy", "labels.npy"),
        ("probs_be.npy", "labels_i4.npy"),
        ("probs.npy", "labels_f8.npy"),
    ] {
        let r = eval_json(&["--probs", &fixture(probs), "--labels", &fixture(labels)]);
        assert_eq!(r, base, "{probs} + {labels}");
    }
}

#[test]
fn float32_probabilities_are_accepted() {
    let r = eval_json(&["--probs", &fixture("probs_f4.npy"), "--labels", &fixture("labels.npy")]);
    assert_eq!(r["n"], 300);
}

#[test]
fn csv_matches_golden() {
    let r = eval_json(&[
        "--probs",
        &fixture("probs.csv"),
        "--labels",
        &fixture("labels.csv"),
        "--scores",
        &fixture("noisy_sr.csv"),
    ]);
    assert_matches_golden(&r, &golden("random_c3_probs"), &["sr", "entropy", "margin", "noisy_sr"]);
}

#[test]
fn parquet_columns_and_named_scores_match_golden() {
    let preds = fixture("preds.parquet");
    let r = eval_json(&[
        "--probs",
        &format!("{preds}#p0,p1,p2"),
        "--labels",
        &preds,
        "--scores",
        &format!("noisy_sr={preds}#noisy_sr"),
        "--scores",
        &format!("uniform_random={preds}#uniform_random"),
    ]);
    assert_matches_golden(&r, &golden("random_c3_probs"), &ALL);
}

#[test]
fn parquet_list_column_matches_golden() {
    let r = eval_json(&[
        "--probs",
        &fixture("probs_list.parquet"),
        "--labels",
        &fixture("labels.npy"),
    ]);
    assert_matches_golden(&r, &golden("random_c3_probs"), &["sr", "entropy", "margin"]);
}

#[test]
fn safetensors_matches_golden() {
    let st = fixture("preds.safetensors");
    let r = eval_json(&[
        "--probs",
        &st,
        "--labels",
        &st,
        "--scores",
        &format!("uniform_random={st}"),
    ]);
    assert_matches_golden(
        &r,
        &golden("random_c3_probs"),
        &["sr", "entropy", "margin", "uniform_random"],
    );
}

#[test]
fn logits_csv_matches_golden() {
    let case = golden("random_c2_logits");
    let dir = tempfile::tempdir().unwrap();
    let c = case["num_classes"].as_u64().unwrap() as usize;
    let values: Vec<f64> = case["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let logits: String = values.chunks(c).map(|r| format!("{},{}\n", r[0], r[1])).collect();
    let labels: String = case["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| format!("{v}\n"))
        .collect();
    let lp = write(dir.path(), "logits.csv", &logits);
    let yp = write(dir.path(), "labels.csv", &labels);
    let r = eval_json(&["--logits", &lp, "--labels", &yp]);
    assert_matches_golden(&r, &case, &["sr", "entropy", "margin"]);
}

#[test]
fn undefined_values_are_null_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "p.csv", "0.9,0.1\n0.2,0.8\n");
    let y = write(dir.path(), "y.csv", "0\n1\n");
    let r = eval_json(&["--probs", &p, "--labels", &y]);
    assert!(r["error_detection"]["sr"]["roc_auc"].is_null());
    assert_eq!(
        r["error_detection"]["sr"]["roc_auc_reason"],
        "no errors: every prediction is correct"
    );
    assert_eq!(r["calibration"]["accuracy"], 1.0);
}

#[test]
fn one_dimensional_binary_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let p1 = write(dir.path(), "p1.csv", "0.1\n0.8\n0.3\n");
    let p2 = write(dir.path(), "p2.csv", "0.9,0.1\n0.2,0.8\n0.7,0.3\n");
    let y = write(dir.path(), "y.csv", "0\n1\n1\n");
    assert_eq!(
        eval_json(&["--probs", &p1, "--labels", &y]),
        eval_json(&["--probs", &p2, "--labels", &y])
    );
}

#[test]
fn bootstrap_is_seeded_and_brackets_the_value() {
    let args = [
        "--probs",
        &fixture("probs.npy"),
        "--labels",
        &fixture("labels.npy"),
        "--bootstrap",
        "200",
    ];
    let a = eval_json(&[&args[..], &["--seed", "3"]].concat());
    let b = eval_json(&[&args[..], &["--seed", "3"]].concat());
    let c = eval_json(&[&args[..], &["--seed", "4"]].concat());
    assert_eq!(a, b);
    assert_ne!(a, c);
    let auc = &a["error_detection"]["sr"]["roc_auc"];
    let (v, lo, hi) = (
        auc["value"].as_f64().unwrap(),
        auc["ci_low"].as_f64().unwrap(),
        auc["ci_high"].as_f64().unwrap(),
    );
    assert!(lo < v && v < hi, "{lo} {v} {hi}");
    let default_b = eval_json(&[
        "--probs",
        &fixture("probs.npy"),
        "--labels",
        &fixture("labels.npy"),
        "--bootstrap",
    ]);
    assert!(default_b["calibration"]["ece"]["ci_low"].is_number());
}

#[test]
fn human_output_is_an_aligned_table() {
    let out = ueb()
        .args([
            "eval",
            "--probs",
            &fixture("probs.npy"),
            "--labels",
            &fixture("labels.npy"),
        ])
        .args(["--scores", &fixture("noisy_sr.npy")])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("300 samples, 3 classes, 15 bins"), "{text}");
    let header = text.lines().find(|l| l.starts_with("error detection")).unwrap();
    for name in ["sr", "entropy", "margin", "noisy_sr"] {
        assert!(header.contains(name), "{header}");
    }
    let roc = text.lines().find(|l| l.starts_with("roc_auc")).unwrap();
    assert_eq!(roc.len(), header.len(), "columns align:\n{header}\n{roc}");
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p: PathBuf = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// (file contents or None for "do not create", extra args, expected message fragments)
#[test]
fn bad_inputs_name_the_file_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good_p = write(d, "good_p.csv", "0.9,0.1\n0.2,0.8\n0.6,0.4\n");
    let good_y = write(d, "good_y.csv", "0\n1\n1\n");
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec![
                "--probs".into(),
                write(d, "nan.csv", "0.9,0.1\nnan,0.8\n0.6,0.4\n"),
                "--labels".into(),
                good_y.clone(),
            ],
            vec!["nan.csv", "row 1, column 0 is NaN"],
        ),
        (
            vec![
                "--probs".into(),
                write(d, "inf.csv", "0.9,0.1\n0.2,0.8\n0.6,inf\n"),
                "--labels".into(),
                good_y.clone(),
            ],
            vec!["inf.csv", "row 2, column 1 is inf"],
        ),
        (
            vec![
                "--probs".into(),
                good_p.clone(),
                "--labels".into(),
                write(d, "range.csv", "0\n2\n1\n"),
            ],
            vec!["range.csv", "row 1 has label 2, outside 0..2"],
        ),
        (
            vec![
                "--probs".into(),
                good_p.clone(),
                "--labels".into(),
                write(d, "neg.csv", "0\n-1\n1\n"),
            ],
            vec!["neg.csv", "row 1 has label -1"],
        ),
        (
            vec![
                "--probs".into(),
                good_p.clone(),
                "--labels".into(),
                write(d, "short.csv", "0\n1\n"),
            ],
            vec!["short.csv", "expected 3 rows (one per sample), found 2"],
        ),
        (
            vec![
                "--probs".into(),
                write(d, "sum.csv", "0.9,0.1\n0.2,0.7\n0.6,0.4\n"),
                "--labels".into(),
                good_y.clone(),
            ],
            vec!["sum.csv", "row 1 sums to 0.8999", "--logits"],
        ),
        (
            vec![
                "--probs".into(),
                write(d, "negp.csv", "1.1,-0.1\n0.2,0.8\n0.6,0.4\n"),
                "--labels".into(),
                good_y.clone(),
            ],
            vec!["negp.csv", "row 0, column 1 is -0.1"],
        ),
        (
            vec![
                "--probs".into(),
                write(d, "empty.csv", ""),
                "--labels".into(),
                good_y.clone(),
            ],
            vec!["empty.csv", "empty file"],
        ),
        (
            vec![
                "--probs".into(),
                write(d, "text.csv", "p0,p1\n0.9,0.1\n0.2,abc\n"),
                "--labels".into(),
                good_y.clone(),
            ],
            vec!["text.csv", "line 3 (row 1), column `p1`: cannot read `abc` as a number"],
        ),
        (
            vec![
                "--probs".into(),
                write(d, "ragged.csv", "0.9,0.1\n0.2\n"),
                "--labels".into(),
                good_y.clone(),
            ],
            vec!["ragged.csv", "line 2"],
        ),
        (
            vec![
                "--probs".into(),
                good_p.clone(),
                "--labels".into(),
                write(d, "frac.csv", "0\n1.5\n1\n"),
            ],
            vec!["frac.csv", "row 1 is 1.5, not an integer class index"],
        ),
        (
            vec![
                "--probs".into(),
                write(d, "bad.npy", "\u{93}NUMPY garbage"),
                "--labels".into(),
                good_y.clone(),
            ],
            vec!["bad.npy", "not a valid .npy file"],
        ),
        (
            vec![
                "--probs".into(),
                write(d, "p.txt", "0.5,0.5\n"),
                "--labels".into(),
                good_y.clone(),
            ],
            vec!["p.txt", "unsupported file type"],
        ),
        (
            vec![
                "--probs".into(),
                d.join("missing.csv").to_string_lossy().into_owned(),
                "--labels".into(),
                good_y.clone(),
            ],
            vec!["missing.csv", "cannot read"],
        ),
        (
            vec![
                "--probs".into(),
                good_p.clone(),
                "--labels".into(),
                good_y.clone(),
                "--scores".into(),
                write(d, "u_nan.csv", "0.1\nNaN\n0.2\n"),
            ],
            vec!["u_nan.csv", "row 1 is NaN"],
        ),
        (
            vec![
                "--probs".into(),
                good_p.clone(),
                "--labels".into(),
                good_y.clone(),
                "--scores".into(),
                write(d, "u_short.csv", "0.1\n0.2\n"),
            ],
            vec!["u_short.csv", "expected 3 rows"],
        ),
        (
            vec![
                "--probs".into(),
                good_p.clone(),
                "--labels".into(),
                good_y.clone(),
                "--scores".into(),
                write(d, "sr.csv", "0.1\n0.2\n0.3\n"),
            ],
            vec!["`sr` is a built-in score", "NAME="],
        ),
        (
            vec![
                "--probs".into(),
                good_p.clone(),
                "--labels".into(),
                good_y.clone(),
                "--bins".into(),
                "0".into(),
            ],
            vec!["--bins", "not a positive whole number"],
        ),
        (
            vec![
                "--probs".into(),
                format!("{}#p9", fixture("preds.parquet")),
                "--labels".into(),
                good_y.clone(),
            ],
            vec!["preds.parquet", "no column `p9`", "p0, p1, p2, label"],
        ),
        (
            vec![
                "--probs".into(),
                format!("{}#p0,p1,p2", fixture("preds.parquet")),
                "--labels".into(),
                fixture("preds.parquet"),
                "--scores".into(),
                fixture("preds.parquet"),
            ],
            vec!["preds.parquet", "name the one holding scores", "#COLUMN"],
        ),
        (
            vec![
                "--probs".into(),
                fixture("preds.safetensors"),
                "--labels".into(),
                format!("{}#y", fixture("preds.safetensors")),
            ],
            vec!["preds.safetensors", "no tensor `y`", "labels, probs, scores"],
        ),
        (
            vec![
                "--probs".into(),
                good_p.clone(),
                "--logits".into(),
                good_p.clone(),
                "--labels".into(),
                good_y.clone(),
            ],
            vec!["cannot be used with"],
        ),
    ];
    for (args, fragments) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = eval_fails(&args);
        for f in fragments {
            assert!(
                err.contains(f),
                "ueb eval {args:?}\nexpected the message to contain {f:?}, got:\n{err}"
            );
        }
    }
    // A duplicate score name is refused with a way out.
    let u = write(d, "u.csv", "0.1\n0.2\n0.3\n");
    let sub = d.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let u2 = write(&sub, "u.csv", "0.1\n0.2\n0.3\n");
    let err = eval_fails(&["--probs", &good_p, "--labels", &good_y, "--scores", &u, "--scores", &u2]);
    assert!(err.contains("the name `u` is already used"), "{err}");
}
