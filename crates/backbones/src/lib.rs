//! BERT-family encoders (BERT, MiniLM, RoBERTa, ELECTRA) and decoders (LLaMA-2, Qwen2.5,
//! Qwen3) in burn: loading Hugging Face checkpoints, tokenization, fine-tuning, multiple-choice
//! scoring and feature-cache export.
//!
//! The expensive model pass lives here; everything downstream (heads, metrics) reads the
//! feature cache it writes (`ueb_cache::FeatureCache`).

mod config;
mod decoder;
mod encoder;
mod error;
mod export;
mod extract;
mod finetune;
mod host;
mod hub;
mod loader;
mod readback;
pub mod scratch;
mod tokenize;

pub use config::{EncoderConfig, Family, HiddenAct, RawConfig};
pub use decoder::{
    CausalLm, Decoder, DecoderClassifier, DecoderConfig, DecoderFamily, checkpoint_score_classes, is_decoder,
    last_token, load_causal_lm, load_decoder, load_decoder_classifier, multiple_choice,
};
pub use encoder::{
    Attention, Embeddings, Encoder, EncoderInput, Intermediate, Layer, LayerStack, ResidualOutput, SelfAttention,
    SequenceClassifier, SequenceHead, SequenceOutput, TokenClassifier, TokenOutput, first_token,
};
pub use error::{BackboneError, Result};
pub use export::{ExportMeta, ExportSplits, FeatureSplits, classifier_of, export_cache, export_cache_from_features};
pub use extract::{Extracted, Extractor};
pub use finetune::{
    ClassifierModel, EpochRecord, FeatureSplit, FinetuneConfig, FinetuneEngine, FinetuneMode, FinetuneReport,
    LabeledSplit, Trainer, finetune, finetune_engine, finetune_on_features, linear_schedule,
};
pub use host::{AdamW, Dropouts, HostDecoder, HostEncoder, HostOutput, HostTrainer};
pub use hub::ModelRef;
pub use loader::{
    LoadOptions, LoadReport, ModelDir, TensorInfo, checkpoint_classes, load_encoder, load_sequence_classifier,
    load_token_classifier, read_header,
};
pub use readback::{TorchLinear, linear_to_torch};
pub use tokenize::{Encoded, Positions, TextInput, TextTokenizer, TokenizerTarget, collate};
