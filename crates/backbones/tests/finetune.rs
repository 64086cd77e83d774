#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Fine-tuning (full, LoRA, frozen) and cache export on a tiny random checkpoint and a task it
//! can learn: does the text say "good" or "bad"?

use std::path::PathBuf;

use burn::tensor::Device;
use ueb_backbones::{
    Encoded, Extractor, FinetuneConfig, FinetuneEngine, FinetuneMode, LabeledSplit, LoadOptions, ModelDir,
    SequenceClassifier, TextInput, TextTokenizer, export_cache, finetune, load_sequence_classifier,
};
use ueb_backbones::{ExportMeta, ExportSplits};
use ueb_cache::FeatureCache;
use ueb_rng::{Rng64, Xoshiro256};

const FILLER: [&str; 8] = ["the", "movie", "was", "really", "quite", "and", "story", "it"];

/// `n` texts with label 1 when they contain "good", 0 when "bad".
fn task(n: usize, seed: u64) -> (Vec<String>, Vec<usize>) {
    let mut rng = Xoshiro256::new(seed, 0);
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for _ in 0..n {
        let y = rng.index(2);
        let len = 3 + rng.index(5);
        let mut words: Vec<&str> = (0..len).map(|_| FILLER[rng.index(FILLER.len())]).collect();
        let at = rng.index(words.len() + 1);
        words.insert(at, if y == 1 { "good" } else { "bad" });
        texts.push(words.join(" "));
        labels.push(y);
    }
    (texts, labels)
}

struct Setup {
    dir: ModelDir,
    tok: TextTokenizer,
    train: (Vec<Encoded>, Vec<usize>),
    val: (Vec<Encoded>, Vec<usize>),
    test: (Vec<Encoded>, Vec<usize>),
}

fn setup() -> Setup {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert");
    let dir = ModelDir::open(&path).unwrap();
    let config = dir.encoder_config().unwrap();
    let tok = TextTokenizer::from_file(&dir.tokenizer, &config, Some(32)).unwrap();
    let enc = |n, seed| {
        let (texts, labels) = task(n, seed);
        let inputs: Vec<TextInput<'_>> = texts.iter().map(|t| TextInput::Single(t)).collect();
        (tok.encode(&inputs).unwrap(), labels)
    };
    let (train, val, test) = (enc(96, 1), enc(48, 2), enc(40, 3));
    Setup {
        dir,
        tok,
        train,
        val,
        test,
    }
}

fn split(s: &(Vec<Encoded>, Vec<usize>)) -> LabeledSplit<'_> {
    LabeledSplit {
        encoded: &s.0,
        labels: &s.1,
    }
}

/// burn's random generator is one per backend and process: fine-tuning runs that draw dropout
/// masks at the same time interleave their draws. The tests take turns, as runs in one process
/// must for bit-identical results.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn load(s: &Setup, device: &Device) -> SequenceClassifier {
    device.seed(7);
    let opts = LoadOptions {
        labels: Some(vec!["bad".into(), "good".into()]),
    };
    load_sequence_classifier(&s.dir, &opts, device).unwrap().0
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

#[test]
fn full_finetuning_learns_and_is_deterministic() {
    let _turn = TURN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let s = setup();
    let device = Device::flex();
    let run = || {
        let (m, report) = finetune(
            load(&s, &device),
            &s.tok,
            split(&s.train),
            split(&s.val),
            &cfg(FinetuneMode::Full, 6, 3e-3),
            &device,
            false,
        )
        .unwrap();
        let z = Extractor::Classifier(Box::new(m))
            .run(&s.tok, &s.test.0, 16, &device, None)
            .unwrap();
        (report, z)
    };
    let (report, z) = run();
    let first = &report.epochs[0];
    let best = &report.epochs[report.best_epoch - 1];
    assert!(best.val_accuracy >= 0.9, "{report:#?}");
    assert!(
        report.epochs.last().unwrap().train_loss < first.train_loss,
        "{report:#?}"
    );
    assert_eq!(report.steps, 6 * 96usize.div_ceil(16));
    // Same seed, same bits.
    let (_, z2) = run();
    assert_eq!(z.logits, z2.logits);
    assert_eq!(z.features, z2.features);
}

#[test]
fn lora_trains_adapters_and_head_only() {
    // The host engine (a CPU device's default) and burn's autodiff (every other device's).
    lora_trains(FinetuneEngine::Auto);
    lora_trains(FinetuneEngine::Burn);
}

