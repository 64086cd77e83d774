//! `ueb run`: the command line of the experiment runner (`ueb-runner`): arguments, logging,
//! progress bars, `--jobs` processes and the printed summary (`docs/runner.md`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use ueb_runner::plan::Cell;
use ueb_runner::run::{BuildInfo, Observer, Work, cache_dirs, finished_stages, parse_shard, total_stages};
use ueb_runner::stages::CacheRef;
use ueb_runner::{Overrides, Plan, Precision};

use crate::device::{self, parse_precision};
use crate::stdio::{errln, out, outln};

/// The embedded default experiment.
pub(crate) const QUICKSTART: &str = include_str!("../../../experiments/quickstart.yaml");

/// Arguments of `ueb run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The experiment file (YAML); without one, the embedded quickstart
    /// (`experiments/quickstart.yaml`: synthetic task, an encoder trained from scratch, every
    /// head, 3 seeds; offline).
    #[arg(value_name = "EXPERIMENT.yaml")]
    experiment: Option<PathBuf>,
    /// Results directory (default `results/<name>`).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[arg(long, value_name = "D", help = format!("{} (overrides the file's `device`)", device::help("Backend")))]
    device: Option<String>,
    /// Floating-point type of the backbone passes: f32, bf16 or f16 (overrides the file's
    /// `precision`; GPU devices only: CPU devices compute in f32 and say so).
    #[arg(long, value_name = "P", value_parser = parse_precision)]
    precision: Option<Precision>,
    /// Where registry datasets are read from (overrides the file's `data_root`; default `data`).
    #[arg(long, value_name = "DIR")]
    data_root: Option<PathBuf>,
    /// Change the experiment before it is validated: a dotted KEY (list entries by name or
    /// `as:` label) and a YAML VALUE, e.g. `--set heads.alien.grid.lr=[1.0e-5,4.0e-4]`,
    /// `--set backbones.tiny.finetune.epochs=1`, `--set metrics.bootstrap=0`. Repeatable; in
    /// order; recorded in plan.yaml.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// The seeds, comma-separated (the same as `--set seeds=[…]`).
    #[arg(long, value_name = "S,S,…", value_delimiter = ',')]
    seeds: Option<Vec<u64>>,
    /// Run only shard i of n (1-based): every n-th cell from the i-th.
    #[arg(long, value_name = "i/n")]
    shard: Option<String>,
    /// Run the cells in N processes at once (each a sub-shard of this run's cells).
    #[arg(long, default_value_t = 1, value_name = "N")]
    jobs: usize,
    /// Log every stage (`-v`), or also library details (`-vv`).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Resolve the experiment (reading every dataset, checking every model directory), print
    /// the resolved plan and what would run, and stop: nothing is trained or written.
    #[arg(long)]
    dry_run: bool,
    /// Print one JSON object on stdout instead of the summary table: what ran, the summary as
    /// data (mean and std over seeds of every metric per backbone × dataset × head), and every
    /// file written; with `--dry-run`, the resolved plan and what would run.
    #[arg(long)]
    json: bool,
    /// Set by `--jobs` on its children: no progress bars (the parent draws one for all), no
    /// metrics, and a one-line JSON count of the work done on stdout.
    #[arg(long, hide = true)]
    child: bool,
}

/// What built this binary (its build script records it), for `env.json`.
fn build_info() -> BuildInfo {
    BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        git_sha: option_env!("UEB_GIT_SHA"),
        git_dirty: option_env!("UEB_GIT_DIRTY").map(|d| d == "true"),
        rustc: option_env!("UEB_RUSTC_VERSION"),
    }
}

fn progress_bar(len: u64, template: &str, visible: bool) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    if !visible {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}

