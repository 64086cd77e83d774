//! `ueb run` end to end: outputs and their agreement with ueb-metrics, resume after `kill -9`,
//! shards, determinism, and the experiment file's error messages.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{choice_cases, fixture_model, ueb, write_cache, write_mmlu};
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

/// Writes a small two-class CSV dataset (`review`, `stars`) whose words give the label away.
fn write_reviews(dir: &Path, tweak: Option<&str>) {
    let mut rng = 7u64;
    let mut next = || {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (rng >> 33) as usize
    };
    let good = ["good", "great", "fine", "lovely", "superb"];
    let bad = ["bad", "awful", "poor", "dull", "weak"];
    let fill = ["the", "film", "was", "plot", "and", "actors"];
    for (file, n) in [("train.csv", 120), ("test.csv", 60)] {
        let mut text = String::from("id,review,stars\n");
        for k in 0..n {
            let y = next() % 2;
            let words = if y == 1 { &good } else { &bad };
            let mut review = String::new();
            for j in 0..6 {
                let w = if j % 2 == 0 {
                    words[next() % 5]
                } else {
                    fill[next() % 6]
                };
                review.push_str(w);
                review.push(' ');
            }
            if k == 0 && file == "train.csv" {
                review.push_str(tweak.unwrap_or(""));
            }
            let id = format!("{}{k}", &file[..2]);
            text.push_str(&format!(
                "{id},\"{}\",{}\n",
                review.trim_end(),
                if y == 1 { "pos" } else { "neg" }
            ));
        }
        std::fs::write(dir.join(file), text).unwrap();
    }
}

