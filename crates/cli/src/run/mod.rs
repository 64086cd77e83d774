//! `ueb run`: an experiment file → feature caches → head scores → metrics, resumable and
//! shardable (`docs/runner.md`).

pub mod parquet;
pub mod plan;
pub mod stages;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;

use self::parquet::{Column, to_bytes};
use self::plan::Plan;
use self::stages::{cache_stage, clean_stale, head_stage, read_head};
use crate::device;

/// The embedded default experiment.
pub const QUICKSTART: &str = include_str!("../../../../experiments/quickstart.yaml");

/// Arguments of `ueb run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The experiment file (YAML); without one, the embedded quickstart
    /// (`experiments/quickstart.yaml`: synthetic task, an encoder trained from scratch, every
    /// head, 3 seeds; offline).
    #[arg(value_name = "EXPERIMENT.yaml")]
    experiment: Option<PathBuf>,
    /// Results directory (default `results/<name>`).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Backend: flex, ndarray, wgpu, cuda[:N] (overrides the file's `device`).
    #[arg(long, value_name = "D")]
    device: Option<String>,
    /// Where registry datasets are read from (overrides the file's `data_root`; default `data`).
    #[arg(long, value_name = "DIR")]
    data_root: Option<PathBuf>,
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
    /// Set by `--jobs` on its children: no progress bars (the parent draws one for all), no
    /// metrics, and a one-line JSON count of the work done on stdout.
    #[arg(long, hide = true)]
    child: bool,
}

/// What one process did, reported by `--jobs` children to their parent.
#[derive(Debug, Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Work {
    cells: usize,
    built: usize,
    fitted: usize,
}

/// Stages of `cells` that are finished on disk: cache stages (of model cells) and head stages.
/// `--jobs` polls this for its progress bar: the children write nothing else the parent could
/// read while they run, and a stage is finished exactly when its `stage.json` is in place.
fn finished_stages(plan: &Plan, cells: &[&plan::Cell], out: &Path) -> u64 {
    let mut done = 0;
    for dir in cache_dirs(cells) {
        if out.join("caches").join(dir).join("stage.json").is_file() {
            done += 1;
        }
    }
    for cell in cells {
        for spec in &plan.heads {
            let dir = out.join("cells").join(cell.rel_dir()).join(&spec.label);
            if dir.join("stage.json").is_file() {
                done += 1;
            }
        }
    }
    done
}

/// The cache stages of `cells`, once each (the seeds of a multiple-choice cell share one).
fn cache_dirs(cells: &[&plan::Cell]) -> std::collections::BTreeSet<PathBuf> {
    cells
        .iter()
        .filter(|c| matches!(c.source, plan::Source::Model { .. }))
        .map(|c| c.cache_rel_dir())
        .collect()
}

/// Stages of `cells` in all.
fn total_stages(plan: &Plan, cells: &[&plan::Cell]) -> u64 {
    cache_dirs(cells).len() as u64 + (cells.len() * plan.heads.len()) as u64
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

fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let parsed = s
        .split_once('/')
        .and_then(|(i, n)| Some((i.parse::<usize>().ok()?, n.parse::<usize>().ok()?)));
    match parsed {
        Some((i, n)) if n >= 1 && (1..=n).contains(&i) => Ok((i, n)),
        _ => bail!("--shard {s}: expected i/n with 1 ≤ i ≤ n (e.g. 2/4)"),
    }
}

/// `env.json`: what produced the results.
fn env_json(plan: &Plan) -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("model name"))
            .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
    });
    serde_json::json!({
        "ueb": env!("CARGO_PKG_VERSION"),
        "git_sha": option_env!("UEB_GIT_SHA"),
        "git_dirty": option_env!("UEB_GIT_DIRTY").map(|d| d == "true"),
        "rustc": option_env!("UEB_RUSTC_VERSION"),
        "burn": "0.22.1",
        "device": plan.device,
        "cpu": cpu,
        "threads": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    })
}

/// Writes `bytes` to `path` atomically.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// One row of `metrics.parquet`.
struct MetricRow {
    backbone: String,
    dataset: String,
    seed: u64,
    head: String,
    metric: String,
    value: Option<f64>,
    ci_low: Option<f64>,
    ci_high: Option<f64>,
}

