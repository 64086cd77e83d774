//! The feature cache, ueb's file contract between the expensive model pass and the cheap heads
//! (`docs/cache-format.md`): one directory per backbone × dataset × seed, written once by the
//! model pass (`ueb-backbones`) and read by every head (`ueb-heads`).
//!
//! ```text
//! meta.json                {"format": "ueb-cache", "version": 1, "task": ..., "num_classes": C,
//!                           "feature_dim": d, "classifier": {"kind", "activation"},
//!                           "label_names": [...], "provenance": {...}}
//! classifier.safetensors   PyTorch nn.Linear layout (weight is [out, in])
//! train|val|test.safetensors   features f32 [N, d], logits f32 [N, C], labels i64 [N] (+ group i64 [N])
//! ```
//!
//! Loading validates everything and recomputes the logits from the features with the
//! classifier: a deviation beyond the tolerance is an error naming the split, row and class.
//!
//! This crate holds the format ([`meta`]), the task [`Classifier`] and its f64 forward pass on
//! the host ([`forward`]), a split in memory ([`SplitData`]), the whole cache
//! ([`FeatureCache`]: load, check, write) and the safetensors/JSON readers and atomic writers
//! that fitted heads share ([`tensors`]). It needs neither burn nor polars.

pub mod classifier;
mod error;
pub mod feature_cache;
pub mod forward;
pub mod meta;
pub mod split;
pub mod tensors;

pub use classifier::Classifier;
pub use error::CacheError;
pub use feature_cache::{FeatureCache, LogitCheck, LogitTolerance};
pub use forward::{HostClassifier, ScorePrecision};
pub use meta::{Activation, CACHE_FORMAT, CACHE_VERSION, CacheMeta, ClassifierKind, ClassifierMeta, RowUnit, Split};
pub use split::SplitData;
pub use tensors::{write_atomic, write_safetensors};
