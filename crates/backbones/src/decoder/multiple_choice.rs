//! Multiple-choice scoring with a causal LM (MMLU, ARC): a prompt with lettered options,
//! 0-shot or k-shot from the dev split; the C-way logits are the option letters' first-token
//! logits at the answer position (the prompt's last token).
//!
//! The cache it exports is an ordinary `linear` one: the features are the last hidden state
//! at the answer position and the classifier is the C rows of `lm_head` for the letters, so
//! `out_proj(features)` gives back the letter logits and every head works unchanged.

use burn::tensor::Device;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use ueb_cache::{Activation, Classifier, ClassifierKind, FeatureCache, SplitData};

use super::model::CausalLm;
use crate::error::{BackboneError, Result};
use crate::extract::Extractor;
use crate::readback::to_host;
use crate::tokenize::{Encoded, TextInput, TextTokenizer};

/// Option letters, in order (at most 8 options).
pub const LETTERS: [char; 8] = ['A', 'B', 'C', 'D', 'E', 'F', 'G', 'H'];

/// One multiple-choice question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChoiceQuestion {
    /// The question text.
    pub question: String,
    /// The options, in letter order.
    pub choices: Vec<String>,
    /// The index of the correct option.
    pub answer: usize,
}

fn block(q: &ChoiceQuestion) -> String {
    let mut s = q.question.clone();
    for (letter, c) in LETTERS.iter().zip(&q.choices) {
        s.push_str(&format!("\n{letter}. {c}"));
    }
    s.push_str("\nAnswer:");
    s
}

/// The prompt of `q` after the solved examples `shots` (MMLU's usual format):
///
/// ```text
/// The following are multiple choice questions (with answers) about {subject}.
///
/// {shot question}
/// A. {option}
/// B. {option}
/// Answer: {letter}
///
/// {question}
/// A. {option}
/// …
/// Answer:
/// ```
///
/// An empty `subject` drops " about {subject}".
pub fn choice_prompt(subject: &str, shots: &[ChoiceQuestion], q: &ChoiceQuestion) -> String {
    let mut s = if subject.is_empty() {
        "The following are multiple choice questions (with answers).\n\n".to_string()
    } else {
        format!("The following are multiple choice questions (with answers) about {subject}.\n\n")
    };
    for shot in shots {
        let letter = LETTERS.get(shot.answer).copied().unwrap_or('?');
        s.push_str(&format!("{} {letter}\n\n", block(shot)));
    }
    s.push_str(&block(q));
    s
}

/// The token id of each of the first `n` letters after `prompt`: the first token that
/// `prompt + " X"` adds after the prompt's own tokens. A tokenizer that merges across the
/// boundary, or gives two letters the same first token, is an error.
///
/// # Errors
/// `n` outside `2..=8`, a tokenizer error, or letters without their own first token.
pub fn letter_token_ids(tokenizer: &TextTokenizer, prompt: &str, n: usize) -> Result<Vec<u32>> {
    if !(2..=LETTERS.len()).contains(&n) {
        return Err(BackboneError::Invalid(format!(
            "a multiple-choice question needs 2 to {} options, not {n}",
            LETTERS.len()
        )));
    }
    let texts: Vec<String> = std::iter::once(prompt.to_string())
        .chain(LETTERS[..n].iter().map(|l| format!("{prompt} {l}")))
        .collect();
    let inputs: Vec<TextInput<'_>> = texts.iter().map(|t| TextInput::Single(t)).collect();
    let enc = tokenizer.encode(&inputs)?;
    let (base, rest) = enc
        .split_first()
        .ok_or_else(|| BackboneError::Invalid("no prompt".into()))?;
    let mut ids = Vec::with_capacity(n);
    for (letter, e) in LETTERS.iter().zip(rest) {
        if e.len() <= base.len() || e.ids[..base.len()] != base.ids[..] {
            return Err(BackboneError::Tokenizer {
                context: format!("option letter {letter}"),
                message: format!(
                    "the prompt's tokens are not a prefix of the prompt followed by \" {letter}\" (or the prompt reaches max_length {})",
                    tokenizer.max_length()
                ),
            });
        }
        ids.push(e.ids[base.len()]);
    }
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != ids.len() {
        return Err(BackboneError::Tokenizer {
            context: "option letters".into(),
            message: format!("the letters share first tokens {ids:?}; they cannot be told apart"),
        });
    }
    Ok(ids)
}

/// The C rows of the output layer for `tokens` as the cache's `linear` classifier.
///
/// # Errors
/// A tensor that cannot be read back.
pub fn choice_classifier(lm: &CausalLm, tokens: &[u32]) -> Result<Classifier> {
    let rows = lm.head_rows(tokens);
    let [d, c] = rows.dims();
    Ok(Classifier {
        kind: ClassifierKind::Linear,
        activation: Activation::None,
        dim: d,
        num_classes: c,
        dense_weight: None,
        dense_bias: None,
        out_weight: to_host(rows.transpose())?,
        out_bias: None,
    })
}

