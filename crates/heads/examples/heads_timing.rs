//! Times every head's inference and one `alien` training configuration and prints the timings
//! as JSON, for `bench/heads_vs_torch.py`, which runs the same work in PyTorch in the same run
//! and prints the ratios.
//!
//! ```text
//! cargo build --release -p ueb-heads --example heads_timing
//! target/release/examples/heads_timing [--dump DIR] [--repeats R] [--train-repeats R]
//!                                      [--epochs E] [--min-ms MS] [--no-train] [--no-inference]
//!                                      [--host-only] [--only CONFIG/HEAD/BATCH]
//! ```
//!
//! * Inference: `Head::score` on batches of 1, 32 and 128 rows at (d = 768, C = 2, mlp/tanh),
//!   (d = 768, C = 20, mlp/tanh) and (d = 4096, C = 4, linear: a decoder's `score` head) for
//!   sr, entropy, margin, temperature, vector_scaling, mahalanobis, relative_mahalanobis, adue
//!   and alien. Each head is fitted once on synthetic data (the trainable ones on a one-point
//!   grid for one epoch: inference cost does not depend on training). Per call: the median over
//!   `--repeats` repeats of a loop long enough to take `--min-ms`, after a warm-up loop.
//! * Training: `alien` with one grid point (lr 1e-4, α 0.1, β 0.01), `--epochs` epochs (the
//!   schedule spans them, early stopping cannot trigger), batch 128, on N = 10⁴ rows, d = 768,
//!   C = 2, mlp/tanh head, selection on 2 500 rows; the whole `HeadSpec::fit` on the host
//!   engine (`engine: auto` on flex, the default on a CPU) and through burn's autodiff
//!   (`engine: burn`) on `flex` and on `ndarray`, median of `--train-repeats` after one
//!   warm-up fit (`--host-only`: the host engine alone, for profiling).
//! * `--only CONFIG/HEAD/BATCH` (e.g. `d768_c20/adue/128`) times that one inference call (and
//!   its f32 variant), for profiling; `CONFIG/HEAD:f32/BATCH` times the f32 variant alone.
//! * `--dump DIR` writes every synthetic cache (`DIR/<config>/cache`) and fitted head
//!   (`DIR/<config>/heads/<name>`) so that the Python side runs on the same data and weights;
//!   the JSON also carries the scores of the 128-row batch (`NAME:f32` for the f32 variants),
//!   for an agreement check.
//!
//! Inference runs on the host in f64 whatever device trained the head (`src/host.rs`), so the
//! burn device only matters for training. The heads whose products dominate scoring
//! (mahalanobis, relative_mahalanobis, adue, alien) are also timed with `score_precision: f32`
//! (`ms_f32`: the same fit, faer's f32 products), PyTorch float32's arithmetic for them.
//!
//! **Vector-register state.** faer 0.24's AVX-512 matrix kernels (the hand-written assembly of
//! `private-gemm-x86`) return without `vzeroupper`. Until something clears the upper halves of
//! the vector registers, every call into glibc's libm (`exp`, `ln`, `ln_1p`, ...) on that
//! thread pays an SSE/AVX transition penalty (decision H12).
//! The heads clear that state themselves (`ueb_kernels::clear_upper_state`: after their own
//! products, and before the libm calls of the classical heads). Each configuration is still
//! timed twice, to show it: `ms` from a clean state and `ms_after_product` right after a faer
//! product run by this tool, the state a head finds after other code (the caller's, a training
//! run) used faer on the same thread.

// A timing tool, not library code: a failure should stop it with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use serde_json::{Value, json};
use ueb_cache::{
    Activation, CacheMeta, Classifier, ClassifierKind, ClassifierMeta, FeatureCache, RowUnit, ScorePrecision, SplitData,
};
use ueb_heads::mahalanobis::MahalanobisConfig;
use ueb_heads::trainable::{Engine, GridConfig, TrainableConfig};
use ueb_heads::{FitContext, Head, HeadSpec};
use ueb_rng::{Rng64, Xoshiro256};

/// Batch sizes of the inference timings.
const BATCHES: [usize; 3] = [1, 32, 128];
/// Seed of every synthetic cache and fit.
const SEED: u64 = 20_250_515;