/// Metrics of every (cell, head), or `None` when some cell of the plan is not finished yet.
fn collect_metrics(plan: &Plan, out: &Path) -> Result<Option<Vec<MetricRow>>> {
    let mut rows = Vec::new();
    for cell in &plan.cells {
        for spec in &plan.heads {
            let dir = out.join("cells").join(cell.rel_dir()).join(&spec.label);
            if !dir.join(stages::SCORES_FILE).is_file() {
                return Ok(None);
            }
            let h = read_head(&dir)?;
            let data = ueb_report::HeadData {
                labels: h.labels,
                probs: h.probs,
                num_classes: h.num_classes,
                score: h.score,
            };
            let settings = ueb_report::MetricSettings {
                bins: plan.metrics.bins,
                bootstrap: plan.metrics.bootstrap,
            };
            // One definition of a head stage's metrics, shared with `ueb report` (which
            // recomputes them for shards whose metrics.parquet is missing or stale).
            let values =
                ueb_report::head_metrics(&data, settings, cell.seed).with_context(|| format!("{}", dir.display()))?;
            for v in values {
                rows.push(MetricRow {
                    backbone: cell.backbone.clone(),
                    dataset: cell.dataset.clone(),
                    seed: cell.seed,
                    head: spec.label.clone(),
                    metric: v.metric,
                    value: v.value,
                    ci_low: v.ci_low,
                    ci_high: v.ci_high,
                });
            }
        }
    }
    Ok(Some(rows))
}

fn write_metrics(rows: &[MetricRow], path: &Path) -> Result<()> {
    let col = |f: fn(&MetricRow) -> String| rows.iter().map(f).collect::<Vec<String>>();
    let (b, d, h, m) = (
        col(|r| r.backbone.clone()),
        col(|r| r.dataset.clone()),
        col(|r| r.head.clone()),
        col(|r| r.metric.clone()),
    );
    let seed: Vec<i64> = rows.iter().map(|r| r.seed as i64).collect();
    let value: Vec<Option<f64>> = rows.iter().map(|r| r.value).collect();
    let lo: Vec<Option<f64>> = rows.iter().map(|r| r.ci_low).collect();
    let hi: Vec<Option<f64>> = rows.iter().map(|r| r.ci_high).collect();
    let bytes = to_bytes(&[
        Column::Str("backbone", &b),
        Column::Str("dataset", &d),
        Column::I64("seed", &seed),
        Column::Str("head", &h),
        Column::Str("metric", &m),
        Column::OptF64("value", &value),
        Column::OptF64("ci_low", &lo),
        Column::OptF64("ci_high", &hi),
    ])?;
    write_atomic(path, &bytes)
}

