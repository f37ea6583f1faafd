//! Reads the `tokenizer.ggml.*` metadata of a GGUF file into one plain,
//! validated struct, so the builders never touch raw metadata values.
//!
//! Special ids outside the vocabulary are dropped with a warning rather than
//! refused: llama.cpp does the same, and such files exist in the wild.

use std::collections::BTreeMap;

use super::TokenizerError;
use crate::model::gguf::{MetadataArray, MetadataValue};

pub const KEY_MODEL: &str = "tokenizer.ggml.model";
pub const KEY_PRE: &str = "tokenizer.ggml.pre";
pub const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
pub const KEY_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
pub const KEY_MERGES: &str = "tokenizer.ggml.merges";
pub const KEY_SCORES: &str = "tokenizer.ggml.scores";

/// llama.cpp's `llama_token_type` numbering, as stored in `token_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Undefined,
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => Self::Undefined,
            1 => Self::Normal,
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => return None,
        })
    }

    /// Pieces that ordinary text is made of (BPE merges may produce them).
    pub fn is_ordinary(self) -> bool {
        matches!(self, Self::Normal | Self::Undefined)
    }
}

/// Everything the builders need, checked for consistency.
#[derive(Debug, Clone)]
pub struct GgufVocab {
    pub model: String,
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    pub types: Vec<TokenType>,
    pub merges: Vec<(String, String)>,
    pub scores: Option<Vec<f32>>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub add_space_prefix: Option<bool>,
    /// Problems that did not stop loading, for the caller to print.
    pub warnings: Vec<String>,
}

impl GgufVocab {
    pub fn from_metadata(meta: &BTreeMap<String, MetadataValue>) -> Result<Self, TokenizerError> {
        let model = string(meta, KEY_MODEL)?.ok_or_else(|| missing(KEY_MODEL))?;
        let pre = string(meta, KEY_PRE)?;
        let tokens = string_array(meta, KEY_TOKENS)?.ok_or_else(|| missing(KEY_TOKENS))?;
        let n = tokens.len();
        if n == 0 {
            return Err(TokenizerError::WrongKind {
                key: KEY_TOKENS.into(),
                expected: "a non-empty array",
                found: "an empty array".into(),
            });
        }
        let types = match array(meta, KEY_TOKEN_TYPE)? {
            None => vec![TokenType::Normal; n],
            Some(arr) => token_types(arr, n)?,
        };
        let merges = match string_array(meta, KEY_MERGES)? {
            None => Vec::new(),
            Some(list) => parse_merges(list)?,
        };
        let scores = match array(meta, KEY_SCORES)? {
            None => None,
            Some(arr) => Some(scores(arr, n)?),
        };
        let mut warnings = Vec::new();
        let mut id = |key: &str| special_id(meta, key, n, &mut warnings);
        let bos = id("tokenizer.ggml.bos_token_id")?;
        let eos = id("tokenizer.ggml.eos_token_id")?;
        let unk = id("tokenizer.ggml.unknown_token_id")?;
        let pad = id("tokenizer.ggml.padding_token_id")?;
        let eot = id("tokenizer.ggml.eot_token_id")?;
        let eom = id("tokenizer.ggml.eom_token_id")?;
        Ok(Self {
            model: model.to_string(),
            pre: pre.map(str::to_string),
            tokens,
            types,
            merges,
            scores,
            bos,
            eos,
            unk,
            pad,
            eot,
            eom,
            add_bos: boolean(meta, "tokenizer.ggml.add_bos_token")?,
            add_eos: boolean(meta, "tokenizer.ggml.add_eos_token")?,
            add_space_prefix: boolean(meta, "tokenizer.ggml.add_space_prefix")?,
            warnings,
        })
    }
}

fn missing(key: &str) -> TokenizerError {
    TokenizerError::MissingKey { key: key.into() }
}

fn wrong(key: &str, expected: &'static str, found: &MetadataValue) -> TokenizerError {
    TokenizerError::WrongKind {
        key: key.into(),
        expected,
        found: found.kind_name().into(),
    }
}

