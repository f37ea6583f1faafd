//! GGUF to Hugging Face: dequantizes every tensor to F32, F16 or BF16 and
//! writes a directory `transformers` can load (`config.json`, tokenizer
//! files, safetensors, sharded with an index when asked).
//!
//! Tensors are streamed row by row, so memory stays at one row per tensor
//! whatever the model size. A stacked GGUF expert tensor
//! (`blk.N.ffn_up_exps.weight`) becomes one HF tensor per expert, each a
//! run of its rows. Everything is written into a hidden sibling
//! directory that is renamed into place only once complete: a failure
//! leaves no half-written model behind.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use serde_json::{json, Map, Value};

use super::config::{config_to_json, SpecialIds, CONFIG_FILE};
use super::error::HfError;
use super::names::{gguf_expert_name_to_hf, gguf_name_to_hf, is_gguf_expert_name, MoeNames};
use super::safetensors::{dtype_name, write_header, StEntry};
use super::source::{INDEX_FILE, SINGLE_FILE};
use crate::kernels::dequant::dequantize_row;
use crate::model::config::{Arch, ModelConfig, RopeStyle};
use crate::model::gguf::{GgmlType, GgufModel, MetadataArray, TensorInfo};

/// The element type the converter writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HfDtype {
    F32,
    F16,
    BF16,
}

impl HfDtype {
    pub fn ggml(self) -> GgmlType {
        match self {
            Self::F32 => GgmlType::F32,
            Self::F16 => GgmlType::F16,
            Self::BF16 => GgmlType::BF16,
        }
    }

    /// `torch_dtype` as `config.json` spells it.
    pub fn torch_name(self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::F16 => "float16",
            Self::BF16 => "bfloat16",
        }
    }

    pub fn bytes(self) -> u64 {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
        }
    }

    fn encode(self, values: &[f32], out: &mut Vec<u8>) {
        out.clear();
        match self {
            Self::F32 => out.extend(values.iter().flat_map(|v| v.to_le_bytes())),
            Self::F16 => out.extend(values.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes())),
            Self::BF16 => out.extend(values.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes())),
        }
    }
}

/// What a conversion wrote.
#[derive(Debug, Clone)]
pub struct ConvertReport {
    pub out_dir: PathBuf,
    pub dtype: HfDtype,
    /// The config as written (and as [`super::open_hf_dir`] reads it back).
    pub config: ModelConfig,
    pub tensors: usize,
    /// Bytes of tensor data, headers excluded.
    pub data_bytes: u64,
    /// Every file written, with its size in bytes.
    pub files: Vec<(String, u64)>,
}

/// One GGUF tensor, or one expert's rows of a stacked one, to write under
/// its HF name.
struct Planned<'a> {
    info: &'a TensorInfo,
    entry: StEntry,
    /// The first GGUF row written (an expert's offset in a stacked tensor).
    first_row: usize,
    rows: usize,
    cols: usize,
    /// Rows per head when Q/K rows must be put back in HF order.
    unpermute_head_dim: Option<usize>,
}

/// Converts `gguf` into a new directory `out_dir` (which must not exist).
/// `max_shard_bytes` splits the weights across files of at most that much
/// tensor data (a larger single tensor gets a file of its own).
/// `tokenizer_json` is written verbatim as `tokenizer.json`.
pub fn gguf_to_hf(
    gguf: &GgufModel,
    out_dir: &Path,
    dtype: HfDtype,
    max_shard_bytes: Option<u64>,
    tokenizer_json: Option<&str>,
) -> Result<ConvertReport, HfError> {
    if out_dir.exists() {
        return Err(HfError::Dir {
            path: out_dir.to_path_buf(),
            problem: "already exists; choose a new directory".into(),
        });
    }
    let mut gguf_config = ModelConfig::from_gguf(gguf)?;
    if let Some(m) = gguf_config.moe.as_mut() {
        // A layer without a router has a dense FFN: HF's `mlp_only_layers`.
        m.dense_layers = (0..gguf_config.n_layers)
            .filter(|l| {
                gguf.tensor(&format!("blk.{l}.ffn_gate_inp.weight"))
                    .is_none()
            })
            .collect();
    }
    let ids = SpecialIds {
        bos: gguf.get_u64("tokenizer.ggml.bos_token_id")?,
        eos: gguf.get_u64("tokenizer.ggml.eos_token_id")?,
        pad: gguf.get_u64("tokenizer.ggml.padding_token_id")?,
    };
    let config_json = config_to_json(gguf.path(), &gguf_config, dtype.torch_name(), ids)?;
    let tokenizer_config = tokenizer_config_json(gguf, &gguf_config, ids)?;
    let plan = plan_tensors(gguf, &gguf_config, dtype)?;
    let shards = split_shards(&plan, max_shard_bytes);

    let staging = Staging::new(out_dir)?;
    let mut files = Vec::new();
    let n_shards = shards.len();
    let mut weight_map = Map::new();
    let mut row = Vec::new();
    let mut encoded = Vec::new();
    for (si, shard) in shards.iter().enumerate() {
        let name = if n_shards == 1 {
            SINGLE_FILE.to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", si + 1, n_shards)
        };
        let path = staging.path.join(&name);
        let size = write_shard(gguf, &path, shard, dtype, &mut row, &mut encoded)?;
        for p in shard {
            weight_map.insert(p.entry.name.clone(), Value::String(name.clone()));
        }
        files.push((name, size));
    }
    let data_bytes: u64 = plan.iter().map(|p| p.entry.len).sum();
    if n_shards > 1 {
        let index = json!({
            "metadata": { "total_size": data_bytes },
            "weight_map": weight_map,
        });
        files.push(staging.write_json(INDEX_FILE, &index)?);
    }
    files.push(staging.write_json(CONFIG_FILE, &config_json)?);
    files.push(staging.write_json("tokenizer_config.json", &tokenizer_config)?);
    if let Some(text) = tokenizer_json {
        files.push(staging.write_text("tokenizer.json", text)?);
    }
    staging.commit()?;
    Ok(ConvertReport {
        out_dir: out_dir.to_path_buf(),
        dtype,
        config: ModelConfig {
            rope_style: RopeStyle::Neox,
            ..gguf_config
        },
        tensors: plan.len(),
        data_bytes,
        files,
    })
}

