//! A synthetic text-classification task whose Bayes posterior `P(y | x)` is known exactly.
//!
//! # Generative model
//! There are `C` classes, each with `K` *cue words*, and `S` *shared words*; every word is a
//! pronounceable pseudo-word and the assignment of words to classes is a seeded shuffle.
//! A document is generated as follows:
//! 1. latent class `y ~ π` (uniform by default);
//! 2. mixing level `λ` uniform over `M` levels `ambiguity · m / (M − 1)`, `m = 0..M−1`
//!    (`λ = ambiguity` when `M = 1`): the document's share of *mixed cues*;
//! 3. length `L` uniform in `min_len..=max_len`;
//! 4. each of the `L` tokens independently: a source class, `y` with probability `1 − λ`, else
//!    a uniform other class; then a shared word (uniform) with probability `overlap`, else a
//!    cue word (uniform) of the source class;
//! 5. observed label: `y` with probability `1 − ρ` (`ρ = label_noise`), else uniform over
//!    all `C` classes.
//!
//! Given the tokens, the clean posterior follows by Bayes' rule. Shared words and the uniform
//! word choices have the same likelihood under every class and cancel, so with `n_c` cue
//! words of class `c` and `N = Σ n_c`:
//!
//! `P(y = c | x) ∝ π_c · Σ_m (1 − λ_m)^{n_c} · (λ_m / (C − 1))^{N − n_c}` (with `0⁰ = 1`),
//!
//! and the posterior of the observed label is `(1 − ρ) · P(y | x) + ρ / C`. Both are exported
//! ([`Oracle`]) so that reports can compare every head with the Bayes-optimal uncertainty.
//! `overlap` makes the class-conditional word distributions overlap (fewer informative
//! tokens), `ambiguity` mixes cues of other classes into some documents, and `label_noise`
//! adds irreducible noise. Everything is deterministic for a seed.

use std::collections::HashMap;
use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, Example, Input, Label, Oracle, Split, SplitParts, Task};
use crate::error::{DataError, Result};
use crate::rng::{Rng64, SplitMix64, derive_seed};

/// Parameters of the generator; the defaults are the embedded default task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Number of classes `C` (≥ 2).
    pub num_classes: usize,
    /// Class prior `π`; uniform when absent. Positive, summing to 1 (within 1e-9).
    pub class_prior: Option<Vec<f64>>,
    /// Cue words per class `K` (≥ 1).
    pub cue_words: usize,
    /// Shared words `S`.
    pub shared_words: usize,
    /// Probability that a token is a shared word, in `[0, 1)`; 0 when `S = 0`.
    pub overlap: f64,
    /// Largest share of mixed cues, in `[0, 1]`.
    pub ambiguity: f64,
    /// Number of mixing levels `M` (≥ 1).
    pub mixing_levels: usize,
    /// Label-noise rate `ρ`, in `[0, 1]`.
    pub label_noise: f64,
    /// Shortest document, in tokens (≥ 1).
    pub min_len: usize,
    /// Longest document, in tokens (≥ `min_len`).
    pub max_len: usize,
    /// Training documents.
    pub train: usize,
    /// Validation documents.
    pub val: usize,
    /// Test documents.
    pub test: usize,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            num_classes: 4,
            class_prior: None,
            cue_words: 50,
            shared_words: 200,
            overlap: 0.75,
            ambiguity: 0.6,
            mixing_levels: 4,
            label_noise: 0.05,
            min_len: 8,
            max_len: 32,
            train: 4000,
            val: 1000,
            test: 2000,
        }
    }
}

/// What a word is to the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    Cue(usize),
    Shared,
}

/// The generative model of a configuration and seed: its vocabulary and its posterior.
#[derive(Clone, Debug)]
pub struct SyntheticModel {
    config: SyntheticConfig,
    prior: Vec<f64>,
    levels: Vec<f64>,
    cues: Vec<Vec<String>>,
    shared: Vec<String>,
    category: HashMap<String, Category>,
}

const CONSONANTS: &[u8] = b"bdfgklmnprstvz";
const VOWELS: &[u8] = b"aeiou";