/// The questions of one split.
#[derive(Debug, Clone, Copy)]
pub struct ChoiceSplits<'a> {
    /// Training split (what a UE head is fitted on).
    pub train: &'a [ChoiceQuestion],
    /// Validation split.
    pub val: &'a [ChoiceQuestion],
    /// Test split.
    pub test: &'a [ChoiceQuestion],
}

/// How to prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChoicePrompting<'a> {
    /// The subject named in the header ("" for none).
    pub subject: &'a str,
    /// The solved examples (the first k of the dev split; empty for 0-shot).
    pub shots: &'a [ChoiceQuestion],
    /// Number of options C (every question must have exactly C).
    pub num_choices: usize,
}

/// One question with the way it is asked: its subject and the solved examples before it.
/// A dataset whose questions have different subjects (MMLU) prompts each with its own subject
/// and that subject's examples.
#[derive(Debug, Clone, Copy)]
pub struct ChoiceItem<'a> {
    /// The subject named in the header ("" for none).
    pub subject: &'a str,
    /// The solved examples (empty for 0-shot).
    pub shots: &'a [ChoiceQuestion],
    /// The question.
    pub question: &'a ChoiceQuestion,
}

/// The items of the three splits.
#[derive(Debug, Clone, Copy)]
pub struct ChoiceItemSplits<'a> {
    /// Training split.
    pub train: &'a [ChoiceItem<'a>],
    /// Validation split.
    pub val: &'a [ChoiceItem<'a>],
    /// Test split.
    pub test: &'a [ChoiceItem<'a>],
}

/// One multiple-choice question of the data, with its subject.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectQuestion {
    /// The subject, in words (MMLU's file names with spaces for underscores).
    pub subject: String,
    /// The question.
    pub question: ChoiceQuestion,
}

/// The questions of a split with their subjects' solved examples (none for 0-shot).
pub fn choice_items<'a>(
    questions: &'a [SubjectQuestion],
    shots: &'a std::collections::HashMap<String, Vec<ChoiceQuestion>>,
) -> Vec<ChoiceItem<'a>> {
    questions
        .iter()
        .map(|q| ChoiceItem {
            subject: &q.subject,
            shots: shots.get(&q.subject).map_or(&[], |v| &v[..]),
            question: &q.question,
        })
        .collect()
}