/// The row of GGUF data that holds HF row `r` of a llama Q or K matrix.
///
/// llama.cpp's converter (`permute(w, n_head, n_head_kv)`) reshapes each
/// head's rows as (2, head_dim/2) and transposes them, so that RoPE can
/// rotate adjacent pairs: HF row `h * head_dim/2 + i` becomes GGUF row
/// `2 * i + h`. This undoes it.
pub fn unpermuted_source_row(r: usize, head_dim: usize) -> usize {
    let half = head_dim / 2;
    let (head, within) = (r / head_dim, r % head_dim);
    let (h, i) = (within / half, within % half);
    head * head_dim + 2 * i + h
}

fn plan_tensors<'a>(
    gguf: &'a GgufModel,
    config: &ModelConfig,
    dtype: HfDtype,
) -> Result<Vec<Planned<'a>>, HfError> {
    let moe_names = MoeNames::for_arch(config.arch);
    let mut plan = Vec::with_capacity(gguf.tensor_count());
    let entry = |name: String, shape: Vec<usize>| -> Result<StEntry, HfError> {
        let len = shape
            .iter()
            .try_fold(dtype.bytes(), |n, &d| n.checked_mul(d as u64))
            .ok_or_else(|| gguf.tensor_error(&name, "size overflows"))?;
        Ok(StEntry {
            name,
            // F32, F16 and BF16 all have safetensors names.
            dtype: dtype_name(dtype.ggml()).unwrap_or("F32"),
            shape,
            len,
        })
    };
    for info in gguf.tensors() {
        let (rows, cols) = info.rows_cols();
        if is_gguf_expert_name(&info.name) {
            // dims are (cols, rows per expert, experts), innermost first.
            let &[_, per, n] = info.dims.as_slice() else {
                return Err(gguf
                    .tensor_error(
                        &info.name,
                        format!(
                            "expected 3 dimensions (experts outermost), found {:?}",
                            info.dims
                        ),
                    )
                    .into());
            };
            let (per, n) = (per as usize, n as usize);
            for e in 0..n {
                let name = gguf_expert_name_to_hf(&info.name, e, moe_names).ok_or_else(|| {
                    gguf.tensor_error(
                        &info.name,
                        "has no Hugging Face counterpart; cannot convert",
                    )
                })?;
                plan.push(Planned {
                    info,
                    entry: entry(name, vec![per, cols])?,
                    first_row: e * per,
                    rows: per,
                    cols,
                    unpermute_head_dim: None,
                });
            }
            continue;
        }
        let hf_name = gguf_name_to_hf(&info.name, moe_names).ok_or_else(|| {
            gguf.tensor_error(
                &info.name,
                "has no Hugging Face counterpart; cannot convert",
            )
        })?;
        let mut shape: Vec<usize> = info.dims.iter().rev().map(|&d| d as usize).collect();
        if info.name.ends_with(".ffn_gate_inp_shexp.weight") && shape.len() == 1 {
            // qwen2_moe's shared_expert_gate is a Linear(hidden, 1).
            shape.insert(0, 1);
        }
        let permuted = config.arch == Arch::Llama
            && (info.name.ends_with(".attn_q.weight") || info.name.ends_with(".attn_k.weight"));
        let unpermute_head_dim = if permuted {
            let hd = config.head_dim;
            if !hd.is_multiple_of(2) || !rows.is_multiple_of(hd) {
                return Err(gguf
                    .tensor_error(
                        &info.name,
                        format!("{rows} rows are not whole heads of {hd}"),
                    )
                    .into());
            }
            Some(hd)
        } else {
            None
        };
        plan.push(Planned {
            info,
            entry: entry(hf_name, shape)?,
            first_row: 0,
            rows,
            cols,
            unpermute_head_dim,
        });
    }
    Ok(plan)
}

