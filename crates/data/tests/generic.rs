//! The generic reader: CSV, TSV, JSON Lines (plain and gzip) and parquet with a YAML column
//! mapping.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs::File;
use std::sync::Arc;

use common::{ids, labels, options, sizes, write, write_gz};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use ueb_data::{Column, Format, GenericSpec, Input, load_generic};

fn spec(yaml: &str) -> GenericSpec {
    GenericSpec::from_yaml_str(yaml, "<test>").unwrap()
}

#[test]
fn csv_with_pairs_ids_val_file_and_numeric_label_order() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "mine/train.csv",
        "uid,a,b,y\nu1,\"x, y\",p,10\nu2,\"multi\nline\",q,2\nu3,z,r,2\n",
    );
    write(dir.path(), "mine/dev.csv", "uid,a,b,y\nu4,w,s,10\n");
    write(dir.path(), "mine/test.csv", "uid,a,b,y\nu5,v,t,1\n");
    let s = spec(
        "name: mine\ntext: a\ntext_pair: b\nlabel: y\nid: uid\n\
         splits: {train: mine/train.csv, val: mine/dev.csv, test: mine/test.csv}\n",
    );
    let d = load_generic(&s, &options(dir.path())).unwrap();
    assert_eq!(d.name(), "mine");
    // Integer labels sort numerically, not as strings ("1" < "2" < "10").
    assert_eq!(d.label_names(), ["1", "2", "10"]);
    assert_eq!(sizes(&d).iter().map(|x| x.1).collect::<Vec<_>>(), [3, 1, 1]);
    assert_eq!(ids(&d, "train"), ["u1", "u2", "u3"]);
    assert_eq!(labels(&d, "train"), ["10", "2", "2"]);
    assert_eq!(
        d.split("train").unwrap().examples()[1].input,
        Input::Pair("multi\nline".into(), "q".into())
    );
    assert!(d.split("val").unwrap().origin().ends_with("mine/dev.csv"));
}