fn string<'a>(
    meta: &'a BTreeMap<String, MetadataValue>,
    key: &str,
) -> Result<Option<&'a str>, TokenizerError> {
    match meta.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(Some)
            .ok_or_else(|| wrong(key, "a string", v)),
    }
}

fn boolean(
    meta: &BTreeMap<String, MetadataValue>,
    key: &str,
) -> Result<Option<bool>, TokenizerError> {
    match meta.get(key) {
        None => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or_else(|| wrong(key, "a bool", v)),
    }
}

fn array<'a>(
    meta: &'a BTreeMap<String, MetadataValue>,
    key: &str,
) -> Result<Option<&'a MetadataArray>, TokenizerError> {
    match meta.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_array()
            .map(Some)
            .ok_or_else(|| wrong(key, "an array", v)),
    }
}

fn string_array(
    meta: &BTreeMap<String, MetadataValue>,
    key: &str,
) -> Result<Option<Vec<String>>, TokenizerError> {
    match array(meta, key)? {
        None => Ok(None),
        Some(MetadataArray::String(v)) => Ok(Some(v.clone())),
        Some(other) => Err(TokenizerError::WrongKind {
            key: key.into(),
            expected: "an array of strings",
            found: format!("an array of {}", array_kind(other)),
        }),
    }
}

fn array_kind(arr: &MetadataArray) -> &'static str {
    match arr {
        MetadataArray::U8(_) => "u8",
        MetadataArray::I8(_) => "i8",
        MetadataArray::U16(_) => "u16",
        MetadataArray::I16(_) => "i16",
        MetadataArray::U32(_) => "u32",
        MetadataArray::I32(_) => "i32",
        MetadataArray::U64(_) => "u64",
        MetadataArray::I64(_) => "i64",
        MetadataArray::F32(_) => "f32",
        MetadataArray::F64(_) => "f64",
        MetadataArray::Bool(_) => "bool",
        MetadataArray::String(_) => "string",
        MetadataArray::Array(_) => "array",
    }
}

fn check_len(key: &str, len: usize, expected: usize) -> Result<(), TokenizerError> {
    if len == expected {
        Ok(())
    } else {
        Err(TokenizerError::LengthMismatch {
            key: key.into(),
            len,
            expected,
        })
    }
}

fn token_types(arr: &MetadataArray, n: usize) -> Result<Vec<TokenType>, TokenizerError> {
    let codes = arr.to_i64_vec().ok_or_else(|| TokenizerError::WrongKind {
        key: KEY_TOKEN_TYPE.into(),
        expected: "an array of integers",
        found: format!("an array of {}", array_kind(arr)),
    })?;
    check_len(KEY_TOKEN_TYPE, codes.len(), n)?;
    codes
        .iter()
        .enumerate()
        .map(|(index, &code)| {
            TokenType::from_code(code).ok_or_else(|| TokenizerError::BadEntry {
                key: KEY_TOKEN_TYPE.into(),
                index,
                value: code.to_string(),
                problem: "is not a token type (0..=6)".into(),
            })
        })
        .collect()
}

fn scores(arr: &MetadataArray, n: usize) -> Result<Vec<f32>, TokenizerError> {
    let v: Vec<f32> = match arr {
        MetadataArray::F32(v) => v.clone(),
        MetadataArray::F64(v) => v.iter().map(|&x| x as f32).collect(),
        other => {
            return Err(TokenizerError::WrongKind {
                key: KEY_SCORES.into(),
                expected: "an array of floats",
                found: format!("an array of {}", array_kind(other)),
            })
        }
    };
    check_len(KEY_SCORES, v.len(), n)?;
    Ok(v)
}

/// Merges are "left right": byte-level pieces never hold a real space
/// (GPT-2 spells it 'Ġ'), so the first space is the separator.
pub fn parse_merges(list: Vec<String>) -> Result<Vec<(String, String)>, TokenizerError> {
    list.into_iter()
        .enumerate()
        .map(|(index, entry)| match entry.split_once(' ') {
            Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains(' ') => {
                Ok((a.to_string(), b.to_string()))
            }
            Some(_) => Err(TokenizerError::BadEntry {
                key: KEY_MERGES.into(),
                index,
                value: entry,
                problem: "is not two pieces separated by one space".into(),
            }),
            None => Err(TokenizerError::BadEntry {
                key: KEY_MERGES.into(),
                index,
                value: entry,
                problem: "has no space".into(),
            }),
        })
        .collect()
}

