//! Resolving a model reference: a local Hugging Face directory, or `hf:ID@REVISION` from the
//! Hugging Face cache, downloaded there when online.
//!
//! The environment is the Hugging Face stack's own: `HF_HUB_CACHE` (else `$HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`) for the cache, `HF_ENDPOINT` for a mirror, `HF_TOKEN` (else the
//! token file `huggingface-cli login` writes, `$HF_TOKEN_PATH` or `$HF_HOME/token`) for gated
//! and private models, `HF_HUB_OFFLINE` to use the cache alone. Weights are `model.safetensors`
//! or, for sharded checkpoints, `model.safetensors.index.json` and the shards it lists.
//! Downloads resume after an interruption and retry a dropped connection.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};

use crate::error::{BackboneError, Result};
use crate::loader::ModelDir;

/// The files every model directory needs besides its weights.
const FILES: [&str; 2] = ["config.json", "tokenizer.json"];

/// Single-file weights.
const WEIGHTS: &str = "model.safetensors";

/// The index of sharded weights.
const INDEX: &str = "model.safetensors.index.json";

/// Attempts per file after a dropped connection (the part already downloaded is kept).
const RETRIES: usize = 3;

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
    /// A missing directory or file, or a failed download with the reason and what to do
    /// (offline, gated or private, unknown repository or revision, no safetensors weights).
    pub fn resolve(&self) -> Result<ModelDir> {
        match self {
            ModelRef::Local(dir) => ModelDir::open(dir),
            ModelRef::Hub { id, revision } => resolve_hub(id, revision, &HubEnv::from_env()),
        }
    }
}

/// The Hugging Face environment variables ueb honours.
#[derive(Debug, Clone)]
struct HubEnv {
    cache: PathBuf,
    endpoint: Option<String>,
    token: Option<String>,
    offline: bool,
}

impl HubEnv {
    fn from_env() -> Self {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// The settings from environment variables looked up by `lookup` (empty counts as unset).
    fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let var = |k: &str| lookup(k).filter(|v| !v.is_empty());
        let home = var("HF_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache").join("huggingface")));
        let cache = var("HF_HUB_CACHE")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join("hub")))
            .unwrap_or_else(|| Cache::from_env().path().clone());
        let token_file = var("HF_TOKEN_PATH")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join("token")));
        let token = var("HF_TOKEN").or_else(|| {
            token_file
                .and_then(|p| std::fs::read_to_string(p).ok())
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        });
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| v != "0" && v.to_lowercase() != "false");
        Self {
            cache,
            endpoint: var("HF_ENDPOINT").map(|e| e.trim_end_matches('/').to_string()),
            token,
            offline,
        }
    }
}

/// The snapshot directory of `repo` when every file it needs is in the cache.
fn cached(cache: &Cache, repo: &Repo) -> Option<PathBuf> {
    let c = cache.repo(repo.clone());
    let mut paths: Vec<PathBuf> = FILES.iter().map(|f| c.get(f)).collect::<Option<_>>()?;
    match c.get(WEIGHTS) {
        Some(p) => paths.push(p),
        None => {
            let index = c.get(INDEX)?;
            for shard in shard_names(&index).ok()? {
                paths.push(c.get(&shard)?);
            }
            paths.push(index);
        }
    }
    same_dir(&paths)
}

/// The shard file names of an index (the loader checks them again, with messages).
fn shard_names(index: &Path) -> std::result::Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(index).map_err(|e| e.to_string())?;
    let parsed: Index = serde_json::from_str(&text).map_err(|e| format!("not a safetensors index: {e}"))?;
    let mut names: Vec<String> = parsed.weight_map.into_values().collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// The HTTP status of a failed request, if it got one.
fn status(e: &ApiError) -> Option<u16> {
    match e {
        ApiError::RequestError(inner) => match &**inner {
            ureq::Error::Status(code, _) => Some(*code),
            ureq::Error::Transport(_) => None,
        },
        ApiError::TooManyRetries(inner) => status(inner),
        _ => None,
    }
}

