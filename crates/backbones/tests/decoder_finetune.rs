#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Decoder classifiers through the shared fine-tuning and export machinery (LoRA on q/k/v with
//! `score` trainable, frozen), and the multiple-choice cache of a causal LM.

use std::path::PathBuf;

use burn::tensor::Device;
use ueb_backbones::multiple_choice::{ChoicePrompting, ChoiceQuestion, ChoiceSplits, export_choice_cache};
use ueb_backbones::{
    DecoderClassifier, Encoded, FinetuneConfig, FinetuneMode, LabeledSplit, LoadOptions, ModelDir, TextInput,
    TextTokenizer, export_cache, finetune, load_causal_lm, load_decoder_classifier,
};
use ueb_backbones::{ExportMeta, ExportSplits};
use ueb_cache::{ClassifierKind, FeatureCache};
use ueb_rng::{Rng64, Xoshiro256};

const FILLER: [&str; 8] = ["the", "movie", "was", "really", "quite", "and", "story", "it"];

/// `n` texts with label 1 when they contain "great", 0 when "terrible".
fn task(n: usize, seed: u64) -> (Vec<String>, Vec<usize>) {
    let mut rng = Xoshiro256::new(seed, 0);
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for _ in 0..n {
        let y = rng.index(2);
        let len = 3 + rng.index(5);
        let mut words: Vec<&str> = (0..len).map(|_| FILLER[rng.index(FILLER.len())]).collect();
        let at = rng.index(words.len() + 1);
        words.insert(at, if y == 1 { "great" } else { "terrible" });
        texts.push(words.join(" "));
        labels.push(y);
    }
    (texts, labels)
}

fn fixture(name: &str) -> ModelDir {
    ModelDir::open(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

type Split = (Vec<Encoded>, Vec<usize>);

fn setup() -> (ModelDir, TextTokenizer, Split, Split, Split) {
    let dir = fixture("qwen2");
    let config = dir.decoder_config().unwrap();
    let tok = TextTokenizer::from_file(&dir.tokenizer, &config, Some(32)).unwrap();
    let enc = |n, seed| {
        let (texts, labels) = task(n, seed);
        let inputs: Vec<TextInput<'_>> = texts.iter().map(|t| TextInput::Single(t)).collect();
        (tok.encode(&inputs).unwrap(), labels)
    };
    let (train, val, test) = (enc(96, 1), enc(48, 2), enc(40, 3));
    (dir, tok, train, val, test)
}

fn split(s: &Split) -> LabeledSplit<'_> {
    LabeledSplit {
        encoded: &s.0,
        labels: &s.1,
    }
}

fn load(dir: &ModelDir, device: &Device) -> DecoderClassifier {
    device.seed(7);
    let opts = LoadOptions {
        labels: Some(vec!["negative".into(), "positive".into()]),
    };
    load_decoder_classifier(dir, &opts, device).unwrap().0
}

fn cfg(mode: FinetuneMode, epochs: usize, lr: f64) -> FinetuneConfig {
    FinetuneConfig {
        mode,
        epochs,
        lr,
        batch_size: 16,
        warmup_ratio: 0.1,
        weight_decay: 0.01,
        seed: 3,
        ..Default::default()
    }
}

fn w(p: &burn::module::Param<burn::tensor::Tensor<2>>) -> Vec<f32> {
    p.val().into_data().try_to_vec::<f32>().unwrap()
}

/// See `tests/finetune.rs`: runs that draw random numbers take turns.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn lora_on_qkv_trains_adapters_and_score_and_exports_a_linear_cache() {
    let _turn = TURN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (dir, tok, train, val, test) = setup();
    let device = Device::flex();
    let model = load(&dir, &device);
    let mlp_before = w(&model.model.layers[0].mlp.up_proj.weight);
    let q_before = w(&model.model.layers[0].self_attn.q_proj.weight);
    let (m, report) = finetune(
        model,
        &tok,
        split(&train),
        split(&val),
        &cfg(FinetuneMode::lora(), 8, 1e-2),
        &device,
        false,
    )
    .unwrap();
    // r = 8 on q (32 → 32), k and v (32 → 8: one key/value head of 8) in 2 layers, plus
    // `score` (32 × 2, no bias); the q/k/v biases stay frozen.
    let per_layer = (32 * 8 + 8 * 32) + 2 * (32 * 8 + 8 * 8);
    assert_eq!(report.trainable_parameters, 2 * per_layer + 32 * 2);
    assert_eq!(w(&m.model.layers[0].mlp.up_proj.weight), mlp_before);
    assert_ne!(
        w(&m.model.layers[0].self_attn.q_proj.weight),
        q_before,
        "adapters merged"
    );
    let best = &report.epochs[report.best_epoch - 1];
    assert!(best.val_accuracy >= 0.8, "{report:#?}");

    let cache = export_cache(
        m,
        &tok,
        ExportSplits {
            train: split(&train),
            val: split(&val),
            test: split(&test),
        },
        ExportMeta {
            label_names: vec!["negative".into(), "positive".into()],
            provenance: serde_json::json!({"model": "fixtures/qwen2"}),
        },
        16,
        &device,
        None,
    )
    .unwrap();
    assert_eq!(cache.classifier.kind, ClassifierKind::Linear);
    assert!(cache.classifier.out_bias.is_none());
    let tmp = tempfile::tempdir().unwrap();
    cache.write(tmp.path()).unwrap();
    // Loading recomputes the logits from the features with `score`: they must agree.
    let (loaded, _) = FeatureCache::load(tmp.path()).unwrap();
    assert_eq!(loaded, cache);
}