/// Mean ± std (sample) of the values, or `–` when none is defined.
fn mean_std(v: &[f64]) -> String {
    if v.is_empty() {
        return "–".into();
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() == 1 {
        return format!("{mean:.2}");
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    format!("{mean:.2} ± {:.2}", var.sqrt())
}

/// The end-of-run table: ROC-AUC × 100 and ECE × 100 per head and backbone × dataset.
fn summary(plan: &Plan, rows: &[MetricRow]) -> String {
    let mut groups: Vec<(String, String)> = Vec::new();
    for c in &plan.cells {
        let g = (c.backbone.clone(), c.dataset.clone());
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let mut s = String::from("| head |");
    for (b, d) in &groups {
        s.push_str(&format!(" {b} / {d}: ROC-AUC×100 | ECE×100 |"));
    }
    s.push_str("\n|---|");
    s.push_str(&"---|---|".repeat(groups.len()));
    for spec in &plan.heads {
        s.push_str(&format!("\n| {} |", spec.label));
        for (b, d) in &groups {
            for metric in ["roc_auc", "ece"] {
                let v: Vec<f64> = rows
                    .iter()
                    .filter(|r| &r.backbone == b && &r.dataset == d && r.head == spec.label && r.metric == metric)
                    .filter_map(|r| r.value.map(|x| 100.0 * x))
                    .collect();
                s.push_str(&format!(" {} |", mean_std(&v)));
            }
        }
    }
    s
}

/// `--jobs N`: shard i/n splits into the N shards i + n·k of n·N (k = 0..N), one child process
/// each (processes, not threads: burn's random generator is per process, so each cell stays
/// bit-identical to a sequential run); then the metrics, once all have finished.
fn run_jobs(args: &RunArgs, plan: &Plan, out: &Path, (i, n): (usize, usize), t0: Instant) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the ueb executable")?;
    let total = n * args.jobs;
    let mut children = Vec::new();
    for k in 0..args.jobs {
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("run");
        if let Some(e) = &args.experiment {
            cmd.arg(e);
        }
        cmd.arg("--out").arg(out).arg("--device").arg(&plan.device);
        cmd.arg("--data-root").arg(&plan.data_root);
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
    bar.set_message(format!("{} jobs", args.jobs));
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
            Some(w) if ok => {
                work.cells += w.cells;
                work.built += w.built;
                work.fitted += w.fitted;
            }
            _ => failed += 1,
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} jobs failed (see their messages above); rerun to resume",
            args.jobs
        );
    }
    eprintln!("{}", work_line(plan, work, (i, n), Some(args.jobs), t0));
    finish(plan, out)
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

/// Writes `metrics.parquet` and prints the summary when every cell of the plan is done.
fn finish(plan: &Plan, out: &Path) -> Result<()> {
    match collect_metrics(plan, out)? {
        Some(rows) => {
            write_metrics(&rows, &out.join("metrics.parquet"))?;
            println!("{}", summary(plan, &rows));
            // The metrics are the run's result; a report that cannot be drawn (no font, say)
            // is a warning with the command to redo it, not a failed run.
            match ueb_report::write_report(out, ueb_report::Formats::default()) {
                Ok(r) => eprintln!(
                    "report: {} and {} figures in {}",
                    out.join("index.html").display(),
                    r.figures.len(),
                    out.join("figures").display()
                ),
                Err(e) => eprintln!(
                    "warning: the report was not written ({e}); fix that and run `ueb report {}`",
                    out.display()
                ),
            }
            eprintln!("results in {}", out.display());
        }
        None => eprintln!("metrics.parquet is written once every shard has finished"),
    }
    Ok(())
}

/// Runs `ueb run`.
pub fn run(args: &RunArgs) -> Result<()> {
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
    let overrides = plan::Overrides {
        device: args.device.clone(),
        data_root: args.data_root.clone(),
    };
    let plan = match &args.experiment {
        Some(path) => Plan::from_file(path, &overrides)?,
        None => Plan::from_str(QUICKSTART, "experiments/quickstart.yaml (embedded)", &overrides)?,
    };
    let (i, n) = match &args.shard {
        Some(s) => parse_shard(s)?,
        None => (1, 1),
    };
    if args.dry_run {
        print!("{}", serde_yaml_ng::to_string(&plan)?);
        let cells = plan.shard(i, n);
        let models = cells
            .iter()
            .filter(|c| matches!(c.source, plan::Source::Model { .. }) && !c.is_multiple_choice())
            .count();
        let mc = cache_dirs(&cells).len() - models;
        let mc = if mc > 0 {
            format!(", {mc} multiple-choice cache(s) to score, each shared by its seeds")
        } else {
            String::new()
        };
        eprintln!(
            "{} cell(s) ({models} to fine-tune and export{mc}), {} head fit(s); nothing was run",
            cells.len(),
            cells.len() * plan.heads.len()
        );
        return Ok(());
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("results").join(&plan.name));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let stale = clean_stale(&out)?;
    if stale > 0 {
        tracing::info!("removed {stale} temporary file(s) of an interrupted run");
    }
    let plan_yaml = serde_yaml_ng::to_string(&plan)?;
    let plan_path = out.join("plan.yaml");
    match std::fs::read_to_string(&plan_path) {
        Ok(existing) if existing != plan_yaml => bail!(
            "{} holds another plan (a different experiment or settings); use another --out or remove it",
            plan_path.display()
        ),
        Ok(_) => {}
        Err(_) => write_atomic(&plan_path, plan_yaml.as_bytes())?,
    }
    write_atomic(
        &out.join("env.json"),
        serde_json::to_string_pretty(&env_json(&plan))?.as_bytes(),
    )?;
    if args.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    if args.jobs > 1 {
        return run_jobs(args, &plan, &out, (i, n), t0);
    }
    let device = device::parse(&plan.device)?;
    let cells = plan.shard(i, n);
    let show = !args.child && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = progress_bar(
        (cells.len() * plan.heads.len()) as u64,
        "{msg:30} [{bar:30}] {pos}/{len} head fits, {elapsed_precise} ETA {eta_precise}",
        show,
    );
    let mut work = Work {
        cells: cells.len(),
        ..Work::default()
    };
    for cell in &cells {
        bar.set_message(format!("{}", cell.rel_dir().display()));
        let (cache, new) = bar.suspend(|| cache_stage(cell, &plan, &out, &device, show))?;
        work.built += usize::from(new);
        for spec in &plan.heads {
            work.fitted += usize::from(head_stage(cell, spec, &cache, &plan, &out, &device)?);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    if args.child {
        // The parent sums these and writes the metrics once every job has finished.
        println!("{}", serde_json::to_string(&work)?);
        return Ok(());
    }
    eprintln!("{}", work_line(&plan, work, (i, n), None, t0));
    finish(&plan, &out)
}
