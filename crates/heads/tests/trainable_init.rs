//! At initialisation the trainable heads reproduce the model's own uncertainty: ALIEN's `u` is
//! ueb's built-in `entropy` of the stored logits, AdUE's `u` is `(1 − SmoothMax_100(p))/(1 − 1/C)`
//! of the stored probabilities (computed here by the textbook formula), both within 1e-6.
//! The stored logits come from an independent f64 forward pass written in this file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ueb_cache::{Activation, Classifier, ClassifierKind, ScorePrecision, SplitData};
use ueb_heads::Head;
use ueb_heads::trainable::{Method, TrainedHead};
use ueb_metrics::BuiltinScore;
use ueb_rng::{Rng64, Xoshiro256};

fn normal(rng: &mut Xoshiro256) -> f64 {
    // Box–Muller; 1 − unit() lies in (0, 1].
    let (u1, u2) = (1.0 - rng.unit(), rng.unit());
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn randn(rng: &mut Xoshiro256, n: usize, scale: f64) -> Vec<f32> {
    (0..n).map(|_| (normal(rng) * scale) as f32).collect()
}

fn classifier(kind: ClassifierKind, activation: Activation, d: usize, c: usize, seed: u64) -> Classifier {
    let mut rng = Xoshiro256::new(seed, 1);
    let mlp = kind == ClassifierKind::Mlp;
    Classifier {
        kind,
        activation,
        dense_weight: mlp.then(|| randn(&mut rng, d * d, 1.0 / (d as f64).sqrt())),
        dense_bias: mlp.then(|| randn(&mut rng, d, 0.1)),
        out_weight: randn(&mut rng, c * d, 2.0),
        out_bias: Some(randn(&mut rng, c, 0.3)),
        dim: d,
        num_classes: c,
    }
}

/// The classifier's logits in f64, straight from the definition.
fn reference_logits(cls: &Classifier, x: &[f32]) -> Vec<f64> {
    let (d, c) = (cls.dim, cls.num_classes);
    let mut out = Vec::new();
    for row in x.chunks_exact(d) {
        let h: Vec<f64> = match (&cls.dense_weight, &cls.dense_bias) {
            (Some(w), Some(b)) => (0..d)
                .map(|j| {
                    let z: f64 =
                        f64::from(b[j]) + (0..d).map(|i| f64::from(w[j * d + i]) * f64::from(row[i])).sum::<f64>();
                    match cls.activation {
                        Activation::Tanh => z.tanh(),
                        Activation::Gelu => 0.5 * z * (1.0 + libm::erf(z / std::f64::consts::SQRT_2)),
                        Activation::None => z,
                    }
                })
                .collect(),
            _ => row.iter().map(|&v| f64::from(v)).collect(),
        };
        for k in 0..c {
            let b = cls.out_bias.as_ref().map_or(0.0, |b| f64::from(b[k]));
            out.push(b + (0..d).map(|i| f64::from(cls.out_weight[k * d + i]) * h[i]).sum::<f64>());
        }
    }
    out
}

fn split(cls: &Classifier, n: usize, seed: u64) -> SplitData {
    let mut rng = Xoshiro256::new(seed, 2);
    let mut features = randn(&mut rng, n * cls.dim, 1.0);
    // A few very confident rows, where u sits at (or near) its clamp.
    for v in &mut features[..3 * cls.dim] {
        *v *= 12.0;
    }
    let logits: Vec<f32> = reference_logits(cls, &features).iter().map(|&z| z as f32).collect();
    let labels = (0..n).map(|_| rng.index(cls.num_classes) as i64).collect();
    SplitData {
        features,
        logits,
        labels,
        group: None,
        dim: cls.dim,
        num_classes: cls.num_classes,
    }
}

fn textbook_adue(p: &[f64]) -> f64 {
    let lambda = 100.0;
    let sm = p.iter().map(|v| (lambda * v).exp()).sum::<f64>().ln() / lambda;
    ((1.0 - sm) / (1.0 - 1.0 / p.len() as f64)).clamp(1e-8, 1.0 - 1e-8)
}

#[test]
fn initial_scores_equal_the_models_own() {
    let cases = [
        (ClassifierKind::Mlp, Activation::Tanh, 32, 3),
        (ClassifierKind::Mlp, Activation::Gelu, 24, 5),
        (ClassifierKind::Linear, Activation::None, 40, 4),
        (ClassifierKind::Linear, Activation::None, 16, 2),
    ];
    for (i, &(kind, act, d, c)) in cases.iter().enumerate() {
        let cls = classifier(kind, act, d, c, 100 + i as u64);
        let data = split(&cls, 300, 200 + i as u64);
        let p = data.probs();
        let entropy: Vec<f64> = p.chunks_exact(c).map(|r| BuiltinScore::Entropy.of_row(r)).collect();
        let adue_ref: Vec<f64> = p.chunks_exact(c).map(textbook_adue).collect();

        let alien = TrainedHead::at_initialisation(Method::Alien, 100.0, &cls)
            .unwrap()
            .score(&data)
            .unwrap();
        let adue = TrainedHead::at_initialisation(Method::Adue, 100.0, &cls)
            .unwrap()
            .score(&data)
            .unwrap();
        let dev = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        let (dev_alien, dev_adue) = (dev(&alien, &entropy), dev(&adue, &adue_ref));
        println!("{kind:?}/{act:?} d={d} C={c}: |alien − entropy| ≤ {dev_alien:e}, |adue − formula| ≤ {dev_adue:e}");
        assert!(
            dev_alien < 1e-6,
            "alien at init deviates from the entropy by {dev_alien:e}"
        );
        assert!(
            dev_adue < 1e-6,
            "adue at init deviates from its formula by {dev_adue:e}"
        );

        // The anchors are the same numbers, computed from the stored logits only.
        assert!(dev(&Method::Alien.anchors(&data), &entropy) < 1e-15);
        let sr: Vec<f64> = p
            .chunks_exact(c)
            .map(|r| BuiltinScore::Sr.of_row(r) / (1.0 - 1.0 / c as f64))
            .collect();
        assert!(dev(&Method::Adue.anchors(&data), &sr) < 1e-15);
    }
}

#[test]
fn f32_products_score_within_float32_rounding_and_survive_save_and_load() {
    // An mlp head wide enough for f32 sums to show (d = 256), on batches of 300 rows (faer's
    // f32 product) and 3 rows (f64 dots of the f32 weights, which f32 leaves unchanged).
    let cls = classifier(ClassifierKind::Mlp, Activation::Tanh, 256, 3, 300);
    let data = split(&cls, 300, 301);
    let p = data.probs();
    let entropy: Vec<f64> = p.chunks_exact(3).map(|r| BuiltinScore::Entropy.of_row(r)).collect();
    let wide = TrainedHead::at_initialisation(Method::Alien, 100.0, &cls).unwrap();
    let narrow = wide.clone().with_score_precision(ScorePrecision::F32);
    assert_eq!(narrow.score_precision(), ScorePrecision::F32);
    let (u64s, u32s) = (wide.score(&data).unwrap(), narrow.score(&data).unwrap());
    let dev = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    let (dev64, dev32) = (dev(&u64s, &entropy), dev(&u32s, &entropy));
    println!("d = 256: |u − entropy| ≤ {dev64:e} (f64 products), {dev32:e} (f32 products)");
    assert!(dev64 < 1e-6, "{dev64:e}");
    assert!(dev32 < 2e-5, "f32 products move u by {dev32:e}");
    assert!(dev32 > dev64, "f32 products gave the f64 scores");
    // A batch of at most 4 rows keeps f64 sums.
    let few = SplitData {
        features: data.features[..3 * 256].to_vec(),
        logits: data.logits[..9].to_vec(),
        labels: data.labels[..3].to_vec(),
        group: None,
        ..data.clone()
    };
    assert_eq!(narrow.score(&few).unwrap(), wide.score(&few).unwrap());

    let dir = tempfile::tempdir().unwrap();
    narrow.save(dir.path()).unwrap();
    let back = ueb_heads::load(dir.path()).unwrap();
    assert_eq!(back.score(&data).unwrap(), u32s);
    // An f64 head saves without the key, as heads did before it existed.
    let dir64 = tempfile::tempdir().unwrap();
    wide.save(dir64.path()).unwrap();
    let text = std::fs::read_to_string(dir64.path().join("head.json")).unwrap();
    assert!(!text.contains("score_precision"), "{text}");
    assert_eq!(ueb_heads::load(dir64.path()).unwrap().score(&data).unwrap(), u64s);
}
