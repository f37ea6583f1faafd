//! Special tokens shared by every builder: which tokens are matched in raw
//! text, which ids end a generation, and the BOS/EOS post-processor.

use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer as HfTokenizer};

use super::gguf_vocab::TokenType;
use super::TokenizerError;

/// Token texts llama.cpp treats as end-of-generation whatever the metadata
/// says (`llama_vocab::impl::load`, the EOG scan).
pub const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
];

/// Control, unknown and user-defined tokens become added tokens so the text
/// "<|im_start|>" encodes to its id. Control and unknown ones are special
/// (skipped by `decode(.., true)`); user-defined ones are ordinary text.
/// `normalized(false)`: llama.cpp matches them in the raw text.
pub fn added_tokens(tokens: &[String], types: &[TokenType]) -> Vec<AddedToken> {
    tokens
        .iter()
        .zip(types)
        .filter_map(|(text, ty)| {
            let special = match ty {
                TokenType::Control | TokenType::Unknown => true,
                TokenType::UserDefined => false,
                _ => return None,
            };
            (!text.is_empty()).then(|| AddedToken::from(text.clone(), special).normalized(false))
        })
        .collect()
}

/// The end-of-generation ids: `primary` first (eos, eot, eom as the
/// metadata names them), then every token whose text is in [`EOG_TEXTS`],
/// without repeats.
pub fn eog_ids(primary: &[Option<u32>], lookup: impl Fn(&str) -> Option<u32>) -> Vec<u32> {
    let mut ids: Vec<u32> = Vec::new();
    for id in primary.iter().flatten() {
        if !ids.contains(id) {
            ids.push(*id);
        }
    }
    let mut scanned: Vec<u32> = EOG_TEXTS.iter().filter_map(|t| lookup(t)).collect();
    scanned.sort_unstable();
    for id in scanned {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

/// Installs a post-processor that adds BOS and/or EOS around a sequence, or
/// removes any post-processor when neither is wanted.
pub fn set_bos_eos(
    tok: &mut HfTokenizer,
    bos: Option<u32>,
    eos: Option<u32>,
) -> Result<(), TokenizerError> {
    let mut specials: Vec<(String, u32)> = Vec::new();
    for id in [bos, eos].into_iter().flatten() {
        let text = tok.id_to_token(id).ok_or_else(|| {
            TokenizerError::library("post-processor", format!("token id {id} has no text"))
        })?;
        if !specials.iter().any(|(_, i)| *i == id) {
            specials.push((text, id));
        }
    }
    if specials.is_empty() {
        tok.with_post_processor(None::<TemplateProcessing>);
        return Ok(());
    }
    let text_of = |id: Option<u32>| {
        id.and_then(|id| {
            specials
                .iter()
                .find(|(_, i)| *i == id)
                .map(|(t, _)| t.clone())
        })
    };
    let (b, e) = (text_of(bos), text_of(eos));
    let mut single: Vec<String> = Vec::new();
    let mut pair: Vec<String> = Vec::new();
    single.extend(b.clone());
    single.push("$A".into());
    single.extend(e.clone());
    pair.extend(b.clone());
    pair.push("$A".into());
    pair.extend(e.clone());
    pair.extend(b.map(|t| format!("{t}:1")));
    pair.push("$B:1".into());
    pair.extend(e.map(|t| format!("{t}:1")));
    let lib = |e: &dyn std::fmt::Display| TokenizerError::library("post-processor", e);
    let template = TemplateProcessing::builder()
        .try_single(single)
        .map_err(|e| lib(&e))?
        .try_pair(pair)
        .map_err(|e| lib(&e))?
        .special_tokens(specials)
        .build()
        .map_err(|e| lib(&e))?;
    tok.with_post_processor(Some(template));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eog_puts_metadata_ids_first_without_repeats() {
        let texts = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
        let lookup = |t: &str| texts.iter().position(|x| *x == t).map(|i| i as u32);
        assert_eq!(eog_ids(&[Some(2), None, Some(2)], lookup), vec![2, 0]);
    }

    #[test]
    fn only_control_unknown_and_user_defined_are_added() {
        let tokens: Vec<String> = ["<s>", "a", "<unk>", "<tool>", "<0x00>"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let types = [
            TokenType::Control,
            TokenType::Normal,
            TokenType::Unknown,
            TokenType::UserDefined,
            TokenType::Byte,
        ];
        let added = added_tokens(&tokens, &types);
        let got: Vec<(&str, bool)> = added
            .iter()
            .map(|t| (t.content.as_str(), t.special))
            .collect();
        assert_eq!(got, [("<s>", true), ("<unk>", true), ("<tool>", false)]);
    }
}