/// `--jobs N`: shard i/n splits into the N shards i + n·k of n·N (k = 0..N), one child process
/// each (processes, not threads: burn's random generator is per process, so each cell stays
/// bit-identical to a sequential run); then the metrics, once all have finished.
fn run_jobs(
    args: &RunArgs,
    jobs: usize,
    plan: &Plan,
    out: &std::path::Path,
    (i, n): (usize, usize),
    t0: Instant,
) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the ueb executable")?;
    let total = n * jobs;
    let mut children = Vec::new();
    for k in 0..jobs {
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("run");
        if let Some(e) = &args.experiment {
            cmd.arg(e);
        }
        cmd.arg("--out").arg(out).arg("--device").arg(&plan.device);
        cmd.arg("--precision").arg(plan.precision.as_str());
        cmd.arg("--data-root").arg(&plan.data_root);
        // The children resolve the same plan: the same overrides, as applied.
        for set in &plan.overrides {
            cmd.arg("--set").arg(set);
        }
        cmd.arg("--shard").arg(format!("{}/{total}", i + n * k)).arg("--child");
        for _ in 0..args.verbose {
            cmd.arg("-v");
        }
        cmd.stdout(std::process::Stdio::piped());
        children.push(cmd.spawn().with_context(|| format!("cannot start {}", exe.display()))?);
    }
    let cells = plan.shard(i, n);
    let show = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = progress_bar(
        total_stages(plan, &cells),
        "{msg} [{bar:30}] {pos}/{len} stages, {elapsed_precise} ETA {eta_precise}",
        show,
    );
    bar.set_message(format!("{} jobs", jobs));
    let before = finished_stages(plan, &cells, out);
    bar.set_position(before);
    bar.reset_eta();
    let mut statuses = vec![None; children.len()];
    while statuses.iter().any(Option::is_none) {
        for (c, st) in children.iter_mut().zip(statuses.iter_mut()) {
            if st.is_none() {
                *st = c.try_wait().context("waiting for a job")?;
            }
        }
        if show {
            bar.set_position(finished_stages(plan, &cells, out));
        }
        if statuses.iter().any(Option::is_none) {
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }
    bar.finish_and_clear();
    let mut work = Work::default();
    let mut failed = 0;
    for (mut c, st) in children.into_iter().zip(statuses) {
        let mut text = String::new();
        if let Some(mut so) = c.stdout.take() {
            std::io::Read::read_to_string(&mut so, &mut text).context("reading a job's report")?;
        }
        let ok = st.is_some_and(|s| s.success());
        match text.lines().rev().find_map(|l| serde_json::from_str::<Work>(l).ok()) {
            Some(w) if ok => work += w,
            _ => failed += 1,
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} jobs failed (see their messages above); rerun to resume",
            jobs
        );
    }
    errln!("{}", work_line(plan, work, (i, n), Some(jobs), t0));
    finish(plan, out, args.json, work, (i, n), Some(jobs), t0)
}

/// A `--jobs` child ends when its parent does (killed, or gone): a thread watches the parent
/// process, whose id changes when it dies, since the child is then re-parented. Stages are
/// atomic, so what the child had half written is removed by the next run.
fn watch_parent() {
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(std::time::Duration::from_millis(500));
            if std::os::unix::process::parent_id() != parent {
                errln!("the parent `ueb run --jobs` is gone; this job stops");
                std::process::exit(1);
            }
        }
    });
}

/// The line that says what a run did and skipped.
fn work_line(plan: &Plan, w: Work, (i, n): (usize, usize), jobs: Option<usize>, t0: Instant) -> String {
    let heads = w.cells * plan.heads.len();
    format!(
        "{}: {} cell(s){}{}; {} cache(s) built, {} of {heads} head fit(s) run, the rest up to date ({:.1} s)",
        plan.name,
        w.cells,
        if n > 1 {
            format!(" of shard {i}/{n}")
        } else {
            String::new()
        },
        jobs.map(|j| format!(" in {j} jobs")).unwrap_or_default(),
        w.built,
        w.fitted,
        t0.elapsed().as_secs_f64()
    )
}

/// Writes `metrics.parquet` and the report when every cell of the plan is done, and prints the
/// summary: a table, or with `json` one object (what ran, the summary as data, the files).
fn finish(
    plan: &Plan,
    out: &std::path::Path,
    json: bool,
    work: Work,
    (i, n): (usize, usize),
    jobs: Option<usize>,
    t0: Instant,
) -> Result<()> {
    let rows = ueb_runner::results::collect_metrics(plan, out)?;
    let mut report = None;
    let mut report_error = None;
    if let Some(rows) = &rows {
        ueb_runner::results::write_metrics(rows, &out.join("metrics.parquet"))?;
        if !json {
            outln!("{}", ueb_runner::results::summary(plan, rows));
        }
        // The metrics are the run's result; a report that cannot be drawn (no font, say) is a
        // warning with the command to redo it, not a failed run.
        match ueb_report::write_report(out, ueb_report::Formats::default()) {
            Ok(r) => {
                errln!(
                    "report: {} and {} figures in {}",
                    out.join("index.html").display(),
                    r.figures.len(),
                    out.join("figures").display()
                );
                report = Some(r);
            }
            Err(e) => {
                errln!(
                    "warning: the report was not written ({e}); fix that and run `ueb report {}`",
                    out.display()
                );
                report_error = Some(e.to_string());
            }
        }
        errln!("results in {}", out.display());
    } else {
        errln!("metrics.parquet is written once every shard has finished");
    }
    if json {
        let exists = |name: &str| {
            let p = out.join(name);
            p.is_file().then_some(p)
        };
        let value = serde_json::json!({
            "experiment": plan.name,
            "out": out,
            "shard": format!("{i}/{n}"),
            "jobs": jobs.unwrap_or(1),
            "cells": work.cells,
            "caches_built": work.built,
            "head_fits_run": work.fitted,
            "head_fits": work.cells * plan.heads.len(),
            "seconds": t0.elapsed().as_secs_f64(),
            "complete": rows.is_some(),
            "summary": rows.as_ref().map(|r| ueb_runner::results::summary_json(plan, r)),
            "files": {
                "plan": exists("plan.yaml"),
                "env": exists("env.json"),
                "metrics": exists("metrics.parquet"),
                "index": report.as_ref().and_then(|_| exists("index.html")),
                "report": report.as_ref().map(|r| &r.written),
            },
            "report_error": report_error,
        });
        outln!("{}", serde_json::to_string_pretty(&value)?);
    }
    Ok(())
}

