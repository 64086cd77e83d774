#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The host fine-tuning engine against PyTorch, transformers and peft: gradients of full and
//! LoRA fine-tuning and three AdamW steps with global clipping, recorded by
//! `fixtures/make_training_fixtures.py` on the tiny checkpoints of `fixtures/`.

use std::collections::HashMap;
use std::path::PathBuf;

use burn::tensor::Device;
use serde::Deserialize;
use ueb_backbones::{
    AdamW, Dropouts, Encoded, Family, FinetuneMode, HostTrainer, LoadOptions, ModelDir, Positions, SequenceClassifier,
    load_sequence_classifier,
};

#[derive(Deserialize)]
struct Row {
    ids: Vec<u32>,
    type_ids: Vec<u32>,
}

#[derive(Deserialize)]
struct Full {
    loss: f64,
    grads: HashMap<String, Vec<f32>>,
}

#[derive(Deserialize)]
struct Lora {
    loss: f64,
    factors: HashMap<String, Vec<f32>>,
    grads: HashMap<String, Vec<f32>>,
}

#[derive(Deserialize)]
struct Step {
    loss: f64,
    norm: f64,
    values: HashMap<String, Vec<f32>>,
}

#[derive(Deserialize)]
struct Opt {
    lr: f64,
    weight_decay: f64,
    max_grad_norm: f64,
}

#[derive(Deserialize)]
struct Fixture {
    rows: Vec<Row>,
    labels: Vec<usize>,
    adamw: Opt,
    full: Full,
    lora: Lora,
    lora_steps: Vec<Step>,
}

struct Case {
    model: SequenceClassifier,
    family: Family,
    pad: u32,
    fx: Fixture,
    rows: Vec<Encoded>,
}

fn case(name: &str) -> Case {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let md = ModelDir::open(&dir).unwrap();
    let (model, config, _) = load_sequence_classifier(&md, &LoadOptions::default(), &Device::flex()).unwrap();
    let fx: Fixture = serde_json::from_str(&std::fs::read_to_string(dir.join("training.json")).unwrap()).unwrap();
    let rows = fx
        .rows
        .iter()
        .map(|r| Encoded {
            ids: r.ids.clone(),
            type_ids: r.type_ids.clone(),
        })
        .collect();
    Case {
        model,
        family: config.family,
        pad: config.pad_token_id as u32,
        fx,
        rows,
    }
}

impl Case {
    fn positions(&self) -> Positions {
        if self.family == Family::Roberta {
            Positions::AfterPad
        } else {
            Positions::FromZero
        }
    }

    fn batch(&self, t: &mut HostTrainer) -> f64 {
        let refs: Vec<&Encoded> = self.rows.iter().collect();
        t.accumulate(&refs, None, &self.fx.labels, self.pad, self.positions(), 1.0)
            .unwrap()
    }

    fn lora_trainer(&self) -> HostTrainer {
        let mut t = HostTrainer::new(&self.model, &FinetuneMode::lora(), Dropouts::none(), 0).unwrap();
        for layer in 0..2 {
            for target in ["query", "key", "value"] {
                let p = format!("backbone.encoder.layer.{layer}.attention.self_attn.{target}");
                let f = &self.fx.lora.factors;
                t.set_lora(
                    layer,
                    target,
                    f[&format!("{p}.lora_a")].clone(),
                    f[&format!("{p}.lora_b")].clone(),
                )
                .unwrap();
            }
        }
        t
    }
}

/// Largest absolute difference, relative to the reference's largest magnitude or `floor`,
/// whichever is larger (a gradient that is zero in exact arithmetic, such as a key bias's,
/// is rounding noise on both sides).
fn rel(got: &[f32], want: &[f32], floor: f64) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(floor, |m, v| m.max(f64::from(v.abs())));
    got.iter()
        .zip(want)
        .map(|(a, b)| f64::from((a - b).abs()))
        .fold(0.0, f64::max)
        / scale
}

