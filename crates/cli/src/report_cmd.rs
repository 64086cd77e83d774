//! `ueb report`: tables, figures and `index.html` of a results directory (`docs/report.md`).

use std::path::PathBuf;

use crate::stdio::{errln, outln};
use anyhow::Result;
use clap::Args;
use ueb_report::{Formats, ReportOptions, TableOptions, write_report_with};

/// Arguments of `ueb report`.
#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// The results directory of `ueb run` (every shard's cells are merged).
    #[arg(value_name = "RESULTS_DIR")]
    dir: PathBuf,
    /// Table formats, comma-separated: md, tex, csv, html (html = index.html).
    #[arg(long, default_value = "md,tex,csv,html", value_name = "LIST")]
    formats: String,
    /// Also show the bootstrap intervals (mean over seeds of the per-seed 95% intervals) in the cells.
    #[arg(long)]
    ci: bool,
    /// Skip the figures (tables only).
    #[arg(long)]
    no_figures: bool,
    /// Print one JSON object instead of the text: head stages found, where their metrics came
    /// from, the stages still missing, and every file written.
    #[arg(long)]
    json: bool,
}

/// Runs `ueb report`.
pub(crate) fn run(args: &ReportArgs) -> Result<()> {
    let options = ReportOptions {
        formats: Formats::parse(&args.formats)?,
        tables: TableOptions { ci: args.ci },
        figures: !args.no_figures,
    };
    let summary = write_report_with(&args.dir, &options)?;
    if args.json {
        let value = serde_json::json!({
            "dir": args.dir,
            "head_stages": summary.head_stages,
            "from_metrics_file": summary.from_metrics_file,
            "computed": summary.computed,
            "missing": summary.missing,
            "written": summary.written,
            "index": options.formats.html.then(|| args.dir.join("index.html")),
        });
        outln!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let tables = summary
        .written
        .iter()
        .filter(|p| p.parent().and_then(|d| d.file_name()).is_some_and(|n| n == "tables"))
        .count();
    errln!(
        "{} head stages: metrics of {} from metrics.parquet, {} computed from scores",
        summary.head_stages,
        summary.from_metrics_file,
        summary.computed
    );
    if !summary.missing.is_empty() {
        errln!(
            "{} head stages of the plan are missing (not finished yet?):",
            summary.missing.len()
        );
        for m in summary.missing.iter().take(20) {
            errln!("  {m}");
        }
        if summary.missing.len() > 20 {
            errln!("  … and {} more", summary.missing.len() - 20);
        }
    }
    errln!(
        "wrote {tables} table files to {}, {} figures (PNG + SVG) to {}",
        args.dir.join("tables").display(),
        summary.figures.len(),
        args.dir.join("figures").display()
    );
    if options.formats.html {
        outln!("{}", args.dir.join("index.html").display());
    }
    Ok(())
}
