//! safetensors and JSON I/O of the cache and of fitted heads: typed, shape-checked reads that
//! name the file and tensor, and atomic writes (temporary file, then rename).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use crate::error::CacheError;

/// Reads and parses a JSON file, naming it on error.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, CacheError> {
    let text = std::fs::read_to_string(path).map_err(|e| CacheError::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| CacheError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a safetensors file into memory.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, CacheError> {
    std::fs::read(path).map_err(|e| CacheError::io(path, e))
}

/// A tensor read from safetensors, widened.
pub struct Tensors<'a> {
    path: &'a Path,
    st: SafeTensors<'a>,
}

impl<'a> Tensors<'a> {
    /// Parses the safetensors file `path` held in `bytes`.
    pub fn parse(path: &'a Path, bytes: &'a [u8]) -> Result<Self, CacheError> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| CacheError::Safetensors {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Self { path, st })
    }

    /// Whether the file holds tensor `name`.
    pub fn has(&self, name: &str) -> bool {
        self.st.names().contains(&name)
    }

    fn view(&self, name: &str) -> Result<safetensors::tensor::TensorView<'a>, CacheError> {
        self.st.tensor(name).map_err(|_| {
            let mut present: Vec<&str> = self.st.names();
            present.sort_unstable();
            CacheError::MissingTensor {
                path: self.path.to_path_buf(),
                name: name.to_string(),
                present: present.join(", "),
            }
        })
    }

    pub(crate) fn bad(&self, name: &str, found: String, expected: String) -> CacheError {
        CacheError::BadTensor {
            path: self.path.to_path_buf(),
            name: name.to_string(),
            found,
            expected,
        }
    }

    /// A float tensor of exactly `shape`, as f32 (f16/bf16 widen exactly; f64 is refused
    /// because the cache stores f32 and narrowing would silently change the numbers).
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, CacheError> {
        let t = self.view(name)?;
        let found = format!("{:?} {:?}", t.dtype(), t.shape());
        if t.shape() != shape {
            return Err(self.bad(name, found, format!("F32 {shape:?}")));
        }
        let raw = t.data();
        Ok(match t.dtype() {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            _ => return Err(self.bad(name, found, format!("F32 {shape:?} (F16/BF16 also accepted)"))),
        })
    }

    /// An f64 tensor of exactly `shape` (fitted heads store their statistics in f64).
    pub fn f64(&self, name: &str, shape: &[usize]) -> Result<Vec<f64>, CacheError> {
        let t = self.view(name)?;
        let found = format!("{:?} {:?}", t.dtype(), t.shape());
        if t.shape() != shape || t.dtype() != Dtype::F64 {
            return Err(self.bad(name, found, format!("F64 {shape:?}")));
        }
        Ok(t.data()
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect())
    }

    /// An integer tensor of exactly `shape`, as i64 (I32 widens).
    pub fn i64(&self, name: &str, shape: &[usize]) -> Result<Vec<i64>, CacheError> {
        let t = self.view(name)?;
        let found = format!("{:?} {:?}", t.dtype(), t.shape());
        if t.shape() != shape {
            return Err(self.bad(name, found, format!("I64 {shape:?}")));
        }
        let raw = t.data();
        Ok(match t.dtype() {
            Dtype::I64 => raw
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect(),
            Dtype::I32 => raw
                .chunks_exact(4)
                .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
            _ => return Err(self.bad(name, found, format!("I64 {shape:?} (I32 also accepted)"))),
        })
    }

    /// The first dimension of tensor `name`.
    pub fn rows(&self, name: &str) -> Result<usize, CacheError> {
        let t = self.view(name)?;
        t.shape()
            .first()
            .copied()
            .ok_or_else(|| self.bad(name, format!("{:?} []", t.dtype()), "a tensor with rows".into()))
    }
}

/// Writes f32/i64/f64 tensors as a safetensors file, atomically (temp file + rename).
pub fn write_tensors(
    path: &Path,
    f32s: &[(&str, &[f32], Vec<usize>)],
    i64s: &[(&str, &[i64], Vec<usize>)],
    f64s: &[(&str, &[f64], Vec<usize>)],
) -> Result<(), CacheError> {
    write_safetensors(path, f32s, i64s, f64s, None)
}

