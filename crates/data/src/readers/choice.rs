//! Multiple choice: MMLU (CSV `subject, question, A, B, C, D, answer`) and ARC (official JSON
//! Lines).

use std::path::Path;

use serde::Deserialize;

use crate::dataset::{Example, Input, Label};
use crate::error::{DataError, Location, Result};
use crate::io::Table;
use crate::readers::{jsonl, row_id};

/// Option letters; option `i` has letter `LETTERS[i]` and label index `i`.
pub(crate) const LETTERS: [&str; 5] = ["A", "B", "C", "D", "E"];

/// MMLU in the concatenated layout, with a header `subject,question,A,B,C,D,answer`.
pub(crate) fn mmlu(path: &Path, dataset: &str, file_split: &str) -> Result<Vec<Example>> {
    let table = Table::csv(path, true)?;
    let subject = table.column("subject")?;
    let question = table.column("question")?;
    let options = ["A", "B", "C", "D"]
        .iter()
        .map(|c| table.column(c))
        .collect::<Result<Vec<_>>>()?;
    let answer = table.column("answer")?;
    table
        .rows
        .iter()
        .enumerate()
        .map(|(row, (line, f))| {
            let label = LETTERS[..4]
                .iter()
                .position(|l| *l == f[answer].trim())
                .ok_or_else(|| table.error(*line, format!("answer `{}` is not one of A, B, C, D", f[answer])))?;
            Ok(Example {
                id: row_id(dataset, file_split, row),
                input: Input::Choice {
                    question: f[question].clone(),
                    options: options.iter().map(|&c| f[c].clone()).collect(),
                    subject: Some(f[subject].clone()),
                },
                label: Label::Class(label),
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct ArcRow {
    id: String,
    question: ArcQuestion,
    #[serde(rename = "answerKey")]
    answer_key: String,
}

#[derive(Deserialize)]
struct ArcQuestion {
    stem: String,
    choices: Vec<ArcChoice>,
}

#[derive(Deserialize)]
struct ArcChoice {
    text: String,
    label: String,
}

/// ARC: `{"id", "question": {"stem", "choices": [{"text", "label"}]}, "answerKey"}`.
///
/// Options are re-lettered A, B, … in the file's order (some official items label them
/// 1–4); the answer is the option whose `label` equals `answerKey`. The id is ARC's own.
pub(crate) fn arc(path: &Path) -> Result<Vec<Example>> {
    jsonl::<ArcRow>(path)?
        .into_iter()
        .map(|(line, row)| {
            let bad = |reason: String| DataError::malformed(path, Location::Line(line), reason);
            let n = row.question.choices.len();
            if !(2..=LETTERS.len()).contains(&n) {
                return Err(bad(format!(
                    "{n} options; between 2 and {} are supported",
                    LETTERS.len()
                )));
            }
            let label = row
                .question
                .choices
                .iter()
                .position(|c| c.label == row.answer_key)
                .ok_or_else(|| bad(format!("answerKey `{}` is not the label of an option", row.answer_key)))?;
            Ok(Example {
                id: row.id,
                input: Input::Choice {
                    question: row.question.stem,
                    options: row.question.choices.into_iter().map(|c| c.text).collect(),
                    subject: None,
                },
                label: Label::Class(label),
            })
        })
        .collect()
}
