#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Parity with transformers: tiny random checkpoints made by `fixtures/make_encoder_fixtures.py`
//! (transformers + tokenizers in a venv), whose tokens, features and logits it recorded.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, TensorData};
use serde::Deserialize;
use ueb_backbones::{
    Extractor, LoadOptions, ModelDir, TextInput, TextTokenizer, load_encoder, load_sequence_classifier,
    load_token_classifier,
};

const TOL: f64 = 1e-4;

#[derive(Deserialize)]
struct Expected {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    texts: Vec<String>,
    text_pairs: Option<Vec<String>>,
    max_length: usize,
    input_ids: Vec<Vec<i64>>,
    attention_mask: Vec<Vec<i64>>,
    token_type_ids: Vec<Vec<i64>>,
    features: Vec<Vec<f64>>,
    logits: Option<Vec<Vec<f64>>>,
    token_logits: Option<Vec<Vec<Vec<f64>>>>,
}

fn fixture(name: &str) -> (ModelDir, Expected) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let md = ModelDir::open(&dir).unwrap();
    let exp: Expected = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    (md, exp)
}

fn inputs(case: &Case) -> Vec<TextInput<'_>> {
    match &case.text_pairs {
        Some(pairs) => case
            .texts
            .iter()
            .zip(pairs)
            .map(|(a, b)| TextInput::Pair(a, b))
            .collect(),
        None => case.texts.iter().map(|a| TextInput::Single(a)).collect(),
    }
}

fn max_diff(got: &[f32], want: impl Iterator<Item = f64>) -> f64 {
    let want: Vec<f64> = want.collect();
    assert_eq!(got.len(), want.len(), "length");
    got.iter()
        .zip(&want)
        .map(|(g, w)| (f64::from(*g) - w).abs())
        .fold(0.0, f64::max)
}

/// Tokens equal transformers' (unpadded), then features and logits within `TOL`.
fn check_sequence(name: &str, device: &Device) {
    let (md, exp) = fixture(name);
    let has_head = exp.cases[0].logits.is_some();
    let (extractor, config) = if has_head {
        let (m, c, report) = load_sequence_classifier(&md, &LoadOptions::default(), device).unwrap();
        assert!(!report.head_initialised, "{name}: {}", report.summary());
        assert!(report.unexpected.is_empty(), "{name}: {}", report.summary());
        (Extractor::Classifier(Box::new(m)), c)
    } else {
        let (m, c, _) = load_encoder(&md, device).unwrap();
        (Extractor::Backbone(Box::new(m)), c)
    };
    for case in &exp.cases {
        let tok = TextTokenizer::from_file(&md.tokenizer, &config, Some(case.max_length)).unwrap();
        let enc = tok.encode(&inputs(case)).unwrap();
        for (i, e) in enc.iter().enumerate() {
            let n = case.attention_mask[i].iter().filter(|&&m| m == 1).count();
            let ids: Vec<i64> = e.ids.iter().map(|&x| i64::from(x)).collect();
            let types: Vec<i64> = e.type_ids.iter().map(|&x| i64::from(x)).collect();
            assert_eq!(ids, case.input_ids[i][..n], "{name}/{}: ids of text {i}", case.name);
            assert_eq!(
                types,
                case.token_type_ids[i][..n],
                "{name}/{}: type ids of text {i}",
                case.name
            );
        }
        let out = extractor.run(&tok, &enc, 3, device, None).unwrap();
        let df = max_diff(&out.features, case.features.iter().flatten().copied());
        assert!(df <= TOL, "{name}/{}: features differ by {df:e}", case.name);
        if let Some(want) = &case.logits {
            let dz = max_diff(out.logits.as_deref().unwrap(), want.iter().flatten().copied());
            assert!(dz <= TOL, "{name}/{}: logits differ by {dz:e}", case.name);
        }
    }
}

#[test]
fn bert_matches_transformers() {
    check_sequence("bert", &Device::flex());
}

#[test]
fn bert_base_model_without_prefix_matches_transformers() {
    check_sequence("bert-base-unprefixed", &Device::flex());
}

#[test]
fn roberta_matches_transformers() {
    check_sequence("roberta", &Device::flex());
}

#[test]
fn electra_with_embedding_projection_matches_transformers() {
    check_sequence("electra-proj", &Device::flex());
}

#[test]
fn electra_matches_transformers() {
    check_sequence("electra", &Device::flex());
}

#[test]
#[allow(deprecated)] // burn 0.22 deprecates ndarray for flex; ueb still offers both
fn ndarray_backend_matches_transformers() {
    check_sequence("roberta", &Device::ndarray());
    check_sequence("electra-proj", &Device::ndarray());
}

#[test]
fn token_classifier_matches_transformers() {
    let device = Device::flex();
    let (md, exp) = fixture("bert-token");
    let (model, config, report) = load_token_classifier(&md, &LoadOptions::default(), &device).unwrap();
    assert!(!report.head_initialised, "{}", report.summary());
    for case in &exp.cases {
        let tok = TextTokenizer::from_file(&md.tokenizer, &config, Some(case.max_length)).unwrap();
        let enc = tok.encode(&inputs(case)).unwrap();
        let rows: Vec<usize> = (0..enc.len()).collect();
        let out = model.forward(&tok.collate(&enc, &rows, &device));
        let [b, l, c] = out.logits.dims();
        let got: TensorData = out.logits.into_data();
        let got = got.try_to_vec::<f32>().unwrap();
        let want = case.token_logits.as_ref().unwrap();
        let mut worst = 0.0f64;
        for bi in 0..b {
            for j in 0..l {
                if case.attention_mask[bi].get(j) != Some(&1) {
                    continue;
                }
                for k in 0..c {
                    worst = worst.max((f64::from(got[(bi * l + j) * c + k]) - want[bi][j][k]).abs());
                }
            }
        }
        assert!(
            worst <= TOL,
            "bert-token/{}: token logits differ by {worst:e}",
            case.name
        );
    }
}

