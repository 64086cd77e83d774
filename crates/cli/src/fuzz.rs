//! Property-based fuzzing of the input readers (`.npy`, `.csv`, `.parquet`, `.safetensors`):
//! whatever the bytes, a reader returns an array or an error, never a panic, an abort or an
//! allocation the file cannot back.
//!
//! Seeds are real files (numpy's, pyarrow's and safetensors' own, from `tests/fixtures`) and
//! CSV text built from the tokens that matter to the parser; each case mutates them (byte
//! flips, truncations, digits pushed into headers). CI runs `UEB_FUZZ_CASES` cases per reader
//! (256 by default, seconds); set it higher to search longer.

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::input::{Role, Source, read};

const NPY: &[&[u8]] = &[
    include_bytes!("../tests/fixtures/probs.npy"),
    include_bytes!("../tests/fixtures/probs_fortran.npy"),
    include_bytes!("../tests/fixtures/probs_be.npy"),
    include_bytes!("../tests/fixtures/labels_i4.npy"),
];
const PARQUET: &[&[u8]] = &[
    include_bytes!("../tests/fixtures/preds.parquet"),
    include_bytes!("../tests/fixtures/probs_list.parquet"),
];
const SAFETENSORS: &[&[u8]] = &[include_bytes!("../tests/fixtures/preds.safetensors")];

fn cases() -> u32 {
    std::env::var("UEB_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// One edit of a file's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the byte at this position (modulo the length).
    Set(usize, u8),
    /// Keep this fraction (in 1/1024) of the file.
    Truncate(u16),
    /// Insert ASCII digits at this position: sizes and lengths in text headers grow.
    Digits(usize, String),
    /// Overwrite 8 bytes with a little-endian integer: sizes and offsets in binary headers.
    Word(usize, u64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        any::<u16>().prop_map(|f| Mutation::Truncate(f % 1024)),
        (any::<usize>(), "[0-9]{1,20}").prop_map(|(i, d)| Mutation::Digits(i, d)),
        (
            any::<usize>(),
            prop_oneof![Just(u64::MAX), Just(u64::from(u32::MAX)), any::<u64>()]
        )
            .prop_map(|(i, w)| Mutation::Word(i, w)),
    ]
}

fn mutate(seed: &[u8], edits: &[Mutation]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for e in edits {
        if b.is_empty() {
            break;
        }
        match e {
            Mutation::Set(i, v) => {
                let n = b.len();
                b[i % n] = *v;
            }
            Mutation::Truncate(f) => b.truncate(b.len() * usize::from(*f) / 1024),
            Mutation::Digits(i, d) => {
                let at = i % b.len();
                b.splice(at..at, d.bytes());
            }
            Mutation::Word(i, w) => {
                let at = i % b.len();
                for (k, byte) in w.to_le_bytes().into_iter().enumerate() {
                    if let Some(slot) = b.get_mut(at + k) {
                        *slot = byte;
                    }
                }
            }
        }
    }
    b
}

/// Writes `bytes` as `name` and reads it in every role, with and without a selection.
fn read_all_roles(dir: &Path, name: &str, bytes: &[u8], selects: &[Option<&str>]) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    for role in [Role::Probs, Role::Logits, Role::Labels, Role::Scores] {
        for select in selects {
            let src = Source {
                path: path.clone(),
                select: select.map(str::to_string),
            };
            // Ok or Err are both fine; a panic fails the property.
            let _ = read(&src, role);
        }
    }
}

fn fuzz_binary(ext: &str, seeds: &'static [&'static [u8]], selects: &'static [Option<&'static str>]) {
    let dir = tempfile::tempdir().unwrap();
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (0..seeds.len(), prop::collection::vec(mutation(), 1..6));
    runner
        .run(&strategy, |(k, edits)| {
            let bytes = mutate(seeds[k], &edits);
            read_all_roles(dir.path(), &format!("f.{ext}"), &bytes, selects);
            Ok(())
        })
        .unwrap();
}

#[test]
fn npy_reader_survives_mutated_files() {
    fuzz_binary("npy", NPY, &[None]);
}

#[test]
fn parquet_reader_survives_mutated_files() {
    fuzz_binary("parquet", PARQUET, &[None, Some("probs"), Some("label"), Some("p0,p1")]);
}

#[test]
fn safetensors_reader_survives_mutated_files() {
    fuzz_binary("safetensors", SAFETENSORS, &[None, Some("probs"), Some("labels")]);
}

/// CSV text from the tokens its parser decides on: numbers of every form, pandas' headers and
/// index names, quotes, blank lines, ragged rows.
#[test]
fn csv_reader_survives_arbitrary_text() {
    let dir = tempfile::tempdir().unwrap();
    let token = prop_oneof![
        Just("0"),
        Just("1"),
        Just("2"),
        Just("0.5"),
        Just("-1e308"),
        Just("1e400"),
        Just("nan"),
        Just("inf"),
        Just(""),
        Just("Unnamed: 0"),
        Just("probs"),
        Just("label"),
        Just("\""),
        Just("\"a,b\""),
        Just("x"),
        Just("99999999999999999999999"),
    ];
    let line = prop::collection::vec(token, 0..5).prop_map(|t| t.join(","));
    let text = prop::collection::vec(line, 0..8).prop_map(|l| l.join("\n"));
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(text, any::<bool>()), |(text, tsv)| {
            let (name, text) = if tsv {
                ("f.tsv", text.replace(',', "\t"))
            } else {
                ("f.csv", text)
            };
            read_all_roles(
                dir.path(),
                name,
                text.as_bytes(),
                &[None, Some("probs"), Some("0,1"), Some("")],
            );
            Ok(())
        })
        .unwrap();
}