/// Consecutive runs of tensors, each at most `max` bytes unless a single
/// tensor is larger.
fn split_shards<'p, 'a>(plan: &'p [Planned<'a>], max: Option<u64>) -> Vec<Vec<&'p Planned<'a>>> {
    let mut shards: Vec<Vec<&Planned>> = vec![Vec::new()];
    let mut size = 0u64;
    for p in plan {
        if let (Some(max), Some(current)) = (max, shards.last()) {
            if !current.is_empty() && size + p.entry.len > max {
                shards.push(Vec::new());
                size = 0;
            }
        }
        size += p.entry.len;
        if let Some(current) = shards.last_mut() {
            current.push(p);
        }
    }
    shards
}

fn write_shard(
    gguf: &GgufModel,
    path: &Path,
    shard: &[&Planned],
    dtype: HfDtype,
    row: &mut Vec<f32>,
    encoded: &mut Vec<u8>,
) -> Result<u64, HfError> {
    let io = |e| HfError::io(path, "cannot write", e);
    let file = File::create(path).map_err(io)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let entries: Vec<StEntry> = shard.iter().map(|p| p.entry.clone()).collect();
    write_header(&mut w, &entries).map_err(io)?;
    for p in shard {
        let data = gguf.tensor_data(p.info);
        let row_bytes = p
            .info
            .dtype
            .row_bytes(p.cols)
            .filter(|rb| rb * info_rows(p.info) == data.len())
            .ok_or_else(|| {
                gguf.tensor_error(
                    &p.info.name,
                    format!(
                        "{} bytes do not hold {}x{} {}",
                        data.len(),
                        info_rows(p.info),
                        p.cols,
                        p.info.dtype
                    ),
                )
            })?;
        row.resize(p.cols, 0.0);
        for r in 0..p.rows {
            let src = p.first_row
                + match p.unpermute_head_dim {
                    Some(hd) => unpermuted_source_row(r, hd),
                    None => r,
                };
            dequantize_row(
                p.info.dtype.into(),
                &data[src * row_bytes..(src + 1) * row_bytes],
                row,
            );
            dtype.encode(row, encoded);
            w.write_all(encoded).map_err(io)?;
        }
    }
    let file = w.into_inner().map_err(|e| io(e.into_error()))?;
    let size = file.metadata().map_err(io)?.len();
    Ok(size)
}

/// Rows of a GGUF tensor as a matrix (all experts of a stacked one).
fn info_rows(info: &TensorInfo) -> usize {
    info.rows_cols().0
}

/// `tokenizer_config.json`: the chat template and special tokens, as text.
fn tokenizer_config_json(
    gguf: &GgufModel,
    config: &ModelConfig,
    ids: SpecialIds,
) -> Result<Value, HfError> {
    const TOKENS: &str = "tokenizer.ggml.tokens";
    let tokens = match gguf.get_array(TOKENS)? {
        Some(MetadataArray::String(t)) => Some(t),
        Some(_) => {
            return Err(gguf
                .metadata_error(TOKENS, "expected an array of strings")
                .into())
        }
        None => None,
    };
    let token_text = |key: &str, id: Option<u64>| -> Result<Value, HfError> {
        let Some(id) = id else {
            return Ok(Value::Null);
        };
        let text = tokens
            .and_then(|t| t.get(usize::try_from(id).ok()?))
            .ok_or_else(|| gguf.metadata_error(key, format!("token id {id} is not in {TOKENS}")))?;
        Ok(Value::String(text.clone()))
    };
    let mut out = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": token_text("tokenizer.ggml.bos_token_id", ids.bos)?,
        "eos_token": token_text("tokenizer.ggml.eos_token_id", ids.eos)?,
        "model_max_length": config.train_context,
        "clean_up_tokenization_spaces": false,
    });
    if let Some(map) = out.as_object_mut() {
        if ids.pad.is_some() {
            map.insert(
                "pad_token".into(),
                token_text("tokenizer.ggml.padding_token_id", ids.pad)?,
            );
        }
        if let Some(t) = gguf.get_str("tokenizer.chat_template")? {
            map.insert("chat_template".into(), Value::String(t.to_string()));
        }
        for (gguf_key, hf_key) in [
            ("tokenizer.ggml.add_bos_token", "add_bos_token"),
            ("tokenizer.ggml.add_eos_token", "add_eos_token"),
        ] {
            if let Some(b) = gguf.get_bool(gguf_key)? {
                map.insert(hf_key.into(), Value::Bool(b));
            }
        }
    }
    Ok(out)
}

