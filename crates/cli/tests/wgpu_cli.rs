//! The GPU path on whatever wgpu adapter the machine has (CI: Mesa's lavapipe, a Vulkan
//! implementation on the CPU): `ueb extract` and a trainable head's fit on `--device wgpu`
//! agree with `flex`. Only built with `--features wgpu`.
#![cfg(feature = "wgpu")]
// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::{choice_cases, fixture_model, read_npy, ueb, write_cache, write_mmlu};

fn features(path: &Path) -> Vec<f32> {
    tensor(path, "features")
}

fn tensor(path: &Path, key: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensor(key)
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

/// `(head, metric) → value` of a results directory's `metrics.parquet`.
fn metrics(dir: &Path) -> std::collections::BTreeMap<(String, String), f64> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    let reader = SerializedFileReader::new(std::fs::File::open(dir.join("metrics.parquet")).unwrap()).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for row in reader.get_row_iter(None).unwrap() {
        let row = row.unwrap();
        let get = |name: &str| {
            row.get_column_iter()
                .find(|(n, _)| n.as_str() == name)
                .map(|(_, f)| f.clone())
        };
        let (Some(Field::Str(head)), Some(Field::Str(metric)), Some(Field::Double(v))) =
            (get("head"), get("metric"), get("value"))
        else {
            continue;
        };
        out.insert((head, metric), v);
    }
    out
}

/// The quickstart's model, data and heads (one seed, so that lavapipe's CPU emulation of a GPU
/// finishes in CI), on wgpu and on flex: every head's accuracy and ROC-AUC agree within 0.06.
/// Both train on burn's engine (`engine: burn`; flex would otherwise take the host engine), so
/// that the comparison is the GPU path against the CPU path of the same code.
/// The scratch model's initial weights and its dropout masks come from each device's own
/// random generator (decision EN11), so a wgpu run is another draw of the same experiment,
/// and 0.06 is what that allows (the quickstart's seeds spread its ROC-AUC by about 0.01 in
/// std); a broken kernel gives chance-level numbers. The fixed-cache tests above compare the
/// arithmetic itself, within 1e-4 and 1e-3.
#[test]
fn a_run_on_wgpu_gives_the_flex_results_per_head() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("small.yaml");
    std::fs::write(
        &exp,
        "name: small\nseeds: [0]\ndevice: flex\nbackbones:\n  - name: tiny-bert\n    model: scratch\n    scratch: {hidden_size: 64, layers: 2, heads: 4, intermediate_size: 128, max_positions: 48, max_vocab: 2000}\n    finetune: {engine: burn, mode: full, epochs: 4, lr: 2.0e-3, batch_size: 32, warmup_ratio: 0.1, weight_decay: 0.01, max_length: 48}\ndatasets:\n  - name: synthetic\n    synthetic: {train: 2000, val: 500, test: 1000}\nheads:\n  - sr\n  - temperature\n  - mahalanobis\n  - adue: {grid: {lr: [1.0e-3], alpha: [0.1], beta: [0.01], epochs: [10]}}\n  - alien: {grid: {lr: [1.0e-3], alpha: [0.1], beta: [0.01]}, max_epochs: 20}\nmetrics: {bins: 15, bootstrap: 0}\n",
    )
    .unwrap();
    let mut runs = Vec::new();
    for device in ["flex", "wgpu"] {
        let out = tmp.path().join(device);
        ueb()
            .arg("run")
            .arg(&exp)
            .args(["--device", device, "--out"])
            .arg(&out)
            .assert()
            .success();
        runs.push(metrics(&out));
    }
    let mut compared = 0;
    for ((head, metric), flex) in &runs[0] {
        if metric != "accuracy" && metric != "roc_auc" {
            continue;
        }
        let wgpu = runs[1][&(head.clone(), metric.clone())];
        eprintln!("{head} {metric}: flex {flex:.4}, wgpu {wgpu:.4}");
        assert!((wgpu - flex).abs() <= 0.06, "{head} {metric}: wgpu {wgpu}, flex {flex}");
        compared += 1;
    }
    assert_eq!(compared, 10, "{:?}", runs[0].keys());
}

/// The largest |a - b| as a fraction of the largest |b|.
fn relative_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let d = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from((x - y).abs()))
        .fold(0.0, f64::max);
    let scale = b.iter().map(|y| f64::from(y.abs())).fold(0.0, f64::max);
    d / scale
}

