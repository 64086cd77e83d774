//! Every registry reader on small fixture files written by the tests, in the layout of
//! `docs/datasets.md`. Expected holdout rows come from `reference/splitmix.py`
//! (`holdout(10, 0.2, 42)` → val rows 3 and 8; `holdout(5, 0.2, 42)` → row 1;
//! `holdout(6, 0.2, 42)` → rows 2 and 5; `holdout(8, 0.2, 42)` → rows 3 and 4).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{ids, labels, options, sizes, text, write, write_gz};
use ueb_data::{DatasetOptions, Input, Label, NewsgroupsPart, Task, load, stats};

fn pairs(v: &[(&str, usize)]) -> Vec<(String, usize)> {
    v.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect()
}

#[test]
fn sst2_glue_tsv_holdout_and_dev_as_test() {
    let dir = tempfile::tempdir().unwrap();
    let mut train = String::from("sentence\tlabel\n");
    for i in 0..10 {
        train.push_str(&format!("sentence {i} , with \"quotes\" \t{}\n", i % 2));
    }
    write(dir.path(), "glue/SST-2/train.tsv", train);
    write(
        dir.path(),
        "glue/SST-2/dev.tsv",
        "sentence\tlabel\ngood film \t1\nbad film \t0\n",
    );
    let d = load("sst2", &options(dir.path())).unwrap();
    assert_eq!(d.task(), Task::Sequence);
    assert_eq!(d.label_names(), ["0", "1"]);
    assert_eq!(sizes(&d), pairs(&[("train", 8), ("val", 2), ("test", 2)]));
    assert_eq!(ids(&d, "val"), ["sst2:train:3", "sst2:train:8"]);
    assert_eq!(labels(&d, "val"), ["1", "0"]);
    assert_eq!(ids(&d, "test"), ["sst2:dev:0", "sst2:dev:1"]);
    let first = &d.split("train").unwrap().examples()[0];
    // No quoting: the quotes and the trailing space are part of the sentence.
    assert_eq!(text(&first.input), "sentence 0 , with \"quotes\" ");
    assert!(d.notes().is_empty());
    // The alias with a dash resolves to the same entry.
    let again = load("SST-2", &options(dir.path())).unwrap();
    assert_eq!(
        again.split("val").unwrap().fingerprint(),
        d.split("val").unwrap().fingerprint()
    );
}

#[test]
fn cola_no_header_four_columns_last_line_without_newline() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<String> = (0..5)
        .map(|i| {
            format!(
                "gj04\t{}\t{}\tSentence number {i}.",
                i % 2,
                if i % 2 == 0 { "*" } else { "" }
            )
        })
        .collect();
    write(dir.path(), "glue/CoLA/train.tsv", rows.join("\n") + "\n");
    write(dir.path(), "glue/CoLA/dev.tsv", "cj99\t1\t\tOne.\ncj99\t0\t*\tTwo two.");
    let d = load("cola", &options(dir.path())).unwrap();
    assert_eq!(sizes(&d), pairs(&[("train", 4), ("val", 1), ("test", 2)]));
    assert_eq!(ids(&d, "val"), ["cola:train:1"]);
    assert_eq!(labels(&d, "test"), ["1", "0"]);
    let test = d.split("test").unwrap();
    assert_eq!(text(&test.examples()[1].input), "Two two.");
}

