//! Tests against SmolLM2's real GGUF vocabulary and a hand-built
//! SentencePiece vocabulary.

use std::sync::OnceLock;
use std::time::Instant;

use super::*;
use crate::model::gguf::MetadataArray;
use crate::model::store::testutil::smollm2_path;

fn smollm2_file() -> &'static GgufModel {
    static FILE: OnceLock<GgufModel> = OnceLock::new();
    FILE.get_or_init(|| GgufModel::open(smollm2_path()).unwrap())
}

fn smollm2_tok() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| Tokenizer::from_gguf(smollm2_file()).unwrap())
}

const TRICKY: &[&str] = &[
    "",
    " ",
    "Hello, world!",
    "  leading and trailing  ",
    "line one\nline two\n\n\tindented\r\nwindows",
    "naïve café — déjà vu; Ελληνικά; русский; 中文字符; 日本語のテキスト",
    "emoji: 🦀🚀 👩‍👩‍👧 🇫🇷 ❤️",
    "fn main() {\n    println!(\"{}\", 1 + 2);\n}\n",
    "numbers 1234567890 3.14159 -42 1e-9",
    "it's they're we've I'm you'll he'd IT'S",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "tabs\t\tand   many     spaces",
    "\u{0}\u{7f} control \u{1b}[0m",
];

#[test]
fn smollm2_builds_fast_and_reports_its_specials() {
    let file = smollm2_file();
    let start = Instant::now();
    let tok = Tokenizer::from_gguf(file).unwrap();
    println!(
        "tokenizer from {} tokens built in {:?}",
        tok.vocab_size(),
        start.elapsed()
    );
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.bos_id(), Some(1));
    // EOS (<|im_end|>) from the metadata, then <|endoftext|> by llama.cpp's scan.
    assert_eq!(tok.eos_ids(), &[2, 0]);
    assert!(tok.warnings().is_empty(), "{:?}", tok.warnings());
    assert_eq!(tok.token_text(905).as_deref(), Some("Ġworld"));
    assert_eq!(tok.token_id("<|im_start|>"), Some(1));
}

#[test]
fn smollm2_known_ids() {
    let tok = smollm2_tok();
    let cases: &[(&str, &[u32])] = &[
        ("Hello, we can use", &[19556, 28, 392, 416, 722]),
        ("Hello world! 123", &[19556, 905, 17, 216, 33, 34, 35]),
        ("\n", &[198]),
        ("  multiple   spaces", &[216, 2701, 256, 5600]),
    ];
    for (text, want) in cases {
        assert_eq!(tok.encode(text, false).unwrap(), *want, "{text:?}");
    }
}

#[test]
fn smollm2_digits_are_single_tokens() {
    let tok = smollm2_tok();
    let ids = tok.encode("2024", false).unwrap();
    let texts: Vec<String> = ids.iter().map(|&i| tok.token_text(i).unwrap()).collect();
    assert_eq!(texts, ["2", "0", "2", "4"]);
}

#[test]
fn smollm2_special_tokens_in_text_become_ids() {
    let tok = smollm2_tok();
    let ids = tok
        .encode("<|im_start|>user\nHi<|im_end|>\n", false)
        .unwrap();
    assert_eq!(ids.first(), Some(&1));
    assert!(ids.contains(&2), "{ids:?}");
    assert_eq!(
        tok.decode(&ids, false).unwrap(),
        "<|im_start|>user\nHi<|im_end|>\n"
    );
    assert_eq!(tok.decode(&ids, true).unwrap(), "user\nHi\n");
}

#[test]
fn smollm2_adds_no_bos_because_metadata_says_so() {
    let tok = smollm2_tok();
    assert_eq!(
        tok.encode("Hi there", true).unwrap(),
        tok.encode("Hi there", false).unwrap()
    );
}

#[test]
fn smollm2_round_trips_tricky_strings() {
    let tok = smollm2_tok();
    for s in TRICKY {
        let ids = tok.encode(s, false).unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), *s, "ids {ids:?}");
    }
}

#[test]
fn smollm2_hf_json_reloads_with_identical_ids() {
    let tok = smollm2_tok();
    let json = tok.to_hf_json().unwrap();
    let back: tokenizers::Tokenizer = json.parse().unwrap();
    for s in TRICKY {
        let ours = tok.encode(s, true).unwrap();
        let theirs = back.encode(*s, true).unwrap().get_ids().to_vec();
        assert_eq!(ours, theirs, "{s:?}");
    }
}

