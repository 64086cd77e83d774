//! Loading the golden cases of `tests/golden/cases` (shared by the golden test files).

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;
use ueb_metrics::Predictions;

/// Tolerance of every golden comparison (relative above 1).
pub const TOL: f64 = 1e-9;

/// Every case file (`.json`, `.json.gz`), sorted.
pub fn case_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cases");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".json") || p.to_string_lossy().ends_with(".json.gz"))
        .collect();
    files.sort();
    files
}

/// A case file's JSON (gunzipped when needed).
pub fn load(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap();
    let text = if path.to_string_lossy().ends_with(".gz") {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut s).unwrap();
        s
    } else {
        String::from_utf8(bytes).unwrap()
    };
    serde_json::from_str(&text).unwrap()
}

/// A JSON array of numbers.
pub fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// The case's predictions, from its probabilities or logits.
pub fn predictions(case: &Value) -> Predictions {
    let name = case["name"].as_str().unwrap();
    let c = case["num_classes"].as_u64().unwrap() as usize;
    let values = floats(&case["values"]);
    let labels: Vec<i64> = case["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    match case["input"].as_str().unwrap() {
        "probs" => Predictions::from_probs(&values, c, &labels),
        "logits" => Predictions::from_logits(&values, c, &labels),
        other => panic!("{name}: unknown input kind {other}"),
    }
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}
