//! Every malformed input gives an error that names the file and the line (or row) and says
//! what is wrong; a missing dataset says where ueb looked and how to get the files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::{options, write, write_gz};
use ueb_data::{DataError, DatasetOptions, GenericSpec, NewsgroupsPart, load, load_generic};

/// Loads `name` from `root` and returns the error message.
fn error(name: &str, root: &Path) -> String {
    match load(name, &options(root)) {
        Ok(_) => panic!("{name} loaded"),
        Err(e) => e.to_string(),
    }
}

/// Asserts that `message` names `file` (relative to `root`) and contains every `part`.
fn check(message: &str, root: &Path, file: &str, parts: &[&str]) {
    let path = root.join(file).display().to_string();
    assert!(message.starts_with(&path), "`{message}` does not start with `{path}`");
    for part in parts {
        assert!(message.contains(part), "`{message}` lacks `{part}`");
    }
}

fn glue_sst2(root: &Path, train: &str) {
    write(root, "glue/SST-2/train.tsv", train);
    write(root, "glue/SST-2/dev.tsv", "sentence\tlabel\nok \t1\n");
}

#[test]
fn tsv_field_count_empty_line_unknown_label_and_missing_column() {
    let dir = tempfile::tempdir().unwrap();
    let f = "glue/SST-2/train.tsv";
    glue_sst2(dir.path(), "sentence\tlabel\na\t0\nb\tc\t1\n");
    check(
        &error("sst2", dir.path()),
        dir.path(),
        f,
        &[": line 3: expected 2 tab-separated fields, found 3"],
    );
    glue_sst2(dir.path(), "sentence\tlabel\na\t0\n\nb\t1\n");
    check(&error("sst2", dir.path()), dir.path(), f, &[": line 3: empty line"]);
    glue_sst2(dir.path(), "sentence\tlabel\na\t0\nb\t2\n");
    check(
        &error("sst2", dir.path()),
        dir.path(),
        f,
        &[": line 3: unknown label `2` (expected one of: 0, 1)"],
    );
    glue_sst2(dir.path(), "sentence\tscore\na\t0\n");
    check(
        &error("sst2", dir.path()),
        dir.path(),
        f,
        &[": no column `label` (columns: sentence, score)"],
    );
}

#[test]
fn empty_split_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "glue/SST-2/train.tsv",
        "sentence\tlabel\na\t0\nb\t1\nc\t0\n",
    );
    write(dir.path(), "glue/SST-2/dev.tsv", "sentence\tlabel\n");
    assert_eq!(
        error("sst2", dir.path()),
        "dataset `sst2`: split `test` is empty (glue/SST-2/dev.tsv (official dev))"
    );
    write(dir.path(), "glue/SST-2/train.tsv", "sentence\tlabel\n");
    write(dir.path(), "glue/SST-2/dev.tsv", "sentence\tlabel\na\t1\n");
    assert_eq!(
        error("sst2", dir.path()),
        "dataset `sst2`: split `train` is empty (glue/SST-2/train.tsv)"
    );
}

#[test]
fn cola_too_few_fields() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "glue/CoLA/train.tsv", "gj04\t1\ngj04\t0\n");
    write(dir.path(), "glue/CoLA/dev.tsv", "gj04\t1\t\tA.\n");
    check(
        &error("cola", dir.path()),
        dir.path(),
        "glue/CoLA/train.tsv",
        &[": line 1: expected 4 fields, found 2"],
    );
}

#[test]
fn mrpc_bad_quality() {
    let dir = tempfile::tempdir().unwrap();
    let header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n";
    write(dir.path(), "glue/MRPC/train.tsv", format!("{header}1\t1\t2\ta\tb\n"));
    write(dir.path(), "glue/MRPC/dev.tsv", format!("{header}yes\t3\t4\ta\tb\n"));
    write(
        dir.path(),
        "glue/MRPC/msr_paraphrase_test.txt",
        format!("{header}1\t5\t6\ta\tb\n"),
    );
    check(
        &error("mrpc", dir.path()),
        dir.path(),
        "glue/MRPC/dev.tsv",
        &[": line 2: unknown label `yes`"],
    );
}