/// One synthetic problem: dimensions, classifier kind and split sizes.
#[derive(Debug, Clone, Copy)]
struct Shape {
    name: &'static str,
    d: usize,
    c: usize,
    kind: ClassifierKind,
    n_train: usize,
    n_val: usize,
    n_test: usize,
}

/// The inference configurations. Train splits exceed d so the tied covariance is regular.
const SHAPES: [Shape; 3] = [
    Shape {
        name: "d768_c2",
        d: 768,
        c: 2,
        kind: ClassifierKind::Mlp,
        n_train: 2000,
        n_val: 500,
        n_test: 128,
    },
    Shape {
        name: "d768_c20",
        d: 768,
        c: 20,
        kind: ClassifierKind::Mlp,
        n_train: 2000,
        n_val: 500,
        n_test: 128,
    },
    Shape {
        name: "d4096_c4",
        d: 4096,
        c: 4,
        kind: ClassifierKind::Linear,
        n_train: 5000,
        n_val: 500,
        n_test: 128,
    },
];

/// The training configuration: N = 10⁴ fit rows, 2 500 selection rows (20%, as in the paper).
const TRAIN_SHAPE: Shape = Shape {
    name: "train_d768_c2",
    d: 768,
    c: 2,
    kind: ClassifierKind::Mlp,
    n_train: 10_000,
    n_val: 2_500,
    n_test: 128,
};

/// Leaves the state a faer product leaves (the 32 × 768 × 768 product of a head's `dense`).
fn dirty_upper_state() {
    let a = faer::Mat::<f64>::from_fn(32, 768, |i, j| ((i * 7 + j) % 13) as f64 * 0.1);
    let w = faer::Mat::<f64>::from_fn(768, 768, |i, j| ((i * 3 + j) % 11) as f64 * 0.01);
    let mut out = faer::Mat::<f64>::zeros(32, 768);
    faer::linalg::matmul::matmul(
        out.as_mut(),
        faer::Accum::Replace,
        a.as_ref(),
        w.as_ref(),
        1.0,
        faer::Par::Seq,
    );
    black_box(&out);
}