#[test]
fn tsv_without_header_by_position_and_holdout() {
    let dir = tempfile::tempdir().unwrap();
    let train: String = (0..10)
        .map(|i| format!("{}\t\"quoted\" text {i}\n", ["neg", "pos"][i % 2]))
        .collect();
    write(dir.path(), "t/train.tsv", train);
    write(dir.path(), "t/test.tsv", "pos\tfine\n");
    let s = spec("name: tabs\ntext: 1\nlabel: 0\nheader: false\nsplits: {train: t/train.tsv, test: t/test.tsv}\n");
    assert_eq!(s.text, Column::Index(1));
    let d = load_generic(&s, &options(dir.path())).unwrap();
    assert_eq!(d.label_names(), ["neg", "pos"]);
    assert_eq!(
        sizes(&d),
        [("train".to_owned(), 8), ("val".to_owned(), 2), ("test".to_owned(), 1)]
    );
    // reference/splitmix.py: holdout(10, 0.2, 42) → rows 3 and 8.
    assert_eq!(ids(&d, "val"), ["tabs:train:3", "tabs:train:8"]);
    match &d.split("val").unwrap().examples()[0].input {
        Input::Text(t) => assert_eq!(t, "\"quoted\" text 3"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn jsonl_gz_with_explicit_labels_and_bool_values() {
    let dir = tempfile::tempdir().unwrap();
    write_gz(
        dir.path(),
        "j/train.jsonl.gz",
        "{\"t\": \"a\", \"toxic\": true}\n{\"t\": \"b\", \"toxic\": false}\n\n{\"t\": \"c\", \"toxic\": true}\n",
    );
    write(
        dir.path(),
        "j/test.ndjson",
        "{\"t\": \"d\", \"toxic\": false, \"extra\": [1]}\n",
    );
    let s = spec(
        "name: j\ntext: t\nlabel: toxic\nlabels: ['false', 'true']\n\
         splits: {train: j/train.jsonl.gz, test: j/test.ndjson}\n",
    );
    let d = load_generic(&s, &options(dir.path())).unwrap();
    assert_eq!(d.label_names(), ["false", "true"]);
    assert_eq!(labels(&d, "test"), ["false"]);
    assert_eq!(d.split("train").unwrap().len() + d.split("val").unwrap().len(), 3);
}

fn write_parquet(path: &std::path::Path) {
    let schema = Arc::new(
        parse_message_type("message m { required binary text (UTF8); required int64 label; required double score; }")
            .unwrap(),
    );
    let props = Arc::new(WriterProperties::builder().build());
    let mut writer = SerializedFileWriter::new(File::create(path).unwrap(), schema, props).unwrap();
    let mut group = writer.next_row_group().unwrap();
    let mut index = 0;
    while let Some(mut column) = group.next_column().unwrap() {
        match index {
            0 => {
                let values: Vec<ByteArray> = ["alpha", "beta", "gamma"].iter().map(|s| ByteArray::from(*s)).collect();
                column
                    .typed::<ByteArrayType>()
                    .write_batch(&values, None, None)
                    .unwrap();
            }
            1 => {
                column.typed::<Int64Type>().write_batch(&[0, 1, 1], None, None).unwrap();
            }
            _ => {
                column
                    .typed::<DoubleType>()
                    .write_batch(&[0.5, 0.25, 1.0], None, None)
                    .unwrap();
            }
        }
        column.close().unwrap();
        index += 1;
    }
    group.close().unwrap();
    writer.close().unwrap();
}

#[test]
fn parquet_by_name_and_position() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("p")).unwrap();
    write_parquet(&dir.path().join("p/train.parquet"));
    write_parquet(&dir.path().join("p/test.parquet"));
    let s = spec(
        "name: pq\ntext: text\nlabel: 1\nsplits: {train: p/train.parquet, val: p/train.parquet, test: p/test.parquet}\nid: text\n",
    );
    // `id: text` repeats ids between train and val, and between val and test.
    assert!(load_generic(&s, &options(dir.path())).is_err());
    let s = spec("name: pq\ntext: text\nlabel: 1\nsplits: {train: p/train.parquet, test: p/test.parquet}\n");
    assert_eq!(
        Format::from_path(std::path::Path::new("p/x.parquet")),
        Some(Format::Parquet)
    );
    let d = load_generic(&s, &options(dir.path())).unwrap();
    assert_eq!(d.label_names(), ["0", "1"]);
    assert_eq!(labels(&d, "test"), ["0", "1", "1"]);
    assert_eq!(ids(&d, "test"), ["pq:test:0", "pq:test:1", "pq:test:2"]);
    match &d.split("test").unwrap().examples()[2].input {
        Input::Text(t) => assert_eq!(t, "gamma"),
        other => panic!("{other:?}"),
    }

    let s = spec("name: pq\ntext: text\nlabel: score\nsplits: {train: p/train.parquet, test: p/test.parquet}\n");
    let err = load_generic(&s, &options(dir.path())).unwrap_err().to_string();
    let path = dir.path().join("p/train.parquet").display().to_string();
    assert!(err.starts_with(&format!("{path}: row 0: `score` is 0.5")), "{err}");
    assert!(err.ends_with("not a string, integer or boolean"), "{err}");

    let s = spec("name: pq\ntext: body\nlabel: label\nsplits: {train: p/train.parquet, test: p/test.parquet}\n");
    let err = load_generic(&s, &options(dir.path())).unwrap_err().to_string();
    assert_eq!(err, format!("{path}: no column `body` (columns: text, label, score)"));
}

#[test]
fn mapping_round_trips_through_yaml() {
    let s = spec("name: m\nformat: tsv\ntext: 0\nlabel: y\nheader: true\nsplits: {train: a.tsv, test: b.tsv}\n");
    let yaml = serde_yaml_ng::to_string(&s).unwrap();
    assert_eq!(GenericSpec::from_yaml_str(&yaml, "<again>").unwrap(), s);
    assert_eq!(s.format, Some(Format::Tsv));
}
