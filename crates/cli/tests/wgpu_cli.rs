//! The GPU path on whatever wgpu adapter the machine has (CI: Mesa's lavapipe, a Vulkan
//! implementation on the CPU): `ueb extract` and a trainable head's fit on `--device wgpu`
//! agree with `flex`. Only built with `--features wgpu`.
#![cfg(feature = "wgpu")]
// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::{read_npy, ueb, write_cache};

fn features(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensor("features")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn extract_on_wgpu_matches_flex() {
    let tmp = tempfile::tempdir().unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../backbones/tests/fixtures/electra-proj");
    let input = tmp.path().join("t.txt");
    std::fs::write(
        &input,
        "A short text.\nAnother, somewhat longer text with more tokens in it.\nCafé 😍\n",
    )
    .unwrap();
    let mut outs = Vec::new();
    for device in ["flex", "wgpu"] {
        let out = tmp.path().join(format!("{device}.safetensors"));
        ueb()
            .args(["extract", "--device", device, "--model"])
            .arg(&model)
            .arg("--input")
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        outs.push(features(&out));
    }
    let worst = outs[0]
        .iter()
        .zip(&outs[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-4, "wgpu and flex features differ by {worst:e}");
}

#[test]
fn alien_fits_on_wgpu_like_on_flex() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    write_cache(&cache);
    let cfg = tmp.path().join("alien.yaml");
    std::fs::write(
        &cfg,
        "grid: {lr: [1.0e-3], alpha: [0.1], beta: [0.01]}\nmax_epochs: 3\n",
    )
    .unwrap();
    let mut scores = Vec::new();
    for device in ["flex", "wgpu"] {
        let out = tmp.path().join(format!("{device}.npy"));
        ueb()
            .args(["score", "--head", "alien", "--device", device, "--cache"])
            .arg(&cache)
            .arg("--config")
            .arg(&cfg)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        scores.push(read_npy(&out));
    }
    // Different backends round differently during training; the fitted heads stay close.
    let worst = scores[0]
        .iter()
        .zip(&scores[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f64, f64::max);
    assert!(worst <= 1e-3, "wgpu and flex alien scores differ by {worst:e}");
}
