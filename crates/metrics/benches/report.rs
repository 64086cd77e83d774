//! The whole §11 report at N = 10^6, C = 10 (three built-in scores and two supplied ones),
//! its parts, and a bootstrap at N = 10^4. Run with `cargo bench -p ueb-metrics`.

#![allow(missing_docs)] // criterion's macros generate undocumented items

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use ueb_metrics::{BootstrapConfig, ErrorDetection, NamedScore, Predictions, Report, ReportConfig, calibration_values};

/// A deterministic C-class problem: softmax of noisy logits whose true-class logit is raised.
fn problem(n: usize, c: usize) -> (Predictions, Vec<f64>, Vec<f64>) {
    let mut s: u64 = 0x2545_f491_4f6c_dd1d;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut logits = Vec::with_capacity(n * c);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let y = (uniform() * c as f64) as usize % c;
        labels.push(y as i64);
        for k in 0..c {
            logits.push(3.0 * uniform() + if k == y { 2.0 } else { 0.0 });
        }
    }
    let Ok(pred) = Predictions::from_logits(&logits, c, &labels) else {
        unreachable!("synthetic logits are finite and labels in range")
    };
    let a: Vec<f64> = (0..n).map(|_| uniform()).collect();
    let b: Vec<f64> = pred.confidence().iter().map(|p| 1.0 - p + 0.05 * uniform()).collect();
    (pred, a, b)
}

fn bench(c: &mut Criterion) {
    let (pred, a, b) = problem(1_000_000, 10);
    let scores = [
        NamedScore { name: "a", values: &a },
        NamedScore { name: "b", values: &b },
    ];
    let mut g = c.benchmark_group("report_n1e6_c10");
    g.sample_size(10);
    g.bench_function("full_report_5_scores", |bch| {
        bch.iter(|| Report::compute(black_box(&pred), black_box(&scores), &ReportConfig::default()))
    });
    g.bench_function("calibration_only", |bch| {
        bch.iter(|| calibration_values(black_box(&pred), 15))
    });
    let errors = pred.error_vec();
    g.bench_function("error_detection_one_score", |bch| {
        bch.iter(|| ErrorDetection::with_default_bins(black_box(&errors), black_box(&a)))
    });
    g.finish();

    let (small, sa, sb) = problem(10_000, 10);
    let small_scores = [
        NamedScore { name: "a", values: &sa },
        NamedScore { name: "b", values: &sb },
    ];
    let mut g = c.benchmark_group("bootstrap_n1e4_c10");
    g.sample_size(10);
    for resamples in [100usize, 1000] {
        let cfg = ReportConfig {
            bootstrap: Some(BootstrapConfig {
                resamples,
                ..BootstrapConfig::default()
            }),
            ..ReportConfig::default()
        };
        g.bench_with_input(BenchmarkId::new("full_report", resamples), &cfg, |bch, cfg| {
            bch.iter(|| Report::compute(black_box(&small), black_box(&small_scores), cfg))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
