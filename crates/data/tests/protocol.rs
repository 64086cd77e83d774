//! The split protocol: the shuffle, the holdout's size and determinism, and fingerprints.
//! Expected values are printed by `reference/splitmix.py` and `reference/fingerprint.py`,
//! which re-implement the documented definitions in Python.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ueb_data::rng::{Rng64, SplitMix64, derive_seed};
use ueb_data::{DataError, DatasetOptions, Example, Input, Label, fingerprint, holdout, holdout_indices, val_size};

#[test]
fn splitmix64_reference_outputs() {
    let mut g = SplitMix64::new(42);
    let got: Vec<u64> = (0..3).map(|_| g.next_u64()).collect();
    assert_eq!(got, [13679457532755275413, 2949826092126892291, 5139283748462763858]);
    // Seed 0 is the published SplitMix64 test vector (0xE220A8397B1DCDAF, …).
    let mut g = SplitMix64::new(0);
    assert_eq!(g.next_u64(), 16294208416658607535);
    assert_eq!(g.next_u64(), 7960286522194355700);
    let mut g = SplitMix64::new(7);
    let got: Vec<u64> = (0..8).map(|_| g.below(10)).collect();
    assert_eq!(got, [3, 0, 9, 5, 4, 2, 4, 3]);
    // derive_seed(s, k) is the (k+1)-th output of SplitMix64::new(s).
    assert_eq!(derive_seed(42, 0), 13679457532755275413);
    assert_eq!(derive_seed(42, 2), 5139283748462763858);
}

#[test]
fn shuffle_and_holdout_reference() {
    let mut order: Vec<usize> = (0..10).collect();
    SplitMix64::new(42).shuffle(&mut order);
    assert_eq!(order, [8, 3, 6, 5, 4, 0, 9, 2, 1, 7]);
    let (train, val) = holdout_indices(10, 0.2, 42).unwrap();
    assert_eq!(train, [0, 1, 2, 4, 5, 6, 7, 9]);
    assert_eq!(val, [3, 8]);
    assert_eq!(holdout_indices(23, 0.2, 1).unwrap().1, [0, 2, 9, 15, 17]);
    assert_eq!(holdout_indices(10, 0.2, 7).unwrap().1, [5, 9]);
    assert_eq!(holdout_indices(10, 0.5, 42).unwrap().1, [3, 4, 5, 6, 8]);
}

#[test]
fn holdout_sizes_are_ceil_of_fraction() {
    // (n, ceil(0.2 n)) for the real train splits (reference/splitmix.py, math.ceil).
    for (n, expected) in [
        (5, 1),
        (6, 2),
        (10, 2),
        (67349, 13470),
        (8551, 1711),
        (11314, 2263),
        (8960, 1792),
        (5452, 1091),
        (10001, 2001),
        (1542, 309),
        (294, 59),
    ] {
        assert_eq!(val_size(n, 0.2), expected, "n = {n}");
        let (train, val) = holdout_indices(n, 0.2, 42).unwrap();
        assert_eq!((train.len(), val.len()), (n - expected, expected));
    }
}

#[test]
fn holdout_is_deterministic_disjoint_ordered_and_seed_dependent() {
    let (train_a, val_a) = holdout_indices(1000, 0.2, 42).unwrap();
    let (train_b, val_b) = holdout_indices(1000, 0.2, 42).unwrap();
    assert_eq!((&train_a, &val_a), (&train_b, &val_b));
    let mut all: Vec<usize> = train_a.iter().chain(&val_a).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..1000).collect::<Vec<_>>());
    assert!(val_a.windows(2).all(|w| w[0] < w[1]));
    assert!(train_a.windows(2).all(|w| w[0] < w[1]));
    let (_, val_c) = holdout_indices(1000, 0.2, 43).unwrap();
    assert_ne!(val_a, val_c);

    let items: Vec<String> = (0..10).map(|i| format!("row {i}")).collect();
    let (train, val) = holdout(items, 0.2, 42).unwrap();
    assert_eq!(val, ["row 3", "row 8"]);
    assert_eq!(train.len(), 8);
    assert_eq!(train[3], "row 4");
}

