//! The heads' integration tests, in one binary: each module was a test target of its own, and every binary that
//! links burn is a link of its own (decision B11).

mod binning;
mod classical;
mod devices;
mod dirichlet;
mod trainable_fit;
mod trainable_init;
mod trainable_loss;