/// The progress bar of a sequential run, hidden while a cache stage draws its own.
struct Bar(indicatif::ProgressBar);

impl Observer for Bar {
    fn cell(&mut self, cell: &Cell) {
        self.0.set_message(format!("{}", cell.rel_dir().display()));
    }

    fn cache_stage(
        &mut self,
        stage: &mut dyn FnMut() -> ueb_runner::Result<(CacheRef, bool)>,
    ) -> ueb_runner::Result<(CacheRef, bool)> {
        self.0.suspend(stage)
    }

    fn head_done(&mut self) {
        self.0.inc(1);
    }
}

/// Runs `ueb run`.
pub(crate) fn run(args: &RunArgs) -> Result<()> {
    let level = match args.verbose {
        0 => "warn",
        1 => "ueb=info",
        _ => "info",
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into()))
        .with_writer(std::io::stderr)
        .try_init();
    let t0 = Instant::now();
    let mut sets = args.sets.clone();
    if let Some(seeds) = &args.seeds {
        let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
        sets.push(format!("seeds=[{}]", list.join(", ")));
    }
    let overrides = Overrides {
        device: args.device.clone(),
        precision: args.precision,
        data_root: args.data_root.clone(),
        backends: Some(device::available()),
        sets,
    };
    let plan = match &args.experiment {
        Some(path) => Plan::from_file(path, &overrides)?,
        None => Plan::from_str(QUICKSTART, "experiments/quickstart.yaml (embedded)", &overrides)?,
    };
    if !args.child {
        for note in &plan.notes {
            errln!("{note}");
        }
    }
    let (i, n) = match &args.shard {
        Some(s) => parse_shard(s)?,
        None => (1, 1),
    };
    if args.dry_run {
        let cells = plan.shard(i, n);
        let models = cells.iter().filter(|c| c.trains()).count();
        let choice = cache_dirs(&cells).len() - models;
        if args.json {
            let value = serde_json::json!({
                "experiment": plan.name,
                "plan": serde_json::to_value(&plan)?,
                "shard": format!("{i}/{n}"),
                "cells": cells.len(),
                "caches_to_fine_tune": models,
                "multiple_choice_caches": choice,
                "head_fits": cells.len() * plan.heads.len(),
            });
            outln!("{}", serde_json::to_string_pretty(&value)?);
            return Ok(());
        }
        out!("{}", serde_yaml_ng::to_string(&plan)?);
        let choice = if choice > 0 {
            format!(", {choice} multiple-choice cache(s) to score, each shared by its seeds")
        } else {
            String::new()
        };
        errln!(
            "{} cell(s) ({models} to fine-tune and export{choice}), {} head fit(s); nothing was run",
            cells.len(),
            cells.len() * plan.heads.len()
        );
        return Ok(());
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("results").join(&plan.name));
    // Every argument is checked before the results directory is touched.
    if args.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    // More processes than cells would run empty shards (and a huge --jobs would fill the
    // process table): one process per cell at most.
    let cells_here = plan.shard(i, n).len().max(1);
    let jobs = args.jobs.min(cells_here);
    if jobs < args.jobs {
        errln!("--jobs {}: {cells_here} cell(s) to run, so {jobs} job(s)", args.jobs);
    }
    // The parent of `--jobs` runs nothing itself; its children open the device.
    let device = if jobs > 1 {
        None
    } else {
        Some(device::open(&plan.device, plan.precision)?)
    };
    if args.child {
        watch_parent();
    }
    // Held until the run ends: another plan cannot take the directory meanwhile.
    let run_dir = ueb_runner::run::prepare(&plan, &out, &build_info())?;
    if run_dir.removed > 0 {
        tracing::info!("removed {} temporary file(s) of an interrupted run", run_dir.removed);
    }
    let Some(device) = device else {
        return run_jobs(args, jobs, &plan, &out, (i, n), t0);
    };
    let cells = plan.shard(i, n);
    let show = !args.child && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut bar = Bar(progress_bar(
        (cells.len() * plan.heads.len()) as u64,
        "{msg:30} [{bar:30}] {pos}/{len} head fits, {elapsed_precise} ETA {eta_precise}",
        show,
    ));
    let work = ueb_runner::run_cells(&plan, &cells, &out, &device, show, &mut bar)?;
    bar.0.finish_and_clear();
    if args.child {
        // The parent sums these and writes the metrics once every job has finished.
        outln!("{}", serde_json::to_string(&work)?);
        return Ok(());
    }
    errln!("{}", work_line(&plan, work, (i, n), None, t0));
    finish(&plan, &out, args.json, work, (i, n), None, t0)
}