#[test]
fn holdout_rejects_bad_fractions_and_tiny_splits() {
    for bad in [0.0, 1.0, -0.1, f64::NAN, 1.5] {
        let err = holdout_indices(10, bad, 42).unwrap_err();
        assert!(matches!(err, DataError::InvalidOption { .. }), "{bad}: {err}");
        assert!(err.to_string().starts_with("invalid `val_fraction`:"), "{err}");
    }
    let err = holdout_indices(1, 0.2, 42).unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid `val_fraction`: a holdout of 0.2 of 1 examples is 1, which leaves an empty split"
    );
    assert!(holdout_indices(0, 0.2, 42).is_err());
    assert!(holdout_indices(2, 0.2, 42).is_ok());
}

#[test]
fn val_fraction_and_seed_options_reach_the_loaders() {
    let dir = tempfile::tempdir().unwrap();
    let train: String = (0..10).map(|i| format!("DESC:def Q{i} ?\n")).collect();
    std::fs::create_dir_all(dir.path().join("trec")).unwrap();
    std::fs::write(dir.path().join("trec/TREC.train"), train).unwrap();
    std::fs::write(dir.path().join("trec/TREC.test"), "NUM:date When ?\n").unwrap();
    let options = |seed, val_fraction| DatasetOptions {
        root: dir.path().to_path_buf(),
        seed,
        val_fraction,
        ..DatasetOptions::default()
    };
    let ids = |o: &DatasetOptions| -> Vec<String> {
        let d = ueb_data::load("trec", o).unwrap();
        d.split("val")
            .unwrap()
            .examples()
            .iter()
            .map(|e| e.id.clone())
            .collect()
    };
    assert_eq!(ids(&options(42, 0.2)), ["trec:train:3", "trec:train:8"]);
    assert_eq!(ids(&options(7, 0.2)), ["trec:train:5", "trec:train:9"]);
    assert_eq!(ids(&options(42, 0.5)).len(), 5);
}

fn class(id: &str, label: usize) -> Example {
    Example {
        id: id.to_owned(),
        input: Input::Text("ignored".to_owned()),
        label: Label::Class(label),
    }
}

#[test]
fn fingerprint_reference_values() {
    let names: Vec<String> = vec!["0".into(), "1".into()];
    assert_eq!(
        fingerprint(&[], &names),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let two = [class("sst2:train:0", 1), class("sst2:train:1", 0)];
    assert_eq!(
        fingerprint(&two, &names),
        "774a758c766ef759b1a477d14774648f9db536e14288eb1fe08a5d87922e6986"
    );
    let swapped = [class("sst2:train:1", 0), class("sst2:train:0", 1)];
    assert_eq!(
        fingerprint(&swapped, &names),
        "87a7f4b0c33c53d271a88b9e5f22ae52ef4299e29b9947742b4cfa23443a07af"
    );
    let tags: Vec<String> = [
        "O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let tokens = [
        Example {
            id: "conll2003:train:0".into(),
            input: Input::Tokens(vec!["EU".into(), "rejects".into(), "German".into()]),
            label: Label::Tags(vec![3, 0, 7]),
        },
        Example {
            id: "conll2003:train:1".into(),
            input: Input::Tokens(vec!["Peter".into(), "Blackburn".into()]),
            label: Label::Tags(vec![1, 2]),
        },
    ];
    assert_eq!(
        fingerprint(&tokens, &tags),
        "1a68f2b84d8a39c89547c34962d09bb43838267b8ca8837c73de6d1b0df11b3e"
    );
    let names: Vec<String> = vec!["World".into(), "Sci/Tech".into()];
    assert_eq!(
        fingerprint(&[class("é:0", 1)], &names),
        "69f14f2eae7a8e624499fad5108372dab25cf4e307b4b4594f95965288f200be"
    );
}

#[test]
fn fingerprint_ignores_text_but_not_ids_or_labels() {
    let names: Vec<String> = vec!["0".into(), "1".into()];
    let base = [class("a", 0), class("b", 1)];
    let mut other_text = base.clone();
    other_text[0].input = Input::Text("different".into());
    assert_eq!(fingerprint(&base, &names), fingerprint(&other_text, &names));
    let relabelled = [class("a", 1), class("b", 1)];
    assert_ne!(fingerprint(&base, &names), fingerprint(&relabelled, &names));
    let renamed = [class("a", 0), class("c", 1)];
    assert_ne!(fingerprint(&base, &names), fingerprint(&renamed, &names));
    // The separators keep ("ab", "c") and ("a", "bc") apart.
    let left = [class("a1", 0)];
    let right = [class("a", 1)];
    let names_ab: Vec<String> = vec!["0".into(), "10".into()];
    assert_ne!(fingerprint(&left, &names_ab), fingerprint(&right, &names_ab));
}
