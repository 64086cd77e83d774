//! `ueb score`: fit a head on a feature cache and write its scores for one split.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use ueb_cache::{FeatureCache, Split};
use ueb_heads::{FitContext, HEAD_NAMES, HeadSpec};

use crate::stdio::outln;
use crate::{device, output};

/// Heads that fit on val and select on val by default: the calibrators, from the head registry.
fn calibrators() -> Vec<&'static str> {
    HEAD_NAMES
        .iter()
        .copied()
        .filter(|n| HeadSpec::from_name(n).is_ok_and(|s| s.default_splits() == (Split::Val, Split::Val)))
        .collect()
}

const CONFIG_HELP: &str = "The --config file holds the head's settings, e.g. for mahalanobis `features: dense` and \
`l2_normalize: true`, for alien `grid: {lr: [1.0e-4], alpha: [0.1], beta: [0.01]}`; `score_precision: f32` (mahalanobis, relative_mahalanobis, adue, alien) runs the scoring's matrix products (and an mlp head's whole dense layer) in f32, as PyTorch float32 does (default f64).";

/// Arguments of `ueb score`.
#[derive(Debug, Args)]
#[command(after_help = format!("\
Splits: by default the calibrators ({}) fit on val; the distance heads fit on \
train with gold labels; adue and alien train on train and select hyperparameters on val.
{}", calibrators().join(", "), CONFIG_HELP))]
pub(crate) struct ScoreArgs {
    /// Feature cache directory (docs/cache-format.md).
    #[arg(long, value_name = "DIR")]
    cache: PathBuf,
    /// Head to fit, by its registry name (sr, temperature, mahalanobis, alien, …; an unknown
    /// name lists them all).
    #[arg(long, value_name = "NAME")]
    head: String,
    /// YAML file with the head's settings.
    #[arg(long, value_name = "FILE.yaml")]
    config: Option<PathBuf>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0, value_name = "S")]
    seed: u64,
    #[arg(help = device::help("Backend for trainable heads"))]
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
    /// Also write a calibrating head's probabilities of the split, [N, C] in row order
    /// (.npy, .csv or .parquet; columns p0, p1, …).
    #[arg(long, value_name = "FILE")]
    probs_out: Option<PathBuf>,
    /// Print one JSON object instead of the text: the cache, the head, its summary, the split,
    /// the files written and the ROC-AUC (or why it is undefined).
    #[arg(long)]
    json: bool,
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
    // The file holds what an experiment writes after `name:`; the registry parses it, and YAML
    // errors keep the file's lines.
    let mut entry = OneEntry { text: &text };
    match HeadSpec::next_settings(name, &mut entry) {
        Ok(Some(spec)) => Ok(spec),
        Ok(None) => bail!("--head {name}: unknown head (known: {})", HEAD_NAMES.join(", ")),
        Err(e) => Err(e).with_context(|| format!("{}: invalid settings for head `{name}`", path.display())),
    }
}

/// A head's settings file as the value of a one-entry map (`name: <file>`).
struct OneEntry<'de> {
    text: &'de str,
}

impl<'de> serde::de::MapAccess<'de> for OneEntry<'de> {
    type Error = serde_yaml_ng::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(&mut self, _seed: K) -> Result<Option<K::Value>, Self::Error> {
        Ok(None)
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Self::Error> {
        seed.deserialize(serde_yaml_ng::Deserializer::from_str(self.text))
    }
}

/// Runs `ueb score`.
pub(crate) fn run(args: &ScoreArgs) -> Result<()> {
    let spec = spec(&args.head, args.config.as_ref())?;
    // Every output is checked before the fit, and nothing is written before all are.
    output::check_path(&args.out)?;
    if let Some(p) = &args.probs_out {
        output::check_path(p)?;
    }
    if let Some(dir) = &args.save_head
        && dir.exists()
        && !dir.is_dir()
    {
        bail!("--save-head {}: exists and is not a directory", dir.display());
    }
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
    let probs = match (&args.probs_out, head.probabilities(split)) {
        (Some(_), None) => bail!(
            "--probs-out: head `{}` scores rows but outputs no probabilities of its own (the \
             classifier's are in the cache); only calibrators do",
            head.name()
        ),
        (Some(path), Some(p)) => Some((path, p?)),
        (None, _) => None,
    };
    output::write_column(&args.out, "u", &u)?;
    if let Some((path, p)) = probs {
        let names: Vec<String> = (0..split.num_classes()).map(|k| format!("p{k}")).collect();
        output::write_matrix(path, &names, &p)?;
    }
    if let Some(dir) = &args.save_head {
        head.save(dir)?;
    }

    let errors = split.errors();
    let roc_auc = ueb_metrics::ErrorDetection::with_default_bins(&errors, &u)?.roc_auc;
    if args.json {
        let deviations: serde_json::Map<String, serde_json::Value> = report
            .max_logit_deviation
            .iter()
            .map(|(s, d)| (s.to_string(), serde_json::json!(d)))
            .collect();
        let value = serde_json::json!({
            "cache": args.cache,
            "num_classes": cache.meta.num_classes,
            "feature_dim": cache.meta.feature_dim,
            "max_logit_deviation": deviations,
            "head": head.name(),
            "fit": ctx.fit.to_string(),
            "select": ctx.select.to_string(),
            "summary": head.summary(),
            "split": args.split.to_string(),
            "n": u.len(),
            "out": args.out,
            "probs_out": args.probs_out,
            "saved_head": args.save_head,
            "roc_auc": roc_auc.ok(),
            "roc_auc_reason": roc_auc.err().map(|why| why.to_string()),
        });
        outln!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let deviation = report
        .max_logit_deviation
        .iter()
        .map(|(s, d)| format!("{s} {d:.1e}"))
        .collect::<Vec<_>>()
        .join(", ");
    outln!(
        "cache: {} (C = {}, d = {}; logits reproduced within {deviation})",
        args.cache.display(),
        cache.meta.num_classes,
        cache.meta.feature_dim
    );
    outln!(
        "head: {} fitted on {}, selected on {}",
        head.name(),
        ctx.fit,
        ctx.select
    );
    outln!("{}", serde_json::to_string_pretty(&head.summary())?);
    match roc_auc {
        Ok(auc) => outln!(
            "{} split: {} scores written to {}; error-detection ROC-AUC {auc:.4}",
            args.split,
            u.len(),
            args.out.display()
        ),
        Err(why) => outln!(
            "{} split: {} scores written to {}; ROC-AUC undefined ({why})",
            args.split,
            u.len(),
            args.out.display()
        ),
    }
    Ok(())
}
