//! CoNLL-2003 NER: one token per line (`word POS chunk NER`, space-separated), a blank line
//! between sentences, `-DOCSTART-` lines between documents.

use std::path::Path;

use crate::dataset::{Example, Input, Label, LabelSet};
use crate::error::{DataError, Location, Result};
use crate::io::read_text;
use crate::readers::row_id;

/// The NER tags in the order of Hugging Face's `conll2003` `ner_tags`.
pub(crate) const TAGS: [&str; 9] = [
    "O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC",
];

/// Rewrites IOB1 tags as IOB2 (BIO): an `I-X` that does not follow `B-X` or `I-X` becomes
/// `B-X`. Valid IOB2 input is returned unchanged.
pub fn iob1_to_iob2(tags: &mut [String]) {
    let mut previous: Option<String> = None;
    for tag in tags.iter_mut() {
        if let Some(kind) = tag.strip_prefix("I-") {
            let continues = previous
                .as_deref()
                .and_then(|p| p.strip_prefix("B-").or_else(|| p.strip_prefix("I-")))
                == Some(kind);
            if !continues {
                *tag = format!("B-{kind}");
            }
        }
        previous = Some(tag.clone());
    }
}

/// Reads sentences; the word is a line's first field and the tag its last (at least two
/// fields). Tags are normalised to IOB2 with [`iob1_to_iob2`], so the original IOB1 release
/// and the BIO conversion give the same examples. `-DOCSTART-` lines are skipped.
pub(crate) fn read(path: &Path, dataset: &str, file_split: &str) -> Result<Vec<Example>> {
    let labels = LabelSet::new(&TAGS);
    let text = read_text(path)?;
    let mut out = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut tags: Vec<String> = Vec::new();
    let mut start_line = 0;
    let flush =
        |words: &mut Vec<String>, tags: &mut Vec<String>, start_line: u64, out: &mut Vec<Example>| -> Result<()> {
            if words.is_empty() {
                return Ok(());
            }
            iob1_to_iob2(tags);
            let label = tags
                .iter()
                .enumerate()
                .map(|(k, t)| {
                    labels
                        .lookup(t)
                        .map_err(|m| DataError::malformed(path, Location::Line(start_line + k as u64), m))
                })
                .collect::<Result<Vec<_>>>()?;
            out.push(Example {
                id: row_id(dataset, file_split, out.len()),
                input: Input::Tokens(std::mem::take(words)),
                label: Label::Tags(label),
            });
            tags.clear();
            Ok(())
        };
    for (i, line) in text.lines().enumerate() {
        let line_no = i as u64 + 1;
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            flush(&mut words, &mut tags, start_line, &mut out)?;
            continue;
        }
        if fields[0] == "-DOCSTART-" {
            flush(&mut words, &mut tags, start_line, &mut out)?;
            continue;
        }
        let [word, .., tag] = fields[..] else {
            return Err(DataError::malformed(
                path,
                Location::Line(line_no),
                "expected `word ... TAG` (at least two space-separated fields)",
            ));
        };
        labels
            .lookup(tag)
            .map_err(|m| DataError::malformed(path, Location::Line(line_no), m))?;
        if words.is_empty() {
            start_line = line_no;
        }
        words.push(word.to_owned());
        tags.push(tag.to_owned());
    }
    flush(&mut words, &mut tags, start_line, &mut out)?;
    Ok(out)
}
