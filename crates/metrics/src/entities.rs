//! Entity-level precision, recall and F1 of a tagger, with conlleval's span rules as seqeval's
//! default (non-strict) mode applies them: `entity_precision`, `entity_recall`, `entity_f1`.
//!
//! A tag is read as a prefix letter (its first character: `B`, `I`, `E`, `S`, `O`) and a type
//! (what follows the first `-`; `_` when nothing does). An entity ends before a `B` or `S`, an
//! `O`, or a change of type, and after an `E` or `S`; it starts at a `B` or `S`, at an `I` or
//! `E` that does not continue an entity (after `O`, `E` or `S`), and at any change of type. So
//! an `I-X` without its `B-X` starts an entity, and `B-X B-X` are two. Sentences are separate
//! sequences. Scores are micro-averaged over types: an entity is correct when gold and
//! prediction have one of the same type over the same words; precision = correct / predicted,
//! recall = correct / gold, F1 = 2PR/(P + R), each 0 when its denominator is (seqeval's
//! `zero_division` default).

use crate::error::MetricsError;

/// One entity: its type and its first and last word (inclusive), as seqeval's `get_entities`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entity {
    /// The type (`PER`, `creative-work`, …; `_` for a tag without one).
    pub kind: String,
    /// Index of the first word.
    pub start: usize,
    /// Index of the last word.
    pub end: usize,
}

/// The prefix letter and the type of a tag.
fn split_tag(tag: &str) -> (char, &str) {
    let mut chars = tag.chars();
    let prefix = chars.next().unwrap_or('O');
    let rest = chars.as_str();
    let kind = rest.split_once('-').map_or(rest, |(_, k)| k);
    (prefix, if kind.is_empty() { "_" } else { kind })
}

fn ends(prev: char, tag: char, prev_kind: &str, kind: &str) -> bool {
    matches!(prev, 'E' | 'S')
        || (matches!(prev, 'B' | 'I') && matches!(tag, 'B' | 'S' | 'O'))
        || (prev != 'O' && prev != '.' && prev_kind != kind)
}

fn starts(prev: char, tag: char, prev_kind: &str, kind: &str) -> bool {
    matches!(tag, 'B' | 'S')
        || (matches!(prev, 'E' | 'S' | 'O') && matches!(tag, 'E' | 'I'))
        || (tag != 'O' && tag != '.' && prev_kind != kind)
}

/// The entities of one sentence's tags, in order.
pub fn entities<S: AsRef<str>>(tags: &[S]) -> Vec<Entity> {
    let mut out = Vec::new();
    let (mut prev, mut prev_kind, mut begin) = ('O', "", 0);
    let sentinel = "O";
    for (i, tag) in tags.iter().map(AsRef::as_ref).chain([sentinel]).enumerate() {
        let (t, kind) = split_tag(tag);
        if ends(prev, t, prev_kind, kind) {
            out.push(Entity {
                kind: prev_kind.to_string(),
                start: begin,
                end: i - 1,
            });
        }
        if starts(prev, t, prev_kind, kind) {
            begin = i;
        }
        (prev, prev_kind) = (t, kind);
    }
    out
}

/// Entity-level scores of a tagger over a set of sentences.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EntityScores {
    /// `entity_precision`: correct / predicted entities (0 without predicted ones).
    pub precision: f64,
    /// `entity_recall`: correct / gold entities (0 without gold ones).
    pub recall: f64,
    /// `entity_f1`: 2PR/(P + R) (0 when P + R is).
    pub f1: f64,
    /// Gold entities.
    pub gold: usize,
    /// Predicted entities.
    pub predicted: usize,
    /// Predicted entities that are gold ones.
    pub correct: usize,
}

/// The metric names, in the order of [`EntityScores::values`].
pub const ENTITY_METRICS: [&str; 3] = ["entity_precision", "entity_recall", "entity_f1"];

impl EntityScores {
    /// Precision, recall and F1, in the order of [`ENTITY_METRICS`].
    pub fn values(&self) -> [f64; 3] {
        [self.precision, self.recall, self.f1]
    }
}

/// Scores predicted tags against gold ones, sentence by sentence.
///
/// # Errors
/// [`MetricsError::LengthMismatch`] when the sentence counts differ,
/// [`MetricsError::SentenceLength`] (naming the sentence) when a sentence's do.
pub fn entity_scores<S: AsRef<str>, T: AsRef<str>>(
    gold: &[Vec<S>],
    predicted: &[Vec<T>],
) -> Result<EntityScores, MetricsError> {
    if gold.len() != predicted.len() {
        return Err(MetricsError::LengthMismatch {
            what: "predicted sentences",
            expected: gold.len(),
            found: predicted.len(),
        });
    }
    let (mut n_gold, mut n_pred, mut correct) = (0usize, 0usize, 0usize);
    for (s, (g, p)) in gold.iter().zip(predicted).enumerate() {
        if g.len() != p.len() {
            return Err(MetricsError::SentenceLength {
                sentence: s,
                expected: g.len(),
                found: p.len(),
            });
        }
        let ge = entities(g);
        let pe = entities(p);
        n_gold += ge.len();
        n_pred += pe.len();
        // Both lists are in order of their start word and never overlap within a sentence, so
        // an equal entity is found by a merge.
        let (mut i, mut j) = (0, 0);
        while i < ge.len() && j < pe.len() {
            match (ge[i].start, ge[i].end).cmp(&(pe[j].start, pe[j].end)) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    correct += usize::from(ge[i].kind == pe[j].kind);
                    i += 1;
                    j += 1;
                }
            }
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let precision = ratio(correct, n_pred);
    let recall = ratio(correct, n_gold);
    let denom = precision + recall;
    let f1 = if denom == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / denom
    };
    Ok(EntityScores {
        precision,
        recall,
        f1,
        gold: n_gold,
        predicted: n_pred,
        correct,
    })
}
