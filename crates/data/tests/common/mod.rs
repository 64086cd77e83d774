//! Fixture helpers: tests write their own small files under a temporary data root.

#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};

use ueb_data::{Dataset, DatasetOptions, Input, Label};

/// Writes `content` to `root/rel`, creating folders.
pub fn write(root: &Path, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    path
}

/// Writes `content` gzip-compressed to `root/rel`.
pub fn write_gz(root: &Path, rel: &str, content: &str) -> PathBuf {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(content.as_bytes()).unwrap();
    write(root, rel, encoder.finish().unwrap())
}

/// Options with `root` and the protocol's defaults.
pub fn options(root: &Path) -> DatasetOptions {
    DatasetOptions {
        root: root.to_path_buf(),
        ..DatasetOptions::default()
    }
}

/// `(split name, rows)` of every split.
pub fn sizes(dataset: &Dataset) -> Vec<(String, usize)> {
    dataset
        .splits()
        .iter()
        .map(|s| (s.name().to_owned(), s.len()))
        .collect()
}

/// The ids of one split.
pub fn ids(dataset: &Dataset, split: &str) -> Vec<String> {
    dataset
        .split(split)
        .unwrap()
        .examples()
        .iter()
        .map(|e| e.id.clone())
        .collect()
}

/// The label names of one split (tags joined by spaces).
pub fn labels(dataset: &Dataset, split: &str) -> Vec<String> {
    let names = dataset.label_names();
    dataset
        .split(split)
        .unwrap()
        .examples()
        .iter()
        .map(|e| match &e.label {
            Label::Class(k) => names[*k].clone(),
            Label::Tags(t) => t.iter().map(|k| names[*k].as_str()).collect::<Vec<_>>().join(" "),
        })
        .collect()
}

/// The text of a single-text example.
pub fn text(input: &Input) -> &str {
    match input {
        Input::Text(t) => t,
        other => panic!("not a text: {other:?}"),
    }
}