/// Drops solved examples from the end of k-shot prompts that reach `max_length` until they fit,
/// as the MMLU authors' evaluation does (`while crop(prompt) != prompt: k -= 1`); returns how
/// many prompts were shortened. A 0-shot prompt that does not fit is left for the export to
/// report.
pub fn fit_shots(tokenizer: &TextTokenizer, items: &mut [ChoiceItem<'_>]) -> Result<usize> {
    let mut todo: Vec<usize> = (0..items.len()).filter(|&i| !items[i].shots.is_empty()).collect();
    let mut shortened = std::collections::BTreeSet::new();
    while !todo.is_empty() {
        let prompts: Vec<String> = todo
            .iter()
            .map(|&i| choice_prompt(items[i].subject, items[i].shots, items[i].question))
            .collect();
        let inputs: Vec<TextInput<'_>> = prompts.iter().map(|p| TextInput::Single(p)).collect();
        let encoded = tokenizer.encode(&inputs)?;
        let mut next = Vec::new();
        for (&i, e) in todo.iter().zip(&encoded) {
            if e.len() >= tokenizer.max_length() {
                let k = items[i].shots.len() - 1;
                items[i].shots = &items[i].shots[..k];
                shortened.insert(i);
                if k > 0 {
                    next.push(i);
                }
            }
        }
        todo = next;
    }
    Ok(shortened.len())
}

/// Prompts and tokenizes `questions`, checking that no prompt reaches `max_length` (a
/// truncated prompt would lose its answer position) and that every prompt has the same
/// letter tokens. Returns the encoded prompts and the letter tokens.
///
/// # Errors
/// A question with another number of options or an answer out of range (naming its row), a
/// prompt too long, letters that tokenize differently in different prompts.
pub fn encode_questions(
    tokenizer: &TextTokenizer,
    prompting: &ChoicePrompting<'_>,
    questions: &[ChoiceQuestion],
    split: &str,
) -> Result<(Vec<Encoded>, Vec<u32>)> {
    encode_items(
        tokenizer,
        &same_prompting(prompting, questions),
        prompting.num_choices,
        split,
    )
}

/// `questions`, each asked as `prompting` says.
fn same_prompting<'a>(prompting: &ChoicePrompting<'a>, questions: &'a [ChoiceQuestion]) -> Vec<ChoiceItem<'a>> {
    questions
        .iter()
        .map(|question| ChoiceItem {
            subject: prompting.subject,
            shots: prompting.shots,
            question,
        })
        .collect()
}

/// [`encode_questions`] for questions asked each in its own way ([`ChoiceItem`]).
///
/// # Errors
/// As [`encode_questions`].
pub fn encode_items(
    tokenizer: &TextTokenizer,
    items: &[ChoiceItem<'_>],
    num_choices: usize,
    split: &str,
) -> Result<(Vec<Encoded>, Vec<u32>)> {
    let c = num_choices;
    for (i, it) in items.iter().enumerate() {
        for (what, q) in
            std::iter::once(("question", it.question)).chain(it.shots.iter().map(|s| ("solved example of question", s)))
        {
            if q.choices.len() != c || q.answer >= c {
                return Err(BackboneError::Invalid(format!(
                    "{split} {what} {i}: {} options and answer {} (expected {c} options)",
                    q.choices.len(),
                    q.answer
                )));
            }
        }
    }
    let prompts: Vec<String> = items
        .iter()
        .map(|it| choice_prompt(it.subject, it.shots, it.question))
        .collect();
    let inputs: Vec<TextInput<'_>> = prompts.iter().map(|p| TextInput::Single(p)).collect();
    let encoded = tokenizer.encode(&inputs)?;
    if let Some(i) = encoded.iter().position(|e| e.len() >= tokenizer.max_length()) {
        return Err(BackboneError::Invalid(format!(
            "{split} question {i}: the prompt has at least max_length = {} tokens and would be truncated; raise max_length",
            tokenizer.max_length()
        )));
    }
    let letters = match prompts.first() {
        Some(p) => letter_token_ids(tokenizer, p, c)?,
        None => return Err(BackboneError::Invalid(format!("the {split} split is empty"))),
    };
    // Letter tokens depend only on the prompt's end ("Answer:"), so checking a few prompts
    // (and the first of every subject) catches a tokenizer whose merges reach back over the
    // boundary.
    let stride = prompts.len().div_ceil(8).max(1);
    for (i, p) in prompts.iter().enumerate().skip(1) {
        let new_subject = items[i].subject != items[i - 1].subject;
        if (i % stride == 0 || new_subject) && letter_token_ids(tokenizer, p, c)? != letters {
            return Err(BackboneError::Tokenizer {
                context: format!("{split} question {i}"),
                message: "the option letters tokenize differently than in the first prompt".into(),
            });
        }
    }
    Ok((encoded, letters))
}

/// Scores every split with `lm` and assembles the cache: features at the answer position,
/// the letter logits, the gold answers, and the letters' `lm_head` rows as the classifier.
/// The provenance is left empty (`null`) for the caller to fill.
///
/// # Errors
/// As [`encode_questions`], non-finite outputs, or letters that differ between splits.
pub fn export_choice_cache(
    lm: CausalLm,
    tokenizer: &TextTokenizer,
    prompting: &ChoicePrompting<'_>,
    splits: ChoiceSplits<'_>,
    batch_size: usize,
    device: &Device,
    progress: Option<&ProgressBar>,
) -> Result<FeatureCache> {
    let (train, val, test) = (
        same_prompting(prompting, splits.train),
        same_prompting(prompting, splits.val),
        same_prompting(prompting, splits.test),
    );
    export_choice_items(
        lm,
        tokenizer,
        prompting.num_choices,
        ChoiceItemSplits {
            train: &train,
            val: &val,
            test: &test,
        },
        batch_size,
        device,
        progress,
    )
}

/// [`export_choice_cache`] for questions asked each in its own way (MMLU: by subject).
///
/// # Errors
/// As [`export_choice_cache`].
pub fn export_choice_items(
    lm: CausalLm,
    tokenizer: &TextTokenizer,
    num_choices: usize,
    splits: ChoiceItemSplits<'_>,
    batch_size: usize,
    device: &Device,
    progress: Option<&ProgressBar>,
) -> Result<FeatureCache> {
    let c = num_choices;
    let (train_enc, letters) = encode_items(tokenizer, splits.train, c, "train")?;
    let (val_enc, l_val) = encode_items(tokenizer, splits.val, c, "val")?;
    let (test_enc, l_test) = encode_items(tokenizer, splits.test, c, "test")?;
    if l_val != letters || l_test != letters {
        return Err(BackboneError::Tokenizer {
            context: "option letters".into(),
            message: "the letters tokenize differently in different splits".into(),
        });
    }
    let classifier = choice_classifier(&lm, &letters)?;
    let extractor = Extractor::Choices {
        lm: Box::new(lm),
        tokens: letters,
    };
    let run = |enc: &[Encoded], items: &[ChoiceItem<'_>]| -> Result<SplitData> {
        let out = extractor.run(tokenizer, enc, batch_size, device, progress)?;
        Ok(SplitData {
            logits: out.logits.unwrap_or_default(),
            features: out.features,
            labels: items.iter().map(|it| it.question.answer as i64).collect(),
            group: None,
            dim: classifier.dim,
            num_classes: c,
        })
    };
    let train = run(&train_enc, splits.train)?;
    let val = run(&val_enc, splits.val)?;
    let test = run(&test_enc, splits.test)?;
    Ok(crate::export::assemble_cache(
        classifier,
        LETTERS[..c].iter().map(char::to_string).collect(),
        serde_json::Value::Null,
        [train, val, test],
    ))
}
