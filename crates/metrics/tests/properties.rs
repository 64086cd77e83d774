//! Property tests: invariances every §11 metric must have.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use ueb_metrics::{ErrorDetection, NamedScore, Predictions, Report, ReportConfig};

/// Probabilities on a coarse grid (so confidences and scores tie often), labels and a score
/// on a grid of 1/64 (exactly representable, so the transforms below keep ties as ties).
fn problem(max_n: usize) -> impl Strategy<Value = (usize, Vec<f64>, Vec<i64>, Vec<f64>)> {
    (2usize..6, 1usize..max_n).prop_flat_map(|(c, n)| {
        (
            Just(c),
            prop::collection::vec(prop::collection::vec(1u32..8, c), n),
            prop::collection::vec(0..c as i64, n),
            prop::collection::vec(0u32..=64, n),
        )
            .prop_map(|(c, raw, labels, score)| {
                let probs = raw
                    .iter()
                    .flat_map(|row| {
                        let s: u32 = row.iter().sum();
                        row.iter().map(move |&v| f64::from(v) / f64::from(s))
                    })
                    .collect();
                (c, probs, labels, score.iter().map(|&k| f64::from(k) / 64.0).collect())
            })
    })
}

fn permute<T: Clone>(v: &[T], width: usize, perm: &[usize]) -> Vec<T> {
    perm.iter()
        .flat_map(|&i| v[i * width..(i + 1) * width].iter().cloned())
        .collect()
}

fn close(a: Result<f64, ueb_metrics::Undefined>, b: Result<f64, ueb_metrics::Undefined>, tol: f64) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => (x - y).abs() <= tol,
        (Err(x), Err(y)) => x == y,
        _ => false,
    }
}

fn report(c: usize, probs: &[f64], labels: &[i64], score: &[f64]) -> Report {
    let pred = Predictions::from_probs(probs, c, labels).unwrap();
    Report::compute(
        &pred,
        &[NamedScore {
            name: "u",
            values: score,
        }],
        &ReportConfig::default(),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Reordering samples changes nothing, ties included, except the equal-mass metrics, whose
    /// §11 grouping breaks ties by index and so may move a tied sample across a group edge.
    #[test]
    fn permutation_invariance((c, probs, labels, score) in problem(60), seed in any::<u64>()) {
        let n = labels.len();
        let mut perm: Vec<usize> = (0..n).collect();
        let mut s = seed;
        for i in (1..n).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            perm.swap(i, (s >> 33) as usize % (i + 1));
        }
        let a = report(c, &probs, &labels, &score);
        let b = report(c, &permute(&probs, c, &perm), &permute(&labels, 1, &perm), &permute(&score, 1, &perm));
        for (x, y) in a.calibration.iter().zip(&b.calibration) {
            if x.name == "ece_em" || x.name == "ace" { continue; }
            prop_assert!(close(x.value, y.value, 1e-12), "{}: {:?} vs {:?}", x.name, x.value, y.value);
        }
        for (sa, sb) in a.error_detection.iter().zip(&b.error_detection) {
            for (x, y) in sa.entries.iter().zip(&sb.entries) {
                prop_assert!(close(x.value, y.value, 1e-12), "{}/{}: {:?} vs {:?}", sa.name, x.name, x.value, y.value);
            }
        }
    }

    /// Without ties the equal-mass metrics are permutation invariant too.
    #[test]
    fn equal_mass_invariance_without_ties(n in 1usize..80, seed in any::<u64>()) {
        let mut s = seed | 1;
        let mut next = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; s };
        let probs: Vec<f64> = (0..n).flat_map(|i| {
            let p = 0.5 + (i as f64 + 0.5) / (2.0 * n as f64 + 1.0); // distinct confidences
            [p, 1.0 - p]
        }).collect();
        let labels: Vec<i64> = (0..n).map(|_| (next() % 2) as i64).collect();
        let mut perm: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() { perm.swap(i, (next() % (i as u64 + 1)) as usize); }
        let a = Predictions::from_probs(&probs, 2, &labels).unwrap();
        let b = Predictions::from_probs(permute(&probs, 2, &perm), 2, &permute(&labels, 1, &perm)).unwrap();
        for bins in [1, 3, 15] {
            let (ca, cb) = (ueb_metrics::calibration_values(&a, bins), ueb_metrics::calibration_values(&b, bins));
            prop_assert!((ca[4] - cb[4]).abs() < 1e-12, "ece_em");
            prop_assert!((ca[8] - cb[8]).abs() < 1e-12, "ace");
        }
    }

    /// Ranking metrics depend only on the order of the scores (ties included).
    #[test]
    fn strictly_increasing_transforms((c, probs, labels, score) in problem(60)) {
        let pred = Predictions::from_probs(&probs, c, &labels).unwrap();
        let errors = pred.error_vec();
        let base = ErrorDetection::with_default_bins(&errors, &score).unwrap();
        let transforms: [fn(f64) -> f64; 3] = [|u| 3.0 * u - 7.0, |u| u * u * u, f64::exp];
        for f in transforms {
            let t: Vec<f64> = score.iter().map(|&u| f(u)).collect();
            let other = ErrorDetection::with_default_bins(&errors, &t).unwrap();
            for ((name, x), (_, y)) in base.entries().iter().zip(other.entries()) {
                if *name == "ece_score" { continue; }
                prop_assert!(close(*x, y, 1e-12), "{name}: {x:?} vs {y:?}");
            }
        }
    }

    /// Reversing the score flips ROC-AUC around one half.
    #[test]
    fn roc_auc_of_negated_score((c, probs, labels, score) in problem(60)) {
        let pred = Predictions::from_probs(&probs, c, &labels).unwrap();
        let errors = pred.error_vec();
        let neg: Vec<f64> = score.iter().map(|u| -u).collect();
        let a = ErrorDetection::with_default_bins(&errors, &score).unwrap().roc_auc;
        let b = ErrorDetection::with_default_bins(&errors, &neg).unwrap().roc_auc;
        match (a, b) {
            (Ok(x), Ok(y)) => prop_assert!((x + y - 1.0).abs() < 1e-12),
            (Err(x), Err(y)) => prop_assert_eq!(x, y),
            other => prop_assert!(false, "{other:?}"),
        }
    }

    /// Every calibration error lies in [0, 1].
    #[test]
    fn every_ece_is_in_unit_interval((c, probs, labels, score) in problem(60), bins in 1usize..30) {
        let pred = Predictions::from_probs(&probs, c, &labels).unwrap();
        let cfg = ReportConfig { bins, bootstrap: None };
        let r = Report::compute(&pred, &[NamedScore { name: "u", values: &score }], &cfg).unwrap();
        for e in &r.calibration {
            if matches!(e.name, "ece" | "ece_em" | "mce" | "rmsce" | "classwise_ece" | "ace") {
                let v = e.value.unwrap();
                prop_assert!((0.0..=1.0).contains(&v), "{} = {v}", e.name);
            }
        }
        for s in &r.error_detection {
            if let Ok(v) = s.entries[6].value {
                prop_assert!((0.0..=1.0).contains(&v), "{}: ece_score = {v}", s.name);
            }
        }
    }
}

