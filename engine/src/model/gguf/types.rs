//! The element types GGUF files store, and the metadata value kinds.
//!
//! A quantized row is a sequence of blocks, each covering `block_len()`
//! consecutive values. Each element type maps onto the kernels' format
//! ([`QuantType`]), whose block layouts give the sizes.

use serde::{Deserialize, Serialize};

use crate::kernels::QuantType;

/// A tensor element type as numbered in the GGUF spec (`ggml_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    BF16,
}

impl GgmlType {
    /// The type for a GGUF type id, or `None` for ids this engine does not run
    /// (the IQ* family, integer tensors, f64).
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            9 => Self::Q8_1,
            10 => Self::Q2K,
            11 => Self::Q3K,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            15 => Self::Q8K,
            30 => Self::BF16,
            _ => return None,
        })
    }

    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
            Self::Q8_1 => 9,
            Self::Q2K => 10,
            Self::Q3K => 11,
            Self::Q4K => 12,
            Self::Q5K => 13,
            Self::Q6K => 14,
            Self::Q8K => 15,
            Self::BF16 => 30,
        }
    }

    /// The kernels' format for this type.
    pub fn quant_type(self) -> QuantType {
        match self {
            Self::F32 => QuantType::F32,
            Self::F16 => QuantType::F16,
            Self::BF16 => QuantType::BF16,
            Self::Q4_0 => QuantType::Q4_0,
            Self::Q4_1 => QuantType::Q4_1,
            Self::Q5_0 => QuantType::Q5_0,
            Self::Q5_1 => QuantType::Q5_1,
            Self::Q8_0 => QuantType::Q8_0,
            Self::Q8_1 => QuantType::Q8_1,
            Self::Q2K => QuantType::Q2K,
            Self::Q3K => QuantType::Q3K,
            Self::Q4K => QuantType::Q4K,
            Self::Q5K => QuantType::Q5K,
            Self::Q6K => QuantType::Q6K,
            Self::Q8K => QuantType::Q8K,
        }
    }

    /// Values covered by one block.
    pub fn block_len(self) -> usize {
        self.quant_type().block_len()
    }

    /// Bytes taken by one block.
    pub fn block_bytes(self) -> usize {
        self.quant_type().block_bytes()
    }

    /// Bytes for a row of `len` values, or `None` when `len` is not a whole
    /// number of blocks.
    pub fn row_bytes(self, len: usize) -> Option<usize> {
        self.quant_type().row_bytes(len)
    }

    pub fn is_quantized(self) -> bool {
        self.quant_type().is_quantized()
    }

    /// The name llama.cpp prints for this type.
    pub fn name(self) -> &'static str {
        self.quant_type().name()
    }

    /// Parses a type name as `--quant` takes it (case-insensitive, `q4_k` or `q4k`).
    pub fn from_name(name: &str) -> Option<Self> {
        let wanted = name.to_ascii_uppercase().replace('_', "");
        Self::ALL
            .into_iter()
            .find(|t| t.name().replace('_', "") == wanted)
    }

    pub const ALL: [GgmlType; 15] = [
        Self::F32,
        Self::F16,
        Self::BF16,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q8_0,
        Self::Q8_1,
        Self::Q2K,
        Self::Q3K,
        Self::Q4K,
        Self::Q5K,
        Self::Q6K,
        Self::Q8K,
    ];
}

impl From<GgmlType> for QuantType {
    fn from(t: GgmlType) -> Self {
        t.quant_type()
    }
}

/// Every kernel format has a GGUF type (for writing files and naming
/// weights on the wire).
impl From<QuantType> for GgmlType {
    fn from(t: QuantType) -> Self {
        match t {
            QuantType::F32 => Self::F32,
            QuantType::F16 => Self::F16,
            QuantType::BF16 => Self::BF16,
            QuantType::Q4_0 => Self::Q4_0,
            QuantType::Q4_1 => Self::Q4_1,
            QuantType::Q5_0 => Self::Q5_0,
            QuantType::Q5_1 => Self::Q5_1,
            QuantType::Q8_0 => Self::Q8_0,
            QuantType::Q8_1 => Self::Q8_1,
            QuantType::Q2K => Self::Q2K,
            QuantType::Q3K => Self::Q3K,
            QuantType::Q4K => Self::Q4K,
            QuantType::Q5K => Self::Q5K,
            QuantType::Q6K => Self::Q6K,
            QuantType::Q8K => Self::Q8K,
        }
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One metadata value. Arrays keep their element kind so a writer can
/// reproduce them exactly.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(MetadataArray),
}

/// A homogeneous metadata array.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
    String(Vec<String>),
    /// Arrays of arrays are legal GGUF; nothing this engine reads uses them.
    Array(Vec<MetadataArray>),
}

impl MetadataArray {
    pub fn len(&self) -> usize {
        match self {
            Self::U8(v) => v.len(),
            Self::I8(v) => v.len(),
            Self::U16(v) => v.len(),
            Self::I16(v) => v.len(),
            Self::U32(v) => v.len(),
            Self::I32(v) => v.len(),
            Self::U64(v) => v.len(),
            Self::I64(v) => v.len(),
            Self::F32(v) => v.len(),
            Self::F64(v) => v.len(),
            Self::Bool(v) => v.len(),
            Self::String(v) => v.len(),
            Self::Array(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Integer arrays widened to i64, for token types and similar.
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        Some(match self {
            Self::U8(v) => v.iter().map(|&x| x as i64).collect(),
            Self::I8(v) => v.iter().map(|&x| x as i64).collect(),
            Self::U16(v) => v.iter().map(|&x| x as i64).collect(),
            Self::I16(v) => v.iter().map(|&x| x as i64).collect(),
            Self::U32(v) => v.iter().map(|&x| x as i64).collect(),
            Self::I32(v) => v.iter().map(|&x| x as i64).collect(),
            Self::U64(v) => v.iter().map(|&x| x as i64).collect(),
            Self::I64(v) => v.clone(),
            _ => return None,
        })
    }
}

impl MetadataValue {
    /// The value as an unsigned integer, whatever integer kind stored it.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v as u64),
            Self::U16(v) => Some(v as u64),
            Self::U32(v) => Some(v as u64),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v as f64),
            Self::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&MetadataArray> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }

    /// A short human description of the kind, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::U8(_) => "u8",
            Self::I8(_) => "i8",
            Self::U16(_) => "u16",
            Self::I16(_) => "i16",
            Self::U32(_) => "u32",
            Self::I32(_) => "i32",
            Self::U64(_) => "u64",
            Self::I64(_) => "i64",
            Self::F32(_) => "f32",
            Self::F64(_) => "f64",
            Self::Bool(_) => "bool",
            Self::String(_) => "string",
            Self::Array(_) => "array",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
            assert_eq!(GgmlType::from_name(t.name()), Some(t));
            assert_eq!(GgmlType::from(t.quant_type()), t);
        }
        assert_eq!(GgmlType::from_id(16), None, "IQ2_XXS is not supported");
    }

    #[test]
    fn row_bytes_needs_whole_blocks() {
        assert_eq!(GgmlType::Q4_1.row_bytes(576), Some(18 * 20));
        assert_eq!(GgmlType::Q4K.row_bytes(576), None);
        assert_eq!(GgmlType::F16.row_bytes(3), Some(6));
    }
}
