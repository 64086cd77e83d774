//! `ueb run` end to end: outputs and their agreement with ueb-metrics, resume after `kill -9`,
//! shards, determinism, and the experiment file's error messages.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{ueb, write_cache};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;

/// A scratch encoder on a small synthetic task, and a bring-your-own cache, two heads each.
fn experiment(dir: &Path, cache: Option<&Path>) -> PathBuf {
    let body = match cache {
        Some(c) => format!("caches: [{}]\n", c.display()),
        None => "backbones:\n  - name: tiny\n    model: scratch\n    scratch: {hidden_size: 16, layers: 1, heads: 2, intermediate_size: 32, max_positions: 40}\n    finetune: {epochs: 1, lr: 1.0e-3, batch_size: 32, max_length: 40}\ndatasets:\n  - name: synthetic\n    synthetic: {train: 160, val: 80, test: 120, num_classes: 3}\n".to_string(),
    };
    let text = format!(
        "name: t\nseeds: [0, 1]\n{body}heads:\n  - sr\n  - temperature\n  - alien: {{grid: {{lr: [1.0e-3], alpha: [0.1], beta: [0.01]}}, max_epochs: 2}}\nmetrics: {{bins: 10, bootstrap: 20}}\n"
    );
    let p = dir.join("exp.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

fn run(exp: &Path, out: &Path, extra: &[&str]) {
    ueb()
        .arg("run")
        .arg(exp)
        .arg("--out")
        .arg(out)
        .args(extra)
        .assert()
        .success();
}

fn rows(path: &Path) -> Vec<Vec<(String, Field)>> {
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    reader
        .get_row_iter(None)
        .unwrap()
        .map(|r| {
            r.unwrap()
                .get_column_iter()
                .map(|(n, f)| (n.clone(), f.clone()))
                .collect()
        })
        .collect()
}

fn get<'a>(row: &'a [(String, Field)], name: &str) -> &'a Field {
    &row.iter().find(|(n, _)| n == name).unwrap().1
}

fn stray_temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains(".tmp-") || name.contains(".old-") {
                out.push(e.path());
            } else if e.path().is_dir() {
                stack.push(e.path());
            }
        }
    }
    out
}

#[test]
fn cache_experiment_writes_metrics_equal_to_ueb_metrics_on_the_saved_scores() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("mycache");
    let fx = write_cache(&cache);
    let n_test = fx["splits"]["test"]["labels"].as_array().unwrap().len();
    let exp = experiment(tmp.path(), Some(&cache));
    let out = tmp.path().join("out");
    run(&exp, &out, &[]);
    for f in ["plan.yaml", "env.json", "metrics.parquet"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    // No backbone code ran: no caches/ directory.
    assert!(!out.join("caches").exists());
    let metrics = rows(&out.join("metrics.parquet"));
    for seed in [0u64, 1] {
        for head in ["sr", "temperature", "alien"] {
            let dir = out.join(format!("cells/cache/mycache/seed-{seed}/{head}"));
            let scores = rows(&dir.join("scores.parquet"));
            assert_eq!(scores.len(), n_test, "{head}: one row per test example");
            let u: Vec<f64> = scores
                .iter()
                .map(|r| match get(r, "score") {
                    Field::Double(v) => *v,
                    _ => panic!(),
                })
                .collect();
            let correct: Vec<bool> = scores
                .iter()
                .map(|r| match get(r, "correct") {
                    Field::Bool(v) => *v,
                    _ => panic!(),
                })
                .collect();
            let errors: Vec<bool> = correct.iter().map(|c| !c).collect();
            let auc = ueb_metrics::ErrorDetection::with_default_bins(&errors, &u)
                .unwrap()
                .roc_auc;
            let saved = metrics
                .iter()
                .find(|r| {
                    *get(r, "seed") == Field::Long(seed as i64)
                        && *get(r, "head") == Field::Str(head.into())
                        && *get(r, "metric") == Field::Str("roc_auc".into())
                })
                .unwrap();
            match (auc, get(saved, "value")) {
                (Ok(a), Field::Double(v)) => assert!((a - v).abs() < 1e-12, "{head}: {a} vs {v}"),
                (Err(_), Field::Null) => {}
                (a, v) => panic!("{head}: {a:?} vs {v:?}"),
            }
        }
    }
}

