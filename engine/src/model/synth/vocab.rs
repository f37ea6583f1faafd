//! The tokenizer a synthetic model carries: GPT-2 style byte-level BPE over
//! all 256 bytes, a handful of merges, Llama 3 / ChatML special tokens, and
//! unused filler tokens up to the requested vocabulary size. Small, but real
//! enough that llama.cpp and shardlab's own tokenizer load it and round-trip
//! any text through it.

use crate::model::gguf::{MetadataArray, MetadataValue};

/// Merges as (left, right); each result is also a token. Ranked in order.
const MERGES: [(&str, &str); 8] = [
    ("Ġ", "t"),
    ("h", "e"),
    ("Ġt", "he"),
    ("i", "n"),
    ("Ġ", "a"),
    ("e", "r"),
    ("o", "n"),
    ("Ġ", "s"),
];

pub const BOS: &str = "<|begin_of_text|>";
pub const EOS: &str = "<|end_of_text|>";
const SPECIALS: [&str; 4] = [BOS, EOS, "<|im_start|>", "<|im_end|>"];

/// Bytes, merges and specials: the smallest vocabulary `synth` writes.
pub const MIN_VOCAB: usize = 256 + MERGES.len() + SPECIALS.len();

/// llama.cpp's `llama_token_type` values.
const TYPE_NORMAL: i32 = 1;
const TYPE_CONTROL: i32 = 3;
/// Unused tokens stay out of llama.cpp's special-token scan, which matters
/// with 128k of them.
const TYPE_UNUSED: i32 = 5;

/// ChatML, as SmolLM2 and Qwen use it.
pub const CHAT_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// The printable character GPT-2's byte-level BPE uses for a byte: printable
/// Latin-1 bytes stand for themselves, the rest are shifted past U+0100.
pub fn byte_symbol(b: u8) -> char {
    let printable = |c: u8| matches!(c, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
    if printable(b) {
        return b as char;
    }
    let shifted = (0..b).filter(|&c| !printable(c)).count() as u32;
    // 256 + at most 68 non-printable bytes: always a valid scalar value.
    char::from_u32(256 + shifted).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// A tokenizer's token list, types and merges.
pub struct SynthVocab {
    pub tokens: Vec<String>,
    pub types: Vec<i32>,
    pub merges: Vec<String>,
    pub bos: u32,
    pub eos: u32,
}

impl SynthVocab {
    /// Token ids: bytes 0..256 in byte order, then merge results, specials,
    /// and `<|reserved_N|>` fillers. `size` must be at least [`MIN_VOCAB`].
    pub fn new(size: usize) -> Self {
        let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_symbol(b).to_string()).collect();
        let mut types = vec![TYPE_NORMAL; 256];
        for (l, r) in MERGES {
            tokens.push(format!("{l}{r}"));
            types.push(TYPE_NORMAL);
        }
        let bos = tokens.len() as u32;
        for s in SPECIALS {
            tokens.push(s.to_string());
            types.push(TYPE_CONTROL);
        }
        let mut n = 0;
        while tokens.len() < size {
            tokens.push(format!("<|reserved_{n}|>"));
            types.push(TYPE_UNUSED);
            n += 1;
        }
        Self {
            tokens,
            types,
            merges: MERGES.iter().map(|(l, r)| format!("{l} {r}")).collect(),
            bos,
            eos: bos + 1,
        }
    }

    /// The `tokenizer.*` metadata llama.cpp reads for a GPT-2 style BPE.
    pub fn metadata(self) -> Vec<(&'static str, MetadataValue)> {
        use MetadataValue as V;
        vec![
            ("tokenizer.ggml.model", V::String("gpt2".into())),
            ("tokenizer.ggml.pre", V::String("default".into())),
            (
                "tokenizer.ggml.tokens",
                V::Array(MetadataArray::String(self.tokens)),
            ),
            (
                "tokenizer.ggml.token_type",
                V::Array(MetadataArray::I32(self.types)),
            ),
            (
                "tokenizer.ggml.merges",
                V::Array(MetadataArray::String(self.merges)),
            ),
            ("tokenizer.ggml.bos_token_id", V::U32(self.bos)),
            ("tokenizer.ggml.eos_token_id", V::U32(self.eos)),
            ("tokenizer.ggml.add_bos_token", V::Bool(true)),
            ("tokenizer.chat_template", V::String(CHAT_TEMPLATE.into())),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_symbols_match_gpt2() {
        assert_eq!(byte_symbol(b' '), 'Ġ');
        assert_eq!(byte_symbol(b'\n'), 'Ċ');
        assert_eq!(byte_symbol(b'a'), 'a');
        assert_eq!(byte_symbol(0), '\u{100}');
        assert_eq!(byte_symbol(0xad), '\u{143}');
        let mut all: Vec<char> = (0..=255u8).map(byte_symbol).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 256, "one distinct symbol per byte");
    }

    #[test]
    fn vocab_is_padded_and_merges_produce_tokens() {
        let v = SynthVocab::new(300);
        assert_eq!(v.tokens.len(), 300);
        assert_eq!(v.types.len(), 300);
        assert_eq!(v.tokens[v.bos as usize], BOS);
        assert_eq!(v.tokens[v.eos as usize], EOS);
        assert_eq!(
            v.tokens[299],
            format!("<|reserved_{}|>", 300 - MIN_VOCAB - 1)
        );
        for m in &v.merges {
            let joined = m.replacen(' ', "", 1);
            assert!(v.tokens.contains(&joined), "merge {m} yields a token");
        }
        assert_eq!(SynthVocab::new(MIN_VOCAB).tokens.len(), MIN_VOCAB);
    }
}