#[test]
fn label_text_lines_and_utf8() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "sst5/stsa.fine.train", "4 good\nnospace\n");
    write(dir.path(), "sst5/stsa.fine.dev", "1 x\n");
    write(dir.path(), "sst5/stsa.fine.test", "1 x\n");
    check(
        &error("sst5", dir.path()),
        dir.path(),
        "sst5/stsa.fine.train",
        &[": line 2: expected `<label> <text>`"],
    );
    write(dir.path(), "sst5/stsa.fine.train", "4 good\n7 too high\n");
    check(
        &error("sst5", dir.path()),
        dir.path(),
        "sst5/stsa.fine.train",
        &[": line 2: unknown label `7` (expected one of: 0, 1, 2, 3, 4)"],
    );
    write(dir.path(), "sst5/stsa.fine.train", b"4 good\n3 caf\xe9\n".as_slice());
    assert_eq!(
        error("sst5", dir.path()),
        format!(
            "{}: line 2: not valid UTF-8",
            dir.path().join("sst5/stsa.fine.train").display()
        )
    );
}

#[test]
fn trec_bad_label() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "trec/TREC.train", "DESC:def What ?\nFOO:bar Who ?\n");
    write(dir.path(), "trec/TREC.test", "DESC:def What ?\n");
    check(
        &error("trec", dir.path()),
        dir.path(),
        "trec/TREC.train",
        &[
            ": line 2: expected a label `COARSE:fine` with COARSE one of ABBR, DESC, ENTY, HUM, LOC, NUM, found `FOO:bar`",
        ],
    );
}

#[test]
fn newsgroups_bad_json_unknown_group_and_label_id() {
    let dir = tempfile::tempdir().unwrap();
    let f = "20newsgroups/train.jsonl.gz";
    write(
        dir.path(),
        "20newsgroups/test.jsonl",
        r#"{"id":"sci.med/1","label":"sci.med","label_id":13,"text":"x"}"#,
    );
    write_gz(
        dir.path(),
        f,
        "{\"id\":\"a/1\",\"label\":\"sci.med\",\"label_id\":13,\"text\":\"x\"}\n{\"id\": 5\n",
    );
    check(&error("20newsgroups", dir.path()), dir.path(), f, &[": line 2: "]);
    write_gz(dir.path(), f, r#"{"id":"a/1","label":"sci.med","label_id":13}"#);
    check(
        &error("20newsgroups", dir.path()),
        dir.path(),
        f,
        &[": line 1: missing field `text`"],
    );
    write_gz(
        dir.path(),
        f,
        r#"{"id":"a/1","label":"sci.cooking","label_id":13,"text":"x"}"#,
    );
    check(
        &error("20newsgroups", dir.path()),
        dir.path(),
        f,
        &[": line 1: unknown newsgroup `sci.cooking`"],
    );
    write_gz(
        dir.path(),
        f,
        r#"{"id":"a/1","label":"sci.med","label_id":3,"text":"x"}"#,
    );
    check(
        &error("20newsgroups", dir.path()),
        dir.path(),
        f,
        &[": line 1: label_id 3 does not match `sci.med`, whose index is 13"],
    );
    // A truncated gzip stream is an I/O error on that file.
    write(dir.path(), f, [0x1f, 0x8b, 0x08, 0x00, 0x00]);
    check(&error("20newsgroups", dir.path()), dir.path(), f, &[]);
}

#[test]
fn ag_news_bad_class_and_ragged_csv() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "ag_news/train.csv",
        "\"1\",\"t\",\"d\"\n\"5\",\"t\",\"d\"\n",
    );
    write(dir.path(), "ag_news/test.csv", "\"1\",\"t\",\"d\"\n");
    check(
        &error("ag_news", dir.path()),
        dir.path(),
        "ag_news/train.csv",
        &[": line 2: class `5` is not a number from 1 to 4"],
    );
    write(dir.path(), "ag_news/train.csv", "\"1\",\"t\",\"d\"\n\"2\",\"t\"\n");
    check(
        &error("ag_news", dir.path()),
        dir.path(),
        "ag_news/train.csv",
        &[
            "line: 2",
            "found record with 2 fields, but the previous record has 3 fields",
        ],
    );
}

