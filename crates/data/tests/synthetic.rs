//! The synthetic task: determinism, the exported posterior against a brute-force computation
//! from the generative model, calibration of that posterior on fresh draws, and the knobs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};

use ueb_data::{
    DataError, DatasetOptions, Input, Label, SyntheticConfig, SyntheticModel, generate, load, write_oracle_csv,
};

fn small() -> SyntheticConfig {
    SyntheticConfig {
        train: 300,
        val: 100,
        test: 200,
        ..SyntheticConfig::default()
    }
}

fn text(input: &Input) -> &str {
    match input {
        Input::Text(t) => t,
        other => panic!("{other:?}"),
    }
}

#[test]
fn deterministic_for_a_seed_and_different_across_seeds() {
    let a = generate(&small(), 42).unwrap();
    let b = generate(&small(), 42).unwrap();
    let c = generate(&small(), 43).unwrap();
    for split in ["train", "val", "test"] {
        let (sa, sb, sc) = (
            a.split(split).unwrap(),
            b.split(split).unwrap(),
            c.split(split).unwrap(),
        );
        assert_eq!(sa.fingerprint(), sb.fingerprint());
        assert_eq!(sa.examples(), sb.examples());
        assert_eq!(sa.oracle(), sb.oracle());
        assert_ne!(sa.examples(), sc.examples());
    }
    // The registry entry uses the options' seed and config.
    let options = DatasetOptions {
        synthetic: small(),
        ..DatasetOptions::default()
    };
    let d = load("synthetic", &options).unwrap();
    assert_eq!(d.split("test").unwrap().examples(), a.split("test").unwrap().examples());
    assert_eq!(d.label_names(), ["0", "1", "2", "3"]);
    assert_eq!(d.split("train").unwrap().examples()[7].id, "synthetic:train:7");
}

/// `P(latent class | x)` straight from the generative model: for each class and mixing level,
/// the product over tokens of the full token probability (shared and cue words, with their
/// uniform choice), averaged over levels, times the prior, normalised.
fn brute_force(model: &SyntheticModel, cfg: &SyntheticConfig, tokens: &[&str]) -> Vec<f64> {
    let c = cfg.num_classes;
    let class_of: HashMap<&str, usize> = model
        .cue_words()
        .iter()
        .enumerate()
        .flat_map(|(k, words)| words.iter().map(move |w| (w.as_str(), k)))
        .collect();
    let shared: HashSet<&str> = model.shared_words().iter().map(String::as_str).collect();
    let m = cfg.mixing_levels;
    let levels: Vec<f64> = (0..m).map(|i| cfg.ambiguity * i as f64 / (m - 1) as f64).collect();
    let mut joint = vec![0.0; c];
    for (y, slot) in joint.iter_mut().enumerate() {
        let mut lik = 0.0;
        for &lambda in &levels {
            let mut p = 1.0 / m as f64;
            for t in tokens {
                let token_p = if shared.contains(t) {
                    cfg.overlap / cfg.shared_words as f64
                } else {
                    let k = class_of[t];
                    let source = if k == y { 1.0 - lambda } else { lambda / (c - 1) as f64 };
                    source * (1.0 - cfg.overlap) / cfg.cue_words as f64
                };
                p *= token_p;
            }
            lik += p;
        }
        *slot = lik / c as f64;
    }
    let total: f64 = joint.iter().sum();
    joint.iter().map(|j| j / total).collect()
}