fn check(name: &str, what: &str, got: &HashMap<String, Vec<f32>>, want: &HashMap<String, Vec<f32>>, tol: f64) -> f64 {
    assert_eq!(
        {
            let mut k: Vec<_> = got.keys().collect();
            k.sort();
            k
        },
        {
            let mut k: Vec<_> = want.keys().collect();
            k.sort();
            k
        },
        "{name} {what}: the trainable parameters differ"
    );
    // 1e-2 of the largest value of any tensor: what counts as zero.
    let floor = 1e-2 * want.values().flatten().fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
    let mut worst = 0.0f64;
    for (k, w) in want {
        let e = rel(&got[k], w, floor);
        assert!(e <= tol, "{name} {what} {k}: off by {e:.2e} of its largest value");
        worst = worst.max(e);
    }
    eprintln!("{name} {what}: largest relative difference {worst:.2e}");
    worst
}

const MODELS: [&str; 3] = ["bert", "roberta", "electra-proj"];

/// Full fine-tuning: the loss and every parameter's gradient, within 1e-5 of the largest.
#[test]
fn full_gradients_match_pytorch() {
    for name in MODELS {
        let c = case(name);
        let mut t = HostTrainer::new(&c.model, &FinetuneMode::Full, Dropouts::none(), 0).unwrap();
        let loss = c.batch(&mut t);
        assert!(
            (loss - c.fx.full.loss).abs() < 1e-5,
            "{name}: loss {loss} vs {}",
            c.fx.full.loss
        );
        let got: HashMap<String, Vec<f32>> = t.gradients().into_iter().collect();
        check(name, "full", &got, &c.fx.full.grads, 1e-5);
    }
}

/// LoRA (peft, r = 8, α = 16 on query, key, value; head trained): the factors' and the head's
/// gradients, and nothing else trains.
#[test]
fn lora_gradients_match_peft() {
    for name in MODELS {
        let c = case(name);
        let mut t = c.lora_trainer();
        let loss = c.batch(&mut t);
        assert!(
            (loss - c.fx.lora.loss).abs() < 1e-5,
            "{name}: loss {loss} vs {}",
            c.fx.lora.loss
        );
        let got: HashMap<String, Vec<f32>> = t.gradients().into_iter().collect();
        check(name, "lora", &got, &c.fx.lora.grads, 1e-5);
        let params: usize = c.fx.lora.grads.values().map(Vec::len).sum();
        assert_eq!(t.trainable_parameters(), params);
    }
}

/// Three steps of PyTorch's AdamW (decoupled decay, none on biases) after `clip_grad_norm_`.
#[test]
fn three_adamw_steps_match_pytorch() {
    for name in MODELS {
        let c = case(name);
        let mut t = c.lora_trainer();
        let opt = AdamW {
            lr: c.fx.adamw.lr,
            weight_decay: c.fx.adamw.weight_decay,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            max_grad_norm: Some(c.fx.adamw.max_grad_norm),
        };
        for (i, want) in c.fx.lora_steps.iter().enumerate() {
            let loss = c.batch(&mut t);
            assert!(
                (loss - want.loss).abs() < 1e-4,
                "{name} step {i}: loss {loss} vs {}",
                want.loss
            );
            let norm = t.step(&opt);
            assert!(
                (norm - want.norm).abs() < 1e-4 * want.norm,
                "{name} step {i}: norm {norm} vs {}",
                want.norm
            );
            let mut got = HashMap::new();
            for (k, v) in t.values() {
                if want.values.contains_key(&k) {
                    got.insert(k, v);
                }
            }
            // AdamW divides by √v: where a gradient element is small, the rounding of the
            // gradient (1e-5 of the largest, above) moves the step by a larger fraction.
            check(name, &format!("step {i}"), &got, &want.values, 1e-4);
        }
    }
}