#[test]
fn toxigen_bad_score_bad_literal_missing_column() {
    let dir = tempfile::tempdir().unwrap();
    let f = "toxigen/toxigen_annotated_train.csv";
    write(
        dir.path(),
        f,
        "text,toxicity_ai,toxicity_human\nb'a',1,1\nb'b',high,1\n",
    );
    check(
        &error("toxigen", dir.path()),
        dir.path(),
        f,
        &[": line 3: toxicity_ai `high` is not a finite number"],
    );
    write(dir.path(), f, "text,toxicity_ai,toxicity_human\nb'a',1,NaN\n");
    check(
        &error("toxigen", dir.path()),
        dir.path(),
        f,
        &[": line 2: toxicity_human `NaN` is not a finite number"],
    );
    write(dir.path(), f, "text,toxicity_ai,toxicity_human\nb'a,1,1\n");
    check(
        &error("toxigen", dir.path()),
        dir.path(),
        f,
        &[": line 2: text: starts with `b'` but does not end with `'`"],
    );
    write(dir.path(), f, "text,toxicity_ai\nb'a',1\n");
    check(
        &error("toxigen", dir.path()),
        dir.path(),
        f,
        &[": no column `toxicity_human` (columns: text, toxicity_ai)"],
    );
}

#[test]
fn mmlu_bad_answer() {
    let dir = tempfile::tempdir().unwrap();
    let head = "subject,question,A,B,C,D,answer\n";
    write(dir.path(), "mmlu/test.csv", format!("{head}s,q,a,b,c,d,A\n"));
    write(
        dir.path(),
        "mmlu/val.csv",
        format!("{head}s,q,a,b,c,d,A\ns,\"multi\nline\",a,b,c,d,E\n"),
    );
    check(
        &error("mmlu", dir.path()),
        dir.path(),
        "mmlu/val.csv",
        &[": line 3: answer `E` is not one of A, B, C, D"],
    );
}

#[test]
fn arc_bad_key_option_count_and_duplicate_ids() {
    let dir = tempfile::tempdir().unwrap();
    let item = |id: &str, labels: &[&str], key: &str| {
        let choices: Vec<serde_json::Value> = labels
            .iter()
            .map(|l| serde_json::json!({"text": "t", "label": l}))
            .collect();
        serde_json::json!({"id": id, "question": {"stem": "s", "choices": choices}, "answerKey": key}).to_string()
    };
    let dev = "arc_challenge/ARC-Challenge-Dev.jsonl";
    write(
        dir.path(),
        "arc_challenge/ARC-Challenge-Test.jsonl",
        item("T0", &["A", "B"], "A"),
    );
    write(
        dir.path(),
        dev,
        [item("D0", &["A", "B"], "A"), item("D1", &["A", "B"], "C")].join("\n"),
    );
    check(
        &error("arc_challenge", dir.path()),
        dir.path(),
        dev,
        &[": line 2: answerKey `C` is not the label of an option"],
    );
    write(dir.path(), dev, item("D0", &["A"], "A"));
    check(
        &error("arc_challenge", dir.path()),
        dir.path(),
        dev,
        &[": line 1: 1 options; between 2 and 5 are supported"],
    );
    write(
        dir.path(),
        dev,
        [
            item("D0", &["A", "B"], "A"),
            item("T0", &["A", "B"], "B"),
            item("D2", &["A", "B"], "B"),
        ]
        .join("\n"),
    );
    let err = error("arc_challenge", dir.path());
    assert!(
        err.starts_with("dataset `arc_challenge`: id `T0` occurs twice (in `arc_challenge/ARC-Challenge-Dev.jsonl"),
        "{err}"
    );
    assert!(err.contains("and in `arc_challenge/ARC-Challenge-Test.jsonl`"), "{err}");
}