fn normal(rng: &mut Xoshiro256) -> f64 {
    let (u1, u2) = (1.0 - rng.unit(), rng.unit());
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A classifier with PyTorch-like random weights: `dense` ~ N(0, 1/d) (pre-activations of
/// order 1), `out_proj` scaled so that the logits spread over a few units (a confident model
/// that still errs).
fn classifier(s: &Shape, rng: &mut Xoshiro256) -> Classifier {
    let (d, c) = (s.d, s.c);
    let mut gauss = |n: usize, sd: f64| -> Vec<f32> { (0..n).map(|_| (sd * normal(rng)) as f32).collect() };
    let inv_sqrt_d = 1.0 / (d as f64).sqrt();
    match s.kind {
        ClassifierKind::Mlp => Classifier {
            kind: ClassifierKind::Mlp,
            activation: Activation::Tanh,
            dense_weight: Some(gauss(d * d, inv_sqrt_d)),
            dense_bias: Some(gauss(d, 0.1)),
            out_weight: gauss(c * d, 4.0 * inv_sqrt_d),
            out_bias: Some(gauss(c, 0.1)),
            dim: d,
            num_classes: c,
        },
        ClassifierKind::Linear => Classifier {
            kind: ClassifierKind::Linear,
            activation: Activation::None,
            dense_weight: None,
            dense_bias: None,
            out_weight: gauss(c * d, 2.5 * inv_sqrt_d),
            out_bias: None,
            dim: d,
            num_classes: c,
        },
    }
}

/// `n` rows of standard normal features, the classifier's logits (the cache contract), and
/// labels drawn from the classifier's own softmax (a calibrated model with errors).
fn split(cls: &Classifier, n: usize, rng: &mut Xoshiro256) -> SplitData {
    let (d, c) = (cls.dim, cls.num_classes);
    let features: Vec<f32> = (0..n * d).map(|_| normal(rng) as f32).collect();
    let z = cls
        .logits(&features)
        .expect("the synthetic classifier fits its dimensions");
    let mut labels = Vec::with_capacity(n);
    for row in z.chunks_exact(c) {
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
        labels.push(y as i64);
    }
    SplitData {
        features,
        logits: z.iter().map(|&v| v as f32).collect(),
        labels,
        group: None,
        dim: d,
        num_classes: c,
    }
}

/// The synthetic cache of a shape, seeded from [`SEED`] and the shape's name.
fn synthetic_cache(s: &Shape) -> FeatureCache {
    let stream = s
        .name
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(131).wrapping_add(u64::from(b)));
    let mut rng = Xoshiro256::new(SEED, stream);
    let cls = classifier(s, &mut rng);
    let train = split(&cls, s.n_train, &mut rng);
    let val = split(&cls, s.n_val, &mut rng);
    let test = split(&cls, s.n_test, &mut rng);
    FeatureCache {
        meta: CacheMeta {
            format: "ueb-cache".into(),
            version: 1,
            task: RowUnit::Sequence,
            num_classes: s.c,
            feature_dim: s.d,
            classifier: ClassifierMeta {
                kind: cls.kind,
                activation: cls.activation,
            },
            label_names: (0..s.c).map(|k| format!("class{k}")).collect(),
            provenance: json!({"synthetic": s.name, "seed": SEED}),
        },
        classifier: cls,
        train,
        val,
        test,
    }
}

/// The first `b` rows of a split.
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

/// Every head, the trainable ones on a one-point grid for one epoch (enough for a fitted head).
fn inference_specs() -> Vec<HeadSpec> {
    let grid = GridConfig {
        lr: Some(vec![1e-4]),
        alpha: Some(vec![0.1]),
        beta: Some(vec![0.01]),
        epochs: None,
    };
    let adue = TrainableConfig {
        grid: GridConfig {
            epochs: Some(vec![1]),
            ..grid.clone()
        },
        ..TrainableConfig::default()
    };
    let alien = TrainableConfig {
        grid,
        max_epochs: Some(1),
        patience: Some(1),
        ..TrainableConfig::default()
    };
    vec![
        HeadSpec::Sr,
        HeadSpec::Entropy,
        HeadSpec::Margin,
        HeadSpec::Temperature(Default::default()),
        HeadSpec::VectorScaling(Default::default()),
        HeadSpec::Mahalanobis(Default::default()),
        HeadSpec::RelativeMahalanobis(Default::default()),
        HeadSpec::Adue(adue),
        HeadSpec::Alien(alien),
    ]
}

/// `spec` scoring its products in f32, for the heads that have such products.
fn f32_variant(spec: &HeadSpec) -> Option<HeadSpec> {
    let f32 = ScorePrecision::F32;
    Some(match spec {
        HeadSpec::Mahalanobis(c) => HeadSpec::Mahalanobis(MahalanobisConfig {
            score_precision: f32,
            ..*c
        }),
        HeadSpec::RelativeMahalanobis(c) => HeadSpec::RelativeMahalanobis(MahalanobisConfig {
            score_precision: f32,
            ..*c
        }),
        HeadSpec::Adue(c) => HeadSpec::Adue(TrainableConfig {
            score_precision: f32,
            ..c.clone()
        }),
        HeadSpec::Alien(c) => HeadSpec::Alien(TrainableConfig {
            score_precision: f32,
            ..c.clone()
        }),
        _ => return None,
    })
}

/// The training configuration: one grid point, `epochs` epochs, patience too large to stop.
fn training_spec(epochs: usize, engine: Engine) -> HeadSpec {
    HeadSpec::Alien(TrainableConfig {
        grid: GridConfig {
            lr: Some(vec![1e-4]),
            alpha: Some(vec![0.1]),
            beta: Some(vec![0.01]),
            epochs: None,
        },
        max_epochs: Some(epochs),
        patience: Some(epochs + 1),
        engine,
        ..TrainableConfig::default()
    })
}

/// Fits `spec` on its default splits.
fn fit(spec: &HeadSpec, cache: &FeatureCache, device: &Device) -> Box<dyn Head> {
    let (fit, select) = spec.default_splits();
    let ctx = FitContext {
        cache,
        fit,
        select,
        seed: SEED,
        device,
    };
    spec.fit(&ctx)
        .unwrap_or_else(|e| die(&format!("fitting {}: {e}", spec.name())))
}

fn die(msg: &str) -> ! {
    eprintln!("heads_timing: {msg}");
    std::process::exit(1)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Milliseconds per call of `f`: one call to size a loop of at least `min_ms`, one warm-up
/// loop, then the median over `repeats` loops. Returns (ms per call, calls per loop).
fn time_per_call(mut f: impl FnMut(), repeats: usize, min_ms: f64) -> (f64, usize) {
    let t = Instant::now();
    f();
    let first_ms = t.elapsed().as_secs_f64() * 1e3;
    let k = ((min_ms / first_ms.max(1e-6)).ceil() as usize).clamp(1, 1_000_000);
    for _ in 0..k {
        f();
    }
    let per_call = (0..repeats)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..k {
                f();
            }
            t.elapsed().as_secs_f64() * 1e3 / k as f64
        })
        .collect();
    (median(per_call), k)
}

