//! Helpers shared by the integration tests: small, seeded results directories in the layout
//! `ueb run` writes.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use polars::prelude::*;

/// A tiny linear congruential generator (tests only).
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407))
    }
    pub fn next_f64(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64) / ((1u64 << 53) as f64)
    }
}

/// `n` rows of `c`-class probabilities whose argmax is right about 75% of the time, labels,
/// and a score (1 − max p, plus `noise` × uniform).
pub fn synthetic(n: usize, c: usize, seed: u64, noise: f64) -> (Vec<f64>, Vec<i64>, Vec<f64>) {
    let mut rng = Lcg::new(seed);
    let mut probs = Vec::with_capacity(n * c);
    let mut labels = Vec::with_capacity(n);
    let mut score = Vec::with_capacity(n);
    for _ in 0..n {
        let y = ((rng.next_f64() * c as f64) as usize).min(c - 1);
        let right = rng.next_f64() < 0.75;
        let top = if right { y } else { (y + 1) % c };
        let peak = 0.4 + 0.6 * rng.next_f64();
        let rest = (1.0 - peak) / (c - 1) as f64;
        let row: Vec<f64> = (0..c).map(|k| if k == top { peak } else { rest }).collect();
        let max = row.iter().copied().fold(0.0, f64::max);
        probs.extend(row);
        labels.push(y as i64);
        score.push(1.0 - max + noise * rng.next_f64());
    }
    (probs, labels, score)
}

/// Writes a finished head stage (`scores.parquet`, `probs.safetensors`, `head.json`,
/// `stage.json`) as the runner does.
pub fn write_head(dir: &Path, probs: &[f64], labels: &[i64], score: &[f64]) {
    std::fs::create_dir_all(dir).unwrap();
    let n = labels.len();
    let c = probs.len() / n;
    let mut prediction = Vec::with_capacity(n);
    let mut confidence = Vec::with_capacity(n);
    for row in probs.chunks(c) {
        let (arg, max) = row
            .iter()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |b, (i, &p)| if p > b.1 { (i, p) } else { b });
        prediction.push(arg as i64);
        confidence.push(max);
    }
    let correct: Vec<bool> = prediction.iter().zip(labels).map(|(p, y)| p == y).collect();
    let mut df = DataFrame::new_infer_height(vec![
        Column::new("index".into(), (0..n as i64).collect::<Vec<i64>>()),
        Column::new("label".into(), labels.to_vec()),
        Column::new("prediction".into(), prediction),
        Column::new("correct".into(), correct),
        Column::new("score".into(), score.to_vec()),
        Column::new("confidence".into(), confidence),
    ])
    .unwrap();
    let file = std::fs::File::create(dir.join("scores.parquet")).unwrap();
    ParquetWriter::new(file).finish(&mut df).unwrap();
    let bytes: Vec<u8> = probs.iter().flat_map(|x| x.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F64, vec![n, c], &bytes).unwrap();
    std::fs::write(
        dir.join("probs.safetensors"),
        safetensors::serialize([("probs", view)], None).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("head.json"), "{}").unwrap();
    std::fs::write(dir.join("stage.json"), "{}").unwrap();
}

/// A `plan.yaml` in the runner's resolved form (only the fields the report reads matter).
pub fn write_plan(dir: &Path, cells: &[(&str, &str, u64)], heads: &[&str], bins: usize, bootstrap: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut s = String::from("name: test-plan\ndevice: flex\nseeds: [0, 1]\nheads:\n");
    for h in heads {
        if *h == "alien" {
            s.push_str("- !alien\n  grid:\n    lr: [0.001]\n");
        } else {
            s.push_str(&format!("- {h}\n"));
        }
    }
    s.push_str(&format!(
        "metrics:\n  bins: {bins}\n  bootstrap: {bootstrap}\ndata_root: data\ncells:\n"
    ));
    for (b, d, seed) in cells {
        s.push_str(&format!(
            "- backbone: {b}\n  dataset: {d}\n  seed: {seed}\n  source:\n    kind: cache\n    path: somewhere\n"
        ));
    }
    std::fs::write(dir.join("plan.yaml"), s).unwrap();
}

/// Writes head `head` of cell `(b, d, seed)` with data seeded by the cell and head.
pub fn write_cell_head(root: &Path, b: &str, d: &str, seed: u64, head: &str, n: usize) {
    let salt = head.bytes().map(u64::from).sum::<u64>();
    let noise = if head == "sr" { 0.0 } else { 0.3 };
    let (probs, labels, score) = synthetic(n, 3, 1000 + seed * 7 + d.len() as u64, noise);
    // Heads share the predictions of their cell; only the score differs.
    let (_, _, extra) = synthetic(n, 3, salt, 1.0);
    let score: Vec<f64> = score.iter().zip(&extra).map(|(s, e)| s + noise * e).collect();
    let dir = root
        .join("cells")
        .join(b)
        .join(d)
        .join(format!("seed-{seed}"))
        .join(head);
    write_head(&dir, &probs, &labels, &score);
}