#[test]
fn mrpc_pairs_with_bom_and_fallback_train() {
    let dir = tempfile::tempdir().unwrap();
    let header = "\u{feff}Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n";
    write(
        dir.path(),
        "glue/MRPC/train.tsv",
        format!("{header}1\t10\t11\tA man .\tA guy .\n0\t12\t13\tRain .\tSun .\n"),
    );
    write(dir.path(), "glue/MRPC/dev.tsv", format!("{header}1\t20\t21\tx\ty\n"));
    write(
        dir.path(),
        "glue/MRPC/msr_paraphrase_test_labeled.txt",
        format!("{header}0\t30\t31\tp\tq\n1\t32\t33\tr\ts\n"),
    );
    let d = load("mrpc", &options(dir.path())).unwrap();
    assert_eq!(sizes(&d), pairs(&[("train", 2), ("val", 1), ("test", 2)]));
    assert_eq!(ids(&d, "train"), ["10-11", "12-13"]);
    assert_eq!(labels(&d, "test"), ["0", "1"]);
    let first = &d.split("train").unwrap().examples()[0];
    assert_eq!(first.input, Input::Pair("A man .".into(), "A guy .".into()));
    // train.tsv is the fallback: its row count is not the canonical one.
    assert_eq!(d.notes().len(), 1);
    assert!(
        d.notes()[0].contains("canonical GLUE/HF MRPC train has 3668"),
        "{:?}",
        d.notes()
    );
    // The canonical file wins when present.
    write(
        dir.path(),
        "glue/MRPC/train_canonical_3668.tsv",
        format!("{header}1\t40\t41\ta\tb\n"),
    );
    let d = load("mrpc", &options(dir.path())).unwrap();
    assert_eq!(ids(&d, "train"), ["40-41"]);
    assert!(d.split("train").unwrap().origin().contains("train_canonical_3668.tsv"));
}

#[test]
fn sst5_keeps_official_splits() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "sst5/stsa.fine.train",
        "4 a stirring film\n0 awful\n2 it is a film\n",
    );
    write(dir.path(), "sst5/stsa.fine.dev", "3 nice\n");
    write(dir.path(), "sst5/stsa.fine.test", "1 dull , slow\n1 meh\n");
    let d = load("sst5", &options(dir.path())).unwrap();
    assert_eq!(sizes(&d), pairs(&[("train", 3), ("val", 1), ("test", 2)]));
    assert_eq!(labels(&d, "train"), ["4", "0", "2"]);
    assert_eq!(ids(&d, "val"), ["sst5:dev:0"]);
    let s = stats(&d);
    let test = &s.splits.0[2].1;
    assert_eq!(test.labels.0[1], ("1".to_owned(), 2));
    // Lengths 3 and 1 tokens: nearest-rank p50 = 1, p95 = 3.
    assert_eq!((test.length.p50, test.length.p95), (1, 3));
}

#[test]
fn trec_coarse_and_fine_with_latin1_train() {
    let dir = tempfile::tempdir().unwrap();
    let mut train: Vec<u8> = Vec::new();
    for (i, label) in ["DESC:manner", "ENTY:cremat", "HUM:ind", "LOC:city", "NUM:date"]
        .iter()
        .enumerate()
    {
        train.extend_from_slice(format!("{label} Question {i} ?\n").as_bytes());
    }
    // ISO-8859-1 "é" as in the upstream TREC.train.
    train.extend_from_slice(b"ABBR:exp What does caf\xe9 stand for ?\n");
    write(dir.path(), "trec/TREC.train", train);
    write(
        dir.path(),
        "trec/TREC.test",
        "NUM:dist How far is it ?\nHUM:ind Who ?\n",
    );
    let d = load("trec", &options(dir.path())).unwrap();
    assert_eq!(d.label_names(), ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]);
    assert_eq!(sizes(&d), pairs(&[("train", 4), ("val", 2), ("test", 2)]));
    assert_eq!(ids(&d, "val"), ["trec:train:2", "trec:train:5"]);
    assert_eq!(labels(&d, "val"), ["HUM", "ABBR"]);
    let val = d.split("val").unwrap();
    assert_eq!(text(&val.examples()[1].input), "What does café stand for ?");

    let fine = load("trec-fine", &options(dir.path())).unwrap();
    assert_eq!(fine.num_classes(), 7);
    assert_eq!(fine.label_names()[0], "ABBR:exp");
    assert_eq!(labels(&fine, "test"), ["NUM:dist", "HUM:ind"]);
    // Same rows, different labels: different fingerprints.
    assert_eq!(ids(&fine, "val"), ids(&d, "val"));
    assert_ne!(
        fine.split("val").unwrap().fingerprint(),
        d.split("val").unwrap().fingerprint()
    );
}

