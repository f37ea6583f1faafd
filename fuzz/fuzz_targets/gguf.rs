//! The GGUF reader (`model::gguf::reader`) on a whole file image: parse the
//! header, metadata and tensor table, then touch every tensor's data range
//! (and dequantize the first row of small tensors), and read the model
//! config from the metadata (through `GgufModel`, which checks split keys).
//! Corrupt input must be an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardlab_engine::kernels::dequant::dequantize_row;
use shardlab_engine::model::config::ModelConfig;
use shardlab_engine::model::gguf::{GgufFile, GgufModel};

/// Rows longer than this are not dequantized: the point is the bounds, and a
/// fuzzed shape can claim billions of columns backed by few bytes.
const MAX_ROW: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes("fuzz.gguf", data) else {
        return;
    };
    for t in &file.tensors {
        let bytes = file.tensor_data(t);
        assert_eq!(bytes.len() as u64, t.size, "tensor '{}'", t.name);
        let (rows, cols) = t.rows_cols();
        if rows > 0 && cols > 0 && cols <= MAX_ROW {
            let row_bytes = bytes.len() / rows;
            let mut out = vec![0f32; cols];
            dequantize_row(t.dtype.into(), &bytes[..row_bytes], &mut out);
        }
    }
    // As one model: split keys are checked (a shard alone is refused).
    let Ok(model) = GgufModel::from_file(file) else {
        return;
    };
    if let Ok(config) = ModelConfig::from_gguf(&model) {
        let _ = config.validate();
    }
});