fn lora_trains(engine: FinetuneEngine) {
    let _turn = TURN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let s = setup();
    let device = Device::flex();
    let model = load(&s, &device);
    let inter_before = w(&model.backbone.encoder.layer[0].intermediate.dense.weight);
    let query_before = w(&model.backbone.encoder.layer[0].attention.self_attn.query.weight);
    let (m, report) = finetune(
        model,
        &s.tok,
        split(&s.train),
        split(&s.val),
        &FinetuneConfig {
            engine,
            ..cfg(FinetuneMode::lora(), 6, 1e-2)
        },
        &device,
        false,
    )
    .unwrap();
    // r = 8 on query, key, value of 2 layers at d = 32, plus the whole head (d×d + d + d×2 + 2).
    assert_eq!(
        report.trainable_parameters,
        2 * 3 * (8 * 32 + 8 * 32) + (32 * 32 + 32 + 32 * 2 + 2)
    );
    assert_eq!(w(&m.backbone.encoder.layer[0].intermediate.dense.weight), inter_before);
    assert_ne!(
        w(&m.backbone.encoder.layer[0].attention.self_attn.query.weight),
        query_before
    );
    let best = &report.epochs[report.best_epoch - 1];
    assert!(best.val_accuracy >= 0.8, "{engine:?}: {report:#?}");
    // Extraction on a CPU device runs the host pass, which reads the weights as `base + scale·A·B`
    // (`Param::val`): its logits are the burn modules' on the adapted model.
    let rows: Vec<usize> = (0..s.test.0.len()).collect();
    let want: Vec<f32> = m
        .forward(&s.tok.collate(&s.test.0, &rows, &device))
        .logits
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    let got = Extractor::Classifier(Box::new(m))
        .run(&s.tok, &s.test.0, 16, &device, None)
        .unwrap();
    let diff = got
        .logits
        .unwrap()
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-4, "host pass vs burn modules after LoRA: {diff}");
}

#[test]
fn frozen_trains_the_head_on_fixed_features() {
    let _turn = TURN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let s = setup();
    let device = Device::flex();
    let model = load(&s, &device);
    let before = w(&model.backbone.encoder.layer[1].output.dense.weight);
    let head_before = w(&model.head.out_proj.weight);
    let (m, report) = finetune(
        model,
        &s.tok,
        split(&s.train),
        split(&s.val),
        &cfg(FinetuneMode::Frozen, 30, 1e-2),
        &device,
        false,
    )
    .unwrap();
    assert_eq!(report.trainable_parameters, 32 * 32 + 32 + 32 * 2 + 2);
    assert_eq!(w(&m.backbone.encoder.layer[1].output.dense.weight), before);
    assert_ne!(w(&m.head.out_proj.weight), head_before);
    assert!(
        report.epochs.last().unwrap().train_loss < report.epochs[0].train_loss,
        "{report:#?}"
    );
}

