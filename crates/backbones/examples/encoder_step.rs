//! Times fine-tuning steps of a sequence classifier: `cargo run --release -p ueb-backbones
//! --example encoder_step -- MODEL_DIR [--batch 32] [--seq 128] [--steps 3] [--device flex]
//! [--mode full|lora]`. Random token ids of exactly `seq` tokens, two classes; one warm-up step,
//! then `steps` timed steps (forward, backward, AdamW). Prints one JSON line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use burn::tensor::Device;
use ueb_backbones::Trainer;
use ueb_backbones::{
    Encoded, FinetuneConfig, FinetuneMode, LabeledSplit, LoadOptions, ModelDir, TextTokenizer, load_sequence_classifier,
};
use ueb_rng::{Rng64, Xoshiro256};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args
        .first()
        .expect("usage: encoder_step MODEL_DIR [--batch B] [--seq L] [--steps N] [--device D] [--mode M]");
    let opt = |name: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    let batch: usize = opt("--batch", "32").parse().unwrap();
    let seq: usize = opt("--seq", "128").parse().unwrap();
    let steps: usize = opt("--steps", "3").parse().unwrap();
    let device = match opt("--device", "flex").as_str() {
        "flex" => Device::flex(),
        #[allow(deprecated)]
        "ndarray" => Device::ndarray(),
        other => panic!("unknown device {other}"),
    };
    let mode = match opt("--mode", "full").as_str() {
        "full" => FinetuneMode::Full,
        "lora" => FinetuneMode::lora(),
        other => panic!("unknown mode {other}"),
    };
    let md = ModelDir::open(std::path::Path::new(dir)).unwrap();
    let labels = vec!["a".to_string(), "b".to_string()];
    let (model, config, _) = load_sequence_classifier(&md, &LoadOptions { labels: Some(labels) }, &device).unwrap();
    let tok = TextTokenizer::from_file(&md.tokenizer, &config, Some(seq)).unwrap();
    let mut rng = Xoshiro256::new(0, 0);
    let n = batch * (steps + 1);
    let encoded: Vec<Encoded> = (0..n)
        .map(|_| Encoded {
            ids: (0..seq).map(|_| 5 + rng.index(config.vocab_size - 5) as u32).collect(),
            type_ids: vec![0; seq],
        })
        .collect();
    let ys: Vec<usize> = (0..n).map(|i| i % 2).collect();
    let split = LabeledSplit {
        encoded: &encoded,
        labels: &ys,
    };
    let cfg = FinetuneConfig {
        mode,
        lr: 1e-5,
        batch_size: batch,
        ..Default::default()
    };
    let mut trainer = Trainer::new(model, &cfg, steps + 1, &device).unwrap();
    let mut times = Vec::new();
    for s in 0..=steps {
        let rows: Vec<usize> = (s * batch..(s + 1) * batch).collect();
        let t = Instant::now();
        trainer.batch(&tok, split, &rows, true).unwrap();
        if s > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "{{\"batch\": {batch}, \"seq\": {seq}, \"mode\": \"{}\", \"step_seconds\": {:?}, \"median\": {}}}",
        cfg.mode.name(),
        times,
        sorted[sorted.len() / 2]
    );
}