/// f16 on the adapter against flex's f32, for an encoder and a decoder classifier; bf16 either
/// runs (an adapter with bf16 arithmetic) or is refused with what the adapter can do
/// (lavapipe has no bf16).
#[test]
fn extract_in_half_precision_on_wgpu_stays_near_f32() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("t.txt");
    std::fs::write(
        &input,
        "A short text.\nAnother, somewhat longer text with more tokens in it.\nCafé 😍\n",
    )
    .unwrap();
    let extract = |model: &str, device: &str, precision: &str| {
        let out = tmp.path().join(format!("{model}-{device}-{precision}.safetensors"));
        let o = ueb()
            .args(["extract", "--device", device, "--precision", precision, "--model"])
            .arg(fixture_model(model))
            .arg("--input")
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        (o.status.success().then_some(out), String::from_utf8(o.stderr).unwrap())
    };
    for model in ["electra-proj", "llama"] {
        let (flex, e) = extract(model, "flex", "f32");
        let flex = flex.unwrap_or_else(|| panic!("{e}"));
        let (half, e) = extract(model, "wgpu", "f16");
        let half = half.unwrap_or_else(|| panic!("{e}"));
        for key in ["features", "logits"] {
            if model == "electra-proj" && key == "logits" {
                continue; // a base checkpoint: features only
            }
            let rel = relative_diff(&tensor(&half, key), &tensor(&flex, key));
            eprintln!("{model} {key}: f16 on wgpu vs f32 on flex, {rel:.3e} of the largest value");
            assert!(
                rel <= 0.01,
                "{model} {key}: f16 differs from f32 by {rel:e} of the largest value"
            );
            assert!(rel > 0.0, "{model} {key}: f16 equals f32 exactly: the pass was not f16");
        }
        match extract(model, "wgpu", "bf16") {
            (Some(bf16), _) => {
                let rel = relative_diff(&tensor(&bf16, "features"), &tensor(&flex, "features"));
                assert!(
                    rel <= 0.05,
                    "{model}: bf16 differs from f32 by {rel:e} of the largest value"
                );
            }
            (None, e) => assert!(
                e.contains("--device wgpu: this device cannot compute in bf16 (it can in f32, f16)"),
                "{e}"
            ),
        }
    }
}

/// A multiple-choice run in f16 on the adapter: the plan and the cache stage record the
/// precision, and the letter logits stay near transformers' f32 ones.
#[test]
fn a_multiple_choice_run_in_f16_on_wgpu_stays_near_transformers() {
    let tmp = tempfile::tempdir().unwrap();
    write_mmlu(tmp.path(), true);
    let exp = tmp.path().join("mc.yaml");
    std::fs::write(
        &exp,
        format!(
            "name: mc\nseeds: [0]\nprecision: f16\nbackbones:\n  - {{name: lm, model: {}}}\ndatasets:\n  - {{name: mmlu, root: {}}}\nheads: [sr]\nmetrics: {{bins: 10, bootstrap: 0}}\n",
            fixture_model("llama-lm").display(),
            tmp.path().display()
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let o = ueb()
        .arg("run")
        .arg(&exp)
        .args(["--device", "wgpu", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plan = std::fs::read_to_string(out.join("plan.yaml")).unwrap();
    assert!(plan.contains("precision: f16"), "{plan}");
    let stage: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("caches/lm/mmlu/all-seeds/stage.json")).unwrap())
            .unwrap();
    assert_eq!(stage["inputs"]["precision"], "f16", "{stage}");
    let (cache, _) = ueb_cache::FeatureCache::load(&out.join("caches/lm/mmlu/all-seeds")).unwrap();
    let test = cache.split(ueb_cache::Split::Test);
    let (_, _, _, want) = choice_cases("llama-lm")
        .into_iter()
        .find(|c| c.0 == "zero_shot")
        .unwrap();
    let want: Vec<f32> = want.iter().flatten().map(|&x| x as f32).collect();
    let rel = relative_diff(&test.logits, &want);
    eprintln!("llama-lm letter logits: f16 on wgpu vs transformers' f32, {rel:.3e} of the largest value");
    assert!(
        rel <= 0.01,
        "letter logits differ from transformers' by {rel:e} of the largest value"
    );
}
