#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Sharded checkpoints (`model.safetensors.index.json` and its shards, split by
//! `fixtures/make_sharded_fixtures.py` with the Hugging Face stack's own splitter) load into the
//! same model as the single-file copy, bit for bit; a broken index is an error naming it.

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use crate::parity::copy_dir;
use ueb_backbones::{
    Extractor, LoadOptions, ModelDir, TextInput, TextTokenizer, load_decoder_classifier, load_sequence_classifier,
};

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

const TEXTS: [&str; 3] = ["the cat sat on the mat", "a", "sharded weights load the same model"];

/// Features and logits of `TEXTS` through the model in `md`.
fn outputs(md: &ModelDir, decoder: bool) -> (Vec<f32>, Vec<f32>, String) {
    let device = Device::flex();
    let (extractor, tok, report) = if decoder {
        let (m, c, r) = load_decoder_classifier(md, &LoadOptions::default(), &device).unwrap();
        let tok = TextTokenizer::from_file(&md.tokenizer, &c, Some(16)).unwrap();
        (Extractor::DecoderClassifier(Box::new(m)), tok, r)
    } else {
        let (m, c, r) = load_sequence_classifier(md, &LoadOptions::default(), &device).unwrap();
        let tok = TextTokenizer::from_file(&md.tokenizer, &c, Some(16)).unwrap();
        (Extractor::Classifier(Box::new(m)), tok, r)
    };
    let texts: Vec<TextInput<'_>> = TEXTS.iter().map(|t| TextInput::Single(t)).collect();
    let enc = tok.encode(&texts).unwrap();
    let out = extractor.run(&tok, &enc, 2, &device, None).unwrap();
    (out.features, out.logits.unwrap(), report.summary())
}

#[test]
fn sharded_checkpoints_load_the_single_file_model_bit_for_bit() {
    for (name, decoder) in [("bert", false), ("llama", true)] {
        let single = ModelDir::open(&dir(name)).unwrap();
        let sharded = ModelDir::open(&dir(&format!("{name}-sharded"))).unwrap();
        assert_eq!(single.shards.len(), 1);
        assert_eq!(sharded.shards.len(), 4, "{name}");
        assert!(sharded.weights.ends_with("model.safetensors.index.json"));
        assert_eq!(single.header().unwrap(), sharded.header().unwrap(), "{name}");
        let (f1, z1, r1) = outputs(&single, decoder);
        let (f2, z2, r2) = outputs(&sharded, decoder);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&f1), bits(&f2), "{name}: features");
        assert_eq!(bits(&z1), bits(&z2), "{name}: logits");
        assert_eq!(r1, r2, "{name}: load reports");
    }
}

#[test]
fn a_broken_index_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let index = |d: &Path| d.join("model.safetensors.index.json");
    let edit = |d: &Path, f: &dyn Fn(&str) -> String| {
        let text = std::fs::read_to_string(index(d)).unwrap();
        std::fs::write(index(d), f(&text)).unwrap();
    };
    // A shard that is not there.
    let d = tmp.path().join("missing");
    copy_dir(&dir("bert-sharded"), &d);
    std::fs::remove_file(d.join("model-00003-of-00004.safetensors")).unwrap();
    let e = ModelDir::open(&d).unwrap_err().to_string();
    assert!(
        e.contains("model.safetensors.index.json") && e.contains("model-00003-of-00004.safetensors is missing"),
        "{e}"
    );
    // A shard name that leaves the directory.
    let d = tmp.path().join("escape");
    copy_dir(&dir("bert-sharded"), &d);
    edit(&d, &|t| {
        t.replacen(
            "\"model-00001-of-00004.safetensors\"",
            "\"../model-00001-of-00004.safetensors\"",
            1,
        )
    });
    let e = ModelDir::open(&d).unwrap_err().to_string();
    assert!(e.contains("not a .safetensors file name in this directory"), "{e}");
    // The index places a tensor in a shard that does not hold it.
    let d = tmp.path().join("misplaced");
    copy_dir(&dir("bert-sharded"), &d);
    let text = std::fs::read_to_string(index(&d)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let (key, file) = v["weight_map"].as_object().unwrap().iter().next().unwrap();
    let other = if file.as_str() == Some("model-00001-of-00004.safetensors") {
        "model-00002-of-00004.safetensors"
    } else {
        "model-00001-of-00004.safetensors"
    };
    edit(&d, &|t| {
        t.replacen(&format!("\"{key}\": {file}"), &format!("\"{key}\": \"{other}\""), 1)
    });
    let md = ModelDir::open(&d).unwrap();
    let e = md.header().unwrap_err().to_string();
    assert!(e.contains(key.as_str()) && e.contains("does not hold it"), "{e}");
    let e = load_sequence_classifier(&md, &LoadOptions::default(), &Device::flex())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("does not hold it"), "{e}");
    // Not an index at all.
    let d = tmp.path().join("garbage");
    copy_dir(&dir("bert-sharded"), &d);
    std::fs::write(index(&d), "{]").unwrap();
    let e = ModelDir::open(&d).unwrap_err().to_string();
    assert!(e.contains("not a safetensors index"), "{e}");
}