struct Args {
    dump: Option<PathBuf>,
    repeats: usize,
    train_repeats: usize,
    epochs: usize,
    min_ms: f64,
    train: bool,
    infer: bool,
    host_only: bool,
    only: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        dump: None,
        repeats: 7,
        train_repeats: 3,
        epochs: 3,
        min_ms: 20.0,
        train: true,
        infer: true,
        host_only: false,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| die(&format!("{flag} needs a value")));
        let number = |v: String| -> f64 { v.parse().unwrap_or_else(|_| die(&format!("bad number `{v}`"))) };
        match flag.as_str() {
            "--dump" => a.dump = Some(PathBuf::from(value())),
            "--repeats" => a.repeats = number(value()) as usize,
            "--train-repeats" => a.train_repeats = number(value()) as usize,
            "--epochs" => a.epochs = number(value()) as usize,
            "--min-ms" => a.min_ms = number(value()),
            "--no-train" => a.train = false,
            "--no-inference" => a.infer = false,
            "--host-only" => a.host_only = true,
            "--only" => a.only = Some(value()),
            "-h" | "--help" => {
                println!(
                    "heads_timing [--dump DIR] [--repeats R] [--train-repeats R] [--epochs E] [--min-ms MS] [--no-train] [--no-inference] [--host-only] [--only CONFIG/HEAD/BATCH]"
                );
                std::process::exit(0);
            }
            other => die(&format!("unknown argument `{other}` (try --help)")),
        }
    }
    a.repeats = a.repeats.max(1);
    a.train_repeats = a.train_repeats.max(1);
    a.epochs = a.epochs.max(1);
    a
}

fn write_cache(cache: &FeatureCache, dir: &Path) {
    cache
        .write(dir)
        .unwrap_or_else(|e| die(&format!("writing {}: {e}", dir.display())));
}