#[test]
fn frozen_trains_score_on_fixed_features() {
    let _turn = TURN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (dir, tok, train, val, _) = setup();
    let device = Device::flex();
    let model = load(&dir, &device);
    let before = w(&model.model.layers[1].mlp.down_proj.weight);
    let score_before = w(&model.score.weight);
    let (m, report) = finetune(
        model,
        &tok,
        split(&train),
        split(&val),
        &cfg(FinetuneMode::Frozen, 20, 1e-2),
        &device,
        false,
    )
    .unwrap();
    assert_eq!(report.trainable_parameters, 32 * 2);
    assert_eq!(w(&m.model.layers[1].mlp.down_proj.weight), before);
    assert_ne!(w(&m.score.weight), score_before);
    assert!(
        report.epochs.last().unwrap().train_loss < report.epochs[0].train_loss,
        "{report:#?}"
    );
}

fn q(question: &str, choices: [&str; 4], answer: usize) -> ChoiceQuestion {
    ChoiceQuestion {
        question: question.into(),
        choices: choices.iter().map(|c| c.to_string()).collect(),
        answer,
    }
}

#[test]
fn multiple_choice_cache_holds_the_letter_rows_of_lm_head() {
    let device = Device::flex();
    let dir = fixture("qwen2-lm");
    let (lm, config, _) = load_causal_lm(&dir, &device).unwrap();
    let tok = TextTokenizer::from_file(&dir.tokenizer, &config, Some(512)).unwrap();
    let questions = vec![
        q(
            "Which planet is closest to the sun?",
            ["Mercury", "Venus", "Earth", "Mars"],
            0,
        ),
        q("Is the dog lazy?", ["yes", "no", "maybe", "unknown"], 0),
        q(
            "How many legs does a spider have?",
            ["Six", "Eight", "Ten", "Twelve"],
            1,
        ),
    ];
    let dev = vec![q(
        "What is the boiling point of water at sea level?",
        ["50 C", "100 C", "150 C", "200 C"],
        1,
    )];
    let prompting = ChoicePrompting {
        subject: "science",
        shots: &dev,
        num_choices: 4,
    };
    let splits = ChoiceSplits {
        train: &questions[..2],
        val: &questions[1..],
        test: &questions,
    };
    let cache = export_choice_cache(lm, &tok, &prompting, splits, 2, &device, None).unwrap();
    assert_eq!(cache.classifier.kind, ClassifierKind::Linear);
    assert_eq!((cache.classifier.num_classes, cache.classifier.dim), (4, 32));
    assert_eq!(cache.meta.label_names, vec!["A", "B", "C", "D"]);
    assert_eq!(cache.test.labels, vec![0, 0, 1]);
    let tmp = tempfile::tempdir().unwrap();
    cache.write(tmp.path()).unwrap();
    let (loaded, _) = FeatureCache::load(tmp.path()).unwrap();
    assert_eq!(loaded, cache);

    // A question with three options in a four-way task is named.
    let bad = vec![ChoiceQuestion {
        question: "x".into(),
        choices: vec!["a".into(), "b".into(), "c".into()],
        answer: 0,
    }];
    let (lm, _, _) = load_causal_lm(&dir, &device).unwrap();
    let err = export_choice_cache(
        lm,
        &tok,
        &prompting,
        ChoiceSplits {
            train: &bad,
            val: &questions,
            test: &questions,
        },
        2,
        &device,
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("train question 0"), "{err}");
}
