//! The non-trainable heads and the feature cache: expected values from numpy/scipy
//! (`fixtures/make_classical_fixture.py`), a temperature recovered from logits generated with a
//! known one, the cache's round trip and its validation errors, and save/load round trips.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use serde_json::Value;
use ueb_cache::{
    Activation, CacheMeta, Classifier, ClassifierKind, ClassifierMeta, FeatureCache, RowUnit, ScorePrecision, Split,
    SplitData,
};
use ueb_heads::classical::{TemperatureConfig, TemperatureHead};
use ueb_heads::mahalanobis::{FeatureSpace, MahalanobisConfig};
use ueb_heads::{FitContext, HeadError, HeadSpec};
use ueb_rng::{Rng64, Xoshiro256};

fn fixture() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/classical.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn meta(c: usize, d: usize, kind: ClassifierKind, activation: Activation) -> CacheMeta {
    CacheMeta {
        format: "ueb-cache".into(),
        version: 1,
        task: RowUnit::Sequence,
        num_classes: c,
        feature_dim: d,
        classifier: ClassifierMeta { kind, activation },
        label_names: (0..c).map(|k| format!("class{k}")).collect(),
        provenance: serde_json::json!({"test": true}),
    }
}

fn fixture_cache(fx: &Value) -> FeatureCache {
    let (c, d) = (
        fx["num_classes"].as_u64().unwrap() as usize,
        fx["dim"].as_u64().unwrap() as usize,
    );
    let cl = &fx["classifier"];
    let split = |name: &str| {
        let s = &fx["splits"][name];
        SplitData {
            features: f32s(&s["features"]),
            logits: f32s(&s["logits"]),
            labels: s["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect(),
            group: None,
            dim: d,
            num_classes: c,
        }
    };
    FeatureCache {
        meta: meta(c, d, ClassifierKind::Mlp, Activation::Tanh),
        classifier: Classifier {
            kind: ClassifierKind::Mlp,
            activation: Activation::Tanh,
            dense_weight: Some(f32s(&cl["dense.weight"])),
            dense_bias: Some(f32s(&cl["dense.bias"])),
            out_weight: f32s(&cl["out_proj.weight"]),
            out_bias: Some(f32s(&cl["out_proj.bias"])),
            dim: d,
            num_classes: c,
        },
        train: split("train"),
        val: split("val"),
        test: split("test"),
    }
}

fn ctx<'a>(cache: &'a FeatureCache, device: &'a burn::tensor::Device, fit: Split) -> FitContext<'a> {
    FitContext {
        cache,
        fit,
        select: Split::Val,
        seed: 0,
        device,
    }
}

fn assert_close(got: &[f64], want: &[f64], rel: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rel * w.abs().max(1.0),
            "{what}: row {i}: got {g:.17e}, expected {w:.17e}"
        );
    }
}

#[test]
fn mahalanobis_matches_numpy() {
    let fx = fixture();
    let cache = fixture_cache(&fx);
    let device = burn::tensor::Device::flex();
    for (key, features, l2) in [
        ("input", FeatureSpace::Input, false),
        ("dense", FeatureSpace::Dense, false),
        ("input_l2", FeatureSpace::Input, true),
        ("dense_l2", FeatureSpace::Dense, true),
    ] {
        let cfg = MahalanobisConfig {
            features,
            l2_normalize: l2,
            ..MahalanobisConfig::default()
        };
        for (relative, field) in [(false, "md"), (true, "rmd")] {
            let spec = if relative {
                HeadSpec::RelativeMahalanobis(cfg)
            } else {
                HeadSpec::Mahalanobis(cfg)
            };
            let head = spec.fit(&ctx(&cache, &device, Split::Train)).unwrap();
            let u = head.score(&cache.test).unwrap();
            let want = f64s(&fx["mahalanobis"][key][field]);
            assert_close(&u, &want, 1e-9, &format!("{key} {field}"));
            // f32 products: the same fit, scores within f32 rounding of numpy's (relative to
            // the largest score, since a relative distance can cancel to near 0).
            let cfg32 = MahalanobisConfig {
                score_precision: ScorePrecision::F32,
                ..cfg
            };
            let spec32 = if relative {
                HeadSpec::RelativeMahalanobis(cfg32)
            } else {
                HeadSpec::Mahalanobis(cfg32)
            };
            let u32 = spec32
                .fit(&ctx(&cache, &device, Split::Train))
                .unwrap()
                .score(&cache.test)
                .unwrap();
            let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            let worst = u32
                .iter()
                .zip(&want)
                .map(|(g, w)| (g - w).abs() / scale)
                .fold(0.0, f64::max);
            eprintln!("{key} {field}: f32 products, worst error {worst:.1e} of the largest score");
            assert!(worst <= 1e-5, "{key} {field}: f32 products off by {worst:e}");
            assert!(worst > 0.0, "{key} {field}: f32 products gave the f64 scores");
        }
    }
}

