//! Splits a GGUF model (one file, or any shard of a split) into N files as
//! `llama-gguf-split --split` does, or merges a split back into one file
//! with N = 1. The tensors are copied straight from the mapped source.
//!
//! cargo run -p shardlab-engine --example gguf_split -- IN.gguf OUT_PREFIX N
//!
//! writes OUT_PREFIX-00001-of-0000N.gguf ... (a `.gguf` ending on the prefix
//! is dropped).

use std::path::PathBuf;

use shardlab_engine::model::gguf::split_writer::split_prefix;
use shardlab_engine::model::gguf::{split_gguf, GgufModel, SplitOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, out, n] = args.as_slice() else {
        return Err("usage: gguf_split IN.gguf OUT_PREFIX N".into());
    };
    let n: usize = n.parse().map_err(|e| format!("N '{n}': {e}"))?;
    let model = GgufModel::open(input)?;
    let prefix = split_prefix(&PathBuf::from(out));
    let files = split_gguf(&model, &prefix, &SplitOptions::files(n), &mut |_, _| {})?;
    for (path, bytes) in files {
        println!("{} ({bytes} bytes)", path.display());
    }
    Ok(())
}
