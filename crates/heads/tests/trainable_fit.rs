//! Fitting `adue` and `alien`: on a synthetic "entropy-blind" cache (errors caused by a feature
//! the classifier ignores, so its entropy and SR cannot see them) both heads must beat `entropy`
//! and `sr` on test ROC-AUC by at least 0.05; fits are deterministic for a seed; a saved head
//! loads back with identical scores; bad inputs are errors, not panics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use burn::tensor::Device;
use ueb_cache::{
    Activation, CacheMeta, Classifier, ClassifierKind, ClassifierMeta, FeatureCache, RowUnit, Split, SplitData,
};
use ueb_heads::trainable::{GridConfig, Method, Precision, TrainableConfig, TrainedHead, fit_adue, fit_alien};
use ueb_heads::{FitContext, Head, HeadError, HeadSpec};
use ueb_metrics::{BuiltinScore, ErrorDetection};
use ueb_rng::{Rng64, Xoshiro256};

const D: usize = 12;
const C: usize = 3;
/// The feature the classifier ignores and that flips labels of class 0.
const FLAG: usize = D - 1;

fn normal(rng: &mut Xoshiro256) -> f64 {
    let (u1, u2) = (1.0 - rng.unit(), rng.unit());
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// An mlp (tanh) classifier that reads dims 0..C (through `dense` = 0.5·I) and ignores the rest.
fn classifier() -> Classifier {
    let mut dense = vec![0.0f32; D * D];
    for j in 0..D {
        dense[j * D + j] = 0.5;
    }
    let mut out = vec![0.0f32; C * D];
    for k in 0..C {
        out[k * D + k] = 6.0;
    }
    Classifier {
        kind: ClassifierKind::Mlp,
        activation: Activation::Tanh,
        dense_weight: Some(dense),
        dense_bias: Some(vec![0.0; D]),
        out_weight: out,
        out_bias: Some(vec![0.0; C]),
        dim: D,
        num_classes: C,
    }
}

/// Rows of class k sit around 2.5·e_k with unit noise, so the model is usually confident and
/// sometimes (near the boundaries) unsure and wrong; a hidden flag (feature FLAG = 3, else 0,
/// 30% of rows) relabels class-0 rows as class 1 or 2. The model ignores FLAG, so those errors
/// are confident: entropy and SR rank them among the most certain rows.
fn split(cls: &Classifier, n: usize, rng: &mut Xoshiro256) -> SplitData {
    let mut features = Vec::with_capacity(n * D);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let k = rng.index(C);
        let flag = rng.unit() < 0.3;
        for j in 0..D {
            let centre = if j == k { 2.5 } else { 0.0 };
            let v = if j == FLAG {
                if flag { 3.0 } else { 0.0 }
            } else {
                centre + normal(rng)
            };
            features.push(v as f32);
        }
        let y = if flag && k == 0 { 1 + rng.index(C - 1) } else { k };
        labels.push(y as i64);
    }
    // The stored logits: the classifier in f64 (the cache contract: they match the features).
    let mut logits = Vec::with_capacity(n * C);
    let (w1, w2) = (cls.dense_weight.as_ref().unwrap(), &cls.out_weight);
    for row in features.chunks_exact(D) {
        let h: Vec<f64> = (0..D)
            .map(|j| {
                (0..D)
                    .map(|i| f64::from(w1[j * D + i]) * f64::from(row[i]))
                    .sum::<f64>()
                    .tanh()
            })
            .collect();
        for k in 0..C {
            logits.push((0..D).map(|i| f64::from(w2[k * D + i]) * h[i]).sum::<f64>() as f32);
        }
    }
    SplitData {
        features,
        logits,
        labels,
        group: None,
        dim: D,
        num_classes: C,
    }
}

