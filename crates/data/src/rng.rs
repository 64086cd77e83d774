//! The deterministic random numbers of splits and the synthetic task: [`ueb_rng`]'s
//! SplitMix64, whose exact definition `docs/datasets.md` gives and the reference scripts
//! re-implement.

pub use ueb_rng::{Rng64, SplitMix64, derive_seed};
