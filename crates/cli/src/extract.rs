//! `ueb extract`: features (and logits, when the checkpoint has a classifier) of the texts of a
//! file, in input order, into a safetensors file.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ueb_backbones::checkpoint_classes;
use ueb_backbones::{
    Extractor, LoadOptions, ModelRef, TextInput, TextTokenizer, load_decoder, load_decoder_classifier, load_encoder,
    load_sequence_classifier,
};
use ueb_backbones::{checkpoint_score_classes, is_decoder};

use crate::device::{self, parse_precision};
use crate::stdio::errln;
use ueb_runner::{DeviceName, Precision};

/// Arguments of `ueb extract`.
#[derive(Debug, Args)]
#[command(after_help = "\
Input: a .jsonl file (one JSON object per line, the text in --text-field; blank lines are skipped) \
or a .txt file (every line is one text, empty lines included).
Output: `features` f32 [N, d] (the last hidden state of an encoder's first token, of a decoder's \
(LLaMA, Qwen2, Qwen3) last non-pad token) and, when the checkpoint has a sequence-classification \
head, `logits` f32 [N, C], rows in input order.")]
pub(crate) struct ExtractArgs {
    /// A Hugging Face model directory, or hf:OWNER/NAME@REVISION.
    #[arg(long, value_name = "DIR")]
    model: String,
    /// Texts: .jsonl or .txt.
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// The jsonl field holding the text.
    #[arg(long, default_value = "text", value_name = "F")]
    text_field: String,
    /// The jsonl field holding the second text of a pair.
    #[arg(long, value_name = "G")]
    text_pair_field: Option<String>,
    /// Truncation length in tokens (default: min(512, the model's limit)).
    #[arg(long, value_name = "L")]
    max_length: Option<usize>,
    /// Texts per forward pass (sorted by length first).
    #[arg(long, default_value_t = 32, value_name = "B")]
    batch_size: usize,
    #[arg(long, default_value = "flex", value_name = "D", help = device::help("Backend"))]
    device: String,
    /// Floating-point type of the model pass: f32, bf16 or f16 (GPU devices only: CPU devices
    /// compute in f32 and say so). Features and logits are written as f32 either way.
    #[arg(long, default_value = "f32", value_name = "P", value_parser = parse_precision)]
    precision: Precision,
    /// Output .safetensors file.
    #[arg(long, value_name = "FILE.safetensors")]
    out: PathBuf,
}

/// The texts of `path`, in order: (text, optional pair).
pub(crate) fn read_texts(path: &Path, field: &str, pair_field: Option<&str>) -> Result<Vec<(String, Option<String>)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ext.as_str() {
        "txt" => {
            if pair_field.is_some() {
                bail!("{}: --text-pair-field needs a .jsonl input", path.display());
            }
            let body = text.strip_suffix('\n').unwrap_or(&text);
            if body.is_empty() {
                return Ok(Vec::new());
            }
            Ok(body
                .split('\n')
                .map(|l| (l.strip_suffix('\r').unwrap_or(l).to_string(), None))
                .collect())
        }
        "jsonl" | "json" => {
            let mut out = Vec::new();
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let v: serde_json::Value = serde_json::from_str(line)
                    .with_context(|| format!("{}:{}: not a JSON object", path.display(), i + 1))?;
                let get = |f: &str| -> Result<String> {
                    match v.get(f) {
                        Some(serde_json::Value::String(s)) => Ok(s.clone()),
                        Some(other) => bail!("{}:{}: field `{f}` is {other}, not a string", path.display(), i + 1),
                        None => bail!("{}:{}: no field `{f}`", path.display(), i + 1),
                    }
                };
                let a = get(field)?;
                let b = pair_field.map(get).transpose()?;
                out.push((a, b));
            }
            Ok(out)
        }
        _ => bail!("{}: unknown input format (expected .jsonl or .txt)", path.display()),
    }
}