/// The pseudo-word of index `i`: `j = 4900 · ⌊i / 4900⌋ + (1597 · i mod 4900)` (a bijection
/// that spreads small indices over all syllables) written in base 70 with at least two
/// digits, each digit a consonant–vowel syllable (`ba`, `be`, …, `zu`).
fn word(i: usize) -> String {
    let base = CONSONANTS.len() * VOWELS.len();
    let block = base * base;
    let mut digits = Vec::new();
    let mut n = block * (i / block) + (1597 * (i % block)) % block;
    loop {
        digits.push(n % base);
        n /= base;
        if n == 0 {
            break;
        }
    }
    while digits.len() < 2 {
        digits.push(0);
    }
    digits
        .iter()
        .rev()
        .flat_map(|&d| {
            [
                char::from(CONSONANTS[d / VOWELS.len()]),
                char::from(VOWELS[d % VOWELS.len()]),
            ]
        })
        .collect()
}

impl SyntheticModel {
    /// Checks the configuration and builds the vocabulary (stream 0 of `seed`).
    pub fn new(config: &SyntheticConfig, seed: u64) -> Result<Self> {
        validate(config)?;
        let c = config.num_classes;
        let prior = match &config.class_prior {
            Some(p) => p.clone(),
            None => vec![1.0 / c as f64; c],
        };
        let levels = if config.mixing_levels == 1 {
            vec![config.ambiguity]
        } else {
            (0..config.mixing_levels)
                .map(|m| config.ambiguity * m as f64 / (config.mixing_levels - 1) as f64)
                .collect()
        };
        let vocab = c * config.cue_words + config.shared_words;
        let mut order: Vec<usize> = (0..vocab).collect();
        SplitMix64::new(derive_seed(seed, 0)).shuffle(&mut order);
        let mut cues = vec![Vec::with_capacity(config.cue_words); c];
        let mut shared = Vec::with_capacity(config.shared_words);
        let mut category = HashMap::with_capacity(vocab);
        for (slot, &index) in order.iter().enumerate() {
            let w = word(index);
            if slot < c * config.cue_words {
                let class = slot / config.cue_words;
                category.insert(w.clone(), Category::Cue(class));
                cues[class].push(w);
            } else {
                category.insert(w.clone(), Category::Shared);
                shared.push(w);
            }
        }
        Ok(Self {
            config: config.clone(),
            prior,
            levels,
            cues,
            shared,
            category,
        })
    }

    /// The cue words of each class.
    pub fn cue_words(&self) -> &[Vec<String>] {
        &self.cues
    }

    /// The shared words.
    pub fn shared_words(&self) -> &[String] {
        &self.shared
    }

    /// `P(latent class | x)` from per-class cue-word counts.
    fn posterior_from_counts(&self, counts: &[usize]) -> Option<Vec<f64>> {
        let c = self.config.num_classes;
        let total: usize = counts.iter().sum();
        let other = (c - 1) as f64;
        let log_lik: Vec<f64> = (0..c)
            .map(|class| {
                let own = counts[class] as f64;
                let rest = (total - counts[class]) as f64;
                let terms: Vec<f64> = self
                    .levels
                    .iter()
                    .map(|&lambda| xlogy(own, 1.0 - lambda) + xlogy(rest, lambda / other))
                    .collect();
                self.prior[class].ln() + log_sum_exp(&terms)
            })
            .collect();
        let norm = log_sum_exp(&log_lik);
        if norm == f64::NEG_INFINITY {
            return None;
        }
        Some(log_lik.iter().map(|l| (l - norm).exp()).collect())
    }

    /// `P(latent class | x)` of a text of model words separated by whitespace. Errors on a word
    /// outside the vocabulary, or a text that the model cannot generate.
    pub fn clean_posterior(&self, text: &str) -> Result<Vec<f64>> {
        let mut counts = vec![0; self.config.num_classes];
        for token in text.split_whitespace() {
            match self.category.get(token) {
                Some(Category::Cue(c)) => counts[*c] += 1,
                Some(Category::Shared) => {}
                None => {
                    return Err(DataError::invalid(
                        "text",
                        format!("`{token}` is not a word of the synthetic vocabulary"),
                    ));
                }
            }
        }
        self.posterior_from_counts(&counts)
            .ok_or_else(|| DataError::invalid("text", "the model gives this text probability 0 under every class"))
    }

    /// `P(observed label | x) = (1 − ρ) · clean + ρ / C`.
    pub fn noisy(&self, clean: &[f64]) -> Vec<f64> {
        let rho = self.config.label_noise;
        let uniform = rho / self.config.num_classes as f64;
        clean.iter().map(|p| (1.0 - rho) * p + uniform).collect()
    }

