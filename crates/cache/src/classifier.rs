//! The task classifier in PyTorch `nn.Linear` layout: its tensors in `classifier.safetensors`,
//! and its f64 forward pass on the host ([`crate::forward`]).

use crate::error::CacheError;
use crate::forward::HostClassifier;
use crate::meta::{Activation, ClassifierKind, ClassifierMeta};
use crate::tensors::Tensors;

/// The task classifier in PyTorch `nn.Linear` layout (weights are `[out, in]`, row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct Classifier {
    /// `mlp` or `linear`.
    pub kind: ClassifierKind,
    /// Activation after `dense` (`None` for linear classifiers).
    pub activation: Activation,
    /// `dense.weight` `[d, d]` (mlp only).
    pub dense_weight: Option<Vec<f32>>,
    /// `dense.bias` `[d]` (mlp only).
    pub dense_bias: Option<Vec<f32>>,
    /// `out_proj.weight` `[C, d]`.
    pub out_weight: Vec<f32>,
    /// `out_proj.bias` `[C]` (optional for linear classifiers).
    pub out_bias: Option<Vec<f32>>,
    /// Feature dimension d.
    pub dim: usize,
    /// Number of classes C.
    pub num_classes: usize,
}

impl Classifier {
    /// Runs the classifier in f64 over row-major features `[n, d]`; calls `f(row_offset, hidden,
    /// logits)` per block of rows, where `hidden` is `act(dense(h))` (`h` itself for linear
    /// classifiers) `[rows, d]` and `logits` `[rows, C]`, both row-major.
    ///
    /// # Errors
    /// Weights whose lengths do not fit `dim` and `num_classes`.
    pub fn forward_blocks(&self, features: &[f32], f: impl FnMut(usize, &[f64], &[f64])) -> Result<(), CacheError> {
        Ok(HostClassifier::new(self).forward_blocks(features, true, f)?)
    }

    /// `act(dense(h))` for every row (f64, row-major `[n, d]`), the `dense` features of the
    /// Mahalanobis heads; `h` itself for a linear classifier.
    ///
    /// # Errors
    /// As [`Classifier::forward_blocks`].
    pub fn hidden(&self, features: &[f32]) -> Result<Vec<f64>, CacheError> {
        let mut out = Vec::with_capacity(features.len());
        self.forward_blocks(features, |_, hid, _| out.extend_from_slice(hid))?;
        Ok(out)
    }

    /// The logits of every row (f64, row-major `[n, C]`).
    ///
    /// # Errors
    /// As [`Classifier::forward_blocks`].
    pub fn logits(&self, features: &[f32]) -> Result<Vec<f64>, CacheError> {
        Ok(HostClassifier::new(self).logits(features)?)
    }
}

/// The classifier's tensors (`dense.*`, `out_proj.*`) from a parsed safetensors file, checked for
/// shape and finiteness.
pub fn classifier_from_tensors(
    t: &Tensors<'_>,
    meta: ClassifierMeta,
    d: usize,
    c: usize,
) -> Result<Classifier, CacheError> {
    let (dense_weight, dense_bias) = match meta.kind {
        ClassifierKind::Mlp => (Some(t.f32("dense.weight", &[d, d])?), Some(t.f32("dense.bias", &[d])?)),
        ClassifierKind::Linear => (None, None),
    };
    let out_weight = t.f32("out_proj.weight", &[c, d])?;
    let out_bias = match meta.kind {
        ClassifierKind::Mlp => Some(t.f32("out_proj.bias", &[c])?),
        ClassifierKind::Linear if t.has("out_proj.bias") => Some(t.f32("out_proj.bias", &[c])?),
        ClassifierKind::Linear => None,
    };
    let all = [
        ("dense.weight", dense_weight.as_deref()),
        ("dense.bias", dense_bias.as_deref()),
        ("out_proj.weight", Some(&out_weight[..])),
        ("out_proj.bias", out_bias.as_deref()),
    ];
    for (name, values) in all.into_iter().filter_map(|(n, v)| v.map(|v| (n, v))) {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(t.bad(name, format!("{} at flat index {i}", values[i]), "finite values".into()));
        }
    }
    Ok(Classifier {
        kind: meta.kind,
        activation: meta.activation,
        dense_weight,
        dense_bias,
        out_weight,
        out_bias,
        dim: d,
        num_classes: c,
    })
}

impl Classifier {
    /// `kind` and `activation`, as `meta.json` writes them.
    pub fn meta(&self) -> ClassifierMeta {
        ClassifierMeta {
            kind: self.kind,
            activation: self.activation,
        }
    }

    /// The named tensors in PyTorch layout, for writing.
    pub fn tensors(&self) -> Vec<(&'static str, &[f32], Vec<usize>)> {
        let (d, c) = (self.dim, self.num_classes);
        let mut out: Vec<(&'static str, &[f32], Vec<usize>)> = Vec::new();
        if let (Some(w), Some(b)) = (&self.dense_weight, &self.dense_bias) {
            out.push(("dense.weight", w, vec![d, d]));
            out.push(("dense.bias", b, vec![d]));
        }
        out.push(("out_proj.weight", &self.out_weight, vec![c, d]));
        if let Some(b) = &self.out_bias {
            out.push(("out_proj.bias", b, vec![c]));
        }
        out
    }
}
