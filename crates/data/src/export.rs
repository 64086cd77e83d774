//! Writing splits as JSON Lines, for tools outside ueb (e.g. a PyTorch feature export).

use std::io::Write;
use std::path::Path;

use serde_json::{Map, Value};

use crate::dataset::{Dataset, Input, Label, Split};
use crate::error::{DataError, Result};

/// One example as a JSON object: `id`, then `text` (+ `text_pair`), or `question`, `options`
/// (+ `subject`), or `tokens`; then `label` (the label's name; for token tasks the list of tag
/// names).
pub fn example_json(dataset: &Dataset, example: &crate::Example) -> Value {
    let names = dataset.label_names();
    let name = |i: &usize| Value::from(names.get(*i).map_or("?", String::as_str));
    let mut object = Map::new();
    object.insert("id".into(), Value::from(example.id.as_str()));
    match &example.input {
        Input::Text(text) => {
            object.insert("text".into(), Value::from(text.as_str()));
        }
        Input::Pair(a, b) => {
            object.insert("text".into(), Value::from(a.as_str()));
            object.insert("text_pair".into(), Value::from(b.as_str()));
        }
        Input::Choice {
            question,
            options,
            subject,
        } => {
            object.insert("question".into(), Value::from(question.as_str()));
            object.insert("options".into(), Value::from(options.clone()));
            if let Some(subject) = subject {
                object.insert("subject".into(), Value::from(subject.as_str()));
            }
        }
        Input::Tokens(tokens) => {
            object.insert("tokens".into(), Value::from(tokens.clone()));
        }
    }
    let label = match &example.label {
        Label::Class(i) => name(i),
        Label::Tags(tags) => Value::Array(tags.iter().map(name).collect()),
    };
    object.insert("label".into(), label);
    Value::Object(object)
}

/// Writes every example of `split` as one JSON line ([`example_json`]). `path` names the
/// destination in errors.
pub fn write_jsonl(dataset: &Dataset, split: &Split, out: &mut impl Write, path: &Path) -> Result<()> {
    for example in split.examples() {
        let line = example_json(dataset, example).to_string();
        writeln!(out, "{line}").map_err(|e| DataError::io(path, e))?;
    }
    Ok(())
}