const POST: &str = "From: someone@example.com\nSubject: Re: engines\nLines: 9\n\n\
    In article <1@x.com> other@y.com writes:\n> the old engine was loud\n| piped quote\n\
    I disagree; the new one is louder.\nHe said: no way.\n  Quoted from the manual\n\
    End of argument.\n\n-- \nSomeone  |  someone@example.com\n";

#[test]
fn newsgroups_jsonl_gz_ids_and_removal() {
    let dir = tempfile::tempdir().unwrap();
    let line = |id: &str, group: &str, k: usize, text: &str| {
        serde_json::json!({"id": id, "label": group, "label_id": k, "text": text}).to_string()
    };
    let train = [
        line("alt.atheism/1", "alt.atheism", 0, POST),
        line("alt.atheism/2", "alt.atheism", 0, "a"),
        line("sci.space/3", "sci.space", 14, "b"),
        line("sci.space/4", "sci.space", 14, "c"),
        line("talk.religion.misc/5", "talk.religion.misc", 19, "d"),
    ]
    .join("\n");
    write_gz(dir.path(), "20newsgroups/train.jsonl.gz", &(train + "\n"));
    // Uncompressed is accepted too, and blank lines are skipped.
    write(
        dir.path(),
        "20newsgroups/test.jsonl",
        line("comp.graphics/9", "comp.graphics", 1, "e") + "\n\n",
    );
    let d = load("20newsgroups", &options(dir.path())).unwrap();
    assert_eq!(d.num_classes(), 20);
    assert_eq!(sizes(&d), pairs(&[("train", 4), ("val", 1), ("test", 1)]));
    assert_eq!(ids(&d, "val"), ["alt.atheism/2"]);
    assert_eq!(labels(&d, "test"), ["comp.graphics"]);
    let raw = &d.split("train").unwrap().examples()[0];
    assert_eq!(text(&raw.input), POST);

    let mut opts = options(dir.path());
    opts.remove = vec![NewsgroupsPart::Quotes, NewsgroupsPart::Headers, NewsgroupsPart::Footers];
    let stripped = load("20newsgroups", &opts).unwrap();
    let first = &stripped.split("train").unwrap().examples()[0];
    // From reference/newsgroups_strip.py, "post:headers+footers+quotes".
    assert_eq!(
        text(&first.input),
        "I disagree; the new one is louder.\n  Quoted from the manual\nEnd of argument.\n"
    );
    assert!(
        stripped
            .split("train")
            .unwrap()
            .origin()
            .contains("headers/footers/quotes removed")
    );
}

#[test]
fn newsgroups_strip_functions_match_scikit_learn() {
    use ueb_data::{strip_footer, strip_header, strip_quotes};
    // Expected strings: output of reference/newsgroups_strip.py.
    assert_eq!(
        strip_header(POST),
        "In article <1@x.com> other@y.com writes:\n> the old engine was loud\n| piped quote\n\
         I disagree; the new one is louder.\nHe said: no way.\n  Quoted from the manual\n\
         End of argument.\n\n-- \nSomeone  |  someone@example.com\n"
    );
    assert_eq!(
        strip_footer(POST),
        "From: someone@example.com\nSubject: Re: engines\nLines: 9\n\n\
         In article <1@x.com> other@y.com writes:\n> the old engine was loud\n| piped quote\n\
         I disagree; the new one is louder.\nHe said: no way.\n  Quoted from the manual\n\
         End of argument.\n"
    );
    assert_eq!(
        strip_quotes(POST),
        "From: someone@example.com\nSubject: Re: engines\nLines: 9\n\n\
         I disagree; the new one is louder.\n  Quoted from the manual\nEnd of argument.\n\n\
         -- \nSomeone  |  someone@example.com\n"
    );
    let no_header = "no blank line here\njust text\n";
    assert_eq!(strip_header(no_header), "");
    assert_eq!(strip_footer(no_header), no_header);
    let sig_only = "----\nsignature first\n";
    assert_eq!(strip_footer(sig_only), sig_only);
    assert_eq!(strip_header(sig_only), "");
}

