//! Dataset readers, the split protocol of arXiv 2505.15443 and a synthetic task.
//!
//! - [`registry`] / [`load`]: the named datasets (SST-2, CoLA, MRPC, SST-5, TREC,
//!   20 Newsgroups, AG News, ToxiGen, MMLU, ARC-Challenge, CoNLL-2003, WNUT-17, `synthetic`) read from
//!   their original release files under a data root (`data/` by default; the layout is in
//!   `docs/datasets.md`).
//! - [`load_generic`]: any CSV/TSV/JSON Lines/parquet files with a YAML column mapping
//!   ([`GenericSpec`]).
//! - [`holdout`]: the protocol's seeded 20% validation holdout; every [`Split`] carries a
//!   [`fingerprint`] of its ids and labels.
//! - [`generate`]: documents with a known Bayes posterior ([`Oracle`]).
//! - [`stats`]: what `ueb data stats` prints.
//!
//! Nothing here downloads: a missing dataset is a [`DataError::NotFound`] that says where
//! ueb looked and how to get the files.

mod dataset;
mod error;
mod export;
mod generic;
mod io;
mod readers;
mod registry;
pub mod rng;
mod split;
mod stats;
mod synthetic;
pub mod untrusted;

pub use dataset::{Dataset, Example, Input, Label, Oracle, Split, SplitParts, Task, fingerprint};
pub use error::{DataError, Location, Result};
pub use export::{example_json, write_jsonl};
pub use generic::{Column, Format, GenericSpec, GenericSplits, load_generic};
pub use readers::conll::iob1_to_iob2;
pub use readers::newsgroups::{
    GROUPS as NEWSGROUPS, NewsgroupsPart, strip as strip_newsgroup, strip_footer, strip_header, strip_quotes,
};
pub use readers::toxigen::unwrap_bytes_literal;
pub use registry::{DEFAULT_ROOT, DatasetInfo, DatasetOptions, info, load, registry};
pub use split::{DEFAULT_SEED, DEFAULT_VAL_FRACTION, holdout, holdout_indices, val_size};
pub use stats::{
    DatasetStats, LabelCounts, LengthStats, OracleStats, SplitMap, SplitStats, nearest_rank, split_stats, stats,
};
pub use synthetic::{SyntheticConfig, SyntheticModel, generate, write_oracle_csv};