fn cache(seed: u64) -> FeatureCache {
    let cls = classifier();
    let mut rng = Xoshiro256::new(seed, 7);
    let train = split(&cls, 2000, &mut rng);
    let val = split(&cls, 1000, &mut rng);
    let test = split(&cls, 2000, &mut rng);
    FeatureCache {
        meta: CacheMeta {
            format: "ueb-cache".into(),
            version: 1,
            task: RowUnit::Sequence,
            num_classes: C,
            feature_dim: D,
            classifier: ClassifierMeta {
                kind: ClassifierKind::Mlp,
                activation: Activation::Tanh,
            },
            label_names: (0..C).map(|k| format!("c{k}")).collect(),
            provenance: serde_json::Value::Null,
        },
        classifier: cls,
        train,
        val,
        test,
    }
}

/// A grid small enough for a debug build: one point, 10 epochs (AdUE) or up to 10 with
/// patience 3 (ALIEN).
fn small(method: Method) -> TrainableConfig {
    let mut cfg = TrainableConfig {
        grid: GridConfig {
            lr: Some(vec![1e-2]),
            alpha: Some(vec![0.1]),
            beta: Some(vec![0.01]),
            epochs: None,
        },
        ..TrainableConfig::default()
    };
    match method {
        Method::Adue => cfg.grid.epochs = Some(vec![10]),
        Method::Alien => {
            cfg.max_epochs = Some(10);
            cfg.patience = Some(3);
        }
    }
    cfg
}

fn ctx<'a>(cache: &'a FeatureCache, device: &'a Device, seed: u64) -> FitContext<'a> {
    FitContext {
        cache,
        fit: Split::Train,
        select: Split::Val,
        seed,
        device,
    }
}

fn auc(split: &SplitData, u: &[f64]) -> f64 {
    ErrorDetection::compute(&split.errors(), u, 15)
        .unwrap()
        .roc_auc
        .unwrap()
}

fn builtin(split: &SplitData, s: BuiltinScore) -> Vec<f64> {
    split.probs().chunks_exact(C).map(|r| s.of_row(r)).collect()
}

#[test]
fn trainable_heads_see_what_entropy_cannot() {
    let cache = cache(11);
    let device = Device::flex();
    let test = &cache.test;
    let entropy = auc(test, &builtin(test, BuiltinScore::Entropy));
    let sr = auc(test, &builtin(test, BuiltinScore::Sr));
    let t0 = std::time::Instant::now();
    let adue = fit_adue(&small(Method::Adue), &ctx(&cache, &device, 3)).unwrap();
    let t_adue = t0.elapsed();
    let t0 = std::time::Instant::now();
    let alien = fit_alien(&small(Method::Alien), &ctx(&cache, &device, 3)).unwrap();
    let t_alien = t0.elapsed();
    let adue_auc = auc(test, &adue.score(test).unwrap());
    let alien_auc = auc(test, &alien.score(test).unwrap());
    let errors = test.errors().iter().filter(|&&e| e).count();
    println!(
        "entropy-blind cache (test: {} rows, {errors} errors): ROC-AUC entropy {entropy:.4}, sr {sr:.4}, adue {adue_auc:.4} (fit {t_adue:.2?}), alien {alien_auc:.4} (fit {t_alien:.2?})",
        test.n()
    );
    println!("alien summary: {}", alien.summary()["chosen"]);
    let margin = 0.05;
    for (name, got) in [("adue", adue_auc), ("alien", alien_auc)] {
        assert!(
            got >= entropy + margin && got >= sr + margin,
            "{name} {got:.4} does not beat entropy {entropy:.4} / sr {sr:.4} by {margin}"
        );
    }
    // The summary reports the choice and the curve.
    let s = alien.summary();
    assert_eq!(s["chosen"]["lr"], 1e-2);
    let curve = s["val_curve"].as_array().unwrap();
    assert_eq!(curve.len(), s["chosen"]["epochs_run"].as_u64().unwrap() as usize);
    assert_eq!(s["grid"].as_array().unwrap().len(), 1);
    let best = s["chosen"]["val_roc_auc"].as_f64().unwrap();
    let curve_max = curve
        .iter()
        .map(|e| e["val_roc_auc"].as_f64().unwrap())
        .fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(best, curve_max, "alien keeps its best epoch");
}