#[test]
fn ag_news_official_csv_and_alps_fallback() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ag_news/classes.txt", "World\nSports\nBusiness\nSci/Tech\n");
    write(
        dir.path(),
        "ag_news/test.csv",
        "\"3\",\"Fears for pension\",\"Unions say they are \"\"disappointed\"\", sadly.\"\n\
         \"4\",\"Space\",\"SPACE.com - a\\team, of rocketeers\"\n",
    );
    let train: String = (0..5)
        .map(|i| format!("\"{}\",\"Title {i}\",\"Description {i}\"\n", i % 4 + 1))
        .collect();
    write(dir.path(), "ag_news/train.csv", &train);
    let d = load("ag_news", &options(dir.path())).unwrap();
    assert_eq!(d.label_names(), ["World", "Sports", "Business", "Sci/Tech"]);
    assert_eq!(sizes(&d), pairs(&[("train", 4), ("val", 1), ("test", 2)]));
    assert_eq!(labels(&d, "test"), ["Business", "Sci/Tech"]);
    let test = d.split("test").unwrap();
    assert_eq!(
        text(&test.examples()[0].input),
        "Fears for pension Unions say they are \"disappointed\", sadly."
    );
    // `\t` in the official CSV is a literal backslash and letter, kept as is.
    assert_eq!(
        text(&test.examples()[1].input),
        "Space SPACE.com - a\\team, of rocketeers"
    );
    assert!(d.notes().is_empty());

    std::fs::remove_file(dir.path().join("ag_news/train.csv")).unwrap();
    let alps: String = ["World", "Sports", "Business", "Sci/Tech", "World", "Sports"]
        .iter()
        .enumerate()
        .map(|(i, l)| format!("description {i}\t{l}\n"))
        .collect();
    write(dir.path(), "ag_news/alps_train_subset_10k.tsv", alps);
    let d = load("ag_news", &options(dir.path())).unwrap();
    assert_eq!(sizes(&d), pairs(&[("train", 4), ("val", 2), ("test", 2)]));
    assert_eq!(ids(&d, "val"), ["ag_news:alps_train:2", "ag_news:alps_train:5"]);
    assert_eq!(labels(&d, "val"), ["Business", "Sports"]);
    assert!(d.notes()[0].contains("description only"), "{:?}", d.notes());
}

const TOXIGEN_HEADER: &str = "text,target_group,factual?,ingroup_effect,lewd,framing,\
    predicted_group,stereotyping,intent,toxicity_ai,toxicity_human,predicted_author,label,\
    actual_method\n";

fn toxigen_row(text: &str, ai: &str, human: &str) -> String {
    format!("{text},asian,opinion,x,y,,z,w,5,{ai},{human},human,hate,TopK\n")
}

