//! `ueb data list`, `ueb data stats` and `ueb data export` on fixture files written here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::{Value, json};

fn ueb() -> Command {
    Command::cargo_bin("ueb").unwrap()
}

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn stats_json(args: &[&str], cwd: &Path) -> Value {
    let out = ueb()
        .current_dir(cwd)
        .args(["data", "stats", "--json"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn list_names_every_dataset() {
    let names = [
        "sst2",
        "cola",
        "mrpc",
        "sst5",
        "trec",
        "trec_fine",
        "20newsgroups",
        "ag_news",
        "toxigen",
        "mmlu",
        "arc_challenge",
        "conll2003",
        "wnut17",
        "synthetic",
    ];
    let out = ueb().args(["data", "list"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for name in names {
        assert!(text.lines().any(|l| l.starts_with(&format!("{name} "))), "{name}");
    }
    let out = ueb().args(["data", "list", "--json"]).output().unwrap();
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let got: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(got, names);
    assert_eq!(list[11]["task"], "token");
    assert_eq!(list[12]["task"], "token");
    assert_eq!(list[9]["task"], "multiple_choice");
}

#[test]
fn stats_json_from_a_root() {
    let dir = tempfile::tempdir().unwrap();
    let train: String = (0..10).map(|i| format!("{} sentence number {i}\n", i % 5)).collect();
    write(dir.path(), "d/sst5/stsa.fine.train", &train);
    write(dir.path(), "d/sst5/stsa.fine.dev", "3 nice one\n");
    write(dir.path(), "d/sst5/stsa.fine.test", "1 dull\n4 very good film\n");
    let root = dir.path().join("d");
    let v = stats_json(&["sst5", "--root", root.to_str().unwrap()], dir.path());
    assert_eq!(v["name"], "sst5");
    assert_eq!(v["task"], "sequence");
    let train = &v["splits"]["train"];
    assert_eq!(train["rows"], 10);
    assert_eq!(train["labels"], json!({"0": 2, "1": 2, "2": 2, "3": 2, "4": 2}));
    assert_eq!(train["length"], json!({"p50": 3, "p95": 3}));
    assert_eq!(v["splits"]["val"]["rows"], 1);
    assert_eq!(v["splits"]["test"]["length"], json!({"p50": 1, "p95": 3}));
    assert_eq!(v["splits"]["test"]["fingerprint"].as_str().unwrap().len(), 64);
}

#[test]
fn default_root_is_data_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let train: String = (0..10).map(|i| format!("HUM:ind Who {i} ?\n")).collect();
    write(dir.path(), "data/trec/TREC.train", &train);
    write(dir.path(), "data/trec/TREC.test", "LOC:city Where ?\n");
    let v = stats_json(&["trec"], dir.path());
    assert_eq!(v["splits"]["train"]["rows"], 8);
    assert_eq!(v["splits"]["val"]["rows"], 2);
    assert_eq!(v["splits"]["test"]["labels"]["LOC"], 1);
    // --seed and --val-fraction change the holdout.
    let v2 = stats_json(&["trec", "--seed", "7", "--val-fraction", "0.5"], dir.path());
    assert_eq!(v2["splits"]["val"]["rows"], 5);
    let table = ueb()
        .current_dir(dir.path())
        .args(["data", "stats", "trec"])
        .assert()
        .success();
    table
        .stdout(predicate::str::contains("trec (sequence)"))
        .stdout(predicate::str::contains("HUM=8"))
        .stdout(predicate::str::contains(
            "seeded holdout (holdout fraction 0.2, seed 42)",
        ));
}

#[test]
fn missing_files_say_where_ueb_looked() {
    let dir = tempfile::tempdir().unwrap();
    ueb()
        .current_dir(dir.path())
        .args(["data", "stats", "cola"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "dataset `cola`: not found under the data root `data`",
        ))
        .stderr(predicate::str::contains("data/glue/CoLA/train.tsv"))
        .stderr(predicate::str::contains("download_glue_data.py"));
    ueb()
        .args(["data", "stats", "imagenet"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("unknown dataset `imagenet`"));
    ueb()
        .args(["data", "stats", "20newsgroups", "--remove", "signatures"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "`signatures` is not one of headers, footers, quotes",
        ));
}

#[test]
fn synthetic_needs_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let v = stats_json(&["synthetic"], dir.path());
    assert_eq!(v["splits"]["train"]["rows"], 4000);
    assert_eq!(v["splits"]["val"]["rows"], 1000);
    assert_eq!(v["splits"]["test"]["rows"], 2000);
    let acc = v["splits"]["test"]["oracle"]["bayes_accuracy"].as_f64().unwrap();
    assert!(acc > 0.5 && acc < 1.0, "{acc}");
}

#[test]
fn yaml_mapping_and_export() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "root/mine/train.csv",
        "text,label\na,x\nb,y\nc,x\nd,y\ne,x\n",
    );
    write(dir.path(), "root/mine/test.csv", "text,label\nf,y\n");
    write(
        dir.path(),
        "mine.yaml",
        "name: mine\ntext: text\nlabel: label\nsplits: {train: mine/train.csv, test: mine/test.csv}\n",
    );
    let v = stats_json(&["mine.yaml", "--root", "root"], dir.path());
    assert_eq!(v["name"], "mine");
    assert_eq!(v["splits"]["train"]["rows"], 4);
    assert_eq!(v["splits"]["val"]["rows"], 1);
    assert_eq!(v["splits"]["test"]["labels"], json!({"x": 0, "y": 1}));

    ueb()
        .current_dir(dir.path())
        .args(["data", "export", "mine.yaml", "--root", "root", "--out", "out"])
        .assert()
        .success();
    let test = std::fs::read_to_string(dir.path().join("out/test.jsonl")).unwrap();
    assert_eq!(test, "{\"id\":\"mine:test:0\",\"text\":\"f\",\"label\":\"y\"}\n");

    ueb()
        .current_dir(dir.path())
        .args(["data", "export", "synthetic", "--out", "syn"])
        .assert()
        .success();
    let oracle = std::fs::read_to_string(dir.path().join("syn/val.oracle.csv")).unwrap();
    assert_eq!(oracle.lines().count(), 1001);
    assert!(oracle.starts_with("id,label,clean_label,mixing,p_0"));
}