fn main() {
    let args = parse_args();
    let flex = Device::flex();
    let mut inference = Vec::new();
    let mut scores = serde_json::Map::new();
    let mut fits = serde_json::Map::new();
    for shape in SHAPES.iter().filter(|_| args.infer) {
        eprintln!("heads_timing: {} (d = {}, C = {})", shape.name, shape.d, shape.c);
        let cache = synthetic_cache(shape);
        let (mut heads, mut narrow) = (Vec::new(), Vec::new());
        let mut fit_s = serde_json::Map::new();
        for spec in inference_specs() {
            let t = Instant::now();
            let head = fit(&spec, &cache, &flex);
            fit_s.insert(spec.name().into(), json!(t.elapsed().as_secs_f64()));
            heads.push(head);
            narrow.push(f32_variant(&spec).map(|s| fit(&s, &cache, &flex)));
        }
        fits.insert(shape.name.into(), Value::Object(fit_s));
        if let Some(root) = &args.dump {
            let dir = root.join(shape.name);
            write_cache(&cache, &dir.join("cache"));
            for head in &heads {
                let hd = dir.join("heads").join(head.name());
                head.save(&hd)
                    .unwrap_or_else(|e| die(&format!("saving {}: {e}", hd.display())));
            }
        }
        let full = prefix(&cache.test, *BATCHES.iter().max().unwrap_or(&1));
        let mut shape_scores = serde_json::Map::new();
        for (head, narrow) in heads.iter().zip(&narrow) {
            let score = |h: &dyn Head| {
                h.score(&full)
                    .unwrap_or_else(|e| die(&format!("scoring {}: {e}", h.name())))
            };
            shape_scores.insert(head.name().into(), json!(score(head.as_ref())));
            if let Some(h) = narrow {
                shape_scores.insert(format!("{}:f32", h.name()), json!(score(h.as_ref())));
            }
        }
        scores.insert(shape.name.into(), Value::Object(shape_scores));
        for &b in &BATCHES {
            let batch = prefix(&cache.test, b);
            for (head, narrow) in heads.iter().zip(&narrow) {
                let key = format!("{}/{}/{b}", shape.name, head.name());
                let key32 = format!("{}/{}:f32/{b}", shape.name, head.name());
                let f32_only = args.only.as_ref() == Some(&key32);
                if args.only.as_ref().is_some_and(|only| *only != key) && !f32_only {
                    continue;
                }
                let time = |head: &dyn Head| {
                    let mut call = || {
                        black_box(head.score(black_box(&batch)).ok());
                    };
                    ueb_kernels::clear_upper_state();
                    let (ms, calls) = time_per_call(&mut call, args.repeats, args.min_ms);
                    dirty_upper_state();
                    let (ms_after_product, _) = time_per_call(&mut call, args.repeats, args.min_ms);
                    (ms, ms_after_product, calls)
                };
                let (ms, ms_after_product, calls) = if f32_only {
                    (f64::NAN, f64::NAN, 0)
                } else {
                    time(head.as_ref())
                };
                let ms_f32 = narrow.as_ref().map(|h| time(h.as_ref()).0);
                inference.push(json!({
                    "config": shape.name, "d": shape.d, "c": shape.c,
                    "classifier": if shape.kind == ClassifierKind::Mlp { "mlp" } else { "linear" },
                    "head": head.name(), "batch": b, "ms": ms, "ms_after_product": ms_after_product,
                    "ms_f32": ms_f32, "calls_per_loop": calls,
                }));
            }
        }
    }

    let mut training = Vec::new();
    if args.train {
        let cache = synthetic_cache(&TRAIN_SHAPE);
        if let Some(root) = &args.dump {
            write_cache(&cache, &root.join(TRAIN_SHAPE.name).join("cache"));
        }
        #[allow(deprecated)] // burn 0.22 deprecates ndarray in favour of flex; both are supported
        let devices = [
            ("host", Device::flex(), Engine::Auto),
            ("flex (burn)", Device::flex(), Engine::Burn),
            ("ndarray (burn)", Device::ndarray(), Engine::Burn),
        ];
        for (name, device, engine) in devices.iter().take(if args.host_only { 1 } else { devices.len() }) {
            let spec = training_spec(args.epochs, *engine);
            eprintln!("heads_timing: training alien on {name}");
            let mut runs = Vec::new();
            let mut summary = Value::Null;
            let mut curve = Value::Null;
            for i in 0..=args.train_repeats {
                ueb_kernels::clear_upper_state();
                let t = Instant::now();
                let head = fit(&spec, &cache, device);
                let ms = t.elapsed().as_secs_f64() * 1e3;
                if i > 0 {
                    runs.push(ms); // run 0 is the warm-up
                }
                summary = head.summary()["chosen"].clone();
                curve = head.summary()["val_curve"].clone();
            }
            training.push(json!({
                "config": TRAIN_SHAPE.name, "method": "alien", "device": name,
                "n_train": TRAIN_SHAPE.n_train, "n_select": TRAIN_SHAPE.n_val, "d": TRAIN_SHAPE.d, "c": TRAIN_SHAPE.c,
                "epochs": args.epochs, "batch_size": 128, "ms": median(runs.clone()), "runs_ms": runs, "chosen": summary, "val_curve": curve,
            }));
        }
    }

    let out = json!({
        "tool": "heads_timing",
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "repeats": args.repeats,
        "min_ms": args.min_ms,
        "fit_seconds": fits,
        "inference": inference,
        "training": training,
        "scores_batch128": scores,
    });
    println!("{out}");
}
