//! Decoder backbones (LLaMA-2, Qwen2.5, Qwen3): one implementation with family switches
//! (Qwen2's q/k/v biases, Qwen3's QK-norm, tied embeddings), HF loading, sequence
//! classification at the last real token and multiple-choice scoring with a causal LM.

mod config;
mod loader;
mod model;
pub mod multiple_choice;

pub use config::{DecoderConfig, DecoderFamily};
pub use loader::{checkpoint_score_classes, is_decoder, load_causal_lm, load_decoder, load_decoder_classifier};
pub use model::{CausalLm, Decoder, DecoderClassifier, last_token};
