//! Placeholder for the trainable heads while they are being written: same interface, and a
//! clear error instead of a result.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cache::SplitData;
use crate::error::HeadError;
use crate::head::{FitContext, Head};

/// Settings of the AdUE and ALIEN heads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainableConfig {}

/// A fitted AdUE or ALIEN head.
pub struct TrainedHead;

/// Fits AdUE.
///
/// # Errors
/// Always, until the trainable heads land.
pub fn fit_adue(_cfg: &TrainableConfig, _ctx: &FitContext<'_>) -> Result<TrainedHead, HeadError> {
    Err(HeadError::config("adue", "not available in this build yet"))
}

/// Fits ALIEN.
///
/// # Errors
/// Always, until the trainable heads land.
pub fn fit_alien(_cfg: &TrainableConfig, _ctx: &FitContext<'_>) -> Result<TrainedHead, HeadError> {
    Err(HeadError::config("alien", "not available in this build yet"))
}

impl TrainedHead {
    /// Loads a saved head.
    ///
    /// # Errors
    /// Always, until the trainable heads land.
    pub fn load(_dir: &Path) -> Result<Self, HeadError> {
        Err(HeadError::config("adue/alien", "not available in this build yet"))
    }
}

impl Head for TrainedHead {
    fn name(&self) -> &'static str {
        "alien"
    }
    fn score(&self, _split: &SplitData) -> Result<Vec<f64>, HeadError> {
        Err(HeadError::config("alien", "not available in this build yet"))
    }
    fn summary(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    fn save(&self, _dir: &Path) -> Result<(), HeadError> {
        Err(HeadError::config("alien", "not available in this build yet"))
    }
}