#[test]
fn stream_emits_whole_characters_and_matches_decode() {
    let tok = smollm2_tok();
    for s in TRICKY {
        let ids = tok.encode(s, false).unwrap();
        let mut stream = tok.stream_with(false);
        let mut out = String::new();
        let mut held = 0;
        for &id in &ids {
            match stream.push(tok, id).unwrap() {
                Some(chunk) => {
                    assert!(!chunk.contains('\u{FFFD}'), "{s:?}: chunk {chunk:?}");
                    out.push_str(&chunk);
                }
                None => held += 1,
            }
        }
        if let Some(rest) = stream.finish(tok).unwrap() {
            out.push_str(&rest);
        }
        assert_eq!(out, *s);
        if s.contains('🦀') {
            assert!(
                held > 0,
                "an emoji spans several byte tokens; some push must wait"
            );
        }
    }
}

#[test]
fn stream_skips_special_tokens_by_default() {
    let tok = smollm2_tok();
    let ids = tok.encode("Hi<|im_end|>", false).unwrap();
    let mut stream = tok.stream();
    let text: String = ids
        .iter()
        .filter_map(|&id| stream.push(tok, id).unwrap())
        .collect();
    assert_eq!(text, "Hi");
}

#[test]
fn decode_refuses_ids_outside_the_vocabulary() {
    let err = smollm2_tok().decode(&[5, 49152], false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "token id 49152 is outside the vocabulary of 49152 tokens"
    );
}

fn with_key(key: &str, value: MetadataValue) -> BTreeMap<String, MetadataValue> {
    let mut meta = smollm2_file().metadata().clone();
    meta.insert(key.to_string(), value);
    meta
}

#[test]
fn unknown_pre_falls_back_to_gpt2_with_a_warning() {
    let meta = with_key(
        "tokenizer.ggml.pre",
        MetadataValue::String("bogus-pre".into()),
    );
    let tok = Tokenizer::from_metadata(&meta).unwrap();
    assert_eq!(tok.warnings().len(), 1);
    assert!(
        tok.warnings()[0].contains("'bogus-pre'"),
        "{:?}",
        tok.warnings()
    );
    // SmolLM2 has no multi-digit tokens, so GPT-2's split gives the same ids.
    assert_eq!(
        tok.encode("Hello world 2024", false).unwrap(),
        smollm2_tok().encode("Hello world 2024", false).unwrap()
    );
}

#[test]
fn missing_pre_uses_llama_cpp_default_with_a_warning() {
    let mut meta = smollm2_file().metadata().clone();
    meta.remove("tokenizer.ggml.pre");
    let tok = Tokenizer::from_metadata(&meta).unwrap();
    assert!(
        tok.warnings()[0].contains("missing"),
        "{:?}",
        tok.warnings()
    );
    // The default split isolates punctuation runs first: "Hello" "," " world".
    let ids = tok.encode("Hello, world", false).unwrap();
    assert_eq!(tok.decode(&ids, false).unwrap(), "Hello, world");
    assert_eq!(ids[..2], [19556, 28]);
}

#[test]
fn add_bos_and_eos_follow_the_metadata() {
    let mut meta = with_key("tokenizer.ggml.add_bos_token", MetadataValue::Bool(true));
    meta.insert(
        "tokenizer.ggml.add_eos_token".into(),
        MetadataValue::Bool(true),
    );
    let tok = Tokenizer::from_metadata(&meta).unwrap();
    let plain = tok.encode("Hi", false).unwrap();
    let mut want = vec![1];
    want.extend(&plain);
    want.push(2);
    assert_eq!(tok.encode("Hi", true).unwrap(), want);
}

#[test]
fn unsupported_model_is_named() {
    let meta = with_key("tokenizer.ggml.model", MetadataValue::String("bert".into()));
    let err = Tokenizer::from_metadata(&meta).unwrap_err();
    assert!(err.to_string().contains("'bert' is not supported"), "{err}");
}

#[test]
fn gguf_errors_name_the_file() {
    let mut file = crate::model::gguf::GgufFile::open(smollm2_path()).unwrap();
    file.metadata.remove("tokenizer.ggml.tokens");
    let file = GgufModel::from_file(file).unwrap();
    let err = Tokenizer::from_gguf(&file).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&smollm2_path().display().to_string()),
        "{msg}"
    );
    assert!(msg.ends_with("tokenizer.ggml.tokens: missing"), "{msg}");
}

#[test]
fn hf_dir_reads_special_ids_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tokenizer.json"),
        smollm2_tok().to_hf_json().unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"bos_token": "<|im_start|>", "eos_token": {"content": "<|im_end|>"}, "add_bos_token": true}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"eos_token_id": [2, 0], "bos_token_id": 1}"#,
    )
    .unwrap();
    let tok = Tokenizer::from_hf_dir(dir.path()).unwrap();
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_ids(), &[2, 0]);
    let plain = tok.encode("Hi", false).unwrap();
    assert_eq!(plain, smollm2_tok().encode("Hi", false).unwrap());
    // add_bos_token=true wins over a tokenizer.json that adds nothing.
    assert_eq!(tok.encode("Hi", true).unwrap()[0], 1);
}