fn resolve_hub(id: &str, revision: &str, env: &HubEnv) -> Result<ModelDir> {
    let reference = format!("hf:{id}@{revision}");
    let err = |message: String| BackboneError::Hub {
        reference: reference.clone(),
        message,
    };
    let repo = Repo::with_revision(id.to_string(), RepoType::Model, revision.to_string());
    let cache = Cache::new(env.cache.clone());
    if let Some(dir) = cached(&cache, &repo) {
        return ModelDir::open(&dir);
    }
    if env.offline {
        return Err(err(format!(
            "HF_HUB_OFFLINE is set and the Hugging Face cache ({}) lacks some of its files (config.json, \
             tokenizer.json, model.safetensors or the shards of model.safetensors.index.json); download it \
             online once, or pass a local model directory",
            env.cache.display()
        )));
    }
    let mut builder = ApiBuilder::from_cache(cache)
        .with_token(env.token.clone())
        .with_retries(RETRIES)
        .with_progress(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if let Some(endpoint) = &env.endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    let api = builder.build().map_err(|e| err(e.to_string()))?;
    let api_repo = api.repo(repo);
    let endpoint = env.endpoint.as_deref().unwrap_or("https://huggingface.co");
    let explain = |file: &str, e: &ApiError| -> String {
        match status(e) {
            Some(401 | 403) if env.token.is_none() => format!(
                "{file}: the Hub refused access ({e}): the model is gated or private; accept its licence \
                 on its Hub page, then set HF_TOKEN to an access token (or run `huggingface-cli login`)"
            ),
            Some(401 | 403) => format!(
                "{file}: the Hub refused the token ({e}): check that HF_TOKEN (or the saved login) is valid \
                 and that its account has accepted the model's licence"
            ),
            Some(404) => format!(
                "{file}: not found ({e}): check the repository name and the revision `{revision}` on {endpoint}"
            ),
            Some(_) => format!("{file}: {e}"),
            None => format!(
                "{file}: {e} (no connection to {endpoint}? then pass a local model directory, or set \
                 HF_HUB_OFFLINE=1 with a filled cache)"
            ),
        }
    };
    let mut paths = Vec::new();
    for f in FILES {
        paths.push(api_repo.get(f).map_err(|e| err(explain(f, &e)))?);
    }
    match api_repo.get(WEIGHTS) {
        Ok(p) => paths.push(p),
        Err(e) if status(&e) == Some(404) => {
            let index = api_repo.get(INDEX).map_err(|e| {
                if status(&e) == Some(404) {
                    err(format!(
                        "the repository has neither {WEIGHTS} nor {INDEX}: ueb reads safetensors weights only \
                         and never unpickles pytorch_model.bin; convert it once with transformers \
                         (`save_pretrained(dir, safe_serialization=True)`)"
                    ))
                } else {
                    err(explain(INDEX, &e))
                }
            })?;
            for shard in shard_names(&index).map_err(|m| err(format!("{INDEX}: {m}")))? {
                if Path::new(&shard).file_name().is_none_or(|n| n != shard.as_str()) {
                    return Err(err(format!("{INDEX}: shard {shard:?} is not a plain file name")));
                }
                paths.push(api_repo.get(&shard).map_err(|e| err(explain(&shard, &e)))?);
            }
            paths.push(index);
        }
        Err(e) => return Err(err(explain(WEIGHTS, &e))),
    }
    match same_dir(&paths) {
        Some(dir) => ModelDir::open(&dir),
        None => Err(err("the downloaded files are not in one snapshot directory".into())),
    }
}

/// The snapshot directory holding all files, when they are all in one place.
fn same_dir(paths: &[PathBuf]) -> Option<PathBuf> {
    let dirs: Vec<&Path> = paths.iter().map(|p| p.parent()).collect::<Option<_>>()?;
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

    /// A Hugging Face hub on 127.0.0.1, served by the test: `GET /{owner}/{name}/resolve/{rev}/{file}`
    /// with the headers `hf-hub` reads (`x-repo-commit`, `etag`, `content-range`), range
    /// requests, a gated repository that wants `Bearer secret`, and a first download of every
    /// shard cut off half-way (the client must resume it).
    struct TinyHub {
        addr: std::net::SocketAddr,
        requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    }

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    impl TinyHub {
        fn start() -> Self {
            use std::io::{BufRead, BufReader, Write};
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let log = requests.clone();
            let cut = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashSet::<String>::new()));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { continue };
                    let (log, cut) = (log.clone(), cut.clone());
                    std::thread::spawn(move || {
                        let mut reader = BufReader::new(stream.try_clone().unwrap());
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                        let (mut range, mut auth) = (None, None);
                        loop {
                            let mut h = String::new();
                            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                                break;
                            }
                            let (k, v) = h.split_once(':').unwrap_or((&h, ""));
                            match k.to_ascii_lowercase().as_str() {
                                "range" => range = Some(v.trim().to_string()),
                                "authorization" => auth = Some(v.trim().to_string()),
                                _ => {}
                            }
                        }
                        log.lock()
                            .unwrap()
                            .push(format!("{path} {}", range.clone().unwrap_or_default()));
                        let reply =
                            |stream: &mut std::net::TcpStream, status: &str, headers: &[String], body: &[u8]| {
                                let mut head = format!("HTTP/1.1 {status}\r\nconnection: close\r\n");
                                for h in headers {
                                    head.push_str(h);
                                    head.push_str("\r\n");
                                }
                                head.push_str("\r\n");
                                let _ = stream.write_all(head.as_bytes());
                                let _ = stream.write_all(body);
                            };
                        // /{owner}/{name}/resolve/{rev}/{file}
                        let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
                        let [owner, name, "resolve", _rev, file] = parts[..] else {
                            return reply(&mut stream, "404 Not Found", &["content-length: 0".into()], b"");
                        };
                        let dir = match (owner, name) {
                            ("org", "sharded") | ("org", "gated") => fixture("bert-sharded"),
                            ("org", "single") => fixture("bert"),
                            _ => return reply(&mut stream, "404 Not Found", &["content-length: 0".into()], b""),
                        };
                        if name == "gated" && auth.as_deref() != Some("Bearer secret") {
                            return reply(&mut stream, "401 Unauthorized", &["content-length: 0".into()], b"");
                        }
                        let Ok(bytes) = std::fs::read(dir.join(file)) else {
                            return reply(&mut stream, "404 Not Found", &["content-length: 0".into()], b"");
                        };
                        let start: usize = range
                            .as_deref()
                            .and_then(|r| r.strip_prefix("bytes="))
                            .and_then(|r| r.split('-').next())
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                        let end = match range.as_deref() {
                            Some("bytes=0-0") => 1,
                            _ => bytes.len(),
                        };
                        let etag = format!("{:016x}{:08x}", bytes.len(), file.len());
                        let headers = vec![
                            "x-repo-commit: 0123456789abcdef0123456789abcdef01234567".to_string(),
                            format!("etag: \"{etag}\""),
                            format!("content-range: bytes {start}-{}/{}", end.saturating_sub(1), bytes.len()),
                            format!("content-length: {}", end - start),
                        ];
                        let body = &bytes[start..end];
                        // The first full download of a shard stops half-way.
                        let shard = file.starts_with("model-") && end > 1 && start == 0;
                        if shard && cut.lock().unwrap().insert(format!("{owner}/{name}/{file}")) {
                            return reply(&mut stream, "206 Partial Content", &headers, &body[..body.len() / 2]);
                        }
                        reply(&mut stream, "206 Partial Content", &headers, body);
                    });
                }
            });
            Self { addr, requests }
        }

        fn env(&self, cache: &Path, token: Option<&str>) -> HubEnv {
            HubEnv {
                cache: cache.to_path_buf(),
                endpoint: Some(format!("http://{}", self.addr)),
                token: token.map(str::to_string),
                offline: false,
            }
        }
    }

    #[test]
    fn the_hugging_face_environment_is_read_as_the_python_stack_reads_it() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("hf");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join("token"), "hf_saved\n").unwrap();
        let env = |pairs: &[(&str, &str)]| {
            let map: std::collections::HashMap<String, String> =
                pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            HubEnv::from_vars(move |k| map.get(k).cloned())
        };
        let h = home.to_str().unwrap();
        let e = env(&[("HF_HOME", h)]);
        assert_eq!(e.cache, home.join("hub"));
        assert_eq!(e.token.as_deref(), Some("hf_saved"));
        assert!(e.endpoint.is_none() && !e.offline);
        let e = env(&[
            ("HF_HOME", h),
            ("HF_HUB_CACHE", "/elsewhere"),
            ("HF_TOKEN", "hf_env"),
            ("HF_ENDPOINT", "https://mirror.example/"),
            ("HF_HUB_OFFLINE", "1"),
        ]);
        assert_eq!(e.cache, PathBuf::from("/elsewhere"));
        assert_eq!(e.token.as_deref(), Some("hf_env"));
        assert_eq!(e.endpoint.as_deref(), Some("https://mirror.example"));
        assert!(e.offline);
        let e = env(&[("HOME", "/home/u"), ("HF_HUB_OFFLINE", "false"), ("HF_TOKEN", "")]);
        assert_eq!(e.cache, PathBuf::from("/home/u/.cache/huggingface/hub"));
        assert!(e.token.is_none() && !e.offline);
        let tp = tmp.path().join("t");
        std::fs::write(&tp, "hf_path").unwrap();
        let e = env(&[("HF_HOME", h), ("HF_TOKEN_PATH", tp.to_str().unwrap())]);
        assert_eq!(e.token.as_deref(), Some("hf_path"));
    }

    #[test]
    fn hub_downloads_sharded_and_gated_models_and_says_what_to_do() {
        let hub = TinyHub::start();
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("hub");

        // Sharded: no model.safetensors (404), then the index and its four shards, each cut
        // off once and resumed.
        let md = resolve_hub("org/sharded", "main", &hub.env(&cache, None)).unwrap();
        assert_eq!(md.shards.len(), 4);
        let local = ModelDir::open(&fixture("bert-sharded")).unwrap();
        assert_eq!(md.header().unwrap(), local.header().unwrap());
        for (got, want) in md.shards.iter().zip(&local.shards) {
            assert_eq!(std::fs::read(got).unwrap(), std::fs::read(want).unwrap());
        }
        let resumed = hub
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.contains("/model-") && !r.ends_with("bytes=0-0") && !r.ends_with("bytes=0-"))
            .count();
        assert_eq!(resumed, 4, "{:?}", hub.requests.lock().unwrap());

        // From the cache alone afterwards, offline.
        let mut offline = hub.env(&cache, None);
        offline.offline = true;
        offline.endpoint = Some("http://127.0.0.1:9".into());
        let again = resolve_hub("org/sharded", "main", &offline).unwrap();
        assert_eq!(again.dir, md.dir);
        let e = resolve_hub("org/single", "main", &offline).unwrap_err().to_string();
        assert!(e.contains("HF_HUB_OFFLINE"), "{e}");

        // Single file.
        let md = resolve_hub("org/single", "main", &hub.env(&cache, None)).unwrap();
        assert_eq!(md.shards.len(), 1);

        // Gated: refused without a token, with advice; loaded with one.
        let e = resolve_hub("org/gated", "main", &hub.env(&cache, None))
            .unwrap_err()
            .to_string();
        assert!(e.contains("gated or private") && e.contains("HF_TOKEN"), "{e}");
        let e = resolve_hub("org/gated", "main", &hub.env(&cache, Some("wrong")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("refused the token"), "{e}");
        let md = resolve_hub("org/gated", "main", &hub.env(&cache, Some("secret"))).unwrap();
        assert_eq!(md.shards.len(), 4);

        // Unknown repository.
        let e = resolve_hub("org/nothing", "v1", &hub.env(&cache, None))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not found") && e.contains("`v1`"), "{e}");
    }
}
