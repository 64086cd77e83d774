//! What a hostile input or environment does to `ueb`, one test per class of failure (issue 20):
//! files as pandas writes them read right, untrusted sizes refused before allocation, a closed
//! or full stdout handled, arguments checked before anything is written, messages that point at
//! the right line and print each cause once, `--jobs` children that do not outlive their parent.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{ueb, write_cache};

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_string_lossy().into_owned()
}

fn eval_json(args: &[&str]) -> (Value, String) {
    let out = ueb().arg("eval").args(args).arg("--json").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ueb eval {args:?} failed: {stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

fn fails(cmd: &mut assert_cmd::Command) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "should fail: {cmd:?}");
    assert!(!stderr.contains("panicked"), "panic instead of an error: {stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    stderr
}

const PROBS: [[f64; 3]; 4] = [[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.25, 0.25, 0.5], [0.2, 0.5, 0.3]];
const LABELS: [i64; 4] = [0, 2, 2, 1];
const SCORES: [f64; 4] = [0.125, 0.5, 0.75, 0.25];

/// pandas' `to_csv` forms (an unnamed `DataFrame`: header `0,1,2`; with its index: an empty
/// first header and a counting first column; a `Series`: header `0`) must give exactly the
/// report of the plain, headerless files: none of these lines is a data row or a class.
#[test]
fn csv_files_as_pandas_writes_them_read_as_their_data() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let row = |p: &[f64; 3]| format!("{},{},{}", p[0], p[1], p[2]);
    let plain_p: String = PROBS.iter().map(|p| row(p) + "\n").collect();
    let plain_y: String = LABELS.iter().map(|y| format!("{y}\n")).collect();
    let plain_u: String = SCORES.iter().map(|u| format!("{u}\n")).collect();
    let base = [
        write(d, "p.csv", &plain_p),
        write(d, "y.csv", &plain_y),
        write(d, "u.csv", &plain_u),
    ];
    let (want, _) = eval_json(&[
        "--probs",
        &base[0],
        "--labels",
        &base[1],
        "--scores",
        &format!("u={}", base[2]),
    ]);

    let df_p = format!("0,1,2\n{plain_p}");
    let indexed_p: String = std::iter::once(",0,1,2\n".to_string())
        .chain(PROBS.iter().enumerate().map(|(i, p)| format!("{i},{}\n", row(p))))
        .collect();
    let roundtrip_p = indexed_p.replacen(",0,1,2", "Unnamed: 0,0,1,2", 1);
    let series_y = format!("0\n{plain_y}");
    let indexed_y: String = std::iter::once(",0\n".to_string())
        .chain(LABELS.iter().enumerate().map(|(i, y)| format!("{i},{y}\n")))
        .collect();
    let series_u = format!("0\n{plain_u}");
    for (name, p, y, u) in [
        ("numeric header", &df_p, &plain_y, &plain_u),
        ("index column", &indexed_p, &indexed_y, &plain_u),
        ("read_csv round trip", &roundtrip_p, &plain_y, &plain_u),
        ("series headers", &df_p, &series_y, &series_u),
    ] {
        let files = [write(d, "pp.csv", p), write(d, "py.csv", y), write(d, "pu.csv", u)];
        let (got, stderr) = eval_json(&[
            "--probs",
            &files[0],
            "--labels",
            &files[1],
            "--scores",
            &format!("u={}", files[2]),
        ]);
        assert_eq!(got, want, "{name}");
        if y == &series_y {
            // The labels' `0` is integer like the labels: decided by the row count, and said.
            assert!(
                stderr.contains("py.csv: the first line `0` is read as a column name"),
                "{stderr}"
            );
        }
    }
    // A headerless label file that starts with class 0 stays data.
    let y0 = write(d, "y0.csv", "0\n2\n2\n1\n");
    let (got, _) = eval_json(&[
        "--probs",
        &base[0],
        "--labels",
        &y0,
        "--scores",
        &format!("u={}", base[2]),
    ]);
    assert_eq!(got["calibration"]["accuracy"], want["calibration"]["accuracy"]);
}

/// `.npy` headers are untrusted: sizes that overflow or exceed the file, and dtypes that are
/// not ASCII, are refused with what is wrong.
#[test]
fn hostile_npy_headers_are_refused_before_allocation() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let y = write(d, "y.csv", "0\n1\n");
    let npy = |header: &str, body: &[u8]| {
        let mut h = header.to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(body);
        out
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            npy(
                "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
                &[0; 16],
            ),
            "more data than any file can hold",
        ),
        (
            npy(
                "{'descr': '<f8', 'fortran_order': False, 'shape': (18446744073709551615,), }",
                &[0; 16],
            ),
            "more data than any file can hold",
        ),
        (
            npy(
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 2), }",
                &[0; 32],
            ),
            "data is truncated",
        ),
        (
            npy("{'descr': '<é8', 'fortran_order': False, 'shape': (2, 2), }", &[0; 32]),
            "unsupported dtype",
        ),
        (
            {
                let mut b = b"\x93NUMPY\x02\x00".to_vec();
                b.extend_from_slice(&u32::MAX.to_le_bytes());
                b.extend_from_slice(b"{'descr'");
                b
            },
            "truncated header",
        ),
    ];
    for (bytes, want) in cases {
        let p = write(d, "bad.npy", &bytes);
        let e = fails(ueb().args(["eval", "--probs", &p, "--labels", &y]));
        assert!(e.contains("bad.npy") && e.contains(want), "{want}: {e}");
    }
}

