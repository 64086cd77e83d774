//! 20 Newsgroups (bydate) as gzip JSON Lines, and scikit-learn's header, footer and quote
//! stripping (`fetch_20newsgroups(remove=...)`).

use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::dataset::{Example, Input, Label};
use crate::error::{DataError, Location, Result};
use crate::readers::jsonl;

/// The 20 groups in alphabetical order; the index is scikit-learn's `target`.
pub const GROUPS: [&str; 20] = [
    "alt.atheism",
    "comp.graphics",
    "comp.os.ms-windows.misc",
    "comp.sys.ibm.pc.hardware",
    "comp.sys.mac.hardware",
    "comp.windows.x",
    "misc.forsale",
    "rec.autos",
    "rec.motorcycles",
    "rec.sport.baseball",
    "rec.sport.hockey",
    "sci.crypt",
    "sci.electronics",
    "sci.med",
    "sci.space",
    "soc.religion.christian",
    "talk.politics.guns",
    "talk.politics.mideast",
    "talk.politics.misc",
    "talk.religion.misc",
];

/// A part of a post that scikit-learn's `remove=` can strip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NewsgroupsPart {
    /// Everything before the first blank line ([`strip_header`]).
    Headers,
    /// A signature block after the last line of only dashes ([`strip_footer`]).
    Footers,
    /// Quoted lines ([`strip_quotes`]).
    Quotes,
}

impl NewsgroupsPart {
    /// The name used on the command line and in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Headers => "headers",
            Self::Footers => "footers",
            Self::Quotes => "quotes",
        }
    }
}

impl FromStr for NewsgroupsPart {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        match [Self::Headers, Self::Footers, Self::Quotes]
            .into_iter()
            .find(|p| p.as_str() == s)
        {
            Some(part) => Ok(part),
            None => Err(DataError::invalid(
                "remove",
                format!("`{s}` is not one of headers, footers, quotes"),
            )),
        }
    }
}

/// Python's `str.isspace`: Unicode whitespace plus the separators U+001C–U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// scikit-learn's `strip_newsgroup_header`: the text after the first `"\n\n"` (empty when there
/// is none).
pub fn strip_header(text: &str) -> String {
    text.split_once("\n\n")
        .map_or(String::new(), |(_, after)| after.to_owned())
}

/// scikit-learn's `strip_newsgroup_quoting`: drops every line that contains `writes in`,
/// `writes:`, `wrote:`, `says:` or `said:`, or starts with `In article`, `Quoted from`, `|` or
/// `>`.
pub fn strip_quotes(text: &str) -> String {
    const ANYWHERE: [&str; 5] = ["writes in", "writes:", "wrote:", "says:", "said:"];
    const START: [&str; 4] = ["In article", "Quoted from", "|", ">"];
    text.split('\n')
        .filter(|line| !(ANYWHERE.iter().any(|p| line.contains(p)) || START.iter().any(|p| line.starts_with(p))))
        .collect::<Vec<_>>()
        .join("\n")
}

/// scikit-learn's `strip_newsgroup_footer`: of the whitespace-trimmed text, drops the last line
/// that is empty or only dashes and everything after it; the text is returned unchanged when
/// that line is the first one or there is none.
pub fn strip_footer(text: &str) -> String {
    let lines: Vec<&str> = text.trim_matches(is_py_space).split('\n').collect();
    let cut = lines
        .iter()
        .rposition(|line| line.trim_matches(is_py_space).trim_matches('-').is_empty());
    match cut {
        Some(cut) if cut > 0 => lines[..cut].join("\n"),
        _ => text.to_owned(),
    }
}

/// Applies `remove` in scikit-learn's order: headers, then footers, then quotes.
pub fn strip(text: &str, remove: &[NewsgroupsPart]) -> String {
    let mut text = text.to_owned();
    if remove.contains(&NewsgroupsPart::Headers) {
        text = strip_header(&text);
    }
    if remove.contains(&NewsgroupsPart::Footers) {
        text = strip_footer(&text);
    }
    if remove.contains(&NewsgroupsPart::Quotes) {
        text = strip_quotes(&text);
    }
    text
}

#[derive(Deserialize)]
struct Post {
    id: String,
    label: String,
    label_id: usize,
    text: String,
}

/// Reads `{"id", "label", "label_id", "text"}` lines; `label` must be a group and `label_id`
/// its alphabetical index. The id is the post's `"<group>/<file id>"`.
pub(crate) fn read(path: &Path, remove: &[NewsgroupsPart]) -> Result<Vec<Example>> {
    jsonl::<Post>(path)?
        .into_iter()
        .map(|(line, post)| {
            let index = GROUPS.iter().position(|g| *g == post.label).ok_or_else(|| {
                DataError::malformed(
                    path,
                    Location::Line(line),
                    format!("unknown newsgroup `{}`", post.label),
                )
            })?;
            if index != post.label_id {
                return Err(DataError::malformed(
                    path,
                    Location::Line(line),
                    format!(
                        "label_id {} does not match `{}`, whose index is {index}",
                        post.label_id, post.label
                    ),
                ));
            }
            Ok(Example {
                id: post.id,
                input: Input::Text(strip(&post.text, remove)),
                label: Label::Class(index),
            })
        })
        .collect()
}