/// A hidden sibling of the output directory that is removed on drop unless
/// committed (renamed into place).
struct Staging {
    path: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Staging {
    fn new(target: &Path) -> Result<Self, HfError> {
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target
            .file_name()
            .ok_or_else(|| HfError::Dir {
                path: target.to_path_buf(),
                problem: "has no directory name".into(),
            })?
            .to_string_lossy();
        let path = parent.join(format!(".{name}.partial-{}", std::process::id()));
        if path.exists() {
            // Left by an earlier run of this same process id that died.
            std::fs::remove_dir_all(&path)
                .map_err(|e| HfError::io(&path, "cannot remove stale staging directory", e))?;
        }
        std::fs::create_dir_all(&path)
            .map_err(|e| HfError::io(&path, "cannot create staging directory", e))?;
        Ok(Self {
            path,
            target: target.to_path_buf(),
            committed: false,
        })
    }

    fn write_text(&self, name: &str, text: &str) -> Result<(String, u64), HfError> {
        let path = self.path.join(name);
        std::fs::write(&path, text).map_err(|e| HfError::io(&path, "cannot write", e))?;
        Ok((name.to_string(), text.len() as u64))
    }

    fn write_json(&self, name: &str, value: &Value) -> Result<(String, u64), HfError> {
        let path = self.path.join(name);
        let text = serde_json::to_string_pretty(value).map_err(|e| HfError::Json {
            path: path.clone(),
            problem: format!("cannot serialize: {e}"),
        })?;
        self.write_text(name, &text)
    }

    fn commit(mut self) -> Result<(), HfError> {
        std::fs::rename(&self.path, &self.target).map_err(|e| {
            HfError::io(
                &self.target,
                "cannot move the converted model into place",
                e,
            )
        })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: the error that got us here matters more.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's `permute`, written from its definition: reshape rows as
    /// (n_head, 2, head_dim/2), swap the last two axes, flatten. Returns, for
    /// each output (GGUF) row, the input (HF) row it came from.
    fn llama_cpp_permute(n_head: usize, head_dim: usize) -> Vec<usize> {
        let half = head_dim / 2;
        let mut out = Vec::new();
        for head in 0..n_head {
            for i in 0..half {
                for h in 0..2 {
                    out.push(head * head_dim + h * half + i);
                }
            }
        }
        out
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        for (n_head, hd) in [(3, 64), (9, 64), (2, 8)] {
            let gguf_from_hf = llama_cpp_permute(n_head, hd);
            for hf_row in 0..n_head * hd {
                let gguf_row = unpermuted_source_row(hf_row, hd);
                assert_eq!(
                    gguf_from_hf[gguf_row], hf_row,
                    "head_dim {hd}, HF row {hf_row}"
                );
            }
        }
        // Spot values: head 0, pair 1 -> rows 2 (first half) and 3 (second).
        assert_eq!(unpermuted_source_row(1, 64), 2);
        assert_eq!(unpermuted_source_row(33, 64), 3);
        assert_eq!(unpermuted_source_row(64 + 32, 64), 64 + 1);
    }

    #[test]
    fn encodes_each_dtype() {
        let mut out = Vec::new();
        HfDtype::F32.encode(&[1.5, -2.0], &mut out);
        assert_eq!(
            out,
            [1.5f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat()
        );
        HfDtype::F16.encode(&[1.5], &mut out);
        assert_eq!(out, f16::from_f32(1.5).to_le_bytes());
        HfDtype::BF16.encode(&[1.0 + 1.0 / 512.0], &mut out);
        // Rounds to nearest even: 1 + 2^-9 is halfway, stays at 1.0.
        assert_eq!(out, bf16::from_f32(1.0).to_le_bytes());
    }

    #[test]
    fn staging_is_removed_unless_committed() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("out");
        let s = Staging::new(&target).unwrap();
        let staged = s.path.clone();
        s.write_text("a.txt", "x").unwrap();
        drop(s);
        assert!(!staged.exists() && !target.exists());
        let s = Staging::new(&target).unwrap();
        s.write_text("a.txt", "x").unwrap();
        s.commit().unwrap();
        assert_eq!(std::fs::read_to_string(target.join("a.txt")).unwrap(), "x");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