/// A reader that goes away (`| head`) ends `ueb` quietly with SIGPIPE's status; a full disk is
/// one line. Neither is a panic.
#[test]
fn a_closed_or_full_stdout_is_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let p = write(d, "p.csv", "0.9,0.1\n0.2,0.8\n0.6,0.4\n");
    let y = write(d, "y.csv", "0\n1\n1\n");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("ueb"))
        .args(["eval", "--probs", &p, "--labels", &y])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");

    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("ueb"))
        .args(["eval", "--probs", &p, "--labels", &y])
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot write to standard output"), "{stderr}");
}

/// Messages point at the right line after blank lines, tell a huge label from a fraction and a
/// directory from a file, print each cause once and stay readable in length.
#[test]
fn messages_name_the_right_place_once_and_briefly() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let y = write(d, "y.csv", "0\n1\n1\n");
    let blank = write(d, "blank.csv", "p0,p1\n\n0.9,0.1\n\n\n0.2,x\n0.6,0.4\n");
    let e = fails(ueb().args(["eval", "--probs", &blank, "--labels", &y]));
    assert!(e.contains("line 6 (row 1)"), "{e}");

    let p = write(d, "p.csv", "0.9,0.1\n0.2,0.8\n0.6,0.4\n");
    let huge = write(d, "huge.csv", "0\n1e300\n1\n");
    let e = fails(ueb().args(["eval", "--probs", &p, "--labels", &huge]));
    assert!(
        e.contains("far beyond any class index") && !e.contains("not an integer"),
        "{e}"
    );

    let e = fails(ueb().args(["eval", "--probs", &d.to_string_lossy(), "--labels", &y]));
    assert!(e.contains("is a directory"), "{e}");

    let missing = d.join("no-such-cache");
    let out = d.join("u.npy");
    let e = fails(
        ueb()
            .args(["score", "--cache"])
            .arg(&missing)
            .args(["--head", "sr", "--out"])
            .arg(&out),
    );
    assert_eq!(e.matches("(os error 2)").count(), 1, "the cause once: {e}");

    let long = "9".repeat(100_000);
    let wide = write(d, "wide.csv", format!("0.5,0.5\n0.5,{long}x\n0.5,0.5\n"));
    let e = fails(ueb().args(["eval", "--probs", &wide, "--labels", &y]));
    assert!(e.len() < 2_000, "{} bytes", e.len());
    assert!(e.contains("wide.csv") && e.contains("line 2"), "{e}");
}

/// An argument found invalid after others were accepted leaves nothing written.
#[test]
fn nothing_is_written_before_every_argument_is_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cache = d.join("cache");
    write_cache(&cache);
    let not_a_dir = PathBuf::from(write(d, "head", "a file"));
    let out = d.join("u.csv");
    let e = fails(
        ueb()
            .args(["score", "--cache"])
            .arg(&cache)
            .args(["--head", "temperature", "--out"])
            .arg(&out)
            .arg("--save-head")
            .arg(&not_a_dir),
    );
    assert!(e.contains("not a directory"), "{e}");
    assert!(!out.exists(), "written before --save-head was refused");
    let e = fails(
        ueb()
            .args(["score", "--cache"])
            .arg(&cache)
            .args(["--head", "sr", "--out"])
            .arg(d.join("u.txt")),
    );
    assert!(e.contains("unsupported output type"), "{e}");

    let results = d.join("results");
    let e = fails(ueb().args(["run", "--jobs", "0", "--out"]).arg(&results));
    assert!(e.contains("--jobs must be at least 1"), "{e}");
    assert!(!results.exists(), "the results directory was created");
}

/// Process ids of the running children of `pid` (from /proc).
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: the fields after the last `)`.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, r)| r)
            .split_whitespace()
            .collect();
        if fields.first() != Some(&"Z") && fields.get(1) == Some(&pid.to_string().as_str()) {
            out.push(child);
        }
    }
    out
}

/// `--jobs` children stop when their parent is killed, instead of running on unsupervised.
#[test]
fn jobs_stop_when_their_parent_is_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("exp.yaml");
    std::fs::write(
        &exp,
        "name: t\nseeds: [0, 1, 2, 3]\nbackbones:\n  - name: tiny\n    model: scratch\n    scratch: {hidden_size: 16, layers: 1, heads: 2, intermediate_size: 32, max_positions: 40}\n    finetune: {epochs: 3, lr: 1.0e-3, batch_size: 32, max_length: 40}\ndatasets:\n  - name: synthetic\n    synthetic: {train: 400, val: 80, test: 120, num_classes: 3}\nheads: [sr]\nmetrics: {bins: 10, bootstrap: 0}\n",
    )
    .unwrap();
    let mut parent = std::process::Command::new(assert_cmd::cargo::cargo_bin("ueb"))
        .arg("run")
        .arg(&exp)
        .arg("--out")
        .arg(tmp.path().join("out"))
        .args(["--jobs", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let mut children = Vec::new();
    while children.len() < 2 && t0.elapsed() < Duration::from_secs(60) {
        children = children_of(parent.id());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(children.len(), 2, "the jobs did not start");
    parent.kill().unwrap(); // SIGKILL: no chance to clean up
    parent.wait().unwrap();
    let t0 = Instant::now();
    let alive = |pid: &u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
        })
    };
    while children.iter().any(alive) && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<&u32> = children.iter().filter(|p| alive(p)).collect();
    assert!(left.is_empty(), "jobs {left:?} outlived their parent");
}