/// Logits far beyond f32's range: three equal logits of 1e16 are a uniform distribution. The
/// former normaliser `max + ln Σ` rounded to `max` there and gave three probabilities of 1.
#[test]
fn softmax_and_nll_stay_exact_for_huge_finite_logits() {
    for scale in [1e16f64, 1e100, 1e300, -1e300] {
        let logits = [scale, scale, scale, 0.0, scale + scale.abs() * 1e-15, scale];
        let pred = Predictions::from_logits(&logits, 3, &[0, 1]).unwrap();
        let p = pred.probs();
        for row in p.chunks_exact(3) {
            let sum: f64 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-15, "{scale}: {row:?} sums to {sum}");
        }
        for &v in &p[..3] {
            assert!((v - 1.0 / 3.0).abs() < 1e-15, "{scale}: {p:?}");
        }
        // Row 0: uniform, −log p = ln 3 exactly as defined.
        let nll0 = pred.nll_terms()[0];
        assert!((nll0 - 3f64.ln()).abs() < 1e-15, "{scale}: {nll0}");
    }
    let mut p = [0.0; 2];
    ueb_metrics::softmax_row(&[1e308, -1e308], &mut p);
    assert_eq!(p, [1.0, 0.0]);
}

/// Bounded metrics stay in their bounds when their sums round past them: nine correct
/// predictions ranked first each add 1/9 to `aupr_success`, and nine additions of 1/9 make
/// 1.0000000000000002 in f64.
#[test]
fn bounded_metrics_never_leave_their_range_by_rounding() {
    assert!((0..9).map(|_| 1.0 / 9.0).sum::<f64>() > 1.0, "the premise of this test");
    let mut errors = vec![false; 9];
    errors.push(true);
    let u: Vec<f64> = (0..10).map(f64::from).collect();
    let r = ErrorDetection::with_default_bins(&errors, &u).unwrap();
    assert_eq!(r.aupr_success, Ok(1.0));
    assert_eq!(r.roc_auc, Ok(1.0));
    assert_eq!(r.aupr_error, Ok(1.0));
    for (name, v) in r.entries() {
        if let Ok(v) = v {
            assert!(v <= 1.0 && (name == "prr" || v >= 0.0), "{name} = {v}");
        }
    }
}

/// Requests that would exhaust memory are refused with the limit, before any work.
#[test]
fn bins_and_resamples_are_bounded() {
    use ueb_metrics::{BootstrapConfig, MAX_BINS, MAX_RESAMPLES, MetricsError};
    let pred = Predictions::from_probs(&[0.6, 0.4, 0.3, 0.7], 2, &[0, 0]).unwrap();
    for (bins, resamples) in [
        (MAX_BINS + 1, 10),
        (10, MAX_RESAMPLES + 1),
        (usize::MAX, 10),
        (10, usize::MAX),
    ] {
        let cfg = ReportConfig {
            bins,
            bootstrap: Some(BootstrapConfig {
                resamples,
                ..BootstrapConfig::default()
            }),
        };
        let e = Report::compute(&pred, &[], &cfg).unwrap_err();
        assert!(matches!(e, MetricsError::InvalidParameter { .. }), "{e}");
    }
    assert!(ueb_metrics::check_bins(MAX_BINS).is_ok());
    assert!(ueb_metrics::check_resamples(MAX_RESAMPLES).is_ok());
}