#[test]
fn base_checkpoint_gets_an_initialised_reported_head() {
    let (md, _) = fixture("bert-base-unprefixed");
    let (_, config, report) = load_sequence_classifier(&md, &LoadOptions::default(), &Device::flex()).unwrap();
    assert!(report.head_initialised);
    assert_eq!(report.prefix, None);
    // BERT's pooler is in a base checkpoint: only the classifier is new.
    let mut initialised = report.initialised.clone();
    initialised.sort();
    assert_eq!(
        initialised,
        vec!["head.out_proj.bias".to_string(), "head.out_proj.weight".to_string()]
    );
    assert_eq!(config.num_labels(), 2);
}

#[test]
fn resized_head_is_initialised_and_reported() {
    let (md, _) = fixture("roberta");
    let labels: Vec<String> = (0..5).map(|i| format!("c{i}")).collect();
    let opts = LoadOptions { labels: Some(labels) };
    let (model, _, report) = load_sequence_classifier(&md, &opts, &Device::flex()).unwrap();
    assert!(report.head_initialised);
    assert!(
        report.head_note.as_deref().unwrap().contains("5"),
        "{}",
        report.summary()
    );
    assert_eq!(model.head.out_proj.weight.dims()[1], 5);
    assert!(report.unexpected.is_empty(), "{}", report.summary());
}

/// Copies a fixture directory (flat) to `to`, for tests that break a copy.
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn missing_files_and_wrong_model_type_are_clear_errors() {
    let (md, _) = fixture("bert");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    copy_dir(&md.dir, &dir);
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let err = ModelDir::open(&dir).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");

    copy_dir(&md.dir, &dir);
    std::fs::rename(dir.join("model.safetensors"), dir.join("pytorch_model.bin")).unwrap();
    let err = ModelDir::open(&dir).unwrap_err().to_string();
    assert!(err.contains("pickle"), "{err}");

    copy_dir(&md.dir, &dir);
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(dir.join("config.json"), cfg.replace("\"bert\"", "\"gpt2\"")).unwrap();
    let err = ModelDir::open(&dir).unwrap().encoder_config().unwrap_err().to_string();
    assert!(err.contains("config.json") && err.contains("gpt2"), "{err}");

    // A RoBERTa config over BERT weights: the backbone keys do not fit.
    std::fs::write(dir.join("config.json"), cfg.replace("\"bert\"", "\"roberta\"")).unwrap();
    let md2 = ModelDir::open(&dir).unwrap();
    let err = load_sequence_classifier(&md2, &LoadOptions::default(), &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.safetensors") && err.contains("`bert.`"), "{err}");
}

#[test]
fn half_precision_checkpoints_load() {
    // f16 and bf16 copies of the bert fixture's weights (written here with the safetensors
    // crate) give the f32 model's features within the rounding of the weights.
    let (md, exp) = fixture("bert");
    let bytes = std::fs::read(&md.weights).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for dtype in [safetensors::Dtype::F16, safetensors::Dtype::BF16] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("half");
        copy_dir(&md.dir, &dir);
        let mut owned: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
        for (name, view) in st.tensors() {
            let shape = view.shape().to_vec();
            assert_eq!(view.dtype(), safetensors::Dtype::F32);
            let vals: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let data: Vec<u8> = match dtype {
                safetensors::Dtype::F16 => vals
                    .iter()
                    .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                    .collect(),
                _ => vals
                    .iter()
                    .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                    .collect(),
            };
            owned.push((name, data, shape));
        }
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
            .iter()
            .map(|(n, d, s)| {
                (
                    n.clone(),
                    safetensors::tensor::TensorView::new(dtype, s.clone(), d).unwrap(),
                )
            })
            .collect();
        safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
        let md = ModelDir::open(&dir).unwrap();
        let device = Device::flex();
        let (m, config, report) = load_sequence_classifier(&md, &LoadOptions::default(), &device).unwrap();
        assert!(report.dtypes.contains_key(if dtype == safetensors::Dtype::F16 {
            "F16"
        } else {
            "BF16"
        }));
        let case = &exp.cases[0];
        let tok = TextTokenizer::from_file(&md.tokenizer, &config, Some(case.max_length)).unwrap();
        let enc = tok.encode(&inputs(case)).unwrap();
        let out = Extractor::Classifier(Box::new(m))
            .run(&tok, &enc, 8, &device, None)
            .unwrap();
        let df = max_diff(&out.features, case.features.iter().flatten().copied());
        // bf16 keeps 8 bits of mantissa: the features move by a few 1e-2 at most here.
        let tol = if dtype == safetensors::Dtype::F16 { 2e-2 } else { 2e-1 };
        assert!(df <= tol, "{dtype:?}: features differ by {df:e}");
        assert!(df > 0.0, "{dtype:?}: the half-precision weights changed nothing?");
    }
}
