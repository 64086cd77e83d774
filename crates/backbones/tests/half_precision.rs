#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The backbone passes in bf16 against transformers' f32 outputs (the parity fixtures'
//! `expected.json`): the weights are cast to bf16 as they load, every activation is bf16, and
//! the features and logits come back as f32 within a half-precision tolerance, not the f32
//! one (so a pass that silently stayed in f32 fails too).
//!
//! The device is flex configured for bf16: the command line keeps CPU devices in f32
//! (decision EN12), but the library computes in whatever float type the device was given, and
//! flex is the backend every machine has.

use std::path::PathBuf;
use std::sync::OnceLock;

use burn::tensor::{Device, FloatDType};
use serde::Deserialize;
use ueb_backbones::multiple_choice::{ChoiceQuestion, choice_prompt, letter_token_ids};
use ueb_backbones::{
    Extractor, LoadOptions, ModelDir, TextInput, TextTokenizer, load_causal_lm, load_decoder_classifier,
    load_sequence_classifier,
};

/// The largest difference of features and logits between bf16 and f32, as a fraction of the
/// largest |f32| value of the same output. bf16 keeps 8 bits of mantissa (a relative step of
/// 2^-8 ≈ 0.004); the fixtures add 2–4 layers of rounding on top.
const TOL: f64 = 0.05;
/// Below this the pass cannot have been bf16.
const FLOOR: f64 = 1e-4;

#[derive(Deserialize)]
struct Expected {
    cases: Vec<Case>,
    #[serde(default)]
    multiple_choice: Vec<ChoiceCase>,
}

#[derive(Deserialize)]
struct Case {
    texts: Vec<String>,
    text_pairs: Option<Vec<String>>,
    max_length: usize,
    features: Vec<Vec<f64>>,
    logits: Option<Vec<Vec<f64>>>,
}

#[derive(Deserialize)]
struct ChoiceCase {
    subject: String,
    shots: Vec<ChoiceQuestion>,
    questions: Vec<ChoiceQuestion>,
    features: Vec<Vec<f64>>,
    logits: Vec<Vec<f64>>,
}

fn bf16_device() -> Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE
        .get_or_init(|| {
            let mut d = Device::flex();
            d.configure(FloatDType::BF16).unwrap();
            d
        })
        .clone()
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

fn check(what: &str, got: &[f32], want: &[Vec<f64>]) -> f64 {
    let d = max_diff(got, want);
    let scale = want.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
    let rel = d / scale;
    eprintln!("{what}: max |bf16 - f32| = {d:.3e}, {rel:.3e} of the largest |f32| value ({scale:.3})");
    assert!(
        rel <= TOL,
        "{what}: bf16 differs from f32 by {d:e}, {rel:e} of the largest value, more than {TOL}"
    );
    assert!(
        d >= FLOOR,
        "{what}: bf16 differs from f32 by only {d:e}: the pass was not bf16"
    );
    d
}

fn texts(case: &Case) -> Vec<TextInput<'_>> {
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

#[test]
fn the_device_computes_in_bf16() {
    assert_eq!(bf16_device().settings().float_dtype, FloatDType::BF16);
}

#[test]
fn encoder_classifiers_in_bf16_stay_near_f32() {
    let device = bf16_device();
    for name in ["bert", "roberta"] {
        let (md, exp) = fixture(name);
        let (m, config, report) = load_sequence_classifier(&md, &LoadOptions::default(), &device).unwrap();
        assert!(report.unexpected.is_empty(), "{name}: {}", report.summary());
        let extractor = Extractor::Classifier(Box::new(m));
        for case in &exp.cases {
            let tok = TextTokenizer::from_file(&md.tokenizer, &config, Some(case.max_length)).unwrap();
            let enc = tok.encode(&texts(case)).unwrap();
            let out = extractor.run(&tok, &enc, 3, &device, None).unwrap();
            check(&format!("{name} features"), &out.features, &case.features);
            check(
                &format!("{name} logits"),
                out.logits.as_deref().unwrap(),
                case.logits.as_ref().unwrap(),
            );
        }
    }
}

#[test]
fn decoder_classifier_in_bf16_stays_near_f32() {
    let device = bf16_device();
    let (md, exp) = fixture("llama");
    let (m, config, report) = load_decoder_classifier(&md, &LoadOptions::default(), &device).unwrap();
    assert!(report.unexpected.is_empty(), "llama: {}", report.summary());
    let extractor = Extractor::DecoderClassifier(Box::new(m));
    for case in &exp.cases {
        let tok = TextTokenizer::from_file(&md.tokenizer, &config, Some(case.max_length)).unwrap();
        let enc = tok.encode(&texts(case)).unwrap();
        let out = extractor.run(&tok, &enc, 2, &device, None).unwrap();
        check("llama features", &out.features, &case.features);
        check(
            "llama logits",
            out.logits.as_deref().unwrap(),
            case.logits.as_ref().unwrap(),
        );
    }
}

#[test]
fn multiple_choice_letters_in_bf16_stay_near_f32() {
    let device = bf16_device();
    let (md, exp) = fixture("llama-lm");
    let (lm, config, report) = load_causal_lm(&md, &device).unwrap();
    assert!(report.unexpected.is_empty(), "llama-lm: {}", report.summary());
    let tok = TextTokenizer::from_file(&md.tokenizer, &config, Some(512)).unwrap();
    assert!(!exp.multiple_choice.is_empty());
    for case in &exp.multiple_choice {
        let prompts: Vec<String> = case
            .questions
            .iter()
            .map(|q| choice_prompt(&case.subject, &case.shots, q))
            .collect();
        let letters = letter_token_ids(&tok, &prompts[0], 4).unwrap();
        let inputs: Vec<TextInput<'_>> = prompts.iter().map(|p| TextInput::Single(p)).collect();
        let enc = tok.encode(&inputs).unwrap();
        let extractor = Extractor::Choices {
            lm: Box::new(lm.clone()),
            tokens: letters,
        };
        let out = extractor.run(&tok, &enc, 2, &device, None).unwrap();
        check("llama-lm features", &out.features, &case.features);
        check("llama-lm letter logits", out.logits.as_deref().unwrap(), &case.logits);
    }
}
