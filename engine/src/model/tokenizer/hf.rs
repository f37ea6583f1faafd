//! Hugging Face directories: `tokenizer.json` is the tokenizer; the special
//! ids and the add-BOS flag live beside it in `tokenizer_config.json`,
//! `config.json` and `generation_config.json`, each optional.

use std::path::Path;

use serde_json::Value;
use tokenizers::Tokenizer as HfTokenizer;

use super::{special, Tokenizer, TokenizerError};

pub fn from_dir(dir: &Path) -> Result<Tokenizer, TokenizerError> {
    let path = dir.join("tokenizer.json");
    let text = std::fs::read_to_string(&path).map_err(|source| TokenizerError::Io {
        path: path.clone(),
        source,
    })?;
    let mut tok: HfTokenizer = text.parse().map_err(|e| TokenizerError::BadFile {
        path: path.clone(),
        problem: format!("not a tokenizer.json: {e}"),
    })?;
    let tok_config = read_json(&dir.join("tokenizer_config.json"))?;
    let config = read_json(&dir.join("config.json"))?;
    let gen_config = read_json(&dir.join("generation_config.json"))?;
    let mut warnings = Vec::new();

    let named = |key: &str| {
        tok_config
            .as_ref()
            .and_then(|c| token_text(c.get(key)?))
            .and_then(|t| tok.token_to_id(&t))
    };
    let bos = first_id(config.as_ref(), "bos_token_id")
        .or_else(|| first_id(gen_config.as_ref(), "bos_token_id"))
        .or_else(|| named("bos_token"));
    let unk = named("unk_token");
    let pad = first_id(config.as_ref(), "pad_token_id").or_else(|| named("pad_token"));
    let mut primary: Vec<Option<u32>> = Vec::new();
    primary.push(named("eos_token"));
    for c in [config.as_ref(), gen_config.as_ref()] {
        primary.extend(ids(c, "eos_token_id").into_iter().map(Some));
    }
    let eos_ids = special::eog_ids(&primary, |t| tok.token_to_id(t));

    // `LlamaTokenizerFast` rebuilds the BOS/EOS post-processor at load time
    // from `add_bos_token`/`add_eos_token`, so tokenizer.json alone may say
    // otherwise. Follow the flags where they are given.
    let eos = named("eos_token").or_else(|| first_id(config.as_ref(), "eos_token_id"));
    let lib = |e: &dyn std::fmt::Display| TokenizerError::library("probe encode", e);
    let with = tok.encode("a", true).map_err(|e| lib(&e))?;
    let without = tok.encode("a", false).map_err(|e| lib(&e))?;
    let added = with.get_ids().len() > without.get_ids().len();
    let has_bos = added && bos.is_some() && with.get_ids().first() == bos.as_ref();
    let has_eos = added && eos.is_some() && with.get_ids().last() == eos.as_ref();
    let flag = |key: &str| tok_config.as_ref().and_then(|c| c.get(key)?.as_bool());
    let want_bos = flag("add_bos_token").unwrap_or(has_bos);
    let want_eos = flag("add_eos_token").unwrap_or(has_eos);
    if (want_bos, want_eos) != (has_bos, has_eos) {
        if (want_bos && bos.is_none()) || (want_eos && eos.is_none()) {
            warnings.push(format!(
                "{}: asks to add BOS/EOS but no such token is named",
                dir.join("tokenizer_config.json").display()
            ));
        }
        special::set_bos_eos(&mut tok, bos.filter(|_| want_bos), eos.filter(|_| want_eos))?;
    }
    let vocab_size = tok.get_vocab_size(true);
    Ok(Tokenizer {
        inner: tok,
        vocab_size,
        bos,
        eos_ids,
        unk,
        pad,
        warnings,
    })
}

fn read_json(path: &Path) -> Result<Option<Value>, TokenizerError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(TokenizerError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| TokenizerError::Json {
            path: path.to_path_buf(),
            source,
        })
}

/// A token named either as a string or as `{"content": "..."}`.
fn token_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// An id field that may be a number or a list of numbers.
fn ids(config: Option<&Value>, key: &str) -> Vec<u32> {
    let as_id = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    match config.and_then(|c| c.get(key)) {
        Some(Value::Array(list)) => list.iter().filter_map(as_id).collect(),
        Some(v) => as_id(v).into_iter().collect(),
        None => Vec::new(),
    }
}

fn first_id(config: Option<&Value>, key: &str) -> Option<u32> {
    ids(config, key).first().copied()
}
