//! Uncertainty-estimation heads fitted on cached features and logits: the built-in scores,
//! temperature and vector scaling, Mahalanobis and relative Mahalanobis distances, and the
//! trainable AdUE and ALIEN heads of arXiv 2505.15443, the multiple-choice temperature of
//! arXiv 2310.11732; plus the feature cache they read.
//!
//! A head is configured by a [`HeadSpec`], fitted with [`HeadSpec::fit`] on a [`FeatureCache`]
//! (one split fits, another selects hyperparameters), and then scores any split: `u`, higher =
//! more uncertain, one value per row in order. Fitted heads save to a directory and [`load`]
//! back with identical scores.

pub mod cache;
pub mod classical;
mod error;
pub mod gemm;
pub mod head;
mod host;
pub mod mahalanobis;
pub mod mc_calibration;
pub mod simd;
pub mod trainable;

pub use cache::{
    Activation, CacheMeta, Classifier, ClassifierKind, ClassifierMeta, FeatureCache, LoadReport, LogitTolerance, Split,
    SplitData, Task,
};
pub use error::HeadError;
pub use head::{FitContext, HEAD_NAMES, Head, HeadSpec, ScorePrecision, load};

/// Whether `device` is one of burn's CPU devices (flex or ndarray, with or without autodiff).
/// On these, ueb runs its own host kernels instead of burn's per-operation passes where it has
/// them (the encoder's feature extraction, the trainable heads' training): the same functions,
/// without a pass and an allocation per element-wise operation (`docs/decisions.md`).
pub fn is_cpu_device(device: &burn::tensor::Device) -> bool {
    #[allow(deprecated)] // burn 0.22 deprecates ndarray; ueb still offers it
    let cpu = {
        let inner = device.clone().inner();
        inner == burn::tensor::Device::flex() || inner == burn::tensor::Device::ndarray()
    };
    cpu
}