/// Runs `ueb extract`.
pub(crate) fn run(args: &ExtractArgs) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let ext = args.out.extension().and_then(|e| e.to_str()).unwrap_or_default();
    if ext != "safetensors" {
        bail!("--out {}: the output must be a .safetensors file", args.out.display());
    }
    let (precision, note) = args
        .precision
        .on(DeviceName::parse(&args.device, Some(&device::available()))?);
    if let Some(note) = note {
        errln!("{note}");
    }
    let device = device::open(&args.device, precision)?;
    let model_dir = ModelRef::parse(&args.model)?.resolve()?;
    let texts = read_texts(&args.input, &args.text_field, args.text_pair_field.as_deref())?;
    if texts.is_empty() {
        bail!("{}: no texts", args.input.display());
    }
    let t0 = Instant::now();
    let header = model_dir.header()?;
    let where_ = model_dir.dir.display();
    let (extractor, tokenizer, family, feature) = if is_decoder(&model_dir)? {
        let (extractor, config) = if checkpoint_score_classes(&header).is_some() {
            let (m, c, report) = load_decoder_classifier(&model_dir, &LoadOptions::default(), &device)?;
            errln!("{where_}: {}", report.summary());
            (Extractor::DecoderClassifier(Box::new(m)), c)
        } else {
            let (m, c, report) = load_decoder(&model_dir, &device)?;
            errln!("{where_}: {} (no score: features only)", report.summary());
            (Extractor::Decoder(Box::new(m)), c)
        };
        let tokenizer = TextTokenizer::from_file(&model_dir.tokenizer, &config, args.max_length)?;
        (
            extractor,
            tokenizer,
            config.family.model_type(),
            "last non-pad token, last layer",
        )
    } else {
        let config = model_dir.encoder_config()?;
        let (extractor, config) = if checkpoint_classes(&header, config.family).is_some() {
            let (m, c, report) = load_sequence_classifier(&model_dir, &LoadOptions::default(), &device)?;
            errln!("{where_}: {}", report.summary());
            (Extractor::Classifier(Box::new(m)), c)
        } else {
            let (m, c, report) = load_encoder(&model_dir, &device)?;
            errln!("{where_}: {} (no classifier: features only)", report.summary());
            (Extractor::Backbone(Box::new(m)), c)
        };
        let tokenizer = TextTokenizer::from_file(&model_dir.tokenizer, &config, args.max_length)?;
        (extractor, tokenizer, config.family.prefix(), "first token, last layer")
    };
    let inputs: Vec<TextInput<'_>> = texts
        .iter()
        .map(|(a, b)| match b {
            Some(b) => TextInput::Pair(a, b),
            None => TextInput::Single(a),
        })
        .collect();
    let encoded = tokenizer
        .encode(&inputs)
        .with_context(|| format!("tokenizing {}", args.input.display()))?;
    let tokens: usize = encoded.iter().map(|e| e.len()).sum();
    let bar = ProgressBar::new(encoded.len() as u64);
    if let Ok(style) =
        ProgressStyle::with_template("extract [{bar:30}] {pos}/{len} {elapsed_precise} ETA {eta_precise}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let t1 = Instant::now();
    let out = extractor.run(&tokenizer, &encoded, args.batch_size, &device, Some(&bar))?;
    bar.finish_and_clear();
    let secs = t1.elapsed().as_secs_f64();
    let n = out.len();
    let mut tensors: Vec<(&str, &[f32], Vec<usize>)> = vec![("features", &out.features, vec![n, out.dim])];
    if let Some(z) = &out.logits {
        tensors.push(("logits", z, vec![n, out.num_classes]));
    }
    let mut meta = std::collections::HashMap::new();
    meta.insert("model".to_string(), args.model.clone());
    meta.insert("family".to_string(), family.to_string());
    meta.insert("max_length".to_string(), tokenizer.max_length().to_string());
    meta.insert("features".to_string(), feature.to_string());
    meta.insert("precision".to_string(), precision.to_string());
    ueb_cache::write_safetensors(&args.out, &tensors, &[], &[], Some(meta))?;
    errln!(
        "wrote {} ({n} rows, d = {}{}) in {:.2} s; model pass {:.2} s, {:.0} tokens/s",
        args.out.display(),
        out.dim,
        out.logits
            .as_ref()
            .map_or(String::new(), |_| format!(", C = {}", out.num_classes)),
        t0.elapsed().as_secs_f64(),
        secs,
        tokens as f64 / secs
    );
    Ok(())
}
