//! Running a plan in this process: the results directory prepared (`plan.yaml`, `env.json`),
//! then each cell's cache stage and head stages, in plan order; and what `--jobs` polls.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::{Result, bail};
use crate::plan::{Cell, Plan, Source};
use crate::stages::{CacheRef, cache_stage, clean_stale, head_stage};

/// What one process did: cells run, caches built, head fits run (the rest were up to date).
/// `--jobs` children report it to their parent as one JSON line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Work {
    /// Cells of the shard.
    pub cells: usize,
    /// Cache stages built (not up to date).
    pub built: usize,
    /// Head stages run (not up to date).
    pub fitted: usize,
}

impl std::ops::AddAssign for Work {
    fn add_assign(&mut self, w: Work) {
        self.cells += w.cells;
        self.built += w.built;
        self.fitted += w.fitted;
    }
}

/// The cache stages of `cells`, once each (the seeds of a multiple-choice cell share one).
pub fn cache_dirs(cells: &[&Cell]) -> BTreeSet<PathBuf> {
    cells
        .iter()
        .filter(|c| matches!(c.source, Source::Model { .. }))
        .map(|c| c.cache_rel_dir())
        .collect()
}

/// Stages of `cells` in all.
pub fn total_stages(plan: &Plan, cells: &[&Cell]) -> u64 {
    cache_dirs(cells).len() as u64 + (cells.len() * plan.heads.len()) as u64
}

/// Stages of `cells` that are finished on disk: cache stages (of model cells) and head stages.
/// `--jobs` polls this for its progress bar: the children write nothing else the parent could
/// read while they run, and a stage is finished exactly when its `stage.json` is in place.
pub fn finished_stages(plan: &Plan, cells: &[&Cell], out: &Path) -> u64 {
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

/// `i/n` of `--shard` (1-based).
///
/// # Errors
/// Anything but two numbers with 1 ≤ i ≤ n.
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let parsed = s
        .split_once('/')
        .and_then(|(i, n)| Some((i.parse::<usize>().ok()?, n.parse::<usize>().ok()?)));
    match parsed {
        Some((i, n)) if n >= 1 && (1..=n).contains(&i) => Ok((i, n)),
        _ => bail!("--shard {s}: expected i/n with 1 ≤ i ≤ n (e.g. 2/4)"),
    }
}

/// What built the binary, for `env.json` (the binary's build script knows it).
#[derive(Debug, Clone, Copy, Default)]
pub struct BuildInfo {
    /// The ueb version.
    pub version: &'static str,
    /// The commit, when built from a git checkout.
    pub git_sha: Option<&'static str>,
    /// Whether that checkout had uncommitted changes.
    pub git_dirty: Option<bool>,
    /// rustc's version.
    pub rustc: Option<&'static str>,
}

/// `env.json`: what produced the results.
pub fn env_json(plan: &Plan, build: &BuildInfo) -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("model name"))
            .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
    });
    serde_json::json!({
        "ueb": build.version,
        "git_sha": build.git_sha,
        "git_dirty": build.git_dirty,
        "rustc": build.rustc,
        "burn": "0.22.1",
        "device": plan.device,
        "cpu": cpu,
        "threads": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    })
}

/// A results directory prepared for a plan and held for it: while a `RunDir` lives, no process
/// can prepare the directory for another plan (decision R19).
#[derive(Debug)]
pub struct RunDir {
    /// Temporary files and directories of killed runs that were removed.
    pub removed: usize,
    // Holds a shared advisory lock on `.ueb.lock` until dropped.
    _lock: std::fs::File,
}

/// The lock file of a results directory.
const LOCK_FILE: &str = ".ueb.lock";

