//! CoNLL-format NER files: one token per line, the word first and the tag last, a blank line
//! between sentences. CoNLL-2003 (`word POS chunk NER`, space-separated, `-DOCSTART-` lines
//! between documents, IOB1 or BIO) and WNUT-17 (`word<TAB>tag`, BIO; its train file also breaks
//! sentences with a line holding only a tab, which splits into no fields like a blank line).

use std::path::Path;

use crate::dataset::{Example, Input, Label, LabelSet};
use crate::error::{DataError, Location, Result};
use crate::io::read_text;
use crate::readers::row_id;

/// The NER tags in the order of Hugging Face's `conll2003` `ner_tags`.
pub(crate) const CONLL2003_TAGS: [&str; 9] = [
    "O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC",
];

/// The WNUT-17 tags in the order of Hugging Face's `wnut_17` `ner_tags`.
pub(crate) const WNUT17_TAGS: [&str; 13] = [
    "O",
    "B-corporation",
    "I-corporation",
    "B-creative-work",
    "I-creative-work",
    "B-group",
    "I-group",
    "B-location",
    "I-location",
    "B-person",
    "I-person",
    "B-product",
    "I-product",
];

/// How a file writes its tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// IOB1 or BIO, normalised to BIO with [`iob1_to_iob2`] (CoNLL-2003's two releases).
    Iob1OrBio,
    /// BIO, read as written (an `I-` without its `B-` stays `I-`, as in the data).
    Bio,
}

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
/// whitespace-separated fields), the tag one of `tags`. With [`Scheme::Iob1OrBio`] tags are
/// normalised to IOB2, so CoNLL-2003's original IOB1 release and its BIO conversion give the
/// same examples. `-DOCSTART-` lines are skipped.
pub(crate) fn read(
    path: &Path,
    dataset: &str,
    file_split: &str,
    tags: &[&str],
    scheme: Scheme,
) -> Result<Vec<Example>> {
    let labels = LabelSet::new(tags);
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
            if scheme == Scheme::Iob1OrBio {
                iob1_to_iob2(tags);
            }
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