#[test]
fn singular_covariance_uses_the_pseudo_inverse() {
    let fx = fixture();
    let mut cache = fixture_cache(&fx);
    // Append a copy of feature 0: the covariance becomes singular.
    let d = cache.meta.feature_dim;
    for split in [&mut cache.train, &mut cache.val, &mut cache.test] {
        let n = split.n();
        let mut wide = Vec::with_capacity(n * (d + 1));
        for i in 0..n {
            wide.extend_from_slice(&split.features[i * d..(i + 1) * d]);
            wide.push(split.features[i * d]);
        }
        split.features = wide;
        split.dim = d + 1;
    }
    cache.meta.feature_dim = d + 1;
    let device = burn::tensor::Device::flex();
    let cfg = MahalanobisConfig::default();
    let md = ueb_heads::mahalanobis::MahalanobisHead::fit(&cfg, false, &ctx(&cache, &device, Split::Train)).unwrap();
    assert!(md.used_pseudo_inverse());
    use ueb_heads::Head;
    assert_close(
        &md.score(&cache.test).unwrap(),
        &f64s(&fx["mahalanobis"]["singular_input"]["md"]),
        1e-7,
        "singular md",
    );
    let rmd = ueb_heads::mahalanobis::MahalanobisHead::fit(&cfg, true, &ctx(&cache, &device, Split::Train)).unwrap();
    assert_close(
        &rmd.score(&cache.test).unwrap(),
        &f64s(&fx["mahalanobis"]["singular_input"]["rmd"]),
        1e-7,
        "singular rmd",
    );
    // The pseudo-inverse's factor is saved with the head: the same bits after loading.
    for head in [&md, &rmd] {
        let dir = tempfile::tempdir().unwrap();
        head.save(dir.path()).unwrap();
        let back = ueb_heads::load(dir.path()).unwrap();
        let u = head.score(&cache.test).unwrap();
        assert_eq!(back.score(&cache.test).unwrap(), u, "{}", head.name());
        // A head saved without it (by an older ueb) derives it from the saved pseudo-inverse.
        let path = dir.path().join("head.safetensors");
        let bytes = std::fs::read(&path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let names: Vec<String> = st.names().into_iter().map(String::from).collect();
        assert!(names.iter().any(|n| n == "precision_factor"), "{names:?}");
        let mut f64s_kept: Vec<(String, Vec<f64>, Vec<usize>)> = Vec::new();
        for name in names.iter().filter(|n| !n.ends_with("precision_factor")) {
            let t = st.tensor(name).unwrap();
            let v = t
                .data()
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                .collect();
            f64s_kept.push((name.clone(), v, t.shape().to_vec()));
        }
        let refs: Vec<(&str, &[f64], Vec<usize>)> = f64s_kept
            .iter()
            .map(|(n, v, s)| (n.as_str(), &v[..], s.clone()))
            .collect();
        ueb_cache::write_safetensors(&path, &[], &[], &refs, None).unwrap();
        let old = ueb_heads::load(dir.path()).unwrap().score(&cache.test).unwrap();
        let scale = u.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for (a, b) in old.iter().zip(&u) {
            assert!((a - b).abs() <= 1e-9 * scale, "{}: {a} vs {b}", head.name());
        }
    }
}

#[test]
fn temperature_and_vector_scaling_match_scipy() {
    let fx = fixture();
    let cache = fixture_cache(&fx);
    let device = burn::tensor::Device::flex();
    let t = TemperatureHead::fit(&TemperatureConfig::default(), &cache.val).unwrap();
    let want_t = fx["temperature"]["t"].as_f64().unwrap();
    assert!(
        (t.temperature - want_t).abs() / want_t < 1e-5,
        "T = {} vs scipy {want_t}",
        t.temperature
    );
    let head = HeadSpec::from_name("temperature")
        .unwrap()
        .fit(&ctx(&cache, &device, Split::Val))
        .unwrap();
    assert_close(
        &head.score(&cache.test).unwrap(),
        &f64s(&fx["temperature"]["test_scores"]),
        1e-5,
        "temperature u",
    );

    let vs = HeadSpec::from_name("vector_scaling")
        .unwrap()
        .fit(&ctx(&cache, &device, Split::Val))
        .unwrap();
    let summary = vs.summary();
    let nll = summary["fit_nll"].as_f64().unwrap();
    let want_nll = fx["vector_scaling"]["val_nll"].as_f64().unwrap();
    assert!(nll <= want_nll + 1e-9, "vector scaling NLL {nll} vs scipy {want_nll}");
    assert_close(
        &f64s(&summary["scale"]),
        &f64s(&fx["vector_scaling"]["scale"]),
        1e-4,
        "scale",
    );
    assert_close(
        &vs.score(&cache.test).unwrap(),
        &f64s(&fx["vector_scaling"]["test_scores"]),
        1e-5,
        "vector scaling u",
    );
}

/// Logits z·T₀ of a model whose true probabilities are softmax(z): temperature scaling must
/// find T₀ back.
#[test]
fn temperature_recovers_a_known_temperature() {
    let (n, c, t0) = (40_000usize, 5usize, 2.5f64);
    let mut rng = Xoshiro256::new(11, 0);
    let mut logits = Vec::with_capacity(n * c);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let z: Vec<f64> = (0..c).map(|_| 2.0 * rng.unit() - 1.0).map(|v| 1.5 * v).collect();
        let mut p = vec![0.0; c];
        ueb_metrics::softmax_row(&z, &mut p);
        let (mut r, mut y) = (rng.unit(), c - 1);
        for (k, &pk) in p.iter().enumerate() {
            r -= pk;
            if r < 0.0 {
                y = k;
                break;
            }
        }
        labels.push(y as i64);
        logits.extend(z.iter().map(|&v| (v * t0) as f32));
    }
    let split = SplitData {
        features: vec![0.0; n],
        logits,
        labels,
        group: None,
        dim: 1,
        num_classes: c,
    };
    let head = TemperatureHead::fit(&TemperatureConfig::default(), &split).unwrap();
    assert!(
        (head.temperature - t0).abs() / t0 < 0.01,
        "fitted T = {}, true {t0}",
        head.temperature
    );
}