#[test]
fn exported_posterior_is_the_bayes_posterior() {
    let cfg = small();
    let model = SyntheticModel::new(&cfg, 42).unwrap();
    let d = generate(&cfg, 42).unwrap();
    let split = d.split("test").unwrap();
    let oracle = split.oracle().unwrap();
    for (i, example) in split.examples().iter().enumerate() {
        let tokens: Vec<&str> = text(&example.input).split(' ').collect();
        assert!((cfg.min_len..=cfg.max_len).contains(&tokens.len()));
        let expected = brute_force(&model, &cfg, &tokens);
        for (got, want) in oracle.clean_posterior[i].iter().zip(&expected) {
            assert!((got - want).abs() < 1e-9, "doc {i}: {got} vs {want}");
        }
        let from_text = model.clean_posterior(text(&example.input)).unwrap();
        assert_eq!(from_text, oracle.clean_posterior[i]);
        let rho = cfg.label_noise;
        for (noisy, clean) in oracle.posterior[i].iter().zip(&oracle.clean_posterior[i]) {
            assert!((noisy - ((1.0 - rho) * clean + rho / 4.0)).abs() < 1e-15);
        }
        assert!((oracle.posterior[i].iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}

#[test]
fn posterior_is_calibrated_on_fresh_draws() {
    let cfg = SyntheticConfig {
        train: 1,
        val: 1,
        test: 40_000,
        ..SyntheticConfig::default()
    };
    let d = generate(&cfg, 7).unwrap();
    let split = d.split("test").unwrap();
    let oracle = split.oracle().unwrap();
    // Reliability of the argmax: in each confidence bin the observed accuracy must match the
    // mean confidence within 4 standard errors.
    let mut bins = vec![(0usize, 0.0f64, 0usize); 10];
    let mut per_class = [0.0f64; 4];
    let mut counts = [0usize; 4];
    for (p, example) in oracle.posterior.iter().zip(split.examples()) {
        let (arg, conf) = p
            .iter()
            .enumerate()
            .fold((0, -1.0), |best, (k, &v)| if v > best.1 { (k, v) } else { best });
        let bin = ((conf * 10.0) as usize).min(9);
        let Label::Class(label) = example.label else { panic!() };
        bins[bin].0 += 1;
        bins[bin].1 += conf;
        bins[bin].2 += usize::from(label == arg);
        for k in 0..4 {
            per_class[k] += p[k];
        }
        counts[label] += 1;
    }
    let mut checked = 0;
    for (n, conf_sum, correct) in bins {
        if n < 500 {
            continue;
        }
        let conf = conf_sum / n as f64;
        let acc = correct as f64 / n as f64;
        let se = (conf * (1.0 - conf) / n as f64).sqrt();
        assert!(
            (acc - conf).abs() < 4.0 * se + 1e-3,
            "bin: n {n}, acc {acc}, conf {conf}"
        );
        checked += 1;
    }
    assert!(checked >= 4, "too few populated bins");
    // Mean posterior of each class matches its label frequency.
    let n = split.len() as f64;
    for k in 0..4 {
        let freq = counts[k] as f64 / n;
        let se = (freq * (1.0 - freq) / n).sqrt();
        assert!((per_class[k] / n - freq).abs() < 4.0 * se, "class {k}");
    }
    // Label noise flips a share ρ(1 − 1/C) of labels.
    let flipped = oracle
        .clean_labels
        .iter()
        .zip(split.examples())
        .filter(|(c, e)| e.label != Label::Class(**c))
        .count() as f64
        / n;
    let expected = 0.05 * 0.75;
    assert!((flipped - expected).abs() < 4.0 * (expected * (1.0 - expected) / n).sqrt());
}

#[test]
fn knobs_move_the_bayes_accuracy() {
    let clean = SyntheticConfig {
        overlap: 0.0,
        ambiguity: 0.0,
        label_noise: 0.0,
        ..small()
    };
    let d = generate(&clean, 1).unwrap();
    let test = d.split("test").unwrap();
    let oracle = test.oracle().unwrap();
    assert_eq!(oracle.bayes_accuracy(test.examples()), 1.0);
    assert!(oracle.posterior.iter().all(|p| p.contains(&1.0)));

    let accuracy = |cfg: SyntheticConfig| {
        let cfg = SyntheticConfig { test: 4000, ..cfg };
        let d = generate(&cfg, 1).unwrap();
        let test = d.split("test").unwrap();
        let oracle = test.oracle().unwrap();
        oracle
            .clean_posterior
            .iter()
            .map(|p| p.iter().copied().fold(0.0, f64::max))
            .sum::<f64>()
            / test.len() as f64
    };
    let base = accuracy(small());
    assert!(
        accuracy(SyntheticConfig {
            ambiguity: 0.9,
            ..small()
        }) < base
    );
    assert!(
        accuracy(SyntheticConfig {
            overlap: 0.9,
            ..small()
        }) < base
    );
    assert!(
        accuracy(SyntheticConfig {
            overlap: 0.3,
            ..small()
        }) > base
    );
}

#[test]
fn prior_levels_and_lengths() {
    let cfg = SyntheticConfig {
        num_classes: 3,
        class_prior: Some(vec![0.7, 0.2, 0.1]),
        mixing_levels: 1,
        ambiguity: 0.3,
        min_len: 5,
        max_len: 5,
        test: 3000,
        ..small()
    };
    let d = generate(&cfg, 3).unwrap();
    let test = d.split("test").unwrap();
    let oracle = test.oracle().unwrap();
    assert!(oracle.mixing.iter().all(|&m| m == 0.3));
    assert!(test.examples().iter().all(|e| e.input.length() == 5));
    let share0 = oracle.clean_labels.iter().filter(|&&c| c == 0).count() as f64 / 3000.0;
    assert!((share0 - 0.7).abs() < 0.04, "{share0}");
    let model = SyntheticModel::new(&cfg, 3).unwrap();
    let words: HashSet<&String> = model.cue_words().iter().flatten().chain(model.shared_words()).collect();
    assert_eq!(words.len(), 3 * cfg.cue_words + cfg.shared_words);
}

#[test]
fn invalid_configurations() {
    let cases: Vec<(SyntheticConfig, &str)> = vec![
        (
            SyntheticConfig {
                num_classes: 1,
                ..small()
            },
            "invalid `synthetic.num_classes`: 1 is below 2",
        ),
        (
            SyntheticConfig {
                overlap: 1.0,
                ..small()
            },
            "invalid `synthetic.overlap`: 1 is not in [0, 1)",
        ),
        (
            SyntheticConfig {
                shared_words: 0,
                ..small()
            },
            "invalid `synthetic.overlap`: must be 0 when shared_words is 0",
        ),
        (
            SyntheticConfig {
                ambiguity: f64::NAN,
                ..small()
            },
            "invalid `synthetic.ambiguity`: NaN is not in [0, 1]",
        ),
        (
            SyntheticConfig {
                label_noise: -0.1,
                ..small()
            },
            "invalid `synthetic.label_noise`: -0.1 is not in [0, 1]",
        ),
        (
            SyntheticConfig {
                min_len: 9,
                max_len: 3,
                ..small()
            },
            "invalid `synthetic.min_len`: need 1 ≤ min_len ≤ max_len, got 9 and 3",
        ),
        (
            SyntheticConfig { val: 0, ..small() },
            "invalid `synthetic.val`: must be at least 1",
        ),
        (
            SyntheticConfig {
                class_prior: Some(vec![0.5, 0.5]),
                ..small()
            },
            "invalid `synthetic.class_prior`: has 2 entries for 4 classes",
        ),
        (
            SyntheticConfig {
                class_prior: Some(vec![0.5, 0.5, 0.5, 0.5]),
                ..small()
            },
            "invalid `synthetic.class_prior`: sums to 2, not 1",
        ),
    ];
    for (cfg, message) in cases {
        let err = generate(&cfg, 0).unwrap_err();
        assert!(matches!(err, DataError::InvalidOption { .. }));
        assert_eq!(err.to_string(), message);
    }
    let model = SyntheticModel::new(&small(), 0).unwrap();
    assert_eq!(
        model.clean_posterior("zzzz").unwrap_err().to_string(),
        "invalid `text`: `zzzz` is not a word of the synthetic vocabulary"
    );
    let no_mix = SyntheticConfig {
        ambiguity: 0.0,
        ..small()
    };
    let model = SyntheticModel::new(&no_mix, 0).unwrap();
    let two = format!("{} {}", model.cue_words()[0][0], model.cue_words()[1][0]);
    assert!(model.clean_posterior(&two).is_err());
}

#[test]
fn oracle_csv_export() {
    let d = generate(&small(), 42).unwrap();
    let split = d.split("val").unwrap();
    let mut out = Vec::new();
    write_oracle_csv(split, &mut out, std::path::Path::new("val.oracle.csv")).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "id,label,clean_label,mixing,p_0,p_1,p_2,p_3,clean_p_0,clean_p_1,clean_p_2,clean_p_3"
    );
    assert_eq!(lines.len(), 101);
    let fields: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(fields[0], "synthetic:val:0");
    let p0: f64 = fields[4].parse().unwrap();
    assert_eq!(p0, split.oracle().unwrap().posterior[0][0]);
}