#[test]
fn toxigen_threshold_unwrap_and_missing_test() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from(TOXIGEN_HEADER);
    csv += &toxigen_row("b'plain text'", "5", "5"); // 10 > 5.5 → 1
    csv += &toxigen_row("\"b\"\"it's quoted\"\"\"", "2.66", "2.33"); // 4.99 → 0
    csv += &toxigen_row("\"b'exactly, at threshold'\"", "2.5", "3"); // 5.5, not > → 0
    csv += &toxigen_row("\"b'line\\nbreak, \\\\x00 literal'\"", "3", "2.66"); // 5.66 → 1
    csv += &toxigen_row("not a literal", "1", "1"); // 0
    write(dir.path(), "toxigen/toxigen_annotated_train.csv", &csv);
    let d = load("toxigen", &options(dir.path())).unwrap();
    assert_eq!(sizes(&d), pairs(&[("train", 4), ("val", 1)]));
    assert_eq!(ids(&d, "val"), ["toxigen:train:1"]);
    let train = d.split("train").unwrap();
    let got: Vec<(&str, &Label)> = train.examples().iter().map(|e| (text(&e.input), &e.label)).collect();
    assert_eq!(
        got,
        [
            ("plain text", &Label::Class(1)),
            ("exactly, at threshold", &Label::Class(0)),
            ("line\nbreak, \\x00 literal", &Label::Class(1)),
            ("not a literal", &Label::Class(0)),
        ]
    );
    assert_eq!(text(&d.split("val").unwrap().examples()[0].input), "it's quoted");
    let err = d.split("test").unwrap_err().to_string();
    assert!(err.contains("toxigen_annotated_test.csv does not exist"), "{err}");

    let mut test = String::from(TOXIGEN_HEADER);
    test += &toxigen_row("b'a'", "4", "4");
    write(dir.path(), "toxigen/toxigen_annotated_test.csv", &test);
    let d = load("toxigen", &options(dir.path())).unwrap();
    assert_eq!(sizes(&d), pairs(&[("train", 4), ("val", 1), ("test", 1)]));
    assert_eq!(ids(&d, "test"), ["toxigen:test:0"]);
    assert!(d.notes().is_empty());

    // The official test file writes texts plainly; two of these are train texts (one after
    // unwrapping `b'…'`, one with surrounding spaces): the notes count them.
    let mut test = String::from(TOXIGEN_HEADER);
    test += &toxigen_row("plain text", "4", "4");
    test += &toxigen_row("\"  not a literal \"", "1", "1");
    test += &toxigen_row("new text", "1", "1");
    write(dir.path(), "toxigen/toxigen_annotated_test.csv", &test);
    let d = load("toxigen", &options(dir.path())).unwrap();
    assert_eq!(d.notes().len(), 1, "{:?}", d.notes());
    assert!(
        d.notes()[0].starts_with("2 of the 3 test texts also occur in the annotated train split"),
        "{:?}",
        d.notes()
    );
}

#[test]
fn toxigen_test_holdout_without_the_test_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from(TOXIGEN_HEADER);
    for k in 0..10 {
        csv += &toxigen_row(&format!("b'text {k}'"), "3", if k % 2 == 0 { "4" } else { "1" });
    }
    write(dir.path(), "toxigen/toxigen_annotated_train.csv", &csv);
    let opts = DatasetOptions {
        test_holdout: Some(3),
        ..options(dir.path())
    };
    let d = load("toxigen", &opts).unwrap();
    assert_eq!(sizes(&d), pairs(&[("train", 5), ("val", 2), ("test", 3)]));
    // reference/splitmix.py: the test rows, then the val rows of the rest.
    assert_eq!(
        ids(&d, "test"),
        ["toxigen:train:0", "toxigen:train:6", "toxigen:train:7"]
    );
    assert_eq!(ids(&d, "val"), ["toxigen:train:3", "toxigen:train:4"]);
    assert!(d.notes()[0].contains("not comparable"), "{:?}", d.notes());
    // Too many rows, another dataset, and an unused holdout are all said.
    let too_many = DatasetOptions {
        test_holdout: Some(10),
        ..options(dir.path())
    };
    let err = load("toxigen", &too_many).unwrap_err().to_string();
    assert!(err.contains("test_holdout") && err.contains("10 of 10"), "{err}");
    let err = load("sst2", &opts).unwrap_err().to_string();
    assert!(err.contains("test_holdout") && err.contains("sst2"), "{err}");
    let mut test = String::from(TOXIGEN_HEADER);
    test += &toxigen_row("b'a'", "4", "4");
    write(dir.path(), "toxigen/toxigen_annotated_test.csv", &test);
    let d = load("toxigen", &opts).unwrap();
    assert_eq!(sizes(&d), pairs(&[("train", 8), ("val", 2), ("test", 1)]));
    assert!(d.notes()[0].contains("was not used"), "{:?}", d.notes());
}

