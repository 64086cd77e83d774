//! `ueb extract` end to end on the backbones' transformers fixtures
//! (`crates/backbones/tests/fixtures/make_encoder_fixtures.py`), and its bad-input messages.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::path::{Path, PathBuf};

use common::ueb;
use serde_json::Value;

fn model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../backbones/tests/fixtures")
        .join(name)
}

fn expected(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(model(name).join("expected.json")).unwrap()).unwrap()
}

fn read_f32(path: &Path, key: &str) -> (Vec<f32>, Vec<usize>) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(key).unwrap();
    let v = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (v, t.shape().to_vec())
}

fn max_diff(got: &[f32], want: &Value) -> f64 {
    let want: Vec<f64> = want
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
        .collect();
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(&want)
        .map(|(g, w)| (f64::from(*g) - w).abs())
        .fold(0.0, f64::max)
}

#[test]
fn jsonl_pairs_and_txt_match_transformers() {
    let tmp = tempfile::tempdir().unwrap();
    // Pairs from jsonl, through the RoBERTa classifier: features and logits.
    let exp = expected("roberta");
    let case = exp["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "pairs")
        .unwrap();
    let mut jsonl = String::new();
    for (a, b) in case["texts"]
        .as_array()
        .unwrap()
        .iter()
        .zip(case["text_pairs"].as_array().unwrap())
    {
        jsonl.push_str(&serde_json::json!({"premise": a, "hypothesis": b, "id": 1}).to_string());
        jsonl.push('\n');
    }
    jsonl.push('\n'); // a blank line is not a record
    let input = tmp.path().join("pairs.jsonl");
    std::fs::write(&input, jsonl).unwrap();
    let out = tmp.path().join("pairs.safetensors");
    ueb()
        .args(["extract", "--model"])
        .arg(model("roberta"))
        .args(["--input"])
        .arg(&input)
        .args([
            "--text-field",
            "premise",
            "--text-pair-field",
            "hypothesis",
            "--max-length",
        ])
        .arg(case["max_length"].to_string())
        .args(["--batch-size", "2", "--out"])
        .arg(&out)
        .assert()
        .success();
    let (f, shape) = read_f32(&out, "features");
    assert_eq!(shape, vec![3, 32]);
    assert!(max_diff(&f, &case["features"]) <= 1e-4);
    let (z, shape) = read_f32(&out, "logits");
    assert_eq!(shape, vec![3, 3]);
    assert!(max_diff(&z, &case["logits"]) <= 1e-4);

    // One text per line through a base model without a head: features only, on ndarray.
    let exp = expected("bert-base-unprefixed");
    let case = exp["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "plain")
        .unwrap();
    let txt: Vec<&str> = case["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let input = tmp.path().join("plain.txt");
    std::fs::write(&input, txt.join("\n") + "\n").unwrap();
    let out = tmp.path().join("plain.safetensors");
    ueb()
        .args(["extract", "--device", "ndarray", "--model"])
        .arg(model("bert-base-unprefixed"))
        .args(["--input"])
        .arg(&input)
        .args(["--max-length", "64", "--out"])
        .arg(&out)
        .assert()
        .success();
    let (f, shape) = read_f32(&out, "features");
    assert_eq!(shape, vec![txt.len(), 32]);
    assert!(max_diff(&f, &case["features"]) <= 1e-4);
    let bytes = std::fs::read(&out).unwrap();
    assert!(
        safetensors::SafeTensors::deserialize(&bytes)
            .unwrap()
            .tensor("logits")
            .is_err()
    );
}

#[test]
fn decoders_match_transformers() {
    // A Qwen3 classifier (bf16 checkpoint): the last non-pad token's features and the score
    // logits; then the LLaMA-family causal LM without a score: features only.
    let tmp = tempfile::tempdir().unwrap();
    for (name, has_logits) in [("qwen3", true), ("qwen2", true)] {
        let exp = expected(name);
        let case = exp["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "padded")
            .unwrap();
        let txt: Vec<&str> = case["texts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let input = tmp.path().join("texts.txt");
        std::fs::write(&input, txt.join("\n") + "\n").unwrap();
        let out = tmp.path().join(format!("{name}.safetensors"));
        ueb()
            .args(["extract", "--model"])
            .arg(model(name))
            .args(["--input"])
            .arg(&input)
            .args(["--max-length", "64", "--batch-size", "2", "--out"])
            .arg(&out)
            .assert()
            .success();
        let (f, shape) = read_f32(&out, "features");
        assert_eq!(shape, vec![txt.len(), 32]);
        assert!(max_diff(&f, &case["features"]) <= 1e-4, "{name}");
        if has_logits {
            let (z, shape) = read_f32(&out, "logits");
            assert_eq!(shape, vec![txt.len(), 3]);
            assert!(max_diff(&z, &case["logits"]) <= 1e-4, "{name}");
        }
    }
    let input = tmp.path().join("one.txt");
    std::fs::write(&input, "Which planet is closest to the sun?\n").unwrap();
    let out = tmp.path().join("lm.safetensors");
    ueb()
        .args(["extract", "--model"])
        .arg(model("llama-lm"))
        .args(["--input"])
        .arg(&input)
        .args(["--out"])
        .arg(&out)
        .assert()
        .success();
    let (_, shape) = read_f32(&out, "features");
    assert_eq!(shape, vec![1, 32]);
    let bytes = std::fs::read(&out).unwrap();
    assert!(
        safetensors::SafeTensors::deserialize(&bytes)
            .unwrap()
            .tensor("logits")
            .is_err()
    );
}

#[test]
fn bad_input_names_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| -> String {
        let out = ueb().arg("extract").args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8(out.stderr).unwrap()
    };
    let m = model("bert");
    let m = m.to_str().unwrap();
    let o = tmp.path().join("o.safetensors");
    let o = o.to_str().unwrap();
    let jsonl = tmp.path().join("t.jsonl");
    std::fs::write(&jsonl, "{\"text\": \"fine\"}\n{\"txt\": \"typo\"}\n").unwrap();
    let j = jsonl.to_str().unwrap();
    let e = run(&["--model", m, "--input", j, "--out", o]);
    assert!(e.contains("t.jsonl:2") && e.contains("no field `text`"), "{e}");
    std::fs::write(&jsonl, "{\"text\": 3}\n").unwrap();
    let e = run(&["--model", m, "--input", j, "--out", o]);
    assert!(e.contains("t.jsonl:1") && e.contains("not a string"), "{e}");
    std::fs::write(&jsonl, "not json\n").unwrap();
    let e = run(&["--model", m, "--input", j, "--out", o]);
    assert!(e.contains("t.jsonl:1"), "{e}");
    std::fs::write(&jsonl, "{\"text\": \"fine\"}\n").unwrap();
    let e = run(&[
        "--model",
        m,
        "--input",
        j,
        "--out",
        tmp.path().join("o.npy").to_str().unwrap(),
    ]);
    assert!(e.contains(".safetensors"), "{e}");
    let e = run(&["--model", m, "--input", j, "--max-length", "100000", "--out", o]);
    assert!(e.contains("max_length 100000"), "{e}");
    let e = run(&["--model", tmp.path().to_str().unwrap(), "--input", j, "--out", o]);
    assert!(e.contains("config.json"), "{e}");
    let e = run(&["--model", "hf:not a repo", "--input", j, "--out", o]);
    assert!(e.contains("hf:OWNER/NAME@REVISION"), "{e}");
    let e = std::process::Command::new(assert_cmd::cargo::cargo_bin("ueb"))
        .args(["extract", "--model", "hf:ueb-bench/none@main", "--input", j, "--out", o])
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HOME", tmp.path())
        .output()
        .unwrap();
    let e = String::from_utf8(e.stderr).unwrap();
    assert!(e.contains("HF_HUB_OFFLINE") && e.contains("config.json"), "{e}");
    assert!(!Path::new(o).exists(), "no output after an error");
}

#[test]
fn half_precision_on_a_cpu_device_says_it_computes_in_f32() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("t.txt");
    std::fs::write(&input, "A short text.\nAnother one, a little longer.\n").unwrap();
    let run = |extra: &[&str], out: &Path| {
        let o = ueb()
            .args(["extract", "--model"])
            .arg(model("bert"))
            .arg("--input")
            .arg(&input)
            .arg("--out")
            .arg(out)
            .args(extra)
            .output()
            .unwrap();
        let e = String::from_utf8(o.stderr).unwrap();
        assert!(o.status.success(), "{e}");
        e
    };
    let (a, b) = (tmp.path().join("a.safetensors"), tmp.path().join("b.safetensors"));
    let e = run(&[], &a);
    assert!(!e.contains("precision"), "{e}");
    let e = run(&["--precision", "bf16"], &b);
    assert!(
        e.contains("precision bf16: the flex device computes in f32 (half precision is for GPU devices"),
        "{e}"
    );
    assert_eq!(read_f32(&a, "features"), read_f32(&b, "features"));
    let bytes = std::fs::read(&b).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["precision"], "f32");

    let o = ueb()
        .args(["extract", "--precision", "half", "--model"])
        .arg(model("bert"))
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(&a)
        .output()
        .unwrap();
    let e = String::from_utf8(o.stderr).unwrap();
    assert!(!o.status.success());
    assert!(e.contains("precision `half`: expected one of f32, bf16, f16"), "{e}");
}