#[test]
fn conll_unknown_tag_and_short_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = "conll2003/iob2_bio/train.txt";
    write(dir.path(), "conll2003/iob2_bio/valid.txt", "a NN O O\n");
    write(dir.path(), "conll2003/iob2_bio/test.txt", "a NN O O\n");
    write(
        dir.path(),
        f,
        "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nx NN O B-FOO\n",
    );
    check(
        &error("conll2003", dir.path()),
        dir.path(),
        f,
        &[": line 4: unknown label `B-FOO` (expected one of: O, B-PER"],
    );
    write(dir.path(), f, "EU NNP B-NP B-ORG\nlonely\n");
    check(
        &error("conll2003", dir.path()),
        dir.path(),
        f,
        &[": line 2: expected `word ... TAG` (at least two space-separated fields)"],
    );
}

#[test]
fn wnut17_line_without_tag_and_unknown_tag() {
    let dir = tempfile::tempdir().unwrap();
    let f = "wnut17/emerging.dev.conll";
    write(dir.path(), "wnut17/wnut17train.conll", "a\tO\n");
    write(dir.path(), "wnut17/emerging.test.annotated", "a\tO\n");
    write(dir.path(), f, "a\tO\nlonely\n");
    check(
        &error("wnut17", dir.path()),
        dir.path(),
        f,
        &[": line 2: expected `word ... TAG` (at least two space-separated fields)"],
    );
    write(dir.path(), f, "a\tO\n\nb\tB-PER\n");
    check(
        &error("wnut17", dir.path()),
        dir.path(),
        f,
        &[": line 3: unknown label `B-PER` (expected one of: O, B-corporation"],
    );
}

#[test]
fn missing_dataset_says_where_and_how() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("nowhere");
    let err = load("sst2", &options(&root)).unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }));
    let msg = err.to_string();
    for part in [
        format!("dataset `sst2`: not found under the data root `{}`", root.display()).as_str(),
        format!("looked for {}", root.join("glue/SST-2/train.tsv").display()).as_str(),
        "It needs, relative to the root: glue/SST-2/train.tsv, glue/SST-2/dev.tsv.",
        "download_glue_data.py",
        "--root DIR",
        "Hugging Face hub is not available",
    ] {
        assert!(msg.contains(part), "`{msg}` lacks `{part}`");
    }
    // Every candidate of a file with fallbacks is listed.
    let msg = error("conll2003", &root);
    assert!(msg.contains("conll2003/iob2_bio/train.txt, "), "{msg}");
    assert!(msg.contains("conll2003/iob1_original/eng.train"), "{msg}");
}

#[test]
fn unknown_dataset_and_misplaced_options() {
    let err = load("sst3", &DatasetOptions::default()).unwrap_err().to_string();
    assert!(
        err.starts_with("unknown dataset `sst3` (known: sst2, cola, mrpc"),
        "{err}"
    );
    let options = DatasetOptions {
        remove: vec![NewsgroupsPart::Headers],
        ..DatasetOptions::default()
    };
    assert_eq!(
        load("cola", &options).unwrap_err().to_string(),
        "invalid `remove`: applies to 20newsgroups only, not to `cola`"
    );
    assert_eq!(
        "signature".parse::<NewsgroupsPart>().unwrap_err().to_string(),
        "invalid `remove`: `signature` is not one of headers, footers, quotes"
    );
    let options = DatasetOptions {
        val_fraction: 1.0,
        ..DatasetOptions::default()
    };
    let err = load("synthetic", &options);
    assert!(err.is_ok(), "synthetic does not carve a holdout");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "trec/TREC.train", "DESC:def a\nDESC:def b\n");
    write(dir.path(), "trec/TREC.test", "DESC:def c\n");
    let options = DatasetOptions {
        root: dir.path().to_path_buf(),
        val_fraction: 1.0,
        ..DatasetOptions::default()
    };
    assert_eq!(
        load("trec", &options).unwrap_err().to_string(),
        "invalid `val_fraction`: 1 is not strictly between 0 and 1"
    );
}

