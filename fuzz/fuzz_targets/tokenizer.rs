//! The tokenizer builder (`model::tokenizer`, from GGUF `tokenizer.ggml.*`
//! metadata), then encode, decode and streaming decode with what it built.
//!
//! Input: a little-endian u16 `n`, then `n` bytes of text (lossy UTF-8),
//! then a GGUF image whose metadata the tokenizer is built from (the tensor
//! table may be empty). Seeds are real vocabularies (fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardlab_engine::model::gguf::GgufFile;
use shardlab_engine::model::tokenizer::Tokenizer;

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let n = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    let (text, gguf) = rest.split_at(n);
    let text = String::from_utf8_lossy(text);
    let Ok(file) = GgufFile::from_bytes("fuzz.gguf", gguf) else {
        return;
    };
    let Ok(tok) = Tokenizer::from_metadata(&file.metadata) else {
        return;
    };
    let vocab = tok.vocab_size();
    for add_special in [false, true] {
        let Ok(ids) = tok.encode(&text, add_special) else {
            continue;
        };
        for &id in &ids {
            assert!(
                (id as usize) < vocab,
                "encode gave id {id} of a {vocab}-token vocabulary"
            );
        }
        if let Err(e) = tok.decode(&ids, false) {
            panic!("ids from encode do not decode: {e}");
        }
        let mut stream = tok.stream();
        for &id in &ids {
            if let Err(e) = stream.push(&tok, id) {
                panic!("stream refused id {id} from encode: {e}");
            }
        }
        let _ = stream.finish(&tok);
    }
    // Arbitrary ids, some past the end of the vocabulary: errors, not panics.
    let ids: Vec<u32> = text
        .bytes()
        .map(|b| u32::from(b) % (vocab as u32).saturating_add(2).max(1))
        .collect();
    let _ = tok.decode(&ids, true);
    for id in [tok.bos_id(), tok.unk_id(), tok.pad_id()]
        .into_iter()
        .flatten()
    {
        let _ = tok.token_text(id);
    }
    for &id in tok.eos_ids() {
        let _ = tok.is_eos(id);
    }
});