#[test]
fn same_seed_same_scores_and_save_load_round_trip() {
    let cache = cache(5);
    let device = Device::flex().autodiff();
    let mut cfg = small(Method::Alien);
    cfg.max_epochs = Some(3);
    cfg.grid.lr = Some(vec![1e-2, 1e-3]);
    let a = fit_alien(&cfg, &ctx(&cache, &device, 9)).unwrap();
    let b = fit_alien(&cfg, &ctx(&cache, &device, 9)).unwrap();
    let (ua, ub) = (a.score(&cache.test).unwrap(), b.score(&cache.test).unwrap());
    assert_eq!(ua, ub, "same seed, different scores");
    assert_eq!(a.summary(), b.summary());
    assert_eq!(a.summary()["grid"].as_array().unwrap().len(), 2);

    // Another seed shuffles and drops out differently.
    let c = fit_alien(&cfg, &ctx(&cache, &device, 10)).unwrap();
    assert_ne!(ua, c.score(&cache.test).unwrap());

    let dir = tempfile::tempdir().unwrap();
    a.save(dir.path()).unwrap();
    let loaded = TrainedHead::load(dir.path()).unwrap();
    assert_eq!(loaded, a);
    assert_eq!(loaded.score(&cache.test).unwrap(), ua);
    // Through the registry as well.
    let any = ueb_heads::load(dir.path()).unwrap();
    assert_eq!(any.name(), "alien");
    assert_eq!(any.score(&cache.test).unwrap(), ua);

    // The weights are stored in PyTorch layout under the classifier's names.
    let bytes = std::fs::read(dir.path().join("head.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<_> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    assert_eq!(
        names,
        ["dense.bias", "dense.weight", "out_proj.bias", "out_proj.weight"]
    );
    assert_eq!(st.tensor("out_proj.weight").unwrap().shape(), [C, D]);
    assert_eq!(st.tensor("dense.weight").unwrap().shape(), [D, D]);
}

#[test]
fn adue_round_trip_and_f64_and_ndarray() {
    let cache = cache(6);
    let mut cfg = small(Method::Adue);
    cfg.grid.epochs = Some(vec![2]);
    let flex = Device::flex();
    let a = fit_adue(&cfg, &ctx(&cache, &flex, 1)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    a.save(dir.path()).unwrap();
    let loaded = TrainedHead::load(dir.path()).unwrap();
    assert_eq!(loaded.score(&cache.test).unwrap(), a.score(&cache.test).unwrap());
    assert_eq!(loaded.summary()["chosen"], a.summary()["chosen"]);

    // f64 training runs (flex computes in f64) and lands close to the f32 run.
    cfg.precision = Precision::F64;
    let b = fit_adue(&cfg, &ctx(&cache, &flex, 1)).unwrap();
    let (ua, ub) = (a.score(&cache.test).unwrap(), b.score(&cache.test).unwrap());
    let dev = ua.iter().zip(&ub).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    assert!(dev < 1e-3, "f32 and f64 training differ by {dev:e}");

    // Any burn device: the deprecated ndarray backend too.
    #[allow(deprecated)]
    let nd = Device::ndarray();
    cfg.precision = Precision::F32;
    let c = fit_adue(&cfg, &ctx(&cache, &nd, 1)).unwrap();
    let dev = ua
        .iter()
        .zip(&c.score(&cache.test).unwrap())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    assert!(dev < 1e-3, "flex and ndarray training differ by {dev:e}");
}

/// A learning rate of 1e30 saturates the head (huge, finite weights, every score the same):
/// that is divergence, not a fitted head with a ROC-AUC of ½ from ties.
#[test]
fn a_run_whose_scores_collapse_is_reported_as_diverged() {
    let cache = cache(5);
    let device = Device::flex();
    let mut cfg = small(Method::Adue);
    cfg.grid.epochs = Some(vec![2]);
    cfg.grid.lr = Some(vec![1e30]);
    let e = fit_adue(&cfg, &ctx(&cache, &device, 0)).err().map(|e| e.to_string());
    assert!(
        e.as_deref().is_some_and(|e| e.contains("every grid point diverged")),
        "{e:?}"
    );
    cfg.grid.lr = Some(vec![1e30, 1e-2]);
    let head = fit_adue(&cfg, &ctx(&cache, &device, 0)).unwrap();
    let s = head.summary();
    assert_eq!(s["chosen"]["lr"], 1e-2, "{s}");
    let grid = s["grid"].as_array().unwrap();
    let blown = grid.iter().find(|g| g["lr"] == 1e30).unwrap();
    assert_eq!(blown["diverged"], true, "{blown}");
}

#[test]
fn bad_inputs_are_errors() {
    let cache = cache(8);
    let device = Device::flex();
    let cx = ctx(&cache, &device, 0);
    let mut cfg = small(Method::Alien);
    cfg.grid.epochs = Some(vec![3]);
    assert!(matches!(fit_alien(&cfg, &cx), Err(HeadError::Config { .. })));
    let mut cfg = small(Method::Adue);
    cfg.patience = Some(2);
    assert!(matches!(fit_adue(&cfg, &cx), Err(HeadError::Config { .. })));
    let mut cfg = small(Method::Adue);
    cfg.grid.lr = Some(vec![]);
    assert!(matches!(fit_adue(&cfg, &cx), Err(HeadError::Config { .. })));
    cfg.grid.lr = Some(vec![f64::NAN]);
    assert!(matches!(fit_adue(&cfg, &cx), Err(HeadError::Config { .. })));

    // No errors on the fit split: nothing to learn.
    let mut perfect = cache.clone();
    perfect.train.labels = perfect
        .train
        .logits
        .chunks_exact(C)
        .map(|z| z.iter().enumerate().fold(0, |b, (k, &v)| if v > z[b] { k } else { b }) as i64)
        .collect();
    assert!(matches!(
        fit_adue(&small(Method::Adue), &ctx(&perfect, &device, 0)),
        Err(HeadError::Fit { .. })
    ));

    // A split of another dimension cannot be scored.
    let head = TrainedHead::at_initialisation(Method::Alien, 100.0, &cache.classifier).unwrap();
    let mut other = cache.test.clone();
    other.dim = D - 1;
    other.features.truncate(other.n() * (D - 1));
    assert!(head.score(&other).is_err());

    // The configuration parses with defaults and rejects unknown keys.
    let spec: HeadSpec = serde_json::from_str(r#"{"alien": {"grid": {"lr": [0.001]}, "max_epochs": 7}}"#).unwrap();
    let HeadSpec::Alien(cfg) = spec else {
        panic!("not alien")
    };
    let rc = cfg.resolve(Method::Alien, ClassifierKind::Mlp).unwrap();
    assert_eq!(
        (
            rc.lr.clone(),
            rc.alpha.len(),
            rc.epochs.clone(),
            rc.patience,
            rc.dropout
        ),
        (vec![1e-3], 3, vec![7], Some(5), 0.1)
    );
    assert!(serde_json::from_str::<HeadSpec>(r#"{"adue": {"learning_rate": 1}}"#).is_err());
    // The scoring precision: f64 unless asked, `f32` or `f64` only.
    assert_eq!(rc.score_precision, ueb_cache::ScorePrecision::F64);
    let spec: HeadSpec = serde_json::from_str(r#"{"adue": {"score_precision": "f32"}}"#).unwrap();
    assert!(matches!(&spec, HeadSpec::Adue(c) if c.score_precision == ueb_cache::ScorePrecision::F32));
    let spec: HeadSpec = serde_json::from_str(r#"{"mahalanobis": {"score_precision": "f32"}}"#).unwrap();
    assert!(matches!(&spec, HeadSpec::Mahalanobis(c) if c.score_precision == ueb_cache::ScorePrecision::F32));
    assert!(serde_json::from_str::<HeadSpec>(r#"{"alien": {"score_precision": "f16"}}"#).is_err());
    let rc = TrainableConfig::default()
        .resolve(Method::Adue, ClassifierKind::Linear)
        .unwrap();
    assert_eq!(
        (
            rc.lr.len() * rc.alpha.len() * rc.beta.len() * rc.epochs.len(),
            rc.dropout
        ),
        (144, 0.0)
    );
}