    /// Generates `n` documents from the stream `stream` of `seed`.
    fn sample(&self, n: usize, seed: u64, stream: u64, split: &str) -> Result<(Vec<Example>, Oracle)> {
        let cfg = &self.config;
        let c = cfg.num_classes;
        let mut rng = SplitMix64::new(derive_seed(seed, stream));
        let mut examples = Vec::with_capacity(n);
        let mut oracle = Oracle {
            posterior: Vec::with_capacity(n),
            clean_posterior: Vec::with_capacity(n),
            clean_labels: Vec::with_capacity(n),
            mixing: Vec::with_capacity(n),
        };
        for i in 0..n {
            let y = draw(&self.prior, &mut rng);
            let lambda = self.levels[rng.index(self.levels.len())];
            let len = cfg.min_len + rng.index(cfg.max_len - cfg.min_len + 1);
            let mut counts = vec![0usize; c];
            let mut tokens: Vec<&str> = Vec::with_capacity(len);
            for _ in 0..len {
                let source = if rng.unit() < lambda {
                    let other = rng.index(c - 1);
                    if other >= y { other + 1 } else { other }
                } else {
                    y
                };
                if !self.shared.is_empty() && rng.unit() < cfg.overlap {
                    tokens.push(&self.shared[rng.index(self.shared.len())]);
                } else {
                    counts[source] += 1;
                    tokens.push(&self.cues[source][rng.index(cfg.cue_words)]);
                }
            }
            let observed = if rng.unit() < cfg.label_noise { rng.index(c) } else { y };
            // The latent class generated these counts, so its likelihood is positive and this
            // error cannot occur.
            let clean = self
                .posterior_from_counts(&counts)
                .ok_or_else(|| DataError::invalid("synthetic", format!("document {i} of {split} has likelihood 0")))?;
            oracle.posterior.push(self.noisy(&clean));
            oracle.clean_posterior.push(clean);
            oracle.clean_labels.push(y);
            oracle.mixing.push(lambda);
            examples.push(Example {
                id: format!("synthetic:{split}:{i}"),
                input: Input::Text(tokens.join(" ")),
                label: Label::Class(observed),
            });
        }
        Ok((examples, oracle))
    }
}

/// `x · ln(y)` with `0 · ln(0) = 0`.
fn xlogy(x: f64, y: f64) -> f64 {
    if x == 0.0 { 0.0 } else { x * y.ln() }
}

fn log_sum_exp(values: &[f64]) -> f64 {
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + values.iter().map(|v| (v - max).exp()).sum::<f64>().ln()
}

/// Index drawn from a probability vector (inverse CDF of one uniform; the last index absorbs
/// rounding).
fn draw(p: &[f64], rng: &mut SplitMix64) -> usize {
    let u = rng.unit();
    let mut acc = 0.0;
    for (i, &pi) in p.iter().enumerate() {
        acc += pi;
        if u < acc {
            return i;
        }
    }
    p.len() - 1
}

/// The most words a generated dataset may hold (a few GB of text).
const MAX_WORDS: usize = 500_000_000;

