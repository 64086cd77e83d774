//! Inference of every head (`Head::score` on batches of 1, 32 and 128 rows) at (d = 768, C = 2),
//! (d = 768, C = 20) — mlp/tanh classifiers, as RoBERTa/ELECTRA heads — and (d = 4096, C = 4) —
//! a linear classifier, as a decoder's `score` head; one `alien` training configuration
//! (N = 10⁴, d = 768, C = 2, one grid point, 3 epochs) on `flex` and `ndarray`; and the host
//! activations (`tanh`, GELU) against `libm`.
//!
//! `cargo bench -p ueb-heads --bench heads`; filter with e.g. `-- score_d768_c2/alien`,
//! `-- train_alien` or `-- activation`. Each head is fitted once on synthetic data (seeded with
//! `ueb_rng`); the trainable ones on a one-point grid for one epoch, since inference cost does
//! not depend on training. Inference runs on the host in f64 whatever device trained the head
//! (`src/host.rs`), so flex vs ndarray is benchmarked for training only.
//! `examples/heads_timing.rs` times the same configurations for `bench/heads_vs_torch.py`.
//!
//! Every inference bench starts from a clean vector-register state (see `src/simd.rs`): the
//! heads now clear it themselves, so this only keeps the benches independent of their order.

#![allow(missing_docs)]
// criterion's macros generate undocumented items
// A benchmark, not library code: a failed fit should stop it with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use burn::tensor::Device;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use ueb_cache::{Activation, CacheMeta, Classifier, ClassifierKind, ClassifierMeta, FeatureCache, RowUnit, SplitData};
use ueb_heads::trainable::{GridConfig, TrainableConfig};
use ueb_heads::{FitContext, Head, HeadSpec};
use ueb_rng::{Rng64, Xoshiro256};

const BATCHES: [usize; 3] = [1, 32, 128];
const SEED: u64 = 20_250_515;

/// (name, d, C, classifier kind, train rows); train rows exceed d so the tied covariance is
/// regular. Val has 500 rows (2 500 for training), test 128.
const SHAPES: [(&str, usize, usize, ClassifierKind, usize); 3] = [
    ("d768_c2", 768, 2, ClassifierKind::Mlp, 2000),
    ("d768_c20", 768, 20, ClassifierKind::Mlp, 2000),
    ("d4096_c4", 4096, 4, ClassifierKind::Linear, 5000),
];