#[test]
fn model_experiment_resumes_after_kill_and_shards_add_up() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = experiment(tmp.path(), None);
    // Uninterrupted reference.
    let full = tmp.path().join("full");
    run(&exp, &full, &[]);
    let reference = std::fs::read(full.join("metrics.parquet")).unwrap();
    assert!(full.join("caches/tiny/synthetic/seed-1/train.safetensors").is_file());

    // Same seed, same bytes.
    let again = tmp.path().join("again");
    run(&exp, &again, &[]);
    assert_eq!(std::fs::read(again.join("metrics.parquet")).unwrap(), reference);

    // Killed mid-way (once the first cache exists), then resumed.
    let killed = tmp.path().join("killed");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("ueb"))
        .arg("run")
        .arg(&exp)
        .arg("--out")
        .arg(&killed)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !killed.join("caches/tiny/synthetic/seed-0/stage.json").exists() && t0.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!killed.join("metrics.parquet").exists(), "killed before the end");
    run(&exp, &killed, &[]);
    assert_eq!(std::fs::read(killed.join("metrics.parquet")).unwrap(), reference);
    assert!(stray_temp_files(&killed).is_empty(), "{:?}", stray_temp_files(&killed));

    // Shards 1/2 and 2/2 into one directory equal the unsharded run.
    let sharded = tmp.path().join("sharded");
    run(&exp, &sharded, &["--shard", "1/2"]);
    assert!(!sharded.join("metrics.parquet").exists(), "half the cells are missing");
    run(&exp, &sharded, &["--shard", "2/2"]);
    assert_eq!(std::fs::read(sharded.join("metrics.parquet")).unwrap(), reference);

    // --jobs 2: two processes, the same bytes.
    let jobs = tmp.path().join("jobs");
    run(&exp, &jobs, &["--jobs", "2"]);
    assert_eq!(std::fs::read(jobs.join("metrics.parquet")).unwrap(), reference);
}

#[test]
fn experiment_errors_name_the_key_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("c");
    write_cache(&cache);
    let case = |yaml: &str| -> String {
        let p = tmp.path().join("bad.yaml");
        std::fs::write(&p, yaml).unwrap();
        let out = ueb()
            .arg("run")
            .arg(&p)
            .arg("--out")
            .arg(tmp.path().join("o"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{yaml}");
        String::from_utf8(out.stderr).unwrap()
    };
    let c = cache.display();
    let e = case(&format!("name: x\ncaches: [{c}]\nheads: [sr]\nmetrix: {{bins: 3}}\n"));
    assert!(e.contains("unknown field `metrix`") && e.contains("line 4"), "{e}");
    let e = case(&format!("name: x\nseeds: zero\ncaches: [{c}]\nheads: [sr]\n"));
    assert!(e.contains("seeds") && e.contains("line 2"), "{e}");
    let e = case("name: x\ncaches: [/no/such/cache]\nheads: [sr]\n");
    assert!(e.contains("/no/such/cache") && e.contains("not a feature cache"), "{e}");
    let e = case(&format!("name: x\ncaches: [{c}]\nheads: [sr, nonsense]\n"));
    assert!(e.contains("nonsense") && e.contains("line 3"), "{e}");
    let e = case("name: x\nbackbones: [{name: b, model: /no/such/model}]\ndatasets: [sst2]\nheads: [sr]\n");
    assert!(e.contains("/no/such/model"), "{e}");
    let e = case(&format!(
        "name: x\ncaches: [{c}]\nheads: [{{mahalanobis: {{featurs: dense}}}}]\n"
    ));
    assert!(e.contains("featurs"), "{e}");
}
