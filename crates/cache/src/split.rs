//! One split of a cache in memory: features, the model's logits, the labels (and token groups).

/// One split: features, the model's logits and the labels.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SplitData {
    /// Features `[n, d]`, row-major: the classifier's input.
    pub features: Vec<f32>,
    /// The model's logits `[n, C]`, row-major.
    pub logits: Vec<f32>,
    /// Labels `[n]` in `0..C`.
    pub labels: Vec<i64>,
    /// Sentence index of each token (token tasks only).
    pub group: Option<Vec<i64>>,
    /// Feature dimension d.
    pub dim: usize,
    /// Number of classes C.
    pub num_classes: usize,
}

impl SplitData {
    /// Number of rows.
    pub fn n(&self) -> usize {
        self.labels.len()
    }

    /// Feature dimension d.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of classes C.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Features of row `i`.
    pub fn feature_row(&self, i: usize) -> &[f32] {
        &self.features[i * self.dim..(i + 1) * self.dim]
    }

    /// The model's errors: argmax of the stored logits (lowest index on ties) ≠ label.
    pub fn errors(&self) -> Vec<bool> {
        self.logits
            .chunks_exact(self.num_classes)
            .zip(&self.labels)
            .map(|(z, &y)| {
                let k = z
                    .iter()
                    .enumerate()
                    .fold(0, |best, (k, &v)| if v > z[best] { k } else { best });
                k as i64 != y
            })
            .collect()
    }

    /// Softmax of the stored logits in f64, row-major `[n, C]`.
    pub fn probs(&self) -> Vec<f64> {
        let z = ueb_kernels::convert::widen(&self.logits);
        let mut p = vec![0.0; z.len()];
        ueb_metrics::softmax_rows(&z, self.num_classes, &mut p);
        p
    }

    /// The stored logits widened to f64.
    pub fn logits_f64(&self) -> Vec<f64> {
        ueb_kernels::convert::widen(&self.logits)
    }
}
