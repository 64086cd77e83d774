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
