//! The element formats the kernels run: a float type or one of GGML's block
//! layouts. File formats map their own type ids onto this (GGUF's
//! `GgmlType` does so in `model::gguf::types`); the kernels know no file
//! format.

use std::mem::size_of;

use super::blocks::{
    Bf16Le, Block, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0,
    BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1, F16Le, F32Le,
};

/// A weight or activation format. Q8_1 and Q8_K only ever hold activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuantType {
    F32,
    F16,
    BF16,
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
}

impl QuantType {
    /// Values covered by one block (1 for the float formats).
    pub const fn block_len(self) -> usize {
        match self {
            Self::F32 => F32Le::VALUES,
            Self::F16 => F16Le::VALUES,
            Self::BF16 => Bf16Le::VALUES,
            Self::Q4_0 => BlockQ4_0::VALUES,
            Self::Q4_1 => BlockQ4_1::VALUES,
            Self::Q5_0 => BlockQ5_0::VALUES,
            Self::Q5_1 => BlockQ5_1::VALUES,
            Self::Q8_0 => BlockQ8_0::VALUES,
            Self::Q8_1 => BlockQ8_1::VALUES,
            Self::Q2K => BlockQ2K::VALUES,
            Self::Q3K => BlockQ3K::VALUES,
            Self::Q4K => BlockQ4K::VALUES,
            Self::Q5K => BlockQ5K::VALUES,
            Self::Q6K => BlockQ6K::VALUES,
            Self::Q8K => BlockQ8K::VALUES,
        }
    }

    /// Bytes taken by one block.
    pub const fn block_bytes(self) -> usize {
        match self {
            Self::F32 => size_of::<F32Le>(),
            Self::F16 => size_of::<F16Le>(),
            Self::BF16 => size_of::<Bf16Le>(),
            Self::Q4_0 => size_of::<BlockQ4_0>(),
            Self::Q4_1 => size_of::<BlockQ4_1>(),
            Self::Q5_0 => size_of::<BlockQ5_0>(),
            Self::Q5_1 => size_of::<BlockQ5_1>(),
            Self::Q8_0 => size_of::<BlockQ8_0>(),
            Self::Q8_1 => size_of::<BlockQ8_1>(),
            Self::Q2K => size_of::<BlockQ2K>(),
            Self::Q3K => size_of::<BlockQ3K>(),
            Self::Q4K => size_of::<BlockQ4K>(),
            Self::Q5K => size_of::<BlockQ5K>(),
            Self::Q6K => size_of::<BlockQ6K>(),
            Self::Q8K => size_of::<BlockQ8K>(),
        }
    }

    /// Bytes for a row of `len` values, or `None` when `len` is not a whole
    /// number of blocks.
    pub fn row_bytes(self, len: usize) -> Option<usize> {
        if !len.is_multiple_of(self.block_len()) {
            return None;
        }
        (len / self.block_len()).checked_mul(self.block_bytes())
    }

    pub fn is_quantized(self) -> bool {
        self.block_len() > 1
    }

    /// Formats that only hold quantized activations, never weights.
    pub fn is_activation_only(self) -> bool {
        matches!(self, Self::Q8_1 | Self::Q8K)
    }

    /// The name llama.cpp prints for this format.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
            Self::Q8_0 => "Q8_0",
            Self::Q8_1 => "Q8_1",
            Self::Q2K => "Q2_K",
            Self::Q3K => "Q3_K",
            Self::Q4K => "Q4_K",
            Self::Q5K => "Q5_K",
            Self::Q6K => "Q6_K",
            Self::Q8K => "Q8_K",
        }
    }

    pub const ALL: [QuantType; 15] = [
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

impl std::fmt::Display for QuantType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_ggmls() {
        let got: Vec<_> = QuantType::ALL
            .iter()
            .map(|t| (t.name(), t.block_len(), t.block_bytes()))
            .collect();
        let want = [
            ("F32", 1, 4),
            ("F16", 1, 2),
            ("BF16", 1, 2),
            ("Q4_0", 32, 18),
            ("Q4_1", 32, 20),
            ("Q5_0", 32, 22),
            ("Q5_1", 32, 24),
            ("Q8_0", 32, 34),
            ("Q8_1", 32, 36),
            ("Q2_K", 256, 84),
            ("Q3_K", 256, 110),
            ("Q4_K", 256, 144),
            ("Q5_K", 256, 176),
            ("Q6_K", 256, 210),
            ("Q8_K", 256, 292),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn row_bytes_needs_whole_blocks() {
        assert_eq!(QuantType::Q4_1.row_bytes(576), Some(18 * 20));
        assert_eq!(QuantType::Q4K.row_bytes(576), None);
        assert_eq!(QuantType::F16.row_bytes(3), Some(6));
    }
}