fn generic_experiment(dir: &Path, generic: &str) -> PathBuf {
    let text = format!(
        "name: g\nseeds: [3]\nbackbones:\n  - name: tiny\n    model: scratch\n    scratch: {{hidden_size: 16, layers: 1, heads: 2, intermediate_size: 32, max_positions: 16}}\n    finetune: {{epochs: 1, lr: 1.0e-3, batch_size: 16, max_length: 16}}\ndatasets:\n  - name: reviews\n    root: {root}\n    generic: {generic}\nheads: [sr, entropy]\nmetrics: {{bins: 10, bootstrap: 0}}\n",
        root = dir.display()
    );
    let p = dir.join("generic.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

fn run_stderr(exp: &Path, out: &Path, extra: &[&str]) -> String {
    let o = ueb()
        .arg("run")
        .arg(exp)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    let e = String::from_utf8(o.stderr).unwrap();
    assert!(o.status.success(), "{e}");
    e
}

#[test]
fn generic_file_datasets_run_and_their_content_keys_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    write_reviews(tmp.path(), None);
    let inline = generic_experiment(
        tmp.path(),
        "{text: review, label: stars, id: id, splits: {train: train.csv, test: test.csv}}",
    );
    let out = tmp.path().join("out");
    let e = run_stderr(&inline, &out, &[]);
    assert!(e.contains("1 cache(s) built, 2 of 2 head fit(s) run"), "{e}");
    let cache = ueb_cache::FeatureCache::load(&out.join("caches/tiny/reviews/seed-3"))
        .unwrap()
        .0;
    // 120 train rows, 20% held out as val; the labels are the sorted distinct values.
    assert_eq!(cache.split(ueb_cache::Split::Train).n(), 96);
    assert_eq!(cache.split(ueb_cache::Split::Val).n(), 24);
    assert_eq!(cache.split(ueb_cache::Split::Test).n(), 60);
    assert_eq!(cache.meta.label_names, ["neg", "pos"]);
    assert!(out.join("metrics.parquet").is_file());
    let plan = std::fs::read_to_string(out.join("plan.yaml")).unwrap();
    assert!(plan.contains("review") && plan.contains("train.csv"), "{plan}");

    // Nothing changed: everything is skipped.
    let e = run_stderr(&inline, &out, &[]);
    assert!(e.contains("0 cache(s) built, 0 of 2 head fit(s) run"), "{e}");
    // One text changed (same ids and labels): the cache and its heads are redone.
    write_reviews(tmp.path(), Some("twist"));
    let e = run_stderr(&inline, &out, &[]);
    assert!(e.contains("1 cache(s) built, 2 of 2 head fit(s) run"), "{e}");

    // The same mapping from a file gives the same plan, so the same results directory resumes.
    std::fs::write(
        tmp.path().join("reviews.yaml"),
        "text: review\nlabel: stars\nid: id\nsplits: {train: train.csv, test: test.csv}\n",
    )
    .unwrap();
    let from_file = generic_experiment(tmp.path(), &tmp.path().join("reviews.yaml").display().to_string());
    let e = run_stderr(&from_file, &out, &[]);
    assert!(e.contains("0 cache(s) built, 0 of 2 head fit(s) run"), "{e}");
}

#[test]
fn dataset_errors_are_reported_before_any_training() {
    let tmp = tempfile::tempdir().unwrap();
    write_reviews(tmp.path(), None);
    let case = |generic: &str| -> String {
        let exp = generic_experiment(tmp.path(), generic);
        let out = ueb()
            .arg("run")
            .arg(&exp)
            .arg("--out")
            .arg(tmp.path().join("o"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{generic}");
        assert!(!tmp.path().join("o/caches").exists(), "nothing is trained");
        String::from_utf8(out.stderr).unwrap()
    };
    // A missing file: where ueb looked.
    let e = case("{text: review, label: stars, splits: {train: train.csv, test: nope.csv}}");
    assert!(e.contains("nope.csv") && e.contains("reviews"), "{e}");
    // A column that is not there: the file and the column.
    let e = case("{text: body, label: stars, splits: {train: train.csv, test: test.csv}}");
    assert!(e.contains("body") && e.contains("train.csv"), "{e}");
    // A misspelt key inside the mapping: its line in the experiment file.
    let e = case("{text: review, labl: stars, splits: {train: train.csv, test: test.csv}}");
    assert!(e.contains("labl") && e.contains("line 11"), "{e}");
    // A mapping file that does not exist.
    let e = case("no/such/mapping.yaml");
    assert!(e.contains("no/such/mapping.yaml"), "{e}");
    // A registry dataset whose files are not under the data root.
    let exp = tmp.path().join("sst2.yaml");
    std::fs::write(
        &exp,
        "name: s\ndata_root: /no/such/root\nbackbones: [{name: b, model: scratch}]\ndatasets: [sst2]\nheads: [sr]\n",
    )
    .unwrap();
    let out = ueb()
        .arg("run")
        .arg(&exp)
        .arg("--out")
        .arg(tmp.path().join("o"))
        .output()
        .unwrap();
    let e = String::from_utf8(out.stderr).unwrap();
    assert!(
        !out.status.success() && e.contains("/no/such/root") && e.contains("SST-2"),
        "{e}"
    );
}

#[test]
fn jobs_report_what_they_ran_and_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("c");
    write_cache(&cache);
    let exp = experiment(tmp.path(), Some(&cache));
    let out = tmp.path().join("out");
    let e = run_stderr(&exp, &out, &["--jobs", "2"]);
    assert!(
        e.contains("2 cell(s) in 2 jobs; 0 cache(s) built, 6 of 6 head fit(s) run"),
        "{e}"
    );
    assert!(out.join("metrics.parquet").is_file());
    let e = run_stderr(&exp, &out, &["--jobs", "2"]);
    assert!(e.contains("0 of 6 head fit(s) run"), "{e}");
    // Overrides reach the jobs (they resolve the parent's plan), and plan.yaml records them.
    let set = tmp.path().join("set");
    let e = run_stderr(
        &exp,
        &set,
        &["--jobs", "2", "--set", "metrics.bootstrap=0", "--seeds", "1,0"],
    );
    assert!(e.contains("2 cell(s) in 2 jobs"), "{e}");
    let plan = std::fs::read_to_string(set.join("plan.yaml")).unwrap();
    assert!(
        plan.contains("overrides:") && plan.contains("metrics.bootstrap=0") && plan.contains("seeds=[1, 0]"),
        "{plan}"
    );
    assert!(set.join("metrics.parquet").is_file());
    // `ueb report --json`: one object a script can read.
    let o = ueb()
        .arg("report")
        .arg(&set)
        .args(["--json", "--no-figures", "--formats", "md"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["head_stages"], 6, "{v}");
    assert_eq!(v["from_metrics_file"], 6, "{v}");
    assert_eq!(v["missing"].as_array().map(Vec::len), Some(0), "{v}");
    let written: Vec<&str> = v["written"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(written.iter().any(|p| p.ends_with("tables/roc_auc.md")), "{v}");
    assert!(v["index"].is_null(), "{v}");
}

/// A tiny checkpoint of ueb-backbones' parity fixtures.
fn reviews_experiment(dir: &Path, backbone: &str, heads: &str) -> PathBuf {
    let text = format!(
        "name: f\nseeds: [0, 1]\nbackbones:\n{backbone}\ndatasets:\n  - name: reviews\n    root: {root}\n    generic: {{text: review, label: stars, id: id, splits: {{train: train.csv, test: test.csv}}}}\nheads: {heads}\nmetrics: {{bins: 10, bootstrap: 0}}\n",
        root = dir.display()
    );
    let p = dir.join("exp.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

fn split_features(cache: &ueb_cache::FeatureCache, split: ueb_cache::Split) -> Vec<f32> {
    cache.split(split).features.to_vec()
}

#[test]
fn frozen_backbones_compute_features_once_and_heads_run_under_labels() {
    let tmp = tempfile::tempdir().unwrap();
    write_reviews(tmp.path(), None);
    let backbone = format!(
        "  - name: bert\n    model: {}\n    finetune: {{mode: frozen, epochs: 2, lr: 1.0e-2, batch_size: 16, max_length: 16}}",
        fixture_model("bert").display()
    );
    let heads = "[sr, {alien: {grid: {lr: [1.0e-3], alpha: [0.1], beta: [0.01]}, max_epochs: 2}}, \
                 {alien: {grid: {lr: [1.0e-3], alpha: [0.0], beta: [0.0]}, max_epochs: 2}, as: alien-bce-only}]";
    let exp = reviews_experiment(tmp.path(), &backbone, heads);
    let out = tmp.path().join("out");
    let e = run_stderr(&exp, &out, &["-v"]);
    assert!(e.contains("2 cache(s) built, 6 of 6 head fit(s) run"), "{e}");
    assert_eq!(e.matches("features bert/reviews: computed").count(), 1, "{e}");
    assert_eq!(e.matches("features bert/reviews: up to date").count(), 1, "{e}");

    // One feature stage for both seeds; both caches hold exactly its features.
    let fdir = out.join("features/bert/reviews");
    assert!(fdir.join("stage.json").is_file());
    let load = |seed: u64| {
        ueb_cache::FeatureCache::load(&out.join(format!("caches/bert/reviews/seed-{seed}")))
            .unwrap()
            .0
    };
    let (c0, c1) = (load(0), load(1));
    for split in [ueb_cache::Split::Train, ueb_cache::Split::Val, ueb_cache::Split::Test] {
        assert_eq!(split_features(&c0, split), split_features(&c1, split));
    }
    // The heads differ per seed (new head, own shuffling), so the logits do.
    assert_ne!(
        c0.split(ueb_cache::Split::Test).logits,
        c1.split(ueb_cache::Split::Test).logits
    );
    // The features are the backbone's on the texts, in row order: `ueb extract` on the test
    // texts gives the same rows (within the batch-composition noise of a model pass).
    let texts = tmp.path().join("test.jsonl");
    let test_csv = std::fs::read_to_string(tmp.path().join("test.csv")).unwrap();
    let mut jsonl = String::new();
    let mut rdr = csv::Reader::from_reader(test_csv.as_bytes());
    for rec in rdr.records() {
        let rec = rec.unwrap();
        jsonl.push_str(&serde_json::json!({"text": &rec[1]}).to_string());
        jsonl.push('\n');
    }
    std::fs::write(&texts, jsonl).unwrap();
    let extracted = tmp.path().join("x.safetensors");
    ueb()
        .args(["extract", "--model"])
        .arg(fixture_model("bert"))
        .arg("--input")
        .arg(&texts)
        .args(["--max-length", "16", "--out"])
        .arg(&extracted)
        .assert()
        .success();
    let bytes = std::fs::read(&extracted).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let x: Vec<f32> = st
        .tensor("features")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let ours = split_features(&c0, ueb_cache::Split::Test);
    assert_eq!(x.len(), ours.len());
    let worst = x.iter().zip(&ours).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "largest difference {worst}");

    // The labelled head is filed and reported under its label.
    assert!(
        out.join("cells/bert/reviews/seed-0/alien-bce-only/scores.parquet")
            .is_file()
    );
    let heads_in_metrics: std::collections::BTreeSet<String> = rows(&out.join("metrics.parquet"))
        .iter()
        .map(|r| match get(r, "head") {
            Field::Str(s) => s.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        heads_in_metrics.into_iter().collect::<Vec<_>>(),
        ["alien", "alien-bce-only", "sr"]
    );
    let table = std::fs::read_to_string(out.join("tables/roc_auc.md")).unwrap();
    assert!(table.contains("alien-bce-only"), "{table}");

    // A rerun changes nothing.
    let e = run_stderr(&exp, &out, &[]);
    assert!(e.contains("0 cache(s) built, 0 of 6 head fit(s) run"), "{e}");
}

#[test]
fn head_labels_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("c");
    write_cache(&cache);
    let case = |heads: &str| -> String {
        let p = tmp.path().join("h.yaml");
        std::fs::write(&p, format!("name: h\ncaches: [{}]\nheads: {heads}\n", cache.display())).unwrap();
        let o = ueb()
            .arg("run")
            .arg(&p)
            .arg("--out")
            .arg(tmp.path().join("o"))
            .output()
            .unwrap();
        assert!(!o.status.success());
        String::from_utf8(o.stderr).unwrap()
    };
    let e = case("[temperature, temperature]");
    assert!(e.contains("temperature appears twice") && e.contains("as:"), "{e}");
    let e = case("[sr, {sr: {}, as: entropy}]");
    assert!(e.contains("`as: entropy` is the name of a head"), "{e}");
    let e = case("[{alien: {}, as: a/b}]");
    assert!(e.contains("a/b"), "{e}");
    let e = case("[{alien: {}, adue: {}}]");
    assert!(e.contains("one head per list entry"), "{e}");
    // A valid file: --dry-run prints the resolved plan, with the label, and writes nothing.
    let p = tmp.path().join("ok.yaml");
    std::fs::write(
        &p,
        format!(
            "name: h\nseeds: [0, 1]\ncaches: [{}]\nheads: [sr, {{sr: {{}}, as: sr-again}}]\n",
            cache.display()
        ),
    )
    .unwrap();
    let o = ueb()
        .arg("run")
        .arg(&p)
        .arg("--dry-run")
        .arg("--out")
        .arg(tmp.path().join("o"))
        .output()
        .unwrap();
    assert!(o.status.success());
    let plan = String::from_utf8(o.stdout).unwrap();
    assert!(plan.contains("as: sr-again"), "{plan}");
    let e = String::from_utf8(o.stderr).unwrap();
    assert!(
        e.contains("2 cell(s) (0 to fine-tune and export), 4 head fit(s)"),
        "{e}"
    );
    assert!(!tmp.path().join("o").exists());
}

#[test]
fn decoder_backbones_fine_tune_and_export_in_the_runner() {
    let tmp = tempfile::tempdir().unwrap();
    write_reviews(tmp.path(), None);
    let backbone = format!(
        "  - name: qwen2\n    model: {}\n    finetune: {{mode: lora, epochs: 1, lr: 1.0e-3, batch_size: 16, max_length: 24}}",
        fixture_model("qwen2").display()
    );
    let exp = reviews_experiment(tmp.path(), &backbone, "[sr, entropy]");
    let out = tmp.path().join("out");
    let e = run_stderr(&exp, &out, &[]);
    assert!(e.contains("2 cache(s) built, 4 of 4 head fit(s) run"), "{e}");
    let (cache, _) = ueb_cache::FeatureCache::load(&out.join("caches/qwen2/reviews/seed-0")).unwrap();
    // `score` as the cache's linear classifier over the last real token's hidden state.
    assert_eq!(cache.meta.classifier.kind, ueb_cache::ClassifierKind::Linear);
    assert_eq!(cache.meta.feature_dim, 32);
    assert_eq!(cache.meta.label_names, ["neg", "pos"]);
    assert_eq!(cache.split(ueb_cache::Split::Test).n(), 60);
}

fn choice_experiment(dir: &Path, base_choice: &str) -> PathBuf {
    // The instruct model is listed first: the runner must still build the base's cache
    // before the head that reads it.
    let text = format!(
        "name: multiple-choice\nseeds: [0, 1]\nbackbones:\n  - {{name: instruct, model: {instruct}}}\n  - {{name: base, model: {base}, multiple_choice: {base_choice}}}\n\
         datasets:\n  - {{name: mmlu, root: {root}}}\n\
         heads:\n  - sr\n  - temperature\n  - {{choice_temperature: {{reference: 'backbone:base', k: 2}}, as: kl-temperature}}\n  - {{choice_temperature: {{objective: nll, k: 2}}, as: nll-temperature}}\n\
         metrics: {{bins: 10, bootstrap: 0}}\n",
        instruct = fixture_model("llama-lm").display(),
        base = fixture_model("qwen2-lm").display(),
        root = dir.display()
    );
    let p = dir.join("multiple-choice.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

fn max_abs_diff(got: &[f32], want: &[Vec<f64>]) -> f64 {
    let want: Vec<f64> = want.iter().flatten().copied().collect();
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(&want)
        .map(|(g, w)| (f64::from(*g) - w).abs())
        .fold(0.0, f64::max)
}

#[test]
fn multiple_choice_datasets_are_scored_by_causal_lms_and_kl_heads_follow_their_reference() {
    let tmp = tempfile::tempdir().unwrap();
    write_mmlu(tmp.path(), true);
    let exp = choice_experiment(tmp.path(), "{shots: 2}");
    let out = tmp.path().join("out");
    let e = run_stderr(&exp, &out, &["-v"]);
    // One cache per backbone × dataset, shared by both seeds.
    assert!(e.contains("2 cache(s) built, 16 of 16 head fit(s) run"), "{e}");
    let (b, i) = (
        e.find("cache base/mmlu/all-seeds: built").unwrap(),
        e.find("cache instruct/mmlu/all-seeds: built").unwrap(),
    );
    assert!(b < i, "the reference's cache comes first: {e}");
    assert_eq!(e.matches("cache base/mmlu/all-seeds: built").count(), 1, "{e}");
    assert_eq!(e.matches("cache instruct/mmlu/all-seeds: built").count(), 1, "{e}");
    assert!(!out.join("caches/base/mmlu/seed-0").exists());

    // The test split's letter logits are transformers' for the same prompts: 2-shot for the
    // base (Qwen2), 0-shot for the instruct model (LLaMA).
    for (backbone, model, case) in [("base", "qwen2-lm", "two_shot"), ("instruct", "llama-lm", "zero_shot")] {
        let (cache, _) =
            ueb_cache::FeatureCache::load(&out.join("caches").join(backbone).join("mmlu/all-seeds")).unwrap();
        assert_eq!(cache.meta.label_names, ["A", "B", "C", "D"]);
        assert_eq!(cache.meta.classifier.kind, ueb_cache::ClassifierKind::Linear);
        let test = cache.split(ueb_cache::Split::Test);
        assert_eq!(test.labels, [0, 1, 0]);
        let (_, _, _, want) = choice_cases(model).into_iter().find(|c| c.0 == case).unwrap();
        let err = max_abs_diff(&test.logits, &want);
        assert!(
            err < 1e-4,
            "{backbone}: letter logits differ from transformers' by {err}"
        );
        assert_eq!(
            cache.meta.provenance["multiple_choice"]["shots"],
            if backbone == "base" { 2 } else { 0 }
        );
        assert_eq!(
            cache.split(ueb_cache::Split::Train).n() + cache.split(ueb_cache::Split::Val).n(),
            15
        );
    }

    let seed0 = out.join("cells/instruct/mmlu/seed-0");
    let head: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(seed0.join("kl-temperature/head.json")).unwrap()).unwrap();
    let t = head["temperature"].as_f64().unwrap();
    assert!(t > 0.0 && t.is_finite(), "{head}");
    assert_eq!(head["objective"], "kl");
    let stage = |p: &Path| std::fs::read_to_string(p.join("stage.json")).unwrap();
    let kl_before = stage(&seed0.join("kl-temperature"));
    let sr_before = stage(&seed0.join("sr"));
    assert!(out.join("metrics.parquet").is_file());

    // A shard holding only an instruct cell builds the missing reference itself, under the
    // same hash: its kl head stays up to date.
    std::fs::remove_dir_all(out.join("caches/base")).unwrap();
    let e = run_stderr(&exp, &out, &["--shard", "3/4"]);
    assert!(e.contains("0 cache(s) built, 0 of 4 head fit(s) run"), "{e}");
    assert!(out.join("caches/base/mmlu/all-seeds/stage.json").is_file());
    assert_eq!(stage(&seed0.join("kl-temperature")), kl_before);

    // Another base cache (0-shot now) re-runs the heads that read it: the base's own and the
    // instruct model's kl head, not the instruct model's other heads.
    let exp = choice_experiment(tmp.path(), "{shots: 0}");
    std::fs::remove_file(out.join("plan.yaml")).unwrap();
    let e = run_stderr(&exp, &out, &[]);
    assert!(e.contains("1 cache(s) built, 10 of 16 head fit(s) run"), "{e}");
    assert_ne!(stage(&seed0.join("kl-temperature")), kl_before);
    assert_eq!(stage(&seed0.join("sr")), sr_before);
}

#[test]
fn multiple_choice_plan_errors_name_the_backbone_and_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let with_dev = tmp.path().join("d");
    let no_dev = tmp.path().join("n");
    for (root, dev) in [(&with_dev, true), (&no_dev, false)] {
        std::fs::create_dir_all(root).unwrap();
        write_mmlu(root, dev);
    }
    write_reviews(tmp.path(), None);
    let lm = fixture_model("qwen2-lm").display().to_string();
    let case = |backbones: &str, datasets: &str, heads: &str| -> String {
        let p = tmp.path().join("bad.yaml");
        std::fs::write(
            &p,
            format!("name: x\nbackbones:\n{backbones}\ndatasets:\n{datasets}\nheads: {heads}\n"),
        )
        .unwrap();
        let o = ueb().arg("run").arg(&p).arg("--dry-run").output().unwrap();
        let e = String::from_utf8(o.stderr).unwrap();
        assert!(!o.status.success(), "{backbones} {datasets} {heads}: {e}");
        e
    };
    let mmlu = format!("  - {{name: mmlu, root: {}}}", with_dev.display());
    let reviews = format!(
        "  - {{name: reviews, root: {}, generic: {{text: review, label: stars, splits: {{train: train.csv, test: test.csv}}}}}}",
        tmp.path().display()
    );
    let e = case(
        &format!("  - {{name: enc, model: {}}}", fixture_model("bert").display()),
        &mmlu,
        "[sr]",
    );
    assert!(
        e.contains("backbone enc on dataset mmlu") && e.contains("not a causal LM"),
        "{e}"
    );
    let e = case("  - {name: tiny, model: scratch}", &mmlu, "[sr]");
    assert!(
        e.contains("backbone tiny on dataset mmlu") && e.contains("scratch"),
        "{e}"
    );
    let e = case(
        &format!("  - {{name: lm, model: {lm}, finetune: {{epochs: 2}}}}"),
        &mmlu,
        "[sr]",
    );
    assert!(
        e.contains("backbone lm on dataset mmlu") && e.contains("finetune.epochs does not apply"),
        "{e}"
    );
    let e = case(
        &format!("  - {{name: lm, model: {lm}, multiple_choice: {{shots: 1}}}}"),
        &reviews,
        "[sr]",
    );
    assert!(
        e.contains("backbone lm") && e.contains("dataset reviews is a sequence task"),
        "{e}"
    );
    let e = case(
        &format!("  - {{name: lm, model: {lm}, multiple_choice: {{shots: 2}}}}"),
        &format!("  - {{name: mmlu, root: {}}}", no_dev.display()),
        "[sr]",
    );
    assert!(
        e.contains("backbone lm on dataset mmlu") && e.contains("no few-shot pool"),
        "{e}"
    );
    let e = case(
        &format!("  - {{name: lm, model: {lm}}}"),
        &mmlu,
        "[{choice_temperature: {reference: 'backbone:llama'}}]",
    );
    assert!(
        e.contains("backbone:llama is not a backbone of this experiment (backbones: lm)"),
        "{e}"
    );
    let e = case(&format!("  - {{name: lm, model: {lm}}}"), &mmlu, "[choice_temperature]");
    assert!(
        e.contains("choice_temperature") && e.contains("objective kl needs `reference`"),
        "{e}"
    );
    let e = case(
        &format!("  - {{name: lm, model: {lm}, multiple_choice: {{shot: 2}}}}"),
        &mmlu,
        "[sr]",
    );
    assert!(e.contains("unknown field `shot`"), "{e}");
}

#[test]
fn multiple_choice_prompts_that_reach_max_length_drop_solved_examples() {
    let tmp = tempfile::tempdir().unwrap();
    write_mmlu(tmp.path(), true);
    // The fixture's 0-shot prompts have at most 109 tokens, its 1- and 2-shot ones more than
    // 120: every test prompt falls back to 0-shot, as the MMLU authors' evaluation does.
    let text = format!(
        "name: short\nbackbones:\n  - {{name: lm, model: {}, multiple_choice: {{shots: 2, max_length: 120}}}}\ndatasets:\n  - {{name: mmlu, root: {}}}\nheads: [sr]\nmetrics: {{bins: 10, bootstrap: 0}}\n",
        fixture_model("qwen2-lm").display(),
        tmp.path().display()
    );
    let exp = tmp.path().join("short.yaml");
    std::fs::write(&exp, text).unwrap();
    let out = tmp.path().join("out");
    let e = run_stderr(&exp, &out, &[]);
    assert!(e.contains("3 test prompt(s) reach max_length 120"), "{e}");
    let (cache, _) = ueb_cache::FeatureCache::load(&out.join("caches/lm/mmlu/all-seeds")).unwrap();
    assert_eq!(cache.meta.provenance["multiple_choice"]["fewer_shots"]["test"], 3);
    let (_, _, _, want) = choice_cases("qwen2-lm")
        .into_iter()
        .find(|c| c.0 == "zero_shot")
        .unwrap();
    let err = max_abs_diff(&cache.split(ueb_cache::Split::Test).logits, &want);
    assert!(err < 1e-4, "0-shot logits differ from transformers' by {err}");
}

#[test]
fn run_json_prints_one_object_with_the_summary_as_data_and_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("mycache");
    write_cache(&cache);
    let exp = tmp.path().join("exp.yaml");
    std::fs::write(
        &exp,
        format!(
            "name: j\nseeds: [0, 1]\ncaches: [{}]\nheads: [sr, temperature]\nmetrics: {{bins: 10, bootstrap: 0}}\n",
            cache.display()
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let json_of = |extra: &[&str]| -> serde_json::Value {
        let o = ueb()
            .arg("run")
            .arg(&exp)
            .arg("--out")
            .arg(&out)
            .arg("--json")
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
    };
    let plan = json_of(&["--dry-run"]);
    assert_eq!(plan["experiment"], "j");
    assert_eq!(plan["cells"], 2);
    assert_eq!(plan["head_fits"], 4);
    assert!(plan["plan"]["heads"][1]["temperature"].is_object(), "{plan}");
    assert!(!out.exists(), "a dry run writes nothing");

    let v = json_of(&[]);
    assert_eq!(v["complete"], true);
    assert_eq!(
        (
            v["cells"].as_u64(),
            v["head_fits_run"].as_u64(),
            v["head_fits"].as_u64()
        ),
        (Some(2), Some(4), Some(4))
    );
    assert_eq!(v["files"]["metrics"], out.join("metrics.parquet").display().to_string());
    assert!(v["files"]["index"].is_string(), "{v}");
    assert!(!v["files"]["report"].as_array().unwrap().is_empty());
    // The summary: every metric of metrics.parquet, mean and std over the two seeds.
    let summary = v["summary"].as_array().unwrap();
    let roc = summary
        .iter()
        .find(|r| r["head"] == "temperature" && r["metric"] == "roc_auc")
        .unwrap();
    assert_eq!((roc["seeds"].as_u64(), roc["defined"].as_u64()), (Some(2), Some(2)));
    let values: Vec<f64> = rows(&out.join("metrics.parquet"))
        .iter()
        .filter(|r| {
            matches!(get(r, "head"), Field::Str(h) if h == "temperature")
                && matches!(get(r, "metric"), Field::Str(m) if m == "roc_auc")
        })
        .map(|r| match get(r, "value") {
            Field::Double(x) => *x,
            _ => panic!(),
        })
        .collect();
    assert_eq!(values.len(), 2);
    let mean = (values[0] + values[1]) / 2.0;
    assert!((roc["mean"].as_f64().unwrap() - mean).abs() < 1e-15, "{roc}");
    // sr leaves the classifier's probabilities as they are: its ECE is the classifier's, in
    // italics and unranked, and its reliability diagram is the classifier's, drawn once.
    let ece = std::fs::read_to_string(out.join("tables/ece.md")).unwrap();
    let sr = ece.lines().find(|l| l.starts_with("| sr |")).unwrap();
    assert!(sr.contains(" *") && sr.ends_with(" – |"), "{ece}");
    let figs = out.join("figures/cache/mycache/seed-0");
    assert!(figs.join("reliability_classifier.png").is_file());
    assert!(figs.join("reliability-temperature.png").is_file());
    assert!(!figs.join("reliability-sr.png").exists());
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("Reliability diagram of the classifier"), "index.html");
    // Run again: nothing to do, still one object.
    let again = json_of(&[]);
    assert_eq!(again["head_fits_run"], 0);
}

/// Libraries that log through the `log` crate (tokenizers, burn's GPU stack) reach `-vv` and
/// `RUST_LOG` through tracing's log bridge.
#[test]
fn library_log_records_reach_the_subscriber() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("e.yaml");
    std::fs::write(
        &exp,
        "name: lb\nseeds: [0]\nbackbones:\n  - name: tiny\n    model: scratch\n    scratch: {hidden_size: 16, layers: 1, heads: 2, intermediate_size: 32, max_positions: 40}\n    finetune: {epochs: 1, lr: 1.0e-3, batch_size: 32, max_length: 40}\ndatasets:\n  - name: synthetic\n    synthetic: {train: 60, val: 30, test: 30}\nheads: [sr]\nmetrics: {bins: 10, bootstrap: 0}\n",
    )
    .unwrap();
    let o = ueb()
        .arg("run")
        .arg(&exp)
        .arg("--out")
        .arg(tmp.path().join("out"))
        .env("RUST_LOG", "tokenizers=trace")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains("tokenizers::"),
        "no record of the tokenizers crate's `log` calls:\n{}",
        &e[..e.len().min(2000)]
    );
}

#[test]
fn completion_scripts_cover_every_command() {
    for (shell, marker) in [("bash", "_ueb()"), ("zsh", "#compdef ueb"), ("fish", "complete -c ueb")] {
        let o = ueb().args(["completions", shell]).output().unwrap();
        assert!(o.status.success(), "{shell}");
        let script = String::from_utf8(o.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: {}", &script[..script.len().min(200)]);
        // fish writes long options as `-l NAME`.
        for word in [
            "eval",
            "score",
            "extract",
            "report",
            "precision",
            "seeds",
            "json",
            "completions",
        ] {
            assert!(script.contains(word), "{shell}: no `{word}`");
        }
    }
    let o = ueb().args(["completions", "tcsh"]).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid value 'tcsh'"));
}
