//! The backbones' integration tests, in one binary: each module was a test target of its own, and every binary that
//! links burn is a link of its own (decision B11).

mod decoder_finetune;
mod decoder_parity;
mod finetune;
mod host_training;
mod minilm;
mod parity;
mod sharded;