#[test]
fn bytes_literal_matches_python() {
    use ueb_data::unwrap_bytes_literal as u;
    // Expected values: output of reference/bytes_literal.py (Python's own parser).
    let cases = [
        (r"b'plain text'", "plain text"),
        (r#"b"it's quoted""#, "it's quoted"),
        (
            r"b'line\nbreak and tab\t and \\ backslash'",
            "line\nbreak and tab\t and \\ backslash",
        ),
        (
            r#"b'escaped \'quote\' and \"double\"'"#,
            "escaped 'quote' and \"double\"",
        ),
        (
            r"b'literal \\x00 text, byte \x41, octal \101\0'",
            "literal \\x00 text, byte A, octal A\0",
        ),
        (r"b'caf\xc3\xa9 utf-8'", "café utf-8"),
        (r"b'unknown \q escape'", "unknown \\q escape"),
        ("not a literal", "not a literal"),
        (r"b'\r\n'", "\r\n"),
    ];
    for (input, expected) in cases {
        assert_eq!(u(input).unwrap(), expected, "{input}");
    }
    assert!(u("b'no end").unwrap_err().contains("does not end with"));
    assert!(u(r"b'bad \xZZ'").unwrap_err().contains("invalid escape"));
    assert!(u(r"b'\xff'").unwrap_err().contains("not valid UTF-8"));
}

#[test]
fn mmlu_csv_with_embedded_newline_and_fewshot_pool() {
    let dir = tempfile::tempdir().unwrap();
    let head = "subject,question,A,B,C,D,answer\n";
    write(
        dir.path(),
        "mmlu/test.csv",
        format!(
            "{head}abstract_algebra,\"Find the degree,\nplease.\",0,4,2,6,B\n\
             anatomy,What?,\"True, True\",b,c,d,D\n"
        ),
    );
    let val: String = (0..5)
        .map(|i| format!("astronomy,Q{i}?,w,x,y,z,{}\n", ["A", "B", "C", "D", "A"][i]))
        .collect();
    write(dir.path(), "mmlu/val_prerelease.csv", format!("{head}{val}"));
    write(dir.path(), "mmlu/dev.csv", format!("{head}virology,Q?,a,b,c,d,C\n"));
    let d = load("mmlu", &options(dir.path())).unwrap();
    assert_eq!(d.task(), Task::MultipleChoice);
    assert_eq!(d.label_names(), ["A", "B", "C", "D"]);
    assert_eq!(
        sizes(&d),
        pairs(&[("train", 4), ("val", 1), ("test", 2), ("fewshot", 1)])
    );
    assert_eq!(ids(&d, "val"), ["mmlu:validation:1"]);
    assert_eq!(labels(&d, "test"), ["B", "D"]);
    assert_eq!(
        d.split("test").unwrap().examples()[0].input,
        Input::Choice {
            question: "Find the degree,\nplease.".into(),
            options: vec!["0".into(), "4".into(), "2".into(), "6".into()],
            subject: Some("abstract_algebra".into()),
        }
    );
    assert!(d.notes()[0].contains("pre-release"));
    // Length = question + options in whitespace tokens: 4 + 4, and 1 + 2 + 1 + 1 + 1.
    let s = stats(&d);
    assert_eq!(s.splits.0[2].1.length.p50, 6);
    assert_eq!(s.splits.0[2].1.length.p95, 8);
}

#[test]
fn arc_relettering_numeric_keys_and_official_train() {
    let dir = tempfile::tempdir().unwrap();
    let item = |id: &str, labels: &[&str], key: &str| {
        let choices: Vec<serde_json::Value> = labels
            .iter()
            .map(|l| serde_json::json!({"text": format!("option {l}"), "label": l}))
            .collect();
        serde_json::json!({"id": id, "question": {"stem": format!("Stem {id}?"), "choices": choices}, "answerKey": key})
            .to_string()
    };
    let dev: Vec<String> = (0..5)
        .map(|i| item(&format!("Dev_{i}"), &["A", "B", "C", "D"], ["A", "B", "C", "D", "B"][i]))
        .collect();
    write(
        dir.path(),
        "arc_challenge/ARC-Challenge-Dev.jsonl",
        dev.join("\n") + "\n",
    );
    let test = [
        item("Test_0", &["1", "2", "3", "4"], "3"),
        item("Test_1", &["A", "B", "C", "D", "E"], "E"),
        item("Test_2", &["A", "B", "C"], "A"),
    ];
    write(dir.path(), "arc_challenge/ARC-Challenge-Test.jsonl", test.join("\n"));
    let d = load("arc_challenge", &options(dir.path())).unwrap();
    assert_eq!(d.label_names(), ["A", "B", "C", "D", "E"]);
    assert_eq!(sizes(&d), pairs(&[("train", 4), ("val", 1), ("test", 3)]));
    assert_eq!(ids(&d, "val"), ["Dev_1"]);
    assert_eq!(labels(&d, "test"), ["C", "E", "A"]);
    match &d.split("test").unwrap().examples()[0].input {
        Input::Choice { options, subject, .. } => {
            assert_eq!(options[2], "option 3");
            assert_eq!(*subject, None);
        }
        other => panic!("{other:?}"),
    }
    assert!(d.notes()[0].contains("ARC-Challenge-Train.jsonl not found"));
    let s = stats(&d);
    assert_eq!(s.splits.0[2].1.labels.0[4], ("E".to_owned(), 1));

    write(
        dir.path(),
        "arc_challenge/ARC-Challenge-Train.jsonl",
        item("Train_0", &["A", "B"], "B") + "\n",
    );
    let d = load("arc_challenge", &options(dir.path())).unwrap();
    assert_eq!(sizes(&d), pairs(&[("train", 1), ("val", 5), ("test", 3)]));
    assert!(d.notes().is_empty());
}

const CONLL_BIO: &str = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\
    German JJ B-NP B-MISC\n. . O O\n\nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n\n\
    -DOCSTART- -X- -X- O\n\nNew NNP B-NP B-LOC\nYork NNP I-NP I-LOC\nJohn NNP I-NP B-PER\n";

// The same sentences in IOB1: `I-` starts an entity unless it follows one of the same type.
const CONLL_IOB1: &str = "-DOCSTART- -X- -X- O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\n\
    German JJ I-NP I-MISC\n. . O O\n\nPeter NNP I-NP I-PER\nBlackburn NNP I-NP I-PER\n\n\
    -DOCSTART- -X- -X- O\n\nNew NNP I-NP I-LOC\nYork NNP I-NP I-LOC\nJohn NNP I-NP I-PER\n";

#[test]
fn conll_sentences_tags_and_iob1_equivalence() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["train.txt", "valid.txt", "test.txt"] {
        write(dir.path(), &format!("conll2003/iob2_bio/{f}"), CONLL_BIO);
    }
    let d = load("conll2003", &options(dir.path())).unwrap();
    assert_eq!(d.task(), Task::Token);
    assert_eq!(d.num_classes(), 9);
    assert_eq!(sizes(&d), pairs(&[("train", 3), ("val", 3), ("test", 3)]));
    assert_eq!(
        ids(&d, "val"),
        ["conll2003:val:0", "conll2003:val:1", "conll2003:val:2"]
    );
    assert_eq!(
        labels(&d, "train"),
        ["B-ORG O B-MISC O", "B-PER I-PER", "B-LOC I-LOC B-PER"]
    );
    assert_eq!(
        d.split("train").unwrap().examples()[1].input,
        Input::Tokens(vec!["Peter".into(), "Blackburn".into()])
    );
    let s = stats(&d);
    let train = &s.splits.0[0].1;
    assert_eq!(train.rows, 3);
    let count = |tag: &str| train.labels.0.iter().find(|(t, _)| t == tag).unwrap().1;
    assert_eq!(
        (count("O"), count("B-PER"), count("I-PER"), count("B-LOC")),
        (2, 2, 1, 1)
    );
    assert_eq!((train.length.p50, train.length.p95), (3, 4));

    let iob1 = tempfile::tempdir().unwrap();
    for f in ["eng.train", "eng.testa", "eng.testb"] {
        write(iob1.path(), &format!("conll2003/iob1_original/{f}"), CONLL_IOB1);
    }
    let d1 = load("conll2003", &options(iob1.path())).unwrap();
    for split in ["train", "val", "test"] {
        assert_eq!(
            d1.split(split).unwrap().fingerprint(),
            d.split(split).unwrap().fingerprint()
        );
    }
}