#[test]
fn frozen_on_precomputed_features_is_frozen_finetuning() {
    use ueb_backbones::{
        ClassifierModel, FeatureSplit, FeatureSplits, export_cache_from_features, finetune_on_features,
    };
    let _turn = TURN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let s = setup();
    let device = Device::flex();
    let c = cfg(FinetuneMode::Frozen, 4, 1e-2);
    let (from_texts, report_texts) = finetune(
        load(&s, &device),
        &s.tok,
        split(&s.train),
        split(&s.val),
        &c,
        &device,
        false,
    )
    .unwrap();
    // The backbone's features, computed once (what a runner shares between seeds).
    let (backbone, _) = load(&s, &device).split();
    // 64 rows a batch, as `frozen` extracts (batch composition moves features by float noise).
    let feats = |e: &[Encoded]| backbone.run(&s.tok, e, 64, &device, None).unwrap();
    let (ftrain, fval, ftest) = (feats(&s.train.0), feats(&s.val.0), feats(&s.test.0));
    fn fs<'a>(f: &'a ueb_backbones::Extracted, y: &'a [usize]) -> FeatureSplit<'a> {
        FeatureSplit::new(&f.features, f.dim, y).unwrap()
    }
    let (from_features, report_features) = finetune_on_features(
        load(&s, &device),
        fs(&ftrain, &s.train.1),
        fs(&fval, &s.val.1),
        &c,
        &device,
        false,
    )
    .unwrap();
    // Same seed, same draws: the same head, bit for bit, and the same epochs.
    assert_eq!(w(&from_features.head.dense.weight), w(&from_texts.head.dense.weight));
    assert_eq!(
        w(&from_features.head.out_proj.weight),
        w(&from_texts.head.out_proj.weight)
    );
    assert_eq!(report_features.best_epoch, report_texts.best_epoch);
    assert_eq!(report_features.epochs.len(), report_texts.epochs.len());
    for (a, b) in report_features.epochs.iter().zip(&report_texts.epochs) {
        assert_eq!(a.train_loss, b.train_loss);
        assert_eq!(a.val_accuracy, b.val_accuracy);
    }
    // And the same cache as a full export of that model, up to the batching of the head pass.
    let meta = || ExportMeta {
        label_names: vec!["bad".into(), "good".into()],
        provenance: serde_json::Value::Null,
    };
    let exported = export_cache(
        from_texts,
        &s.tok,
        ExportSplits {
            train: split(&s.train),
            val: split(&s.val),
            test: split(&s.test),
        },
        meta(),
        64,
        &device,
        None,
    )
    .unwrap();
    let cached = export_cache_from_features(
        from_features,
        FeatureSplits {
            train: fs(&ftrain, &s.train.1),
            val: fs(&fval, &s.val.1),
            test: fs(&ftest, &s.test.1),
        },
        meta(),
        &device,
    )
    .unwrap();
    assert_eq!(cached.classifier, exported.classifier);
    assert_eq!(cached.test.features, exported.test.features);
    assert_eq!(cached.test.labels, exported.test.labels);
    let worst = cached
        .test
        .logits
        .iter()
        .zip(&exported.test.logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "{worst}");
    // A full mode and features of the wrong width are refused.
    let err = finetune_on_features(
        load(&s, &device),
        fs(&ftrain, &s.train.1),
        fs(&fval, &s.val.1),
        &cfg(FinetuneMode::Full, 1, 1e-2),
        &device,
        false,
    )
    .unwrap_err();
    assert!(err.to_string().contains("frozen"), "{err}");
    assert!(FeatureSplit::new(&ftrain.features[1..], ftrain.dim, &s.train.1).is_err());
}

#[test]
fn exported_cache_loads_and_matches_the_model() {
    let _turn = TURN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let s = setup();
    let device = Device::flex();
    let (m, _) = finetune(
        load(&s, &device),
        &s.tok,
        split(&s.train),
        split(&s.val),
        &cfg(FinetuneMode::Full, 2, 3e-3),
        &device,
        false,
    )
    .unwrap();
    let splits = ExportSplits {
        train: split(&s.train),
        val: split(&s.val),
        test: split(&s.test),
    };
    let cache = export_cache(
        m,
        &s.tok,
        splits,
        ExportMeta {
            label_names: vec!["bad".into(), "good".into()],
            provenance: serde_json::json!({"model": "fixtures/bert"}),
        },
        16,
        &device,
        None,
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    cache.write(tmp.path()).unwrap();
    let (loaded, report) = FeatureCache::load(tmp.path()).unwrap();
    assert_eq!(loaded, cache);
    assert_eq!(
        loaded.test.labels,
        s.test.1.iter().map(|&y| y as i64).collect::<Vec<_>>()
    );
    assert_eq!(loaded.meta.feature_dim, 32);
    let _ = report;
}

#[test]
fn the_engine_is_chosen_and_a_host_engine_that_cannot_run_says_why() {
    use ueb_backbones::finetune_engine;
    let flex = Device::flex();
    let lora = cfg(FinetuneMode::lora(), 1, 1e-3);
    assert_eq!(finetune_engine(&lora, &flex, true).unwrap(), "host");
    assert_eq!(finetune_engine(&lora, &flex, false).unwrap(), "burn");
    let other_targets = cfg(
        FinetuneMode::Lora {
            r: 4,
            alpha: 8.0,
            targets: vec!["query".into(), "dense".into()],
        },
        1,
        1e-3,
    );
    assert_eq!(finetune_engine(&other_targets, &flex, true).unwrap(), "burn");
    let forced = FinetuneConfig {
        engine: FinetuneEngine::Host,
        ..other_targets
    };
    let err = finetune_engine(&forced, &flex, true).unwrap_err().to_string();
    assert!(err.contains("not `dense`"), "{err}");
    let decoder = FinetuneConfig {
        engine: FinetuneEngine::Host,
        ..lora.clone()
    };
    let err = finetune_engine(&decoder, &flex, false).unwrap_err().to_string();
    assert!(err.contains("not decoders"), "{err}");
    let burn = FinetuneConfig {
        engine: FinetuneEngine::Burn,
        ..lora
    };
    assert_eq!(finetune_engine(&burn, &flex, true).unwrap(), "burn");
}