#[test]
fn generic_mapping_errors() {
    let dir = tempfile::tempdir().unwrap();
    let yaml_err = GenericSpec::from_yaml_str(
        "name: x\ntext: t\nlabel: l\nsplits: {train: a.csv, test: b.csv}\ncolour: red\n",
        "spec.yaml",
    )
    .unwrap_err()
    .to_string();
    assert!(yaml_err.starts_with("spec.yaml: "), "{yaml_err}");
    assert!(yaml_err.contains("unknown field `colour`"), "{yaml_err}");
    assert!(yaml_err.contains("line 5"), "{yaml_err}");

    let spec = |extra: &str, train: &str| {
        GenericSpec::from_yaml_str(
            &format!("name: mine\ntext: text\nlabel: label\n{extra}splits: {{train: {train}, test: test.jsonl}}\n"),
            "<test>",
        )
        .unwrap()
    };
    let opts = options(dir.path());
    write(
        dir.path(),
        "test.jsonl",
        "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\"}\n",
    );
    write(dir.path(), "train.csv", "text,label\na,1\nb,0\nc,1\n");
    let err = load_generic(&spec("", "train.csv"), &opts).unwrap_err().to_string();
    check(&err, dir.path(), "test.jsonl", &[": line 2: no key `label`"]);

    write(dir.path(), "test.jsonl", "{\"text\": \"a\", \"label\": [1]}\n");
    let err = load_generic(&spec("", "train.csv"), &opts).unwrap_err().to_string();
    check(
        &err,
        dir.path(),
        "test.jsonl",
        &[": line 1: `label` is [1], not a string, number or boolean"],
    );

    write(dir.path(), "test.jsonl", "{\"text\": \"a\", \"label\": 1}\n");
    write(dir.path(), "train.csv", "body,label\na,1\n");
    let err = load_generic(&spec("", "train.csv"), &opts).unwrap_err().to_string();
    check(
        &err,
        dir.path(),
        "train.csv",
        &[": no column `text` (columns: body, label)"],
    );

    write(dir.path(), "train.txt", "a,1\n");
    let err = load_generic(&spec("", "train.txt"), &opts).unwrap_err().to_string();
    assert!(err.starts_with("invalid `format`: cannot tell the format of"), "{err}");

    write(dir.path(), "train.csv", "text,label\na,1\nb,2\n");
    let err = load_generic(&spec("labels: ['0', '1']\n", "train.csv"), &opts)
        .unwrap_err()
        .to_string();
    check(
        &err,
        dir.path(),
        "train.csv",
        &[": line 3: unknown label `2` (expected one of: 0, 1)"],
    );

    let err = load_generic(&spec("", "absent.csv"), &opts).unwrap_err().to_string();
    assert!(err.contains("dataset `mine`: not found under the data root"), "{err}");
    assert!(err.contains("absent.csv"), "{err}");

    write(dir.path(), "train.csv", "a,1\n");
    let err = load_generic(&spec("header: false\n", "train.csv"), &opts)
        .unwrap_err()
        .to_string();
    check(
        &err,
        dir.path(),
        "train.csv",
        &[": no column `text` (columns: none by name: the mapping says `header: false`"],
    );

    write(dir.path(), "train.parquet", b"PAR1 not really".as_slice());
    let err = load_generic(&spec("", "train.parquet"), &opts).unwrap_err().to_string();
    check(&err, dir.path(), "train.parquet", &[]);
}