#[test]
fn cache_round_trip_and_logit_check() {
    let fx = fixture();
    let cache = fixture_cache(&fx);
    let dir = tempfile::tempdir().unwrap();
    cache.write(dir.path()).unwrap();
    let (back, report) = FeatureCache::load(dir.path()).unwrap();
    assert_eq!(back, cache);
    assert!(report.max_logit_deviation.iter().all(|(_, d)| *d < 1e-5), "{report:?}");
    assert!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .all(|e| !e.unwrap().file_name().to_string_lossy().contains(".tmp"))
    );
}

fn load_err(cache: &FeatureCache) -> String {
    let dir = tempfile::tempdir().unwrap();
    cache.write(dir.path()).unwrap();
    match FeatureCache::load(dir.path()) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn cache_validation_names_split_row_and_file() {
    let fx = fixture();
    let base = fixture_cache(&fx);

    let mut c = base.clone();
    c.val.logits[3 * 3 + 1] += 0.5;
    let e = load_err(&c);
    assert!(e.contains("val split") && e.contains("row 3, class 1"), "{e}");

    let mut c = base.clone();
    c.test.features[2 * 6 + 4] = f32::NAN;
    let e = load_err(&c);
    assert!(e.contains("test split") && e.contains("row 2, column 4 is NaN"), "{e}");

    let mut c = base.clone();
    c.train.labels[5] = 3;
    let e = load_err(&c);
    assert!(
        e.contains("train split") && e.contains("row 5 has label 3, outside 0..3"),
        "{e}"
    );

    let mut c = base.clone();
    c.meta.label_names.pop();
    let e = load_err(&c);
    assert!(
        e.contains("meta.json") && e.contains("2 label_names for 3 classes"),
        "{e}"
    );

    let dir = tempfile::tempdir().unwrap();
    base.write(dir.path()).unwrap();
    std::fs::remove_file(dir.path().join("val.safetensors")).unwrap();
    let e = FeatureCache::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("val.safetensors"), "{e}");

    let text = std::fs::read_to_string(dir.path().join("meta.json"))
        .unwrap()
        .replace("\"task\"", "\"tsak\"");
    std::fs::write(dir.path().join("meta.json"), text).unwrap();
    let e = FeatureCache::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("meta.json") && e.contains("tsak"), "{e}");
}

#[test]
fn dense_features_need_an_mlp_classifier() {
    let fx = fixture();
    let mut cache = fixture_cache(&fx);
    cache.classifier.kind = ClassifierKind::Linear;
    let device = burn::tensor::Device::flex();
    let cfg = MahalanobisConfig {
        features: FeatureSpace::Dense,
        ..MahalanobisConfig::default()
    };
    let err = HeadSpec::Mahalanobis(cfg)
        .fit(&ctx(&cache, &device, Split::Train))
        .err()
        .unwrap();
    assert!(matches!(err, HeadError::Config { .. }), "{err}");
}

