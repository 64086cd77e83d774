//! The `ueb` binary's integration tests, in one binary: each module was a test target of its own, and every binary that
//! links burn is a link of its own (decision B11).

mod adversarial;
mod common;
mod data_cli;
mod eval_cli;
mod extract_cli;
mod run_cli;
mod score_cli;