fn special_id(
    meta: &BTreeMap<String, MetadataValue>,
    key: &str,
    n: usize,
    warnings: &mut Vec<String>,
) -> Result<Option<u32>, TokenizerError> {
    let Some(v) = meta.get(key) else {
        return Ok(None);
    };
    // Some converters write -1 for "none".
    if let MetadataValue::I32(-1) | MetadataValue::I64(-1) = v {
        return Ok(None);
    }
    let id = v.as_u64().ok_or_else(|| wrong(key, "a token id", v))?;
    match u32::try_from(id) {
        Ok(id) if (id as usize) < n => Ok(Some(id)),
        _ => {
            warnings.push(format!(
                "{key}: id {id} is outside the vocabulary of {n} tokens; ignored"
            ));
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(entries: Vec<(&str, MetadataValue)>) -> BTreeMap<String, MetadataValue> {
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    fn strings(v: &[&str]) -> MetadataValue {
        MetadataValue::Array(MetadataArray::String(
            v.iter().map(|s| s.to_string()).collect(),
        ))
    }

    #[test]
    fn merge_without_space_names_key_entry_and_text() {
        let err = parse_merges(vec!["a b".into(), "abc".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tokenizer.ggml.merges: entry 1 'abc' has no space"
        );
    }

    #[test]
    fn merge_with_two_spaces_is_refused() {
        let err = parse_merges(vec!["a b c".into()]).unwrap_err();
        assert!(err.to_string().contains("entry 0 'a b c'"), "{err}");
    }

    #[test]
    fn missing_tokens_is_named() {
        let m = meta(vec![(KEY_MODEL, MetadataValue::String("gpt2".into()))]);
        let err = GgufVocab::from_metadata(&m).unwrap_err();
        assert_eq!(err.to_string(), "tokenizer.ggml.tokens: missing");
    }

    #[test]
    fn token_type_length_must_match() {
        let m = meta(vec![
            (KEY_MODEL, MetadataValue::String("gpt2".into())),
            (KEY_TOKENS, strings(&["a", "b"])),
            (
                KEY_TOKEN_TYPE,
                MetadataValue::Array(MetadataArray::I32(vec![1])),
            ),
        ]);
        let err = GgufVocab::from_metadata(&m).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tokenizer.ggml.token_type: has 1 entries but tokenizer.ggml.tokens has 2"
        );
    }

    #[test]
    fn bad_token_type_code_is_named() {
        let m = meta(vec![
            (KEY_MODEL, MetadataValue::String("gpt2".into())),
            (KEY_TOKENS, strings(&["a", "b"])),
            (
                KEY_TOKEN_TYPE,
                MetadataValue::Array(MetadataArray::I32(vec![1, 9])),
            ),
        ]);
        let err = GgufVocab::from_metadata(&m).unwrap_err();
        assert!(err.to_string().contains("entry 1 '9'"), "{err}");
    }

    #[test]
    fn out_of_range_special_id_becomes_a_warning() {
        let m = meta(vec![
            (KEY_MODEL, MetadataValue::String("gpt2".into())),
            (KEY_TOKENS, strings(&["a", "b"])),
            ("tokenizer.ggml.eos_token_id", MetadataValue::U32(7)),
            ("tokenizer.ggml.bos_token_id", MetadataValue::U32(1)),
        ]);
        let v = GgufVocab::from_metadata(&m).unwrap();
        assert_eq!(v.eos, None);
        assert_eq!(v.bos, Some(1));
        assert_eq!(v.warnings.len(), 1);
        assert!(
            v.warnings[0].contains("eos_token_id: id 7"),
            "{:?}",
            v.warnings
        );
    }

    #[test]
    fn wrong_kind_is_named() {
        let m = meta(vec![(KEY_MODEL, MetadataValue::U32(3))]);
        let err = GgufVocab::from_metadata(&m).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tokenizer.ggml.model: expected a string, found u32"
        );
    }
}
