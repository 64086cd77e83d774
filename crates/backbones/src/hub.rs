//! Resolving a model reference: a local Hugging Face directory, or `hf:ID@REVISION` from the
//! standard Hugging Face cache (`$HF_HOME/hub`, downloaded there when online).

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use crate::error::{BackboneError, Result};
use crate::loader::ModelDir;

/// The files a model directory needs.
const FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

/// A parsed model reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    /// A local directory.
    Local(PathBuf),
    /// A hub repository at a revision (branch, tag or commit; `main` when omitted).
    Hub {
        /// `owner/name`.
        id: String,
        /// The revision.
        revision: String,
    },
}

impl ModelRef {
    /// Parses `hf:ID[@REVISION]` or a path.
    ///
    /// # Errors
    /// A malformed `hf:` reference.
    pub fn parse(s: &str) -> Result<Self> {
        let Some(rest) = s.strip_prefix("hf:") else {
            return Ok(ModelRef::Local(PathBuf::from(s)));
        };
        let (id, revision) = match rest.split_once('@') {
            Some((id, rev)) => (id, rev),
            None => (rest, "main"),
        };
        let valid = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        let parts: Vec<&str> = id.split('/').collect();
        if !(1..=2).contains(&parts.len()) || !parts.iter().all(|p| valid(p)) || revision.is_empty() {
            return Err(BackboneError::Hub {
                reference: s.to_string(),
                message: "expected hf:OWNER/NAME@REVISION (e.g. hf:FacebookAI/roberta-base@main)".into(),
            });
        }
        Ok(ModelRef::Hub {
            id: id.to_string(),
            revision: revision.to_string(),
        })
    }

    /// Resolves to a model directory: a local one as is; a hub one from the Hugging Face cache,
    /// downloading the missing files unless `HF_HUB_OFFLINE` is set.
    ///
    /// # Errors
    /// A missing directory or file, or a failed download with the reason (offline, unknown
    /// repository or revision, no safetensors weights).
    pub fn resolve(&self) -> Result<ModelDir> {
        match self {
            ModelRef::Local(dir) => ModelDir::open(dir),
            ModelRef::Hub { id, revision } => resolve_hub(id, revision),
        }
    }
}

fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0" && v.to_lowercase() != "false")
}

fn resolve_hub(id: &str, revision: &str) -> Result<ModelDir> {
    let reference = format!("hf:{id}@{revision}");
    let repo = Repo::with_revision(id.to_string(), RepoType::Model, revision.to_string());
    let cache = Cache::from_env();
    let cached: Vec<Option<PathBuf>> = FILES.iter().map(|f| cache.repo(repo.clone()).get(f)).collect();
    if let Some(dir) = same_dir(&cached) {
        return ModelDir::open(&dir);
    }
    if offline() {
        let missing: Vec<&str> = FILES
            .iter()
            .zip(&cached)
            .filter(|(_, c)| c.is_none())
            .map(|(f, _)| *f)
            .collect();
        return Err(BackboneError::Hub {
            reference,
            message: format!(
                "HF_HUB_OFFLINE is set and the Hugging Face cache ({}) lacks {}; download it online once, or pass a local model directory",
                cache.path().display(),
                missing.join(", ")
            ),
        });
    }
    let api = ApiBuilder::from_cache(cache)
        .with_progress(true)
        .build()
        .map_err(|e| BackboneError::Hub {
            reference: reference.clone(),
            message: e.to_string(),
        })?;
    let api_repo = api.repo(repo);
    let mut paths = Vec::new();
    for f in FILES {
        let p = api_repo.get(f).map_err(|e| BackboneError::Hub {
            reference: reference.clone(),
            message: format!(
                "downloading {f}: {e} (offline? then pass a local model directory or set HF_HUB_OFFLINE=1 with a filled cache{})",
                if f == "model.safetensors" { "; repositories with only pytorch_model.bin are not supported: ueb never unpickles" } else { "" }
            ),
        })?;
        paths.push(Some(p));
    }
    match same_dir(&paths) {
        Some(dir) => ModelDir::open(&dir),
        None => Err(BackboneError::Hub {
            reference,
            message: "downloaded files are not in one snapshot directory".into(),
        }),
    }
}

/// The snapshot directory holding all files, when they are all there and in one place.
fn same_dir(paths: &[Option<PathBuf>]) -> Option<PathBuf> {
    let dirs: Vec<&Path> = paths
        .iter()
        .map(|p| p.as_deref().and_then(Path::parent))
        .collect::<Option<_>>()?;
    let first = dirs.first()?;
    dirs.iter().all(|d| d == first).then(|| first.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        assert_eq!(
            ModelRef::parse("some/dir").ok(),
            Some(ModelRef::Local("some/dir".into()))
        );
        assert_eq!(
            ModelRef::parse("hf:FacebookAI/roberta-base@abc123").ok(),
            Some(ModelRef::Hub {
                id: "FacebookAI/roberta-base".into(),
                revision: "abc123".into()
            })
        );
        assert_eq!(
            ModelRef::parse("hf:bert-base-uncased").ok(),
            Some(ModelRef::Hub {
                id: "bert-base-uncased".into(),
                revision: "main".into()
            })
        );
        for bad in ["hf:", "hf:a/b/c@x", "hf:a b@x", "hf:a/b@"] {
            assert!(ModelRef::parse(bad).is_err(), "{bad}");
        }
    }
}
