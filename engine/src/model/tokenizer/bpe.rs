//! `tokenizer.ggml.model = gpt2`: byte-level BPE. The GGUF tokens are
//! already in GPT-2's byte-to-unicode spelling ("Ġthe"), so they and the
//! merges go into a `tokenizers` BPE model unchanged; the pre-tokenizer comes
//! from [`super::pretok`].

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::Tokenizer as HfTokenizer;

use super::gguf_vocab::{GgufVocab, KEY_MERGES, KEY_PRE};
use super::{pretok, special, Tokenizer, TokenizerError};

pub fn build(vocab: GgufVocab) -> Result<Tokenizer, TokenizerError> {
    let mut warnings = vocab.warnings.clone();
    if vocab.pre.is_none() {
        warnings.push(format!(
            "{KEY_PRE}: missing; using llama.cpp's 'default' split, which old converters meant"
        ));
    }
    let spec = match pretok::lookup(vocab.pre.as_deref()) {
        Some(spec) => spec,
        None => {
            let name = vocab.pre.as_deref().unwrap_or("");
            warnings.push(format!(
                "{KEY_PRE}: '{name}' is not known here; using the GPT-2 split, ids may differ from llama.cpp"
            ));
            pretok::FALLBACK
        }
    };
    if vocab.merges.is_empty() {
        return Err(TokenizerError::MissingKey {
            key: KEY_MERGES.into(),
        });
    }

    let mut ids = Vocab::with_capacity(vocab.tokens.len());
    for (id, text) in vocab.tokens.iter().enumerate() {
        // Later duplicates win, as in llama.cpp's token_to_id map.
        if ids.insert(text.clone(), id as u32).is_some() {
            warnings.push(format!(
                "tokenizer.ggml.tokens: '{text}' appears more than once"
            ));
        }
    }
    let model = BPE::builder()
        .vocab_and_merges(ids, vocab.merges.clone())
        .ignore_merges(spec.ignore_merges)
        .build()
        .map_err(|e| TokenizerError::library("BPE model from tokenizer.ggml.tokens/merges", e))?;

    let mut tok = HfTokenizer::new(model);
    tok.with_pre_tokenizer(Some(pretok::build(&spec)?));
    tok.with_decoder(Some(ByteLevelDecoder::new(false, false, false)));
    tok.add_special_tokens(&special::added_tokens(&vocab.tokens, &vocab.types));

    let bos = if spec.no_bos { None } else { vocab.bos };
    let add_bos = vocab.add_bos.unwrap_or(spec.add_bos) && bos.is_some();
    let add_eos = vocab.add_eos.unwrap_or(false) && vocab.eos.is_some();
    special::set_bos_eos(
        &mut tok,
        bos.filter(|_| add_bos),
        vocab.eos.filter(|_| add_eos),
    )?;
    let eos_ids = special::eog_ids(&[vocab.eos, vocab.eot, vocab.eom], |t| tok.token_to_id(t));
    // Ids run to the end of the token list even when a duplicate text
    // leaves fewer distinct entries than that (found by fuzzing).
    let vocab_size = tok.get_vocab_size(true).max(vocab.tokens.len());
    Ok(Tokenizer {
        inner: tok,
        vocab_size,
        bos,
        eos_ids,
        unk: vocab.unk,
        pad: vocab.pad,
        warnings,
    })
}
