//! Times each part of the §11 report (a profiling aid): `cargo run --release -p ueb-metrics
//! --example phases -- [N] [C]`.

use std::time::Instant;
use ueb_metrics::calibration::{ace, brier, classwise_ece, ece_em, nll, top_label_bins};
use ueb_metrics::{BuiltinScore, ErrorDetection, Predictions};

fn main() -> Result<(), ueb_metrics::MetricsError> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().unwrap_or(0));
    let n = args.next().filter(|&v| v > 0).unwrap_or(100_000);
    let c = args.next().filter(|&v| v > 1).unwrap_or(10);
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
        logits.extend((0..c).map(|k| 4.0 * uniform() + if k == y { 2.0 } else { 0.0 }));
    }
    let probs: Vec<f64> = {
        let mut p = vec![0.0; logits.len()];
        ueb_metrics::softmax_rows(&logits, c, &mut p);
        p
    };
    let reps = (2_000_000 / n).max(3);
    let time = |name: &str, f: &mut dyn FnMut() -> f64| {
        let t = Instant::now();
        let mut sink = 0.0;
        for _ in 0..reps {
            sink += f();
        }
        println!(
            "{name:<28} {:>9.3} ms   ({sink:.3e})",
            t.elapsed().as_secs_f64() * 1e3 / reps as f64
        );
    };
    println!("N = {n}, C = {c}, {reps} repetitions");
    time("Predictions::from_probs", &mut || {
        Predictions::from_probs(&probs, c, &labels).map_or(f64::NAN, |p| p.confidence()[0])
    });
    let pred = Predictions::from_probs(&probs, c, &labels)?;
    time("top-label bins (ece/mce/rmsce)", &mut || {
        top_label_bins(&pred, 15).l1(n)
    });
    time("nll + brier", &mut || nll(&pred) + brier(&pred));
    time("ece_em", &mut || ece_em(&pred, 15));
    time("classwise_ece", &mut || classwise_ece(&pred, 15));
    time("ace", &mut || ace(&pred, 15));
    let errors = pred.error_vec();
    for b in BuiltinScore::ALL {
        let mut u = Vec::new();
        time(&format!("score {}", b.name()), &mut || {
            b.compute_into(&pred, &mut u);
            u[0]
        });
        time(&format!("error detection ({})", b.name()), &mut || {
            ErrorDetection::with_default_bins(&errors, &u).map_or(f64::NAN, |e| e.aurc.unwrap_or(f64::NAN))
        });
    }
    Ok(())
}