#[test]
fn fitted_heads_save_and_load_with_identical_scores() {
    let fx = fixture();
    let cache = fixture_cache(&fx);
    let device = burn::tensor::Device::flex();
    let specs = [
        HeadSpec::Sr,
        HeadSpec::Entropy,
        HeadSpec::Margin,
        HeadSpec::from_name("temperature").unwrap(),
        HeadSpec::from_name("vector_scaling").unwrap(),
        HeadSpec::Mahalanobis(MahalanobisConfig {
            features: FeatureSpace::Dense,
            l2_normalize: true,
            ..MahalanobisConfig::default()
        }),
        HeadSpec::RelativeMahalanobis(MahalanobisConfig::default()),
        HeadSpec::Mahalanobis(MahalanobisConfig {
            features: FeatureSpace::Dense,
            score_precision: ScorePrecision::F32,
            ..MahalanobisConfig::default()
        }),
    ];
    for spec in specs {
        let (fit, select) = spec.default_splits();
        let head = spec
            .fit(&FitContext {
                cache: &cache,
                fit,
                select,
                seed: 3,
                device: &device,
            })
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        head.save(dir.path()).unwrap();
        let back = ueb_heads::load(dir.path()).unwrap();
        assert_eq!(back.name(), head.name());
        // A loaded head scores in the precision it was fitted to score in.
        assert_eq!(
            back.summary()["score_precision"],
            head.summary()["score_precision"],
            "{}",
            head.name()
        );
        assert_eq!(
            back.score(&cache.test).unwrap(),
            head.score(&cache.test).unwrap(),
            "{}",
            head.name()
        );
    }
}

#[test]
fn builtin_heads_equal_the_metrics_scores() {
    let fx = fixture();
    let cache = fixture_cache(&fx);
    let device = burn::tensor::Device::flex();
    let probs = cache.test.probs();
    let pred = ueb_metrics::Predictions::from_probs(&probs, 3, &cache.test.labels).unwrap();
    for (spec, builtin) in [
        (HeadSpec::Sr, ueb_metrics::BuiltinScore::Sr),
        (HeadSpec::Entropy, ueb_metrics::BuiltinScore::Entropy),
        (HeadSpec::Margin, ueb_metrics::BuiltinScore::Margin),
    ] {
        let head = spec.fit(&ctx(&cache, &device, Split::Train)).unwrap();
        assert_eq!(head.score(&cache.test).unwrap(), builtin.compute(&pred));
    }
}

#[test]
fn softmax_heads_score_large_batches_as_row_by_row() {
    // 300 rows × 20 classes: the rows are split between threads; each row must score as alone.
    use ueb_heads::Head;
    let (n, c) = (300, 20);
    let mut rng = Xoshiro256::new(23, 300);
    let logits: Vec<f32> = (0..n * c).map(|_| ((rng.unit() - 0.5) * 12.0) as f32).collect();
    let split = SplitData {
        features: vec![0.0; n],
        logits,
        labels: (0..n as i64).map(|i| i % c as i64).collect(),
        group: None,
        dim: 1,
        num_classes: c,
    };
    let row = |i: usize| SplitData {
        features: vec![0.0],
        logits: split.logits[i * c..(i + 1) * c].to_vec(),
        labels: vec![split.labels[i]],
        ..split.clone()
    };
    let probs = split.probs();
    let pred = ueb_metrics::Predictions::from_probs(&probs, c, &split.labels).unwrap();
    let heads: Vec<Box<dyn Head>> = vec![
        Box::new(ueb_heads::classical::BuiltinHead::new(
            ueb_metrics::BuiltinScore::Entropy,
        )),
        Box::new(ueb_heads::classical::BuiltinHead::new(
            ueb_metrics::BuiltinScore::Margin,
        )),
        Box::new(TemperatureHead::fit(&TemperatureConfig::default(), &split).unwrap()),
    ];
    for head in &heads {
        let all = head.score(&split).unwrap();
        for i in (0..n).step_by(7) {
            assert_eq!(
                head.score(&row(i)).unwrap()[0].to_bits(),
                all[i].to_bits(),
                "{} row {i}",
                head.name()
            );
        }
    }
    assert_eq!(
        heads[0].score(&split).unwrap(),
        ueb_metrics::BuiltinScore::Entropy.compute(&pred)
    );
}