/// Writes f32/i64/f64 tensors (name, row-major values, shape) and optional string metadata as
/// a safetensors file, atomically (temp file in the same directory, then rename).
///
/// # Errors
/// A shape that does not match its values, or an I/O error naming the file.
pub fn write_safetensors(
    path: &Path,
    f32s: &[(&str, &[f32], Vec<usize>)],
    i64s: &[(&str, &[i64], Vec<usize>)],
    f64s: &[(&str, &[f64], Vec<usize>)],
    metadata: Option<HashMap<String, String>>,
) -> Result<(), CacheError> {
    use safetensors::tensor::TensorView;
    let f32_bytes: Vec<Vec<u8>> = f32s
        .iter()
        .map(|(_, v, _)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let f64_bytes: Vec<Vec<u8>> = f64s
        .iter()
        .map(|(_, v, _)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let i64_bytes: Vec<Vec<u8>> = i64s
        .iter()
        .map(|(_, v, _)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let bad = |e: safetensors::SafeTensorError| CacheError::Safetensors {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut views: Vec<(String, TensorView<'_>)> = Vec::new();
    for ((name, _, shape), bytes) in f32s.iter().zip(&f32_bytes) {
        views.push((
            name.to_string(),
            TensorView::new(Dtype::F32, shape.clone(), bytes).map_err(bad)?,
        ));
    }
    for ((name, _, shape), bytes) in i64s.iter().zip(&i64_bytes) {
        views.push((
            name.to_string(),
            TensorView::new(Dtype::I64, shape.clone(), bytes).map_err(bad)?,
        ));
    }
    for ((name, _, shape), bytes) in f64s.iter().zip(&f64_bytes) {
        views.push((
            name.to_string(),
            TensorView::new(Dtype::F64, shape.clone(), bytes).map_err(bad)?,
        ));
    }
    let data = safetensors::serialize(views, metadata).map_err(bad)?;
    write_atomic(path, &data)
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// reader never sees a half-written file. The temporary file is hidden and carries the process
/// id (`.NAME.tmp-PID`): the runner removes those of killed runs.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let tmp: PathBuf = {
        let mut name = std::ffi::OsString::from(".");
        name.push(path.file_name().unwrap_or_default());
        name.push(format!(".tmp-{}", std::process::id()));
        path.with_file_name(name)
    };
    // Whatever fails, no temporary file stays behind.
    let written = std::fs::write(&tmp, bytes)
        .map_err(|e| CacheError::io(&tmp, e))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| CacheError::io(path, e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rename that fails (the target is a non-empty directory) leaves no temporary file.
    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.json");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("keep"), b"x").unwrap();
        assert!(write_atomic(&target, b"{}").is_err());
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["out.json"]);
        write_atomic(&dir.path().join("fine.json"), b"{}").unwrap();
        assert_eq!(std::fs::read(dir.path().join("fine.json")).unwrap(), b"{}");
    }

    /// A cache whose files are mutated (bytes flipped, truncated, sizes overwritten) loads or
    /// fails with an error; it never panics or allocates what the files cannot back.
    /// `UEB_FUZZ_CASES` cases (256 by default).
    #[test]
    fn mutated_cache_files_never_panic() {
        use crate::{
            Activation, CacheMeta, Classifier, ClassifierKind, ClassifierMeta, FeatureCache, RowUnit, SplitData,
        };
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let split = SplitData {
            features: vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0],
            logits: vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0],
            labels: vec![0, 1, 1],
            group: None,
            dim: 2,
            num_classes: 2,
        };
        let cache = FeatureCache {
            meta: CacheMeta {
                format: "ueb-cache".into(),
                version: 1,
                task: RowUnit::Sequence,
                num_classes: 2,
                feature_dim: 2,
                classifier: ClassifierMeta {
                    kind: ClassifierKind::Linear,
                    activation: Activation::None,
                },
                label_names: vec!["a".into(), "b".into()],
                provenance: serde_json::Value::Null,
            },
            classifier: Classifier {
                kind: ClassifierKind::Linear,
                activation: Activation::None,
                dense_weight: None,
                dense_bias: None,
                out_weight: vec![1.0, 0.0, 0.0, 1.0],
                out_bias: None,
                dim: 2,
                num_classes: 2,
            },
            train: split.clone(),
            val: split.clone(),
            test: split,
        };
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        cache.write(&good).unwrap();
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&good)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        assert!(FeatureCache::load(&good).is_ok());
        let cases = std::env::var("UEB_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256);
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let edit = prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| (0u8, i, u64::from(b))),
            (any::<usize>(), any::<u64>()).prop_map(|(i, w)| (1u8, i, w)),
            (any::<usize>(), Just(0u64)).prop_map(|(i, _)| (2u8, i, 0)),
            (
                any::<usize>(),
                prop_oneof![Just(u64::MAX), Just(u64::from(u32::MAX)), 0u64..100_000]
            )
                .prop_map(|(i, w)| (1u8, i, w)),
        ];
        let work = dir.path().join("work");
        runner
            .run(&(0..files.len(), prop::collection::vec(edit, 1..5)), |(k, edits)| {
                let mut bytes = files[k].1.clone();
                for (kind, at, value) in edits {
                    if bytes.is_empty() {
                        break;
                    }
                    let i = at % bytes.len();
                    match kind {
                        0 => bytes[i] = value as u8,
                        1 => {
                            for (j, b) in value.to_le_bytes().into_iter().enumerate() {
                                if let Some(slot) = bytes.get_mut(i + j) {
                                    *slot = b;
                                }
                            }
                        }
                        _ => bytes.truncate(i),
                    }
                }
                std::fs::create_dir_all(&work).unwrap();
                for (name, original) in &files {
                    std::fs::write(work.join(name), original).unwrap();
                }
                std::fs::write(work.join(&files[k].0), &bytes).unwrap();
                let _ = FeatureCache::load(&work);
                Ok(())
            })
            .unwrap();
    }
}
