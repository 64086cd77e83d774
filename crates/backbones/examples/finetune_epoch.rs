//! Times a whole fine-tuning epoch as `ueb run` does it (`finetune`): `cargo run --release -p
//! ueb-backbones --example finetune_epoch -- MODEL_DIR ROWS.json [--mode lora|full]
//! [--engine auto|host|burn] [--batch 16] [--lr 5e-4] [--order-out FILE]`.
//!
//! A decoder directory (LLaMA, Qwen2, Qwen3) trains as a decoder classifier (burn's engine).
//! `ROWS.json` holds `{"train": [{"ids", "type_ids", "label"}], "val": [...]}` (token ids as the
//! model's tokenizer gives them, no padding). Before training, the shuffled order `finetune`
//! will use is written to `--order-out` (a JSON list of train rows), so that a PyTorch run can
//! take the same batches. Prints one JSON line: seconds of the epoch (training and the
//! validation pass), real tokens, tokens per second, the mean training loss and the peak
//! resident memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use burn::tensor::Device;
use serde::Deserialize;
use ueb_backbones::{
    ClassifierModel, Encoded, FinetuneConfig, FinetuneEngine, FinetuneMode, FinetuneReport, LabeledSplit, LoadOptions,
    ModelDir, TextTokenizer, finetune, is_decoder, load_decoder_classifier, load_sequence_classifier,
};
use ueb_rng::{Rng64, Xoshiro256};

// The allocator of the `ueb` binary, so that the epoch is timed as `ueb run` runs it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Deserialize)]
struct Row {
    ids: Vec<u32>,
    type_ids: Vec<u32>,
    label: usize,
}

#[derive(Deserialize)]
struct Rows {
    train: Vec<Row>,
    val: Vec<Row>,
}

/// Peak resident set size of this process, MiB (Linux `VmHWM`).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: finetune_epoch MODEL_DIR ROWS.json [--mode lora|full] [--engine auto|host|burn] [--batch B] [--lr LR] [--order-out FILE]";
    let (dir, rows_path) = (args.first().expect(usage), args.get(1).expect(usage));
    let opt = |name: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    let mode = match opt("--mode", "lora").as_str() {
        "full" => FinetuneMode::Full,
        "lora" => FinetuneMode::lora(),
        other => panic!("unknown mode {other}"),
    };
    let engine = match opt("--engine", "auto").as_str() {
        "auto" => FinetuneEngine::Auto,
        "host" => FinetuneEngine::Host,
        "burn" => FinetuneEngine::Burn,
        other => panic!("unknown engine {other}"),
    };
    let rows: Rows = serde_json::from_str(&std::fs::read_to_string(rows_path).unwrap()).unwrap();
    let classes = rows.train.iter().chain(&rows.val).map(|r| r.label).max().unwrap_or(1) + 1;
    let device = Device::flex();
    // A base checkpoint gets a new head from the device's generator: seed it, as the runner does.
    device.seed(1);
    let md = ModelDir::open(std::path::Path::new(dir)).unwrap();
    let labels: Vec<String> = (0..classes).map(|c| format!("class_{c}")).collect();
    let options = LoadOptions { labels: Some(labels) };
    let decoder = is_decoder(&md).unwrap();
    let enc = |rs: &[Row]| -> (Vec<Encoded>, Vec<usize>) {
        (
            rs.iter()
                .map(|r| Encoded {
                    ids: r.ids.clone(),
                    type_ids: r.type_ids.clone(),
                })
                .collect(),
            rs.iter().map(|r| r.label).collect(),
        )
    };
    let (train_e, train_y) = enc(&rows.train);
    let (val_e, val_y) = enc(&rows.val);
    let cfg = FinetuneConfig {
        mode,
        epochs: 1,
        lr: opt("--lr", "5e-4").parse().unwrap(),
        batch_size: opt("--batch", "16").parse().unwrap(),
        seed: 1,
        engine,
        ..Default::default()
    };
    if let Some(path) = args
        .iter()
        .position(|a| a == "--order-out")
        .and_then(|i| args.get(i + 1))
    {
        // The order `finetune` draws for its first epoch (same generator and stream).
        let mut rng = Xoshiro256::new(cfg.seed, 0x6675_6e65);
        let mut order: Vec<usize> = (0..train_e.len()).collect();
        rng.shuffle(&mut order);
        std::fs::write(path, serde_json::to_string(&order).unwrap()).unwrap();
    }
    let tokens: usize = train_e.iter().map(|e| e.ids.len()).sum();
    let train = LabeledSplit {
        encoded: &train_e,
        labels: &train_y,
    };
    let val = LabeledSplit {
        encoded: &val_e,
        labels: &val_y,
    };
    fn run<M: ClassifierModel>(
        model: M,
        tok: &TextTokenizer,
        train: LabeledSplit<'_>,
        val: LabeledSplit<'_>,
        cfg: &FinetuneConfig,
        device: &Device,
    ) -> (FinetuneReport, f64) {
        // Timed from the call, as before: loading is not part of the epoch.
        let t0 = Instant::now();
        let report = finetune(model, tok, train, val, cfg, device, false).unwrap().1;
        (report, t0.elapsed().as_secs_f64())
    }
    let (report, seconds) = if decoder {
        let (model, config, _) = load_decoder_classifier(&md, &options, &device).unwrap();
        let tok = TextTokenizer::from_file(&md.tokenizer, &config, None).unwrap();
        run(model, &tok, train, val, &cfg, &device)
    } else {
        let (model, config, _) = load_sequence_classifier(&md, &options, &device).unwrap();
        let tok = TextTokenizer::from_file(&md.tokenizer, &config, None).unwrap();
        run(model, &tok, train, val, &cfg, &device)
    };
    let e = &report.epochs[0];
    println!(
        "{}",
        serde_json::json!({
            "engine": ueb_backbones::finetune_engine(&cfg, &device, !decoder).unwrap(),
            "mode": cfg.mode.name(),
            "seconds": seconds,
            "epoch_seconds": e.seconds,
            "tokens": tokens,
            "tokens_per_s": tokens as f64 / seconds,
            "train_loss": e.train_loss,
            "val_accuracy": e.val_accuracy,
            "trainable_parameters": report.trainable_parameters,
            "peak_rss_mib": peak_rss_mib(),
        })
    );
}