/// How long a process waits for another one that is preparing the same directory.
const PREPARE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Creates the results directory `out` for `plan` and holds it: removes what killed runs left,
/// writes `plan.yaml` (or checks that the one there is this plan) and `env.json`.
///
/// Processes that run the same plan (shards, `--jobs` children) share the directory; one with
/// another plan is refused, naming the process that holds it. Preparing is exclusive (an
/// advisory lock on `.ueb.lock`), so two plans can never both find the directory empty.
///
/// # Errors
/// I/O errors naming the path, or another plan already in `out`.
pub fn prepare(plan: &Plan, out: &Path, build: &BuildInfo) -> Result<RunDir> {
    use crate::error::Context;
    use std::fs::TryLockError;
    use std::io::{Read as _, Seek as _, Write as _};
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let lock_path = out.join(LOCK_FILE);
    let mut lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    let plan_yaml = serde_yaml_ng::to_string(plan)?;
    let plan_path = out.join("plan.yaml");
    let holder = |lock: &mut std::fs::File| {
        let mut pid = String::new();
        let _ = lock.rewind().and_then(|()| lock.read_to_string(&mut pid));
        match pid.trim() {
            "" => String::new(),
            p => format!("; process {p} is running it"),
        }
    };
    let check_plan = |lock: &mut std::fs::File| -> Result<bool> {
        match std::fs::read_to_string(&plan_path) {
            Ok(existing) if existing != plan_yaml => bail!(
                "{} holds another plan (a different experiment or settings){}; use another --out or remove it",
                plan_path.display(),
                holder(lock)
            ),
            Ok(_) => Ok(true),
            Err(_) => Ok(false),
        }
    };
    let started = std::time::Instant::now();
    loop {
        match lock.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", lock_path.display()));
            }
        }
        // Others hold it: running (shared) or preparing (exclusive).
        match lock.try_lock_shared() {
            Ok(()) => {
                if check_plan(&mut lock)? {
                    return Ok(RunDir {
                        removed: 0,
                        _lock: lock,
                    });
                }
                // Running processes without a plan.yaml: someone removed it; prepare anew.
                lock.unlock()
                    .with_context(|| format!("cannot unlock {}", lock_path.display()))?;
            }
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", lock_path.display()));
            }
        }
        if started.elapsed() > PREPARE_WAIT {
            bail!(
                "{}: waited {} s for another process to finish preparing it{}",
                out.display(),
                PREPARE_WAIT.as_secs(),
                holder(&mut lock)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Alone in the directory: what killed runs left can go, and the plan is written or checked.
    let removed = clean_stale(out)?;
    if !check_plan(&mut lock)? {
        crate::write_atomic(&plan_path, plan_yaml.as_bytes())?;
    }
    crate::write_atomic(
        &out.join("env.json"),
        serde_json::to_string_pretty(&env_json(plan, build))?.as_bytes(),
    )?;
    lock.set_len(0)
        .and_then(|()| lock.rewind())
        .and_then(|()| write!(lock, "{}", std::process::id()))
        .with_context(|| format!("cannot write {}", lock_path.display()))?;
    // Exclusive to shared: processes of the same plan may now join. One that prepares in the
    // gap finds this plan written and keeps it.
    lock.unlock()
        .with_context(|| format!("cannot unlock {}", lock_path.display()))?;
    lock.lock_shared()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    Ok(RunDir { removed, _lock: lock })
}

/// What a caller sees of [`run_cells`]: progress, and the cache stage to run (a caller with a
/// progress bar hides it while the stage draws its own).
pub trait Observer {
    /// A cell starts.
    fn cell(&mut self, _cell: &Cell) {}

    /// Runs a cell's cache stage.
    ///
    /// # Errors
    /// The stage's.
    fn cache_stage(&mut self, stage: &mut dyn FnMut() -> Result<(CacheRef, bool)>) -> Result<(CacheRef, bool)> {
        stage()
    }

    /// A head stage finished (fitted, or up to date).
    fn head_done(&mut self) {}
}

/// An observer that watches nothing.
impl Observer for () {}

/// Runs `cells` of `plan` into `out` on `device`: each cell's cache stage, then its head stages.
/// `progress`: the stages may draw progress bars of their own (on a terminal).
///
/// # Errors
/// The first stage that fails (finished stages stay on disk: a rerun resumes after them).
pub fn run_cells(
    plan: &Plan,
    cells: &[&Cell],
    out: &Path,
    device: &Device,
    progress: bool,
    observer: &mut dyn Observer,
) -> Result<Work> {
    let mut work = Work {
        cells: cells.len(),
        ..Work::default()
    };
    for cell in cells {
        observer.cell(cell);
        let (cache, new) = observer.cache_stage(&mut || cache_stage(cell, plan, out, device, progress))?;
        work.built += usize::from(new);
        for spec in &plan.heads {
            work.fitted += usize::from(head_stage(cell, spec, &cache, plan, out, device)?);
            observer.head_done();
        }
    }
    Ok(work)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::error::chain;
    use crate::plan::Overrides;

    fn plan(name: &str) -> Plan {
        let text = format!(
            "name: {name}\nbackbones:\n  - name: tiny\n    model: scratch\ndatasets:\n  - {{name: synthetic, synthetic: {{train: 60, val: 30, test: 30}}}}\nheads: [sr]\n"
        );
        Plan::from_str(&text, "test.yaml", &Overrides::default()).unwrap()
    }

    /// Two plans can never share a results directory, even when the second arrives while the
    /// first is running; processes of the same plan can.
    #[test]
    fn a_results_directory_holds_one_plan() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let (a, b) = (plan("a"), plan("b"));
        let held = prepare(&a, &out, &BuildInfo::default()).unwrap();
        let e = chain(&prepare(&b, &out, &BuildInfo::default()).unwrap_err());
        assert!(
            e.contains("holds another plan") && e.contains(&format!("process {} is running it", std::process::id())),
            "{e}"
        );
        let shard = prepare(&a, &out, &BuildInfo::default()).unwrap();
        drop((held, shard));
        let e = chain(&prepare(&b, &out, &BuildInfo::default()).unwrap_err());
        assert!(e.contains("holds another plan"), "{e}");
        assert_eq!(
            std::fs::read_to_string(out.join("plan.yaml")).unwrap(),
            serde_yaml_ng::to_string(&a).unwrap()
        );
    }
}
