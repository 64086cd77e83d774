#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Decoder parity with transformers: tiny random LLaMA / Qwen2 / Qwen3 checkpoints made by
//! `fixtures/make_decoder_fixtures.py`, whose tokens, features (the last real token's hidden
//! state), sequence logits and multiple-choice letter logits it recorded.

use std::path::PathBuf;

use burn::tensor::Device;
use serde::Deserialize;
use ueb_backbones::multiple_choice::{ChoiceQuestion, choice_prompt, letter_token_ids};
use ueb_backbones::{
    DecoderFamily, Extractor, LoadOptions, ModelDir, TextInput, TextTokenizer, load_causal_lm, load_decoder,
    load_decoder_classifier,
};

const TOL: f64 = 1e-4;

#[derive(Deserialize)]
struct Expected {
    cases: Vec<Case>,
    multiple_choice: Vec<ChoiceCase>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    texts: Vec<String>,
    max_length: usize,
    input_ids: Vec<Vec<i64>>,
    attention_mask: Vec<Vec<i64>>,
    features: Vec<Vec<f64>>,
    logits: Vec<Vec<f64>>,
}

#[derive(Deserialize)]
struct ChoiceCase {
    name: String,
    subject: String,
    shots: Vec<ChoiceQuestion>,
    questions: Vec<ChoiceQuestion>,
    prompts: Vec<String>,
    letter_ids: Vec<u32>,
    input_ids: Vec<Vec<i64>>,
    attention_mask: Vec<Vec<i64>>,
    features: Vec<Vec<f64>>,
    logits: Vec<Vec<f64>>,
}

fn fixture(name: &str) -> (ModelDir, Expected) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let md = ModelDir::open(&dir).unwrap();
    let exp: Expected = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    (md, exp)
}

fn max_diff(got: &[f32], want: &[Vec<f64>]) -> f64 {
    let want: Vec<f64> = want.iter().flatten().copied().collect();
    assert_eq!(got.len(), want.len(), "length");
    got.iter()
        .zip(&want)
        .map(|(g, w)| (f64::from(*g) - w).abs())
        .fold(0.0, f64::max)
}

fn check_ids(what: &str, got: &[ueb_backbones::Encoded], ids: &[Vec<i64>], mask: &[Vec<i64>]) {
    for (i, e) in got.iter().enumerate() {
        let n = mask[i].iter().filter(|&&m| m == 1).count();
        let g: Vec<i64> = e.ids.iter().map(|&x| i64::from(x)).collect();
        assert_eq!(g, ids[i][..n], "{what}: ids of row {i}");
    }
}

/// Tokens equal transformers', then features and logits within `TOL`; returns the worst error.
fn check_classifier(name: &str, family: DecoderFamily, device: &Device) -> f64 {
    let (md, exp) = fixture(name);
    let (model, config, report) = load_decoder_classifier(&md, &LoadOptions::default(), device).unwrap();
    assert_eq!(config.family, family);
    assert!(!report.head_initialised, "{name}: {}", report.summary());
    assert!(report.unexpected.is_empty(), "{name}: {}", report.summary());
    let extractor = Extractor::DecoderClassifier(Box::new(model));
    let mut worst = 0.0f64;
    for case in &exp.cases {
        let tok = TextTokenizer::from_file(&md.tokenizer, &config, Some(case.max_length)).unwrap();
        let texts: Vec<TextInput<'_>> = case.texts.iter().map(|t| TextInput::Single(t)).collect();
        let enc = tok.encode(&texts).unwrap();
        check_ids(
            &format!("{name}/{}", case.name),
            &enc,
            &case.input_ids,
            &case.attention_mask,
        );
        // Batches of 2 reorder and re-pad the rows: the outputs must not depend on it.
        for batch in [2, 8] {
            let out = extractor.run(&tok, &enc, batch, device, None).unwrap();
            let df = max_diff(&out.features, &case.features);
            let dz = max_diff(out.logits.as_deref().unwrap(), &case.logits);
            assert!(df <= TOL, "{name}/{}: features differ by {df:e}", case.name);
            assert!(dz <= TOL, "{name}/{}: logits differ by {dz:e}", case.name);
            worst = worst.max(df).max(dz);
        }
    }
    eprintln!("{name}: worst |difference| {worst:e}");
    worst
}

#[test]
fn llama_gqa_untied_matches_transformers() {
    check_classifier("llama", DecoderFamily::Llama, &Device::flex());
}

#[test]
fn qwen2_attention_bias_tied_matches_transformers() {
    check_classifier("qwen2", DecoderFamily::Qwen2, &Device::flex());
}

#[test]
fn qwen3_qk_norm_bf16_matches_transformers() {
    check_classifier("qwen3", DecoderFamily::Qwen3, &Device::flex());
}

