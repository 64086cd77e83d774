//! `ueb data list`, `ueb data stats` and `ueb data export`.
//!
//! A thin layer over `ueb-data`: the registry, the loaders and the statistics live there.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::stdio::errln;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use ueb_data::{Dataset, DatasetOptions, DatasetStats, GenericSpec, NewsgroupsPart, SplitStats, registry};

/// Arguments of `ueb data`.
#[derive(Debug, Args)]
pub(crate) struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Debug, Subcommand)]
enum DataCommand {
    /// List the datasets of the registry.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Rows, label counts, lengths and fingerprints of a dataset's splits.
    #[command(after_help = "\
Lengths are whitespace tokens (multiple choice: question + options; NER: words); p50/p95 are nearest-rank \
percentiles. Rows of a NER set are sentences and its label counts are tag counts over tokens. \
The fingerprint is the SHA-256 of the split's ids and labels (docs/datasets.md).")]
    Stats {
        #[command(flatten)]
        source: SourceArgs,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write each split as JSON Lines (`<split>.jsonl`); generated data also gets its exact
    /// posterior (`<split>.oracle.csv`).
    Export {
        #[command(flatten)]
        source: SourceArgs,
        /// Output directory (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// Which dataset, and the protocol's options.
#[derive(Debug, Args)]
struct SourceArgs {
    /// A registry name (see `ueb data list`) or a YAML file with a dataset mapping.
    name: String,
    /// Data root that holds the dataset folders.
    #[arg(long, value_name = "DIR", default_value = ueb_data::DEFAULT_ROOT)]
    root: PathBuf,
    /// Seed of the validation holdout (and of the synthetic generator).
    #[arg(long, default_value_t = ueb_data::DEFAULT_SEED)]
    seed: u64,
    /// Fraction of train held out as val where a dataset has no validation split.
    #[arg(long, value_name = "F", default_value_t = ueb_data::DEFAULT_VAL_FRACTION)]
    val_fraction: f64,
    /// 20newsgroups only: strip these parts of each post, as scikit-learn's `remove=`.
    #[arg(long, value_name = "PARTS", value_delimiter = ',', value_parser = parse_part)]
    remove: Vec<NewsgroupsPart>,
    /// toxigen only, when its annotated test file is missing: hold out N rows of train as test.
    #[arg(long, value_name = "N")]
    test_holdout: Option<usize>,
}

fn parse_part(s: &str) -> Result<NewsgroupsPart, String> {
    s.parse().map_err(|e: ueb_data::DataError| e.to_string())
}

impl SourceArgs {
    fn load(&self) -> Result<Dataset> {
        let options = DatasetOptions {
            root: self.root.clone(),
            seed: self.seed,
            val_fraction: self.val_fraction,
            remove: self.remove.clone(),
            test_holdout: self.test_holdout,
            ..DatasetOptions::default()
        };
        let as_path = Path::new(&self.name);
        let is_yaml = as_path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
        if is_yaml {
            if !self.remove.is_empty() {
                anyhow::bail!("--remove applies to 20newsgroups only");
            }
            if self.test_holdout.is_some() {
                anyhow::bail!("--test-holdout applies to toxigen only");
            }
            let spec = GenericSpec::from_yaml_file(as_path)?;
            Ok(ueb_data::load_generic(&spec, &options)?)
        } else {
            Ok(ueb_data::load(&self.name, &options)?)
        }
    }
}

/// Runs `ueb data`.
pub(crate) fn run(args: &DataArgs) -> Result<()> {
    match &args.command {
        DataCommand::List { json } => list(*json),
        DataCommand::Stats { source, json } => {
            let dataset = source.load()?;
            let stats = ueb_data::stats(&dataset);
            if *json {
                emit(&format!("{}\n", serde_json::to_string_pretty(&stats)?))
            } else {
                emit(&render_stats(&stats))
            }
        }
        DataCommand::Export { source, out } => export(&source.load()?, out),
    }
}

fn list(json: bool) -> Result<()> {
    if json {
        let entries: Vec<serde_json::Value> = registry()
            .iter()
            .map(|d| {
                serde_json::json!({
                    "name": d.name,
                    "task": d.task,
                    "summary": d.summary,
                    "protocol": d.protocol,
                    "files": d.files,
                    "how_to_get": d.how_to_get,
                })
            })
            .collect();
        return emit(&format!("{}\n", serde_json::to_string_pretty(&entries)?));
    }
    let width = registry().iter().map(|d| d.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for d in registry() {
        let _ = writeln!(out, "{:width$}  {:15}  {}", d.name, d.task.as_str(), d.summary);
    }
    out.push_str("\n`ueb data stats NAME --root DIR` reads one; docs/datasets.md gives the files.\n");
    emit(&out)
}

/// Writes to stdout (a closed pipe ends the program quietly, see `stdio`).
fn emit(text: &str) -> Result<()> {
    Ok(crate::stdio::write_out(text)?)
}

fn render_stats(stats: &DatasetStats) -> String {
    // Writing to a String cannot fail, so the results of `writeln!` are ignored.
    let mut out = String::new();
    let _ = writeln!(out, "{} ({})", stats.name, stats.task.as_str());
    let rows: Vec<(&String, &SplitStats)> = stats.splits.0.iter().map(|(n, s)| (n, s)).collect();
    let name_w = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(5).max(5);
    let _ = writeln!(
        out,
        "  {:name_w$}  {:>7}  {:>5}  {:>5}  {:16}  labels",
        "split", "rows", "p50", "p95", "fingerprint"
    );
    for (name, split) in &rows {
        let labels: Vec<String> = split
            .labels
            .0
            .iter()
            .map(|(label, count)| format!("{label}={count}"))
            .collect();
        let _ = writeln!(
            out,
            "  {:name_w$}  {:>7}  {:>5}  {:>5}  {:16}  {}",
            name,
            split.rows,
            split.length.p50,
            split.length.p95,
            &split.fingerprint[..16.min(split.fingerprint.len())],
            labels.join(" ")
        );
    }
    for (name, split) in &rows {
        let _ = writeln!(out, "  {name}: {}", split.source);
        if let Some(oracle) = &split.oracle {
            let _ = writeln!(
                out,
                "  {name}: Bayes accuracy {:.4}, mean max posterior {:.4}",
                oracle.bayes_accuracy, oracle.mean_max_prob
            );
        }
    }
    for note in &stats.notes {
        let _ = writeln!(out, "  note: {note}");
    }
    out
}

fn export(dataset: &Dataset, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for split in dataset.splits() {
        let path = out.join(format!("{}.jsonl", split.name()));
        let mut writer = create(&path)?;
        ueb_data::write_jsonl(dataset, split, &mut writer, &path)?;
        writer.flush().with_context(|| format!("writing {}", path.display()))?;
        errln!("wrote {} ({} examples)", path.display(), split.len());
        if split.oracle().is_some() {
            let path = out.join(format!("{}.oracle.csv", split.name()));
            let mut writer = create(&path)?;
            ueb_data::write_oracle_csv(split, &mut writer, &path)?;
            writer.flush().with_context(|| format!("writing {}", path.display()))?;
            errln!("wrote {}", path.display());
        }
    }
    Ok(())
}

fn create(path: &Path) -> Result<BufWriter<File>> {
    Ok(BufWriter::new(
        File::create(path).with_context(|| format!("creating {}", path.display()))?,
    ))
}
