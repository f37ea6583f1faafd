//! Byte-level BPE pre-tokenizers chosen by `tokenizer.ggml.pre`.
//!
//! llama.cpp (`src/llama-vocab.cpp`, `llm_tokenizer_bpe`) gives each
//! pre-type a list of regexes applied one after another: each regex splits
//! every piece left by the previous one, keeping the text between matches as
//! pieces of its own. That is exactly a chain of `tokenizers` `Split`
//! pre-tokenizers with `Isolated` behaviour, followed by `ByteLevel` without
//! its own regex. The regexes below are llama.cpp's, in `onig` syntax.

use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;

use super::TokenizerError;

/// GPT-2's original split.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3: case-insensitive contractions, numbers in groups of up to three.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2: as Llama 3 but every digit on its own.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const SEED_CODER: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const DEEPSEEK3_MAIN: &str = r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;

/// How one pre-type tokenizes, beyond its regexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreSpec {
    /// The llama.cpp name this spec was found under (or the fallback's).
    pub name: &'static str,
    pub regexes: &'static [&'static str],
    /// A word that is itself a token is taken whole, merges or not.
    pub ignore_merges: bool,
    /// llama.cpp's default for `add_bos` when the metadata does not say.
    pub add_bos: bool,
    /// The pre-type has no BOS at all (ChatGLM).
    pub no_bos: bool,
}

const fn spec(name: &'static str, regexes: &'static [&'static str]) -> PreSpec {
    PreSpec {
        name,
        regexes,
        ignore_merges: false,
        add_bos: false,
        no_bos: false,
    }
}

const LLAMA3_SPEC: PreSpec = PreSpec {
    ignore_merges: true,
    add_bos: true,
    ..spec("llama3", &[LLAMA3])
};

/// What an unknown name falls back to.
pub const FALLBACK: PreSpec = spec("gpt-2", &[GPT2]);

/// The spec for a `tokenizer.ggml.pre` value, or `None` if it is unknown.
/// A missing value means llama.cpp's "default".
pub fn lookup(pre: Option<&str>) -> Option<PreSpec> {
    let Some(name) = pre else {
        return lookup(Some("default"));
    };
    Some(match name {
        "default" => spec(
            "default",
            &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
        ),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" => LLAMA3_SPEC,
        "dbrx" | "smaug-bpe" => spec("llama3-merges", &[LLAMA3]),
        "glm4" | "chatglm-bpe" => PreSpec {
            no_bos: true,
            ..spec("chatglm4", &[LLAMA3])
        },
        "gpt-2" | "gpt2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
        | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" | "exaone4" | "mpt" | "olmo"
        | "jais" | "trillion" | "granite-docling" => spec("gpt-2", &[GPT2]),
        "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone" | "minerva-7b"
        | "mellum2" => spec("smollm", &[r"\p{N}", GPT2]),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" | "stablelm2" | "hunyuan"
        | "solar-open" | "grok-2" => spec("qwen2", &[QWEN2]),
        "qwen35" => spec("qwen35", &[QWEN35]),
        "seed-coder" => spec("seed-coder", &[SEED_CODER]),
        "falcon" => spec(
            "falcon",
            &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"],
        ),
        "deepseek-coder" => spec(
            "deepseek-coder",
            &[
                r"[\r\n]",
                r"\s?\p{L}+",
                r"\s?\p{P}+",
                r"[一-龥ࠀ-一가-퟿]+",
                r"\p{N}",
            ],
        ),
        "deepseek-v3" | "hunyuan-dense" | "joyai-llm" => spec(
            "deepseek-v3",
            &[r"\p{N}{1,3}", r"[一-龥぀-ゟ゠-ヿ]+", DEEPSEEK3_MAIN],
        ),
        "tekken" => PreSpec {
            ignore_merges: true,
            add_bos: true,
            ..spec("tekken", &[TEKKEN])
        },
        "gpt-4o" | "llama4" | "kanana2" | "talkie" => spec("gpt-4o", &[GPT4O]),
        "poro-chat" | "bloom" | "gpt3-finnish" => spec("bloom", &[r" ?[^(\s|.,!?…。，、।۔،)]+"]),
        _ => return None,
    })
}

/// The `Split`… + `ByteLevel` chain for a spec.
pub fn build(spec: &PreSpec) -> Result<PreTokenizerWrapper, TokenizerError> {
    let mut steps: Vec<PreTokenizerWrapper> = Vec::with_capacity(spec.regexes.len() + 1);
    for re in spec.regexes {
        let split = Split::new(
            SplitPattern::Regex((*re).to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| {
            TokenizerError::library(format!("pre-tokenizer '{}' regex {re}", spec.name), e)
        })?;
        steps.push(split.into());
    }
    steps.push(ByteLevel::new(false, false, false).into());
    Ok(Sequence::new(steps).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

    fn pieces(pre: &str, text: &str) -> Vec<String> {
        let spec = lookup(Some(pre)).unwrap();
        let pt = build(&spec).unwrap();
        let mut s = PreTokenizedString::from(text);
        pt.pre_tokenize(&mut s).unwrap();
        s.get_splits(OffsetReferential::Original, OffsetType::Char)
            .into_iter()
            .map(|(p, _, _)| p.to_string())
            .collect()
    }

    #[test]
    fn every_known_regex_compiles() {
        for name in [
            "default",
            "llama-bpe",
            "dbrx",
            "glm4",
            "gpt-2",
            "smollm",
            "qwen2",
            "qwen35",
            "seed-coder",
            "falcon",
            "deepseek-coder",
            "deepseek-v3",
            "tekken",
            "gpt-4o",
            "bloom",
        ] {
            let spec = lookup(Some(name)).unwrap_or_else(|| panic!("{name} unknown"));
            build(&spec).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn smollm_isolates_each_digit() {
        assert_eq!(pieces("smollm", "ab 123"), ["ab", "Ġ", "1", "2", "3"]);
    }

    #[test]
    fn llama3_groups_digits_by_three() {
        assert_eq!(pieces("llama-bpe", "12345"), ["123", "45"]);
    }

    #[test]
    fn qwen2_keeps_newline_runs_with_spaces() {
        assert_eq!(pieces("qwen2", "a \n\nb"), ["a", "ĠĊĊ", "b"]);
    }

    #[test]
    fn gpt2_leaves_last_space_for_the_word() {
        assert_eq!(pieces("gpt-2", "a   b"), ["a", "ĠĠ", "Ġb"]);
    }

    #[test]
    fn unknown_name_is_none_and_missing_is_default() {
        assert_eq!(lookup(Some("no-such-pre")), None);
        assert_eq!(lookup(None).map(|s| s.name), Some("default"));
    }
}
