//! Running a model over tokenized texts: features (an encoder's first token, a decoder's last
//! real token, in the last layer) and, when the model has a head, logits, in input order.

use burn::tensor::{Device, FloatDType, Tensor};
use indicatif::ProgressBar;

use crate::decoder::{CausalLm, Decoder, DecoderClassifier, last_token};
use crate::encoder::{Encoder, SequenceClassifier, first_token};
use crate::error::{BackboneError, Result};
use crate::host::{HostDecoder, HostEncoder};
use crate::readback::to_host;
use crate::tokenize::{Encoded, TextTokenizer};

/// A model to extract from: a classifier (features and logits) or a bare backbone (features).
#[derive(Debug)]
pub enum Extractor {
    /// An encoder classifier: features and logits.
    Classifier(Box<SequenceClassifier>),
    /// An encoder alone: features only.
    Backbone(Box<Encoder>),
    /// A decoder classifier: the last real token's features and `score` logits.
    DecoderClassifier(Box<DecoderClassifier>),
    /// A decoder alone: the last real token's features.
    Decoder(Box<Decoder>),
    /// A causal LM scoring options: the last real token's features and the logits of
    /// `tokens` there (multiple choice: the option letters).
    Choices {
        /// The model.
        lm: Box<CausalLm>,
        /// The vocabulary ids whose logits are read.
        tokens: Vec<u32>,
    },
}

/// A model's host pass.
enum HostPass {
    Encoder(Box<HostEncoder>),
    Decoder(Box<HostDecoder>),
}

impl HostPass {
    fn dim(&self) -> usize {
        match self {
            HostPass::Encoder(e) => e.dim(),
            HostPass::Decoder(d) => d.dim(),
        }
    }
}

/// Features `[N, d]` and optional logits `[N, C]`, row-major, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    /// `[N, d]`.
    pub features: Vec<f32>,
    /// `[N, C]` when the model has a head.
    pub logits: Option<Vec<f32>>,
    /// d.
    pub dim: usize,
    /// C (0 without a head).
    pub num_classes: usize,
}

impl Extracted {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.features.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Extractor {
    /// One batch: features `[B, d]` and, with a head, logits `[B, C]`.
    fn forward(
        &self,
        tokenizer: &TextTokenizer,
        encoded: &[Encoded],
        rows: &[usize],
        device: &Device,
    ) -> (Tensor<2>, Option<Tensor<2>>) {
        let input = tokenizer.collate(encoded, rows, device);
        match self {
            Extractor::Classifier(m) => {
                let out = m.forward(&input);
                (out.features, Some(out.logits))
            }
            Extractor::Backbone(m) => (first_token(m.forward(&input)), None),
            Extractor::DecoderClassifier(m) => {
                let out = m.forward(&input);
                (out.features, Some(out.logits))
            }
            Extractor::Decoder(m) => (last_token(m.forward(&input), &input.lengths), None),
            Extractor::Choices { lm, tokens } => {
                let out = lm.forward_tokens(&input, tokens);
                (out.features, Some(out.logits))
            }
        }
    }

    /// The host pass ([`HostEncoder`], [`HostDecoder`]) when `device` is a CPU device (flex or
    /// ndarray, with or without autodiff) computing in f32: the same function, computed
    /// without burn's per-operation passes (see `host`). A CPU device set to half precision
    /// runs the burn modules, so that every activation has its float type.
    fn host_pass(&self, device: &Device) -> Result<Option<HostPass>> {
        if !ueb_kernels::burn_ops::is_cpu_device(device) || device.settings().float_dtype != FloatDType::F32 {
            return Ok(None);
        }
        Ok(Some(match self {
            Extractor::Classifier(m) => HostPass::Encoder(Box::new(HostEncoder::new(&m.backbone, Some(&m.head))?)),
            Extractor::Backbone(m) => HostPass::Encoder(Box::new(HostEncoder::new(m, None)?)),
            Extractor::DecoderClassifier(m) => HostPass::Decoder(Box::new(HostDecoder::new(
                &m.model,
                Some(HostDecoder::linear_head(&m.score)?),
            )?)),
            Extractor::Decoder(m) => HostPass::Decoder(Box::new(HostDecoder::new(m, None)?)),
            Extractor::Choices { lm, tokens } => HostPass::Decoder(Box::new(HostDecoder::new(
                &lm.model,
                Some(to_host(lm.head_rows(tokens))?),
            )?)),
        }))
    }

    /// Runs the model over `encoded` in length-sorted batches of `batch_size` and returns the
    /// rows in input order. `progress` is advanced by the number of rows of each batch.
    /// Encoders on a CPU device run on the host ([`HostEncoder`]).
    ///
    /// # Errors
    /// A non-finite feature or logit, naming the input row.
    pub fn run(
        &self,
        tokenizer: &TextTokenizer,
        encoded: &[Encoded],
        batch_size: usize,
        device: &Device,
        progress: Option<&ProgressBar>,
    ) -> Result<Extracted> {
        let n = encoded.len();
        let mut features: Vec<f32> = Vec::new();
        let mut logits: Option<Vec<f32>> = None;
        let (mut d, mut c) = (0, 0);
        let mut host = self.host_pass(device)?;
        for rows in tokenizer.batches(encoded, batch_size) {
            let (fh, zh) = match &mut host {
                Some(h) => {
                    let batch: Vec<&Encoded> = rows.iter().map(|&r| &encoded[r]).collect();
                    // Errors name the input row.
                    let out = match h {
                        HostPass::Encoder(e) => {
                            e.forward_named(&batch, Some(&rows), tokenizer.pad_id(), tokenizer.positions())?
                        }
                        HostPass::Decoder(dec) => dec.forward_named(&batch, Some(&rows))?,
                    };
                    let zc = out.logits.as_ref().map_or(0, |z| z.len() / rows.len().max(1));
                    ((out.features, h.dim()), out.logits.map(|z| (z, zc)))
                }
                None => {
                    let (f, z) = self.forward(tokenizer, encoded, &rows, device);
                    let [_, fd] = f.dims();
                    let z = match z {
                        Some(z) => {
                            let [_, zc] = z.dims();
                            Some((to_host(z)?, zc))
                        }
                        None => None,
                    };
                    ((to_host(f)?, fd), z)
                }
            };
            let (fh, fd) = fh;
            if d == 0 {
                d = fd;
                features = vec![0.0; n * d];
            }
            for (bi, &r) in rows.iter().enumerate() {
                features[r * d..(r + 1) * d].copy_from_slice(&fh[bi * d..(bi + 1) * d]);
            }
            if let Some((zh, zc)) = zh {
                c = zc;
                let out = logits.get_or_insert_with(|| vec![0.0; n * zc]);
                for (bi, &r) in rows.iter().enumerate() {
                    out[r * c..(r + 1) * c].copy_from_slice(&zh[bi * c..(bi + 1) * c]);
                }
            }
            if let Some(p) = progress {
                p.inc(rows.len() as u64);
            }
        }
        if let Some(i) = features.iter().position(|x| !x.is_finite()) {
            return Err(BackboneError::NonFinite(format!(
                "non-finite feature in row {} (column {})",
                i / d.max(1),
                i % d.max(1)
            )));
        }
        if let Some(z) = &logits
            && let Some(i) = z.iter().position(|x| !x.is_finite())
        {
            return Err(BackboneError::NonFinite(format!(
                "non-finite logit in row {} (class {})",
                i / c.max(1),
                i % c.max(1)
            )));
        }
        Ok(Extracted {
            features,
            logits,
            dim: d,
            num_classes: c,
        })
    }
}