/// WNUT-17's train file breaks its first sentences with a tab-only line and its later ones
/// with an empty line; dev and test only with empty lines. Tags are BIO, kept as written.
#[test]
fn wnut17_both_sentence_breaks_and_bio_kept() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "wnut17/wnut17train.conll",
        "@paul\tO\nEmpire\tB-location\nState\tI-location\n\t\nso\tO\ncool\tO\n\t\n\
         iPhone\tB-product\nX\tI-product\n\nLondon\tB-location\n\n",
    );
    // An `I-` without its `B-` stays as the annotators wrote it.
    write(dir.path(), "wnut17/emerging.dev.conll", "the\tO\nBeatles\tI-group\n\n");
    write(
        dir.path(),
        "wnut17/emerging.test.annotated",
        "a\tO\n\nb\tB-person\nc\tO\n",
    );
    let d = load("wnut17", &options(dir.path())).unwrap();
    assert_eq!(d.task(), Task::Token);
    assert_eq!(d.num_classes(), 13);
    assert_eq!(sizes(&d), pairs(&[("train", 4), ("val", 1), ("test", 2)]));
    assert_eq!(
        labels(&d, "train"),
        ["O B-location I-location", "O O", "B-product I-product", "B-location"]
    );
    assert_eq!(labels(&d, "val"), ["O I-group"]);
    assert_eq!(
        d.split("train").unwrap().examples()[0].input,
        Input::Tokens(vec!["@paul".into(), "Empire".into(), "State".into()])
    );
    let names = d.label_names();
    assert_eq!(names[0], "O");
    assert_eq!(names[12], "I-product");
}