fn validate(cfg: &SyntheticConfig) -> Result<()> {
    let bad = |field: &str, reason: String| Err(DataError::invalid(format!("synthetic.{field}"), reason));
    let unit = |x: f64| (0.0..=1.0).contains(&x);
    if cfg.num_classes < 2 {
        return bad("num_classes", format!("{} is below 2", cfg.num_classes));
    }
    if cfg.cue_words == 0 {
        return bad("cue_words", "must be at least 1".to_owned());
    }
    if !(unit(cfg.overlap) && cfg.overlap < 1.0) {
        return bad("overlap", format!("{} is not in [0, 1)", cfg.overlap));
    }
    if cfg.shared_words == 0 && cfg.overlap > 0.0 {
        return bad("overlap", "must be 0 when shared_words is 0".to_owned());
    }
    if !unit(cfg.ambiguity) {
        return bad("ambiguity", format!("{} is not in [0, 1]", cfg.ambiguity));
    }
    if cfg.mixing_levels == 0 {
        return bad("mixing_levels", "must be at least 1".to_owned());
    }
    if !unit(cfg.label_noise) {
        return bad("label_noise", format!("{} is not in [0, 1]", cfg.label_noise));
    }
    if cfg.min_len == 0 || cfg.min_len > cfg.max_len {
        return bad(
            "min_len",
            format!("need 1 ≤ min_len ≤ max_len, got {} and {}", cfg.min_len, cfg.max_len),
        );
    }
    for (field, n) in [("train", cfg.train), ("val", cfg.val), ("test", cfg.test)] {
        if n == 0 {
            return bad(field, "must be at least 1".to_owned());
        }
    }
    // Sizes are bounded so that a typo fails here instead of exhausting memory (decision D12).
    for (field, n, max) in [
        ("num_classes", cfg.num_classes, 10_000),
        ("cue_words", cfg.cue_words, 1_000_000),
        ("shared_words", cfg.shared_words, 1_000_000),
        ("mixing_levels", cfg.mixing_levels, 10_000),
        ("max_len", cfg.max_len, 100_000),
    ] {
        if n > max {
            return bad(field, format!("{n} is above the limit of {max}"));
        }
    }
    let words = [cfg.train, cfg.val, cfg.test]
        .iter()
        .try_fold(0usize, |acc, &n| acc.checked_add(n))
        .and_then(|n| n.checked_mul(cfg.max_len));
    if words.is_none_or(|w| w > MAX_WORDS) {
        return bad(
            "train",
            format!(
                "(train + val + test) × max_len = ({} + {} + {}) × {} is above the limit of {MAX_WORDS} words",
                cfg.train, cfg.val, cfg.test, cfg.max_len
            ),
        );
    }
    if let Some(prior) = &cfg.class_prior {
        if prior.len() != cfg.num_classes {
            return bad(
                "class_prior",
                format!("has {} entries for {} classes", prior.len(), cfg.num_classes),
            );
        }
        if prior.iter().any(|p| !(p.is_finite() && *p > 0.0)) {
            return bad("class_prior", "entries must be positive and finite".to_owned());
        }
        let sum: f64 = prior.iter().sum();
        if (sum - 1.0).abs() > 1e-9 {
            return bad("class_prior", format!("sums to {sum}, not 1"));
        }
    }
    Ok(())
}

/// Generates the `synthetic` dataset: train, val and test from streams 1, 2 and 3 of `seed`,
/// each split carrying its [`Oracle`]. Labels are `"0"`, …, `"C−1"`.
pub fn generate(config: &SyntheticConfig, seed: u64) -> Result<Dataset> {
    let model = SyntheticModel::new(config, seed)?;
    let mut parts = Vec::new();
    for (stream, (split, n)) in [("train", config.train), ("val", config.val), ("test", config.test)]
        .into_iter()
        .enumerate()
    {
        let (examples, oracle) = model.sample(n, seed, stream as u64 + 1, split)?;
        let mut part = SplitParts::new(
            split,
            format!("generated: stream {} of seed {seed}", stream + 1),
            examples,
        );
        part.oracle = Some(oracle);
        parts.push(part);
    }
    let labels = (0..config.num_classes).map(|c| c.to_string()).collect();
    Dataset::new("synthetic", Task::Sequence, labels, parts, Vec::new())
}

/// Writes a split's oracle as CSV: `id,label,clean_label,mixing,p_0..p_{C−1},clean_p_0..`
/// (`p` = posterior of the observed label, `clean_p` = of the latent class; shortest
/// round-trip decimal floats). Errors when the split has no oracle; `path` names the
/// destination in errors.
pub fn write_oracle_csv(split: &Split, out: &mut impl Write, path: &std::path::Path) -> Result<()> {
    let oracle = split
        .oracle()
        .ok_or_else(|| DataError::invalid("oracle", format!("split `{}` is not generated", split.name())))?;
    let io = |e| DataError::io(path, e);
    let c = oracle.posterior.first().map_or(0, Vec::len);
    let mut header = vec!["id".to_owned(), "label".into(), "clean_label".into(), "mixing".into()];
    header.extend((0..c).map(|k| format!("p_{k}")));
    header.extend((0..c).map(|k| format!("clean_p_{k}")));
    writeln!(out, "{}", header.join(",")).map_err(io)?;
    for (i, example) in split.examples().iter().enumerate() {
        let label = match &example.label {
            Label::Class(k) => k.to_string(),
            Label::Tags(tags) => format!("{tags:?}"),
        };
        let mut row = vec![
            example.id.clone(),
            label,
            oracle.clean_labels[i].to_string(),
            format!("{:?}", oracle.mixing[i]),
        ];
        row.extend(oracle.posterior[i].iter().map(|p| format!("{p:?}")));
        row.extend(oracle.clean_posterior[i].iter().map(|p| format!("{p:?}")));
        writeln!(out, "{}", row.join(",")).map_err(io)?;
    }
    Ok(())
}
