//! `tokenizer.ggml.model = llama`: a SentencePiece vocabulary with scores,
//! '▁' for spaces and `<0xNN>` byte-fallback tokens.
//!
//! llama.cpp tokenizes it by repeatedly joining the adjacent pair whose
//! joined text is the highest-scoring token. That is BPE whose merge list is
//! every split of every token into two tokens, ranked by the joined token's
//! score, which is how Hugging Face converts such vocabularies too. Equal
//! scores, which SentencePiece BPE vocabularies do not have, may break ties
//! differently from llama.cpp.

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::{NormalizerWrapper, Tokenizer as HfTokenizer};

use super::gguf_vocab::{GgufVocab, TokenType, KEY_SCORES};
use super::{special, Tokenizer, TokenizerError};

const SPACE: &str = "\u{2581}";

pub fn build(vocab: GgufVocab) -> Result<Tokenizer, TokenizerError> {
    let scores = vocab
        .scores
        .as_deref()
        .ok_or_else(|| TokenizerError::MissingKey {
            key: KEY_SCORES.into(),
        })?;
    let mut warnings = vocab.warnings.clone();
    let mut ids = Vocab::with_capacity(vocab.tokens.len());
    for (id, text) in vocab.tokens.iter().enumerate() {
        if ids.insert(text.clone(), id as u32).is_some() {
            warnings.push(format!(
                "tokenizer.ggml.tokens: '{text}' appears more than once"
            ));
        }
    }
    let merges = derive_merges(&vocab.tokens, &vocab.types, scores, &ids);
    let byte_fallback = vocab.types.contains(&TokenType::Byte);
    let mut builder = BPE::builder()
        .vocab_and_merges(ids, merges)
        .byte_fallback(byte_fallback)
        .fuse_unk(true);
    if let Some(unk) = vocab.unk {
        builder = builder.unk_token(vocab.tokens[unk as usize].clone());
    }
    let model = builder
        .build()
        .map_err(|e| TokenizerError::library("BPE model from tokenizer.ggml.tokens/scores", e))?;

    let space_prefix = vocab.add_space_prefix.unwrap_or(true);
    let lib = |e: &dyn std::fmt::Display| TokenizerError::library("SentencePiece normalizer", e);
    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if space_prefix {
        normalizers.push(Prepend::new(SPACE.into()).into());
    }
    normalizers.push(Replace::new(" ", SPACE).map_err(|e| lib(&e))?.into());
    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new(SPACE, " ").map_err(|e| lib(&e))?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }

    let mut tok = HfTokenizer::new(model);
    tok.with_normalizer(Some(NormalizerSequence::new(normalizers)));
    tok.with_decoder(Some(DecoderSequence::new(decoders)));
    tok.add_special_tokens(&special::added_tokens(&vocab.tokens, &vocab.types));
    let add_bos = vocab.add_bos.unwrap_or(true) && vocab.bos.is_some();
    let add_eos = vocab.add_eos.unwrap_or(false) && vocab.eos.is_some();
    special::set_bos_eos(
        &mut tok,
        vocab.bos.filter(|_| add_bos),
        vocab.eos.filter(|_| add_eos),
    )?;
    let eos_ids = special::eog_ids(&[vocab.eos, vocab.eot, vocab.eom], |t| tok.token_to_id(t));
    // Ids run to the end of the token list even when a duplicate text
    // leaves fewer distinct entries than that (found by fuzzing).
    let vocab_size = tok.get_vocab_size(true).max(vocab.tokens.len());
    Ok(Tokenizer {
        inner: tok,
        vocab_size,
        bos: vocab.bos,
        eos_ids,
        unk: vocab.unk,
        pad: vocab.pad,
        warnings,
    })
}

/// Every (left, right) pair of ordinary tokens that joins into an ordinary
/// token, best joined score first.
fn derive_merges(
    tokens: &[String],
    types: &[TokenType],
    scores: &[f32],
    ids: &Vocab,
) -> Vec<(String, String)> {
    let ordinary = |text: &str| {
        ids.get(text)
            .is_some_and(|&id| types[id as usize].is_ordinary())
    };
    let mut found: Vec<(f32, usize, usize)> = Vec::new();
    for (id, text) in tokens.iter().enumerate() {
        if !types[id].is_ordinary() {
            continue;
        }
        for (cut, _) in text.char_indices().skip(1) {
            if ordinary(&text[..cut]) && ordinary(&text[cut..]) {
                found.push((scores[id], id, cut));
            }
        }
    }
    // Higher score first; then lower id, then shorter left piece, so the
    // order is total and the result deterministic.
    found.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    found
        .into_iter()
        .map(|(_, id, cut)| {
            let text = &tokens[id];
            (text[..cut].to_string(), text[cut..].to_string())
        })
        .collect()
}
