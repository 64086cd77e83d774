//! Shared by the CLI tests: the heads' numpy/scipy fixture as a feature cache, the binary,
//! and a `.npy` reader.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;
use ueb_cache::{Activation, CacheMeta, Classifier, ClassifierKind, ClassifierMeta, FeatureCache, RowUnit, SplitData};

pub fn fixture() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../heads/tests/fixtures/classical.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

pub fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// Writes the fixture's cache into `dir`.
pub fn write_cache(dir: &Path) -> Value {
    let fx = fixture();
    let f32s = |v: &Value| floats(v).into_iter().map(|x| x as f32).collect::<Vec<f32>>();
    let (c, d) = (3, 6);
    let split = |name: &str| SplitData {
        features: f32s(&fx["splits"][name]["features"]),
        logits: f32s(&fx["splits"][name]["logits"]),
        labels: fx["splits"][name]["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect(),
        group: None,
        dim: d,
        num_classes: c,
    };
    let cl = &fx["classifier"];
    let cache = FeatureCache {
        meta: CacheMeta {
            format: "ueb-cache".into(),
            version: 1,
            task: RowUnit::Sequence,
            num_classes: c,
            feature_dim: d,
            classifier: ClassifierMeta {
                kind: ClassifierKind::Mlp,
                activation: Activation::Tanh,
            },
            label_names: vec!["a".into(), "b".into(), "c".into()],
            provenance: Value::Null,
        },
        classifier: Classifier {
            kind: ClassifierKind::Mlp,
            activation: Activation::Tanh,
            dense_weight: Some(f32s(&cl["dense.weight"])),
            dense_bias: Some(f32s(&cl["dense.bias"])),
            out_weight: f32s(&cl["out_proj.weight"]),
            out_bias: Some(f32s(&cl["out_proj.bias"])),
            dim: d,
            num_classes: c,
        },
        train: split("train"),
        val: split("val"),
        test: split("test"),
    };
    cache.write(dir).unwrap();
    fx
}

pub fn ueb() -> Command {
    Command::cargo_bin("ueb").unwrap()
}

/// Reads a `.npy` f64 vector written by `ueb score` (header checked loosely).
pub fn read_npy(path: &PathBuf) -> Vec<f64> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'<f8'"), "{header}");
    assert_eq!((10 + header_len) % 64, 0, "header is padded to 64 bytes");
    bytes[10 + header_len..]
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// A model fixture of the backbones crate (tiny random checkpoints made by transformers).
pub fn fixture_model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../backbones/tests/fixtures")
        .join(name)
}

/// The multiple-choice cases transformers recorded for a tiny causal LM fixture
/// (`make_decoder_fixtures.py`): `(case name, dev questions, test questions, letter logits)`.
#[allow(clippy::type_complexity)]
pub fn choice_cases(model: &str) -> Vec<(String, Vec<serde_json::Value>, Vec<serde_json::Value>, Vec<Vec<f64>>)> {
    let exp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture_model(model).join("expected.json")).unwrap()).unwrap();
    exp["multiple_choice"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["subject"], "science");
            let logits = c["logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
                .collect();
            (
                c["name"].as_str().unwrap().to_string(),
                c["shots"].as_array().unwrap().clone(),
                c["questions"].as_array().unwrap().clone(),
                logits,
            )
        })
        .collect()
}

/// A tiny MMLU in the registry's layout (`mmlu/{test,val,dev}.csv`, subject "science"): test
/// holds the fixtures' questions, dev their solved examples, val 15 more questions (split 80/20
/// into train and val by the dataset's protocol).
pub fn write_mmlu(root: &Path, with_dev: bool) {
    let (_, shots, questions, _) = choice_cases("qwen2-lm").remove(1);
    let row = |q: &serde_json::Value| -> String {
        let c: Vec<String> = q["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| format!("\"{}\"", x.as_str().unwrap()))
            .collect();
        let answer = ["A", "B", "C", "D"][q["answer"].as_u64().unwrap() as usize];
        format!(
            "science,\"{}\",{},{answer}\n",
            q["question"].as_str().unwrap(),
            c.join(",")
        )
    };
    let header = "subject,question,A,B,C,D,answer\n";
    let dir = root.join("mmlu");
    std::fs::create_dir_all(&dir).unwrap();
    let test: String = questions.iter().map(row).collect();
    std::fs::write(dir.join("test.csv"), format!("{header}{test}")).unwrap();
    if with_dev {
        let dev: String = shots.iter().map(row).collect();
        std::fs::write(dir.join("dev.csv"), format!("{header}{dev}")).unwrap();
    }
    let mut val = String::from(header);
    for k in 0..15 {
        val.push_str(&format!(
            "science,\"What is {k} plus {k}?\",\"{}\",\"{}\",\"{}\",\"{}\",{}\n",
            2 * k,
            2 * k + 1,
            k,
            3 * k + 1,
            ["A", "B", "C", "D"][k % 4]
        ));
    }
    std::fs::write(dir.join("val.csv"), val).unwrap();
}
