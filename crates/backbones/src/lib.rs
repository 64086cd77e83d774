//! BERT-family encoders (BERT, MiniLM, RoBERTa, ELECTRA) and decoders (LLaMA-2, Qwen2.5,
//! Qwen3) in burn: loading Hugging Face checkpoints, tokenization, fine-tuning, multiple-choice
//! scoring and feature-cache export.
//!
//! The expensive model pass lives here; everything downstream (heads, metrics) reads the
//! feature cache it writes (`ueb_cache::FeatureCache`).

pub mod config;
pub mod decoder;
pub mod encoder;
pub mod error;
pub mod export;
pub mod extract;
pub mod finetune;
pub mod host;
pub mod hub;
pub mod loader;
pub mod scratch;
pub mod tokenize;

pub use config::{EncoderConfig, Family, HiddenAct, RawConfig};
pub use decoder::{
    CausalLm, Decoder, DecoderClassifier, DecoderConfig, DecoderFamily, load_causal_lm, load_decoder,
    load_decoder_classifier,
};
pub use encoder::{
    Encoder, EncoderInput, SequenceClassifier, SequenceHead, SequenceOutput, TokenClassifier, TokenOutput,
};
pub use error::{BackboneError, Result};
pub use export::{ExportMeta, ExportSplits, FeatureSplits, classifier_of, export_cache, export_cache_from_features};
pub use extract::{Extracted, Extractor};
pub use finetune::{
    ClassifierModel, EpochRecord, FeatureSplit, FinetuneConfig, FinetuneMode, FinetuneReport, LabeledSplit, finetune,
    finetune_on_features,
};
pub use host::{HostEncoder, HostOutput};
pub use hub::ModelRef;
pub use loader::{
    LoadOptions, LoadReport, ModelDir, load_encoder, load_sequence_classifier, load_token_classifier, read_header,
};
pub use tokenize::{Encoded, Positions, TextInput, TextTokenizer, TokenizerTarget};