#[test]
fn iob1_to_iob2_rules() {
    let mut tags: Vec<String> = ["I-PER", "I-PER", "I-LOC", "O", "I-ORG", "B-ORG", "I-ORG"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    ueb_data::iob1_to_iob2(&mut tags);
    assert_eq!(tags, ["B-PER", "I-PER", "B-LOC", "O", "B-ORG", "B-ORG", "I-ORG"]);
}

#[test]
fn stats_json_shape() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "sst5/stsa.fine.train", "4 a b c\n0 d\n");
    write(dir.path(), "sst5/stsa.fine.dev", "3 e f\n");
    write(dir.path(), "sst5/stsa.fine.test", "1 g\n");
    let d = load("sst5", &options(dir.path())).unwrap();
    let json = serde_json::to_value(stats(&d)).unwrap();
    assert_eq!(json["name"], "sst5");
    assert_eq!(json["task"], "sequence");
    let keys: Vec<&String> = json["splits"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["train", "val", "test"]);
    let train = &json["splits"]["train"];
    assert_eq!(train["rows"], 2);
    assert_eq!(
        train["labels"],
        serde_json::json!({"0": 1, "1": 0, "2": 0, "3": 0, "4": 1})
    );
    assert_eq!(train["length"], serde_json::json!({"p50": 1, "p95": 3}));
    assert_eq!(train["fingerprint"].as_str().unwrap().len(), 64);
    assert!(json.get("notes").is_none());
}