#[test]
fn hf_dir_without_tokenizer_json_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = Tokenizer::from_hf_dir(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("tokenizer.json: cannot read"),
        "{err}"
    );
}

// --- SentencePiece ("llama") with a hand-built vocabulary -----------------

const PIECES: &[&str] = &[
    "▁", "h", "e", "l", "o", "w", "r", "d", "ll", "he", "▁h", "▁he", "hel", "hell", "llo", "ello",
    "▁hello", "or", "wor", "▁w", "▁wor", "ld", "rld", "▁world", "lo", "▁l", "el", "ow", "▁d", "▁▁",
];

/// <unk>, <s>, </s>, 256 byte tokens, then PIECES with made-up but distinct
/// scores (not in list order, so the merge ranking is exercised).
fn spm_meta() -> BTreeMap<String, MetadataValue> {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types: Vec<i32> = vec![2, 3, 3];
    let mut scores: Vec<f32> = vec![0.0; 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (i, p) in PIECES.iter().enumerate() {
        tokens.push(p.to_string());
        types.push(1);
        scores.push(-(((i * 7919) % 101) as f32));
    }
    let s = |v: &str| MetadataValue::String(v.into());
    [
        ("tokenizer.ggml.model", s("llama")),
        (
            "tokenizer.ggml.tokens",
            MetadataValue::Array(MetadataArray::String(tokens)),
        ),
        (
            "tokenizer.ggml.token_type",
            MetadataValue::Array(MetadataArray::I32(types)),
        ),
        (
            "tokenizer.ggml.scores",
            MetadataValue::Array(MetadataArray::F32(scores)),
        ),
        ("tokenizer.ggml.bos_token_id", MetadataValue::U32(1)),
        ("tokenizer.ggml.eos_token_id", MetadataValue::U32(2)),
        ("tokenizer.ggml.unknown_token_id", MetadataValue::U32(0)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// llama.cpp's SentencePiece algorithm, written plainly as a test oracle:
/// join the adjacent pair whose text is the best-scoring token (leftmost on
/// ties) until none is left; pieces that are not tokens become bytes.
fn spm_oracle(meta: &BTreeMap<String, MetadataValue>, text: &str) -> Vec<u32> {
    let vocab = GgufVocab::from_metadata(meta).unwrap();
    let scores = vocab.scores.unwrap();
    let id_of = |t: &str| vocab.tokens.iter().position(|x| x == t);
    if text.is_empty() {
        return Vec::new();
    }
    let escaped = format!(" {text}").replace(' ', "▁");
    let mut syms: Vec<String> = escaped.chars().map(String::from).collect();
    loop {
        let mut best: Option<(f32, usize)> = None;
        for i in 0..syms.len().saturating_sub(1) {
            let joined = format!("{}{}", syms[i], syms[i + 1]);
            if let Some(id) = id_of(&joined) {
                if best.is_none_or(|(s, _)| scores[id] > s) {
                    best = Some((scores[id], i));
                }
            }
        }
        let Some((_, i)) = best else { break };
        let right = syms.remove(i + 1);
        syms[i].push_str(&right);
    }
    let mut out = Vec::new();
    for s in syms {
        match id_of(&s) {
            Some(id) => out.push(id as u32),
            None => out.extend(s.bytes().map(|b| 3 + b as u32)),
        }
    }
    out
}

#[test]
fn spm_matches_the_llama_cpp_algorithm() {
    let meta = spm_meta();
    let tok = Tokenizer::from_metadata(&meta).unwrap();
    let alphabet: Vec<char> = "helowrd éx".chars().collect();
    let mut state = 12345u64;
    for n in 0..300 {
        let len = n % 14;
        let text: String = (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                alphabet[(state >> 33) as usize % alphabet.len()]
            })
            .collect();
        let want = spm_oracle(&meta, &text);
        assert_eq!(tok.encode(&text, false).unwrap(), want, "{text:?}");
        assert_eq!(tok.decode(&want, false).unwrap(), text, "{want:?}");
    }
}

#[test]
fn spm_adds_bos_by_default_and_splits_on_special_tokens() {
    let tok = Tokenizer::from_metadata(&spm_meta()).unwrap();
    let hello = tok.token_id("▁hello").unwrap();
    let world = tok.token_id("▁world").unwrap();
    assert_eq!(tok.encode("hello world", true).unwrap(), [1, hello, world]);
    // After a special token llama.cpp prefixes the next text with a space again.
    assert_eq!(
        tok.encode("hello</s>world", false).unwrap(),
        [hello, 2, world]
    );
    assert_eq!(tok.eos_ids(), &[2]);
}

#[test]
fn spm_unknown_characters_fall_back_to_bytes() {
    let tok = Tokenizer::from_metadata(&spm_meta()).unwrap();
    let ids = tok.encode("é", false).unwrap();
    let texts: Vec<String> = ids.iter().map(|&i| tok.token_text(i).unwrap()).collect();
    assert_eq!(texts, ["▁", "<0xC3>", "<0xA9>"]);
    assert_eq!(tok.decode(&ids, false).unwrap(), "é");
}

#[test]
fn duplicate_tokens_do_not_shrink_the_id_range() {
    // Fuzz regression (fuzz/corpus/tokenizer/regress-duplicate-tokens): with
    // a token text listed twice, the library counts distinct texts, so the
    // last ids that encode itself produced were refused as unknown.
    let mut meta = spm_meta();
    let Some(MetadataValue::Array(MetadataArray::String(tokens))) =
        meta.get_mut("tokenizer.ggml.tokens")
    else {
        panic!("spm_meta has a token list");
    };
    tokens.push("<0x01>".into());
    let n = tokens.len();
    for (key, extra) in [
        ("tokenizer.ggml.token_type", MetadataArray::I32(vec![6])),
        ("tokenizer.ggml.scores", MetadataArray::F32(vec![0.0])),
    ] {
        match (meta.get_mut(key), extra) {
            (Some(MetadataValue::Array(MetadataArray::I32(v))), MetadataArray::I32(e)) => {
                v.extend(e)
            }
            (Some(MetadataValue::Array(MetadataArray::F32(v))), MetadataArray::F32(e)) => {
                v.extend(e)
            }
            other => panic!("{key}: {other:?}"),
        }
    }
    let tok = Tokenizer::from_metadata(&meta).unwrap();
    assert_eq!(tok.vocab_size(), n);
    let ids = tok.encode("\u{1}", false).unwrap();
    assert_eq!(
        ids.last(),
        Some(&(n as u32 - 1)),
        "the later duplicate wins"
    );
    assert_eq!(tok.decode(&ids, false).unwrap(), "\u{1}");
}

#[test]
fn spm_stream_keeps_spaces_and_whole_characters() {
    let tok = Tokenizer::from_metadata(&spm_meta()).unwrap();
    for text in ["hello world", "hé wéx", " hello  world ", "é"] {
        let ids = tok.encode(text, true).unwrap();
        let mut stream = tok.stream();
        let mut out = String::new();
        for &id in &ids {
            if let Some(chunk) = stream.push(&tok, id).unwrap() {
                assert!(!chunk.contains('\u{FFFD}'), "{text:?}: {chunk:?}");
                out.push_str(&chunk);
            }
        }
        out.extend(stream.finish(&tok).unwrap());
        assert_eq!(out, text);
    }
}

#[test]
fn spm_stream_keeps_a_lone_space_token() {
    let tok = Tokenizer::from_metadata(&spm_meta()).unwrap();
    let id = |t: &str| tok.token_id(t).unwrap();
    // "▁hello" "▁" "w" "or" "ld": the lone "▁" must still show as a space.
    let ids = [id("▁hello"), id("▁"), id("w"), id("or"), id("ld")];
    let mut stream = tok.stream();
    let out: String = ids
        .iter()
        .filter_map(|&i| stream.push(&tok, i).unwrap())
        .collect();
    assert_eq!(out, tok.decode(&ids, true).unwrap());
    assert_eq!(out, "hello world");
}

#[test]
fn spm_without_scores_is_refused_by_key() {
    let mut meta = spm_meta();
    meta.remove("tokenizer.ggml.scores");
    let err = Tokenizer::from_metadata(&meta).unwrap_err();
    assert_eq!(err.to_string(), "tokenizer.ggml.scores: missing");
}

// --- llama.cpp's own ids ----------------------------------------------------

/// `tests/reference/tokenize.json`: llama.cpp's `llama_tokenize` (no BOS,
/// special tokens parsed) for fixed strings, on the same SmolLM2 GGUF.
#[test]
fn smollm2_matches_llama_cpp_reference_ids() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/reference/tokenize.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    let tok = smollm2_tok();
    let mut wrong = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let input = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = tok.encode(input, false).unwrap();
        if got != want {
            wrong.push(format!(
                "{name}: {input:?}\n  llama.cpp {want:?}\n  ours      {got:?}"
            ));
        }
        let detok = case["detokenized"].as_str().unwrap();
        assert_eq!(tok.decode(&want, false).unwrap(), detok, "{name}");
    }
    assert!(
        wrong.is_empty(),
        "ids differ from llama.cpp:\n{}",
        wrong.join("\n")
    );
}