fn normal(rng: &mut Xoshiro256) -> f64 {
    let (u1, u2) = (1.0 - rng.unit(), rng.unit());
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// PyTorch-like random weights: `dense` ~ N(0, 1/d), `out_proj` scaled for logits of a few units.
fn classifier(d: usize, c: usize, kind: ClassifierKind, rng: &mut Xoshiro256) -> Classifier {
    let mut gauss = |n: usize, sd: f64| -> Vec<f32> { (0..n).map(|_| (sd * normal(rng)) as f32).collect() };
    let s = 1.0 / (d as f64).sqrt();
    match kind {
        ClassifierKind::Mlp => Classifier {
            kind,
            activation: Activation::Tanh,
            dense_weight: Some(gauss(d * d, s)),
            dense_bias: Some(gauss(d, 0.1)),
            out_weight: gauss(c * d, 4.0 * s),
            out_bias: Some(gauss(c, 0.1)),
            dim: d,
            num_classes: c,
        },
        ClassifierKind::Linear => Classifier {
            kind,
            activation: Activation::None,
            dense_weight: None,
            dense_bias: None,
            out_weight: gauss(c * d, 2.5 * s),
            out_bias: None,
            dim: d,
            num_classes: c,
        },
    }
}

/// Standard normal features, the classifier's logits, labels drawn from its softmax.
fn split(cls: &Classifier, n: usize, rng: &mut Xoshiro256) -> SplitData {
    let (d, c) = (cls.dim, cls.num_classes);
    let features: Vec<f32> = (0..n * d).map(|_| normal(rng) as f32).collect();
    let z = cls
        .logits(&features)
        .expect("the synthetic classifier fits its dimensions");
    let labels = z
        .chunks_exact(c)
        .map(|row| {
            let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = row.iter().map(|v| (v - m).exp()).sum();
            let mut r = rng.unit() * total;
            let mut y = c - 1;
            for (k, v) in row.iter().enumerate() {
                r -= (v - m).exp();
                if r < 0.0 {
                    y = k;
                    break;
                }
            }
            y as i64
        })
        .collect();
    SplitData {
        features,
        logits: z.iter().map(|&v| v as f32).collect(),
        labels,
        group: None,
        dim: d,
        num_classes: c,
    }
}

fn cache(d: usize, c: usize, kind: ClassifierKind, n_train: usize, n_val: usize, stream: u64) -> FeatureCache {
    let mut rng = Xoshiro256::new(SEED, stream);
    let cls = classifier(d, c, kind, &mut rng);
    let train = split(&cls, n_train, &mut rng);
    let val = split(&cls, n_val, &mut rng);
    let test = split(&cls, 128, &mut rng);
    FeatureCache {
        meta: CacheMeta {
            format: "ueb-cache".into(),
            version: 1,
            task: RowUnit::Sequence,
            num_classes: c,
            feature_dim: d,
            classifier: ClassifierMeta {
                kind,
                activation: cls.activation,
            },
            label_names: (0..c).map(|k| format!("class{k}")).collect(),
            provenance: serde_json::Value::Null,
        },
        classifier: cls,
        train,
        val,
        test,
    }
}

fn prefix(s: &SplitData, b: usize) -> SplitData {
    SplitData {
        features: s.features[..b * s.dim].to_vec(),
        logits: s.logits[..b * s.num_classes].to_vec(),
        labels: s.labels[..b].to_vec(),
        group: None,
        dim: s.dim,
        num_classes: s.num_classes,
    }
}

fn one_point_grid() -> GridConfig {
    GridConfig {
        lr: Some(vec![1e-4]),
        alpha: Some(vec![0.1]),
        beta: Some(vec![0.01]),
        epochs: None,
    }
}

fn fit(spec: &HeadSpec, cache: &FeatureCache, device: &Device) -> Box<dyn Head> {
    let (fit, select) = spec.default_splits();
    let ctx = FitContext {
        cache,
        fit,
        select,
        seed: SEED,
        device,
    };
    spec.fit(&ctx).expect("fitting a head on synthetic data")
}

fn inference(cr: &mut Criterion) {
    let device = Device::flex();
    let specs = [
        HeadSpec::Sr,
        HeadSpec::Entropy,
        HeadSpec::Margin,
        HeadSpec::Temperature(Default::default()),
        HeadSpec::VectorScaling(Default::default()),
        HeadSpec::Mahalanobis(Default::default()),
        HeadSpec::RelativeMahalanobis(Default::default()),
        HeadSpec::Adue(TrainableConfig {
            grid: GridConfig {
                epochs: Some(vec![1]),
                ..one_point_grid()
            },
            ..TrainableConfig::default()
        }),
        HeadSpec::Alien(TrainableConfig {
            grid: one_point_grid(),
            max_epochs: Some(1),
            patience: Some(1),
            ..TrainableConfig::default()
        }),
    ];
    for (i, &(name, d, c, kind, n_train)) in SHAPES.iter().enumerate() {
        let cache = cache(d, c, kind, n_train, 500, i as u64);
        let heads: Vec<Box<dyn Head>> = specs.iter().map(|s| fit(s, &cache, &device)).collect();
        let mut g = cr.benchmark_group(format!("score_{name}"));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        for b in BATCHES {
            let batch = prefix(&cache.test, b);
            g.throughput(Throughput::Elements(b as u64));
            for head in &heads {
                ueb_kernels::clear_upper_state();
                g.bench_with_input(BenchmarkId::new(head.name(), b), &batch, |bch, s| {
                    bch.iter(|| head.score(black_box(s)).expect("scoring a batch"))
                });
            }
        }
        g.finish();
    }
}

fn training(cr: &mut Criterion) {
    let epochs = 3;
    let cache = cache(768, 2, ClassifierKind::Mlp, 10_000, 2_500, 99);
    let spec = HeadSpec::Alien(TrainableConfig {
        grid: one_point_grid(),
        max_epochs: Some(epochs),
        patience: Some(epochs + 1), // never stops early: every run trains `epochs` epochs
        ..TrainableConfig::default()
    });
    #[allow(deprecated)] // burn 0.22 deprecates ndarray in favour of flex; both are supported
    let devices = [("flex", Device::flex()), ("ndarray", Device::ndarray())];
    let mut g = cr.benchmark_group("train_alien_n1e4_d768_c2_3ep");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(30));
    for (name, device) in &devices {
        g.bench_function(*name, |bch| bch.iter(|| fit(&spec, &cache, device)));
    }
    g.finish();
}

/// The activations of a 128-row batch of a 768-wide `mlp` head (98 304 values): ueb's
/// vectorised f64 `tanh` and GELU against the scalar `libm` forms they replaced.
fn activations(cr: &mut Criterion) {
    let n = 128 * 768;
    let mut rng = Xoshiro256::new(SEED, 7);
    let x: Vec<f64> = (0..n).map(|_| 3.0 * normal(&mut rng)).collect();
    let mut g = cr.benchmark_group("activation_98304");
    g.throughput(Throughput::Elements(n as u64));
    let mut v = x.clone();
    g.bench_function("tanh_simd", |b| {
        b.iter(|| {
            v.copy_from_slice(&x);
            Activation::Tanh.apply_in_place(black_box(&mut v));
        })
    });
    g.bench_function("tanh_libm", |b| {
        b.iter(|| {
            for (o, &xi) in v.iter_mut().zip(&x) {
                *o = libm::tanh(black_box(xi));
            }
        })
    });
    g.bench_function("gelu_simd", |b| {
        b.iter(|| {
            v.copy_from_slice(&x);
            Activation::Gelu.apply_in_place(black_box(&mut v));
        })
    });
    g.bench_function("gelu_libm", |b| {
        b.iter(|| {
            for (o, &xi) in v.iter_mut().zip(&x) {
                let xi = black_box(xi);
                *o = 0.5 * xi * libm::erfc(-xi * std::f64::consts::FRAC_1_SQRT_2);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, activations, inference, training);
criterion_main!(benches);
