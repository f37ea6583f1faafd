//! Text to token ids and back, for GGUF files and Hugging Face directories.
//!
//! Everything is a `tokenizers::Tokenizer` underneath, so a tokenizer built
//! from GGUF metadata can be written out as a `tokenizer.json`. `gguf_vocab`
//! reads and checks the `tokenizer.ggml.*` keys; `bpe` (byte-level BPE,
//! `gpt2`) and `spm` (SentencePiece, `llama`) build from them, with `pretok`
//! holding llama.cpp's per-model split regexes and `special` the special
//! token rules; `hf` reads a Hugging Face directory; `stream` detokenizes
//! incrementally.

mod bpe;
mod error;
pub mod gguf_vocab;
mod hf;
pub mod pretok;
mod special;
mod spm;
mod stream;

use std::collections::BTreeMap;
use std::path::Path;

pub use error::TokenizerError;
pub use gguf_vocab::{GgufVocab, TokenType};
pub use stream::TokenStream;

use crate::model::gguf::{GgufModel, MetadataValue};

/// A tokenizer plus the special ids generation needs.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Cached: `tokenizers` rebuilds the whole vocabulary map to count it,
    /// which cost more than the model's forward pass per decoded token.
    vocab_size: usize,
    bos: Option<u32>,
    /// EOS first, then the other end-of-generation tokens.
    eos_ids: Vec<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    warnings: Vec<String>,
}

impl Tokenizer {
    /// From the `tokenizer.ggml.*` metadata of a GGUF model (its first
    /// shard's, when it is split).
    pub fn from_gguf(file: &GgufModel) -> Result<Self, TokenizerError> {
        Self::from_metadata(file.metadata()).map_err(|e| e.in_file(file.path()))
    }

    /// From GGUF-style metadata held in memory (a file's, or one built by hand).
    pub fn from_metadata(meta: &BTreeMap<String, MetadataValue>) -> Result<Self, TokenizerError> {
        Self::from_vocab(GgufVocab::from_metadata(meta)?)
    }

    pub fn from_vocab(vocab: GgufVocab) -> Result<Self, TokenizerError> {
        match vocab.model.as_str() {
            "gpt2" => bpe::build(vocab),
            "llama" => spm::build(vocab),
            other => Err(TokenizerError::Unsupported {
                model: other.to_string(),
            }),
        }
    }

    /// From a Hugging Face `tokenizer.json`, with special ids and the
    /// add-BOS/EOS flags from `tokenizer_config.json`, `config.json` and
    /// `generation_config.json` in the same directory when present.
    pub fn from_hf_dir(dir: &Path) -> Result<Self, TokenizerError> {
        hf::from_dir(dir)
    }

    /// Special tokens written in `text` ("<|im_start|>") become their ids.
    /// `add_special` adds BOS/EOS as the model's metadata asks.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>, TokenizerError> {
        let enc = self
            .inner
            .encode_fast(text, add_special)
            .map_err(|e| TokenizerError::library(format!("encoding {:?}", preview(text)), e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// `skip_special` drops control tokens (BOS, EOS, "<|im_end|>").
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TokenizerError> {
        for &id in ids {
            self.check_id(id)?;
        }
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| TokenizerError::library(format!("decoding {} ids", ids.len()), e))
    }

    /// Streaming detokenizer that leaves special tokens out of the text.
    pub fn stream(&self) -> TokenStream {
        TokenStream::new(true)
    }

    /// Streaming detokenizer; `skip_special = false` shows special tokens.
    pub fn stream_with(&self, skip_special: bool) -> TokenStream {
        TokenStream::new(skip_special)
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// Ids that end a generation: EOS first, then end-of-turn style tokens.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    pub fn is_eos(&self, id: u32) -> bool {
        self.eos_ids.contains(&id)
    }

    pub fn unk_id(&self) -> Option<u32> {
        self.unk
    }

    pub fn pad_id(&self) -> Option<u32> {
        self.pad
    }

    /// The vocabulary entry as stored ("Ġthe", "▁the", "<|im_end|>"), not
    /// decoded text; use [`Tokenizer::decode`] for that.
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.inner.token_to_id(text)
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Problems that did not stop loading (an unknown pre-tokenizer, a bad
    /// special id), for the caller to print.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The tokenizer as a Hugging Face `tokenizer.json`.
    pub fn to_hf_json(&self) -> Result<String, TokenizerError> {
        self.inner
            .to_string(false)
            .map_err(|e| TokenizerError::library("serializing tokenizer.json", e))
    }

    /// The underlying `tokenizers` tokenizer, for what this API lacks.
    pub fn hf(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    fn check_id(&self, id: u32) -> Result<(), TokenizerError> {
        let vocab = self.vocab_size();
        if (id as usize) < vocab {
            Ok(())
        } else {
            Err(TokenizerError::UnknownId { id, vocab })
        }
    }
}

/// The start of a text, for error messages.
fn preview(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests;
