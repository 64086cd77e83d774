//! `ueb score`: fit a head on a feature cache and write its scores for one split.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::de::DeserializeOwned;
use ueb_cache::{FeatureCache, Split};
use ueb_heads::{FitContext, HEAD_NAMES, HeadSpec};

use crate::{device, output};

/// Arguments of `ueb score`.
#[derive(Debug, Args)]
#[command(after_help = "\
Splits: by default calibrators (temperature, vector_scaling) fit on val; the distance heads fit on \
train with gold labels; adue and alien train on train and select hyperparameters on val.
The --config file holds the head's settings, e.g. for mahalanobis `features: dense` and \
`l2_normalize: true`, for alien `grid: {lr: [1.0e-4], alpha: [0.1], beta: [0.01]}`; `score_precision: f32` (mahalanobis, relative_mahalanobis, adue, alien) runs the scoring's matrix products (and an mlp head's whole dense layer) in f32, as PyTorch float32 does (default f64).")]
pub(crate) struct ScoreArgs {
    /// Feature cache directory (docs/cache-format.md).
    #[arg(long, value_name = "DIR")]
    cache: PathBuf,
    /// Head to fit: sr, entropy, margin, temperature, vector_scaling, mahalanobis,
    /// relative_mahalanobis, adue or alien.
    #[arg(long, value_name = "NAME")]
    head: String,
    /// YAML file with the head's settings.
    #[arg(long, value_name = "FILE.yaml")]
    config: Option<PathBuf>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0, value_name = "S")]
    seed: u64,
    /// Backend for trainable heads: flex, ndarray, wgpu, cuda[:N].
    #[arg(long, default_value = "flex", value_name = "D")]
    device: String,
    /// Split to score.
    #[arg(long, default_value = "test", value_name = "SPLIT")]
    split: Split,
    /// Split the head is fitted on (default: the head's own, see below).
    #[arg(long, value_name = "SPLIT")]
    fit: Option<Split>,
    /// Split that selects hyperparameters (default: val).
    #[arg(long, value_name = "SPLIT")]
    select: Option<Split>,
    /// Output: one score per row of the split, in order (.npy, .csv or .parquet; column `u`).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Also save the fitted head to this directory (reload with ueb-heads' `load`).
    #[arg(long, value_name = "DIR")]
    save_head: Option<PathBuf>,
}

/// The head's spec: its defaults, overridden by the YAML file's fields.
fn spec(name: &str, config: Option<&PathBuf>) -> Result<HeadSpec> {
    let spec = HeadSpec::from_name(name)
        .map_err(|_| anyhow::anyhow!("--head {name}: unknown head (known: {})", HEAD_NAMES.join(", ")))?;
    let Some(path) = config else { return Ok(spec) };
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    fn parse<T: DeserializeOwned>(path: &Path, text: &str, name: &str) -> Result<T> {
        serde_yaml_ng::from_str(text).with_context(|| format!("{}: invalid settings for head `{name}`", path.display()))
    }
    Ok(match spec {
        HeadSpec::Sr | HeadSpec::Entropy | HeadSpec::Margin => {
            bail!("--config {}: head `{name}` has no settings", path.display())
        }
        HeadSpec::Temperature(_) => HeadSpec::Temperature(parse(path, &text, name)?),
        HeadSpec::VectorScaling(_) => HeadSpec::VectorScaling(parse(path, &text, name)?),
        HeadSpec::Mahalanobis(_) => HeadSpec::Mahalanobis(parse(path, &text, name)?),
        HeadSpec::RelativeMahalanobis(_) => HeadSpec::RelativeMahalanobis(parse(path, &text, name)?),
        HeadSpec::Adue(_) => HeadSpec::Adue(parse(path, &text, name)?),
        HeadSpec::Alien(_) => HeadSpec::Alien(parse(path, &text, name)?),
        HeadSpec::ChoiceTemperature(_) => HeadSpec::ChoiceTemperature(parse(path, &text, name)?),
    })
}

/// Runs `ueb score`.
pub(crate) fn run(args: &ScoreArgs) -> Result<()> {
    let spec = spec(&args.head, args.config.as_ref())?;
    let device = device::parse(&args.device)?;
    let (cache, report) = FeatureCache::load(&args.cache)?;
    let (default_fit, default_select) = spec.default_splits();
    let ctx = FitContext {
        cache: &cache,
        fit: args.fit.unwrap_or(default_fit),
        select: args.select.unwrap_or(default_select),
        seed: args.seed,
        device: &device,
    };
    let head = spec.fit(&ctx)?;
    let split = cache.split(args.split);
    let u = head.score(split)?;
    output::write_column(&args.out, "u", &u)?;
    if let Some(dir) = &args.save_head {
        head.save(dir)?;
    }

    let deviation = report
        .max_logit_deviation
        .iter()
        .map(|(s, d)| format!("{s} {d:.1e}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "cache: {} (C = {}, d = {}; logits reproduced within {deviation})",
        args.cache.display(),
        cache.meta.num_classes,
        cache.meta.feature_dim
    );
    println!(
        "head: {} fitted on {}, selected on {}",
        head.name(),
        ctx.fit,
        ctx.select
    );
    println!("{}", serde_json::to_string_pretty(&head.summary())?);
    let errors = split.errors();
    match ueb_metrics::ErrorDetection::with_default_bins(&errors, &u)?.roc_auc {
        Ok(auc) => println!(
            "{} split: {} scores written to {}; error-detection ROC-AUC {auc:.4}",
            args.split,
            u.len(),
            args.out.display()
        ),
        Err(why) => println!(
            "{} split: {} scores written to {}; ROC-AUC undefined ({why})",
            args.split,
            u.len(),
            args.out.display()
        ),
    }
    Ok(())
}
