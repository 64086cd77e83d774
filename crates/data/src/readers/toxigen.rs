//! ToxiGen (human-annotated): CSV with `text` stored as a Python bytes literal, labelled
//! `toxicity_ai + toxicity_human > 5.5`.

use std::path::Path;

use crate::dataset::{Example, Input, Label};
use crate::error::Result;
use crate::io::Table;
use crate::readers::row_id;

/// The binarisation threshold on `toxicity_ai + toxicity_human` (lm-eval's).
pub const THRESHOLD: f64 = 5.5;

/// Unwraps a Python bytes literal `b'…'` or `b"…"` to the text it encodes.
///
/// Escapes are Python's: `\\`, `\'`, `\"`, `\a`, `\b`, `\f`, `\n`, `\r`, `\t`, `\v`, `\xHH`,
/// octal `\ooo` (1–3 digits) and a backslash-newline continuation; any other backslash is kept
/// as is. The resulting bytes must be UTF-8. A text that does not start with `b'` or `b"` is
/// returned unchanged; one that starts so but does not end with the same quote is an error.
pub fn unwrap_bytes_literal(s: &str) -> std::result::Result<String, String> {
    let quote = match s.as_bytes() {
        [b'b', q @ (b'\'' | b'"'), ..] => char::from(*q),
        _ => return Ok(s.to_owned()),
    };
    let body = s[2..]
        .strip_suffix(quote)
        .ok_or_else(|| format!("starts with `b{quote}` but does not end with `{quote}`"))?;
    let mut out: Vec<u8> = Vec::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let Some(e) = chars.next() else {
            return Err("ends with a lone backslash".to_owned());
        };
        match e {
            '\\' => out.push(b'\\'),
            '\'' => out.push(b'\''),
            '"' => out.push(b'"'),
            'a' => out.push(0x07),
            'b' => out.push(0x08),
            'f' => out.push(0x0C),
            'n' => out.push(b'\n'),
            'r' => out.push(b'\r'),
            't' => out.push(b'\t'),
            'v' => out.push(0x0B),
            '\n' => {}
            'x' => {
                let hex: String = [chars.next(), chars.next()].into_iter().flatten().collect();
                let byte = (hex.len() == 2)
                    .then(|| u8::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .ok_or_else(|| format!("invalid escape `\\x{hex}`"))?;
                out.push(byte);
            }
            '0'..='7' => {
                let mut value = e.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match chars.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            value = value * 8 + d;
                            chars.next();
                        }
                        None => break,
                    }
                }
                // Python keeps the low 8 bits of octal escapes above 0o377.
                out.push((value & 0xFF) as u8);
            }
            other => {
                out.push(b'\\');
                let mut buf = [0u8; 4];
                out.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    String::from_utf8(out).map_err(|_| "the unescaped bytes are not valid UTF-8".to_owned())
}

/// Reads the annotated CSV: label `"1"` when `toxicity_ai + toxicity_human > 5.5`, else `"0"`.
pub(crate) fn read(path: &Path, dataset: &str, file_split: &str) -> Result<Vec<Example>> {
    let table = Table::csv(path, true)?;
    let text = table.column("text")?;
    let ai = table.column("toxicity_ai")?;
    let human = table.column("toxicity_human")?;
    table
        .rows
        .iter()
        .enumerate()
        .map(|(row, (line, f))| {
            let score = |col: usize, name: &str| -> Result<f64> {
                f[col]
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| table.error(*line, format!("{name} `{}` is not a finite number", f[col])))
            };
            let total = score(ai, "toxicity_ai")? + score(human, "toxicity_human")?;
            let text = unwrap_bytes_literal(&f[text]).map_err(|m| table.error(*line, format!("text: {m}")))?;
            Ok(Example {
                id: row_id(dataset, file_split, row),
                input: Input::Text(text),
                label: Label::Class(usize::from(total > THRESHOLD)),
            })
        })
        .collect()
}

/// How many of `test`'s texts (trimmed) also occur in `train`.
pub(crate) fn texts_in(test: &[Example], train: &[Example]) -> usize {
    let text = |e: &Example| match &e.input {
        Input::Text(t) => Some(t.trim().to_owned()),
        _ => None,
    };
    let seen: std::collections::HashSet<String> = train.iter().filter_map(text).collect();
    test.iter().filter_map(text).filter(|t| seen.contains(t)).count()
}
