//! The safetensors header parser (`model::hf::safetensors::parse_header`) on
//! a whole file image, plus the HF `config.json` reader on the same bytes
//! when they are JSON. Every accepted tensor's range lies inside the file,
//! and a header rewritten by our own writer parses back to the same tensors.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use shardlab_engine::model::hf::config::config_from_json;
use shardlab_engine::model::hf::safetensors::{
    dtype_name, parse_header, write_header, StEntry, StTensor,
};

/// Name, dtype and shape: what survives a rewrite (offsets do not).
fn identity(ts: &[StTensor]) -> Vec<(String, String, Vec<usize>)> {
    let mut v: Vec<_> = ts
        .iter()
        .map(|t| (t.name.clone(), t.dtype.clone(), t.shape.clone()))
        .collect();
    v.sort();
    v
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.safetensors");
    if let Ok(tensors) = parse_header(path, data) {
        let mut entries = Vec::new();
        for t in &tensors {
            let end = t.start.checked_add(t.len);
            assert!(
                end.is_some_and(|e| e <= data.len()),
                "{t:?} outside {} bytes",
                data.len()
            );
            let _ = t.rows_cols();
            if let Some(dtype) = t.ggml_type().and_then(dtype_name) {
                entries.push(StEntry {
                    name: t.name.clone(),
                    dtype,
                    shape: t.shape.clone(),
                    len: t.len as u64,
                });
            }
        }
        // Rewrite the tensors the engine runs, with zeroed data, and reparse.
        let mut file = Vec::new();
        if write_header(&mut file, &entries).is_ok() {
            let total: u64 = entries.iter().map(|e| e.len).sum();
            if total <= 1 << 20 {
                file.resize(file.len() + total as usize, 0);
                let back = match parse_header(path, &file) {
                    Ok(b) => b,
                    Err(e) => panic!("our own header does not parse: {e}"),
                };
                let kept: Vec<StTensor> = tensors
                    .iter()
                    .filter(|t| t.ggml_type().is_some())
                    .cloned()
                    .collect();
                assert_eq!(identity(&back), identity(&kept));
            }
        }
    }
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(config) = config_from_json(Path::new("config.json"), &json, "fuzz") {
            let _ = config.validate();
        }
    }
});