#[test]
#[allow(deprecated)] // burn 0.22 deprecates ndarray for flex; ueb still offers both
fn ndarray_backend_matches_transformers() {
    check_classifier("qwen3", DecoderFamily::Qwen3, &Device::ndarray());
}

#[test]
fn bare_decoder_gives_the_classifier_features() {
    let device = Device::flex();
    let (md, exp) = fixture("qwen2");
    let (model, config, report) = load_decoder(&md, &device).unwrap();
    // The score layer is the only key a bare stack leaves unused.
    assert_eq!(
        report.unexpected,
        vec!["score.weight".to_string()],
        "{}",
        report.summary()
    );
    let case = &exp.cases[0];
    let tok = TextTokenizer::from_file(&md.tokenizer, &config, Some(case.max_length)).unwrap();
    let texts: Vec<TextInput<'_>> = case.texts.iter().map(|t| TextInput::Single(t)).collect();
    let enc = tok.encode(&texts).unwrap();
    let out = Extractor::Decoder(Box::new(model))
        .run(&tok, &enc, 3, &device, None)
        .unwrap();
    assert!(out.logits.is_none());
    let df = max_diff(&out.features, &case.features);
    assert!(df <= TOL, "features differ by {df:e}");
}

#[test]
fn resized_score_is_initialised_and_reported() {
    let (md, _) = fixture("llama");
    let labels: Vec<String> = (0..5).map(|i| format!("c{i}")).collect();
    let opts = LoadOptions { labels: Some(labels) };
    let (model, _, report) = load_decoder_classifier(&md, &opts, &Device::flex()).unwrap();
    assert!(report.head_initialised && report.head_note.as_deref().unwrap().contains('5'));
    assert_eq!(report.initialised, vec!["score.weight".to_string()]);
    assert_eq!(model.score.weight.dims(), [32, 5]);
    assert!(model.score.bias.is_none());
    assert!(report.unexpected.is_empty(), "{}", report.summary());
}

#[test]
fn causal_lm_checkpoint_as_classifier_gets_a_new_score() {
    // A causal LM fine-tuned as a classifier: `score` is new, `lm_head` is reported unused.
    let (md, _) = fixture("llama-lm");
    let (_, _, report) = load_decoder_classifier(&md, &LoadOptions::default(), &Device::flex()).unwrap();
    assert!(report.head_initialised);
    assert_eq!(report.unexpected, vec!["lm_head.weight".to_string()]);
    assert!(report.dtypes.contains_key("F16"), "{:?}", report.dtypes);
}

/// Prompts equal the Python template's, letter tokens equal transformers', and the C-way
/// logits and features at the answer position match within `TOL`.
fn check_multiple_choice(name: &str, device: &Device) -> f64 {
    let (md, exp) = fixture(name);
    let (lm, config, report) = load_causal_lm(&md, device).unwrap();
    assert!(report.unexpected.is_empty(), "{name}: {}", report.summary());
    let tok = TextTokenizer::from_file(&md.tokenizer, &config, Some(512)).unwrap();
    let mut worst = 0.0f64;
    assert!(!exp.multiple_choice.is_empty());
    for case in &exp.multiple_choice {
        let prompts: Vec<String> = case
            .questions
            .iter()
            .map(|q| choice_prompt(&case.subject, &case.shots, q))
            .collect();
        assert_eq!(prompts, case.prompts, "{name}/{}: prompts", case.name);
        let letters = letter_token_ids(&tok, &prompts[0], 4).unwrap();
        assert_eq!(letters, case.letter_ids, "{name}/{}: letter tokens", case.name);
        let inputs: Vec<TextInput<'_>> = prompts.iter().map(|p| TextInput::Single(p)).collect();
        let enc = tok.encode(&inputs).unwrap();
        check_ids(
            &format!("{name}/{}", case.name),
            &enc,
            &case.input_ids,
            &case.attention_mask,
        );
        let extractor = Extractor::Choices {
            lm: Box::new(lm.clone()),
            tokens: letters,
        };
        let out = extractor.run(&tok, &enc, 2, device, None).unwrap();
        let df = max_diff(&out.features, &case.features);
        let dz = max_diff(out.logits.as_deref().unwrap(), &case.logits);
        assert!(df <= TOL, "{name}/{}: features differ by {df:e}", case.name);
        assert!(dz <= TOL, "{name}/{}: letter logits differ by {dz:e}", case.name);
        worst = worst.max(df).max(dz);
    }
    eprintln!("{name}: worst |difference| {worst:e}");
    worst
}

#[test]
fn multiple_choice_tied_qwen2_matches_transformers() {
    check_multiple_choice("qwen2-lm", &Device::flex());
}

#[test]
fn multiple_choice_untied_f16_llama_matches_transformers() {
    check_multiple_choice("llama-lm", &Device::flex());
}
