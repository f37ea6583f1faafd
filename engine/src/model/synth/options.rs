//! What a synthetic model looks like: architecture, shape, quantization, seed;
//! the named presets; and the checks that make a shape loadable.

use crate::model::gguf::GgmlType;

use super::vocab::MIN_VOCAB;
use super::SynthError;

/// The layer wirings `synth` can write, named as llama.cpp names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SynthArch {
    Llama,
    /// Llama plus biases on the Q, K and V projections.
    Qwen2,
    /// Llama plus RMS norms on each head's queries and keys.
    Qwen3,
}

impl SynthArch {
    pub const ALL: [SynthArch; 3] = [Self::Llama, Self::Qwen2, Self::Qwen3];

    /// The `general.architecture` value and metadata key prefix.
    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// Llama 3 and Qwen 2/3 use these RoPE bases.
    pub fn rope_freq_base(self) -> f32 {
        match self {
            Self::Llama => 500_000.0,
            Self::Qwen2 | Self::Qwen3 => 1_000_000.0,
        }
    }

    pub fn rms_norm_eps(self) -> f32 {
        match self {
            Self::Llama => 1e-5,
            Self::Qwen2 | Self::Qwen3 => 1e-6,
        }
    }
}

impl std::fmt::Display for SynthArch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The shape and contents of a synthetic model.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthOptions {
    pub arch: SynthArch,
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub ffn: usize,
    pub vocab: usize,
    /// The type of every matrix, the token embedding and output head included;
    /// norms and biases stay F32 as llama.cpp's converters write them.
    pub quant: GgmlType,
    pub seed: u64,
    pub context: usize,
}

/// Preset names, smallest first.
pub const PRESETS: [&str; 4] = ["tiny", "1b", "8b", "70b"];

impl SynthOptions {
    /// A named shape in Q4_0 with seed 0. `tiny` is for tests (milliseconds to
    /// write); its dimensions are multiples of 256 so every quant type,
    /// K-quants included, is valid for it. `1b`, `8b` and `70b` are Llama 3.2
    /// 1B, Llama 3 8B and Llama 3 70B; the Qwen architectures take the same
    /// shapes so scaling runs compare like with like.
    pub fn preset(arch: SynthArch, name: &str) -> Result<Self, SynthError> {
        let (layers, hidden, heads, kv_heads, ffn, vocab, context) =
            match name.to_ascii_lowercase().as_str() {
                "tiny" => (2, 256, 4, 2, 512, 320, 512),
                "1b" => (16, 2048, 32, 8, 8192, 128_256, 8192),
                "8b" => (32, 4096, 32, 8, 14_336, 128_256, 8192),
                "70b" => (80, 8192, 64, 8, 28_672, 128_256, 8192),
                _ => {
                    return Err(SynthError::UnknownPreset {
                        name: name.to_string(),
                    })
                }
            };
        Ok(Self {
            arch,
            layers,
            hidden,
            heads,
            kv_heads,
            ffn,
            vocab,
            quant: GgmlType::Q4_0,
            seed: 0,
            context,
        })
    }

    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads.max(1)
    }

    /// Checks the shape is one llama.cpp (and this engine) can load, naming
    /// the first offending field and a nearby value that would work.
    pub fn validate(&self) -> Result<(), SynthError> {
        for (field, value) in [
            ("layers", self.layers),
            ("hidden", self.hidden),
            ("heads", self.heads),
            ("kv_heads", self.kv_heads),
            ("ffn", self.ffn),
            ("context", self.context),
        ] {
            if value == 0 {
                return Err(SynthError::Zero { field });
            }
        }
        if matches!(self.quant, GgmlType::Q8_1 | GgmlType::Q8K) {
            return Err(SynthError::NotAWeightType { quant: self.quant });
        }
        let block = self.quant.block_len();
        // Every constraint on hidden at once: whole heads, an even head
        // dimension (RoPE rotates pairs) and whole quant blocks.
        let hidden_step = lcm(2 * self.heads, block);
        if !self.hidden.is_multiple_of(self.heads) {
            return Err(SynthError::NotDivisible {
                field: "hidden",
                value: self.hidden,
                by_field: "heads",
                by: self.heads,
                fix_field: "hidden",
                suggestion: nearest_multiple(self.hidden, hidden_step),
            });
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(SynthError::NotDivisible {
                field: "heads",
                value: self.heads,
                by_field: "kv_heads",
                by: self.kv_heads,
                fix_field: "kv_heads",
                suggestion: nearest_divisor(self.heads, self.kv_heads),
            });
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(SynthError::OddHeadDim {
                head_dim: self.head_dim(),
                suggestion: nearest_multiple(self.hidden, hidden_step),
            });
        }
        for (field, value, step) in [
            ("hidden", self.hidden, hidden_step),
            ("ffn", self.ffn, block),
        ] {
            if !value.is_multiple_of(block) {
                return Err(SynthError::NotWholeBlocks {
                    field,
                    value,
                    quant: self.quant,
                    block,
                    suggestion: nearest_multiple(value, step),
                });
            }
        }
        if self.vocab < MIN_VOCAB {
            return Err(SynthError::VocabTooSmall {
                vocab: self.vocab,
                min: MIN_VOCAB,
            });
        }
        for (field, value) in [
            ("layers", self.layers),
            ("hidden", self.hidden),
            ("ffn", self.ffn),
            ("vocab", self.vocab),
            ("context", self.context),
        ] {
            // GGUF stores these as u32, as llama.cpp reads them.
            if u32::try_from(value).is_err() {
                return Err(SynthError::TooLarge { field, value });
            }
        }
        Ok(())
    }

    /// llama.cpp's `general.file_type` (`llama_ftype`) for a file whose
    /// matrices are all `quant`. K-quants map to their `_S` variants, the
    /// ones that use the one type throughout.
    pub fn file_type(&self) -> u32 {
        match self.quant {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q8_0 => 7,
            GgmlType::Q5_0 => 8,
            GgmlType::Q5_1 => 9,
            GgmlType::Q2K => 10,
            GgmlType::Q3K => 11,
            GgmlType::Q4K => 14,
            GgmlType::Q5K => 16,
            GgmlType::Q6K => 18,
            GgmlType::BF16 => 32,
            // Refused by `validate`; "guessed" is llama.cpp's own fallback.
            GgmlType::Q8_1 | GgmlType::Q8K => 1024,
        }
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a, b) * b
}

/// The positive multiple of `step` closest to `value` (ties round up).
fn nearest_multiple(value: usize, step: usize) -> usize {
    ((value + step / 2) / step).max(1) * step
}

/// The divisor of `n` closest to `want` (ties go to the larger: more KV heads
/// leave more ways to split attention across nodes).
fn nearest_divisor(n: usize, want: usize) -> usize {
    (1..=n)
        .filter(|&d| n.is_multiple_of(d))
        .min_by_key(|&d| (d.abs_diff(want), std::cmp::Reverse(d)))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_near_and_valid() {
        assert_eq!(nearest_multiple(100, 32), 96);
        assert_eq!(nearest_multiple(10, 32), 32);
        assert_eq!(nearest_multiple(112, 32), 128);
        assert_eq!(nearest_divisor(32, 7), 8);
        assert_eq!(nearest_divisor(9, 2), 3);
        assert_eq!(lcm(8, 256), 256);
        assert_eq!(lcm(24, 32), 96);
    }
}
