//! What a synthetic model looks like: architecture, shape, quantization, seed;
//! the named presets; and the checks that make a shape loadable.

use crate::model::gguf::GgmlType;

use super::vocab::MIN_VOCAB;
use super::SynthError;

/// llama.cpp's `LLAMA_MAX_EXPERTS` (in the pinned release; older ones allowed 256).
pub const MAX_EXPERTS: usize = 1024;

/// The layer wirings `synth` can write, named as llama.cpp names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SynthArch {
    /// Llama 3; with experts, Mixtral (llama.cpp has no separate arch for it).
    Llama,
    /// Llama plus biases on the Q, K and V projections.
    Qwen2,
    /// Llama plus RMS norms on each head's queries and keys.
    Qwen3,
    /// Qwen1.5-MoE / Qwen2-57B-A14B: qwen2 attention, routed experts (top-k
    /// softmax weights used as they are) plus a sigmoid-gated shared expert.
    Qwen2Moe,
    /// Qwen3-30B-A3B: qwen3 attention, routed experts, top-k weights renormalised.
    Qwen3Moe,
}

impl SynthArch {
    pub const ALL: [SynthArch; 5] = [
        Self::Llama,
        Self::Qwen2,
        Self::Qwen3,
        Self::Qwen2Moe,
        Self::Qwen3Moe,
    ];

    /// The architectures whose layers can all be dense.
    pub const DENSE: [SynthArch; 3] = [Self::Llama, Self::Qwen2, Self::Qwen3];

    /// The `general.architecture` value and metadata key prefix.
    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
            Self::Qwen2Moe => "qwen2moe",
            Self::Qwen3Moe => "qwen3moe",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// Llama 3 and Qwen 2/3 (and their MoE models) use these RoPE bases.
    pub fn rope_freq_base(self) -> f32 {
        match self {
            Self::Llama => 500_000.0,
            Self::Qwen2 | Self::Qwen3 | Self::Qwen2Moe | Self::Qwen3Moe => 1_000_000.0,
        }
    }

    pub fn rms_norm_eps(self) -> f32 {
        match self {
            Self::Llama => 1e-5,
            Self::Qwen2 | Self::Qwen3 | Self::Qwen2Moe | Self::Qwen3Moe => 1e-6,
        }
    }

    /// Every layer routes to experts: llama.cpp refuses the file without them.
    pub fn requires_experts(self) -> bool {
        matches!(self, Self::Qwen2Moe | Self::Qwen3Moe)
    }

    /// The architecture a model of this family with experts is written as:
    /// llama stays llama (Mixtral), qwen2 and qwen3 have MoE siblings.
    pub fn with_experts(self) -> Self {
        match self {
            Self::Qwen2 | Self::Qwen2Moe => Self::Qwen2Moe,
            Self::Qwen3 | Self::Qwen3Moe => Self::Qwen3Moe,
            Self::Llama => Self::Llama,
        }
    }

    /// Biases on the Q, K and V projections.
    pub fn has_attn_bias(self) -> bool {
        matches!(self, Self::Qwen2 | Self::Qwen2Moe)
    }

    /// RMS norms on each head's queries and keys.
    pub fn has_qk_norm(self) -> bool {
        matches!(self, Self::Qwen3 | Self::Qwen3Moe)
    }

    /// llama.cpp sizes the Q projection and attention output of these as
    /// `hidden x hidden`, so heads x head_dim must equal hidden.
    fn q_dim_is_hidden(self) -> bool {
        matches!(self, Self::Qwen2 | Self::Qwen2Moe)
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
    /// Width of the dense FFN. A model with `moe` has none: then this is
    /// unused, and `{arch}.feed_forward_length` is derived (see
    /// [`SynthOptions::feed_forward_length`]).
    pub ffn: usize,
    pub vocab: usize,
    /// The type of every matrix, the token embedding and output head included;
    /// norms, biases and expert routers stay F32 as llama.cpp's converters
    /// (and llama-quantize) leave them.
    pub quant: GgmlType,
    pub seed: u64,
    pub context: usize,
    /// Dimension of one attention head; `None` is `hidden / heads`. Qwen3 MoE
    /// models have wider heads than that (30B-A3B: 32 x 128 on hidden 2048).
    pub head_dim: Option<usize>,
    /// Experts in every layer instead of a dense FFN.
    pub moe: Option<SynthMoe>,
}

/// The mixture-of-experts part of a synthetic model: every layer routes each
/// token to `experts_used` of `experts` FFNs of width `expert_ffn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthMoe {
    pub experts: usize,
    pub experts_used: usize,
    pub expert_ffn: usize,
    /// Width of qwen2moe's shared expert; `None` is 4 x `expert_ffn`, the
    /// ratio of Qwen1.5-MoE-A2.7B (1408 and 5632). Only qwen2moe has one.
    pub shared_ffn: Option<usize>,
}

impl SynthMoe {
    /// The shared expert's width when `shared_ffn` is not given.
    pub const SHARED_FFN_FACTOR: usize = 4;
}

/// Preset names: dense ones smallest first, then mixture-of-experts ones.
pub const PRESETS: [&str; 8] = [
    "tiny",
    "1b",
    "8b",
    "70b",
    "moe-tiny",
    "moe-small",
    "7b-a1b",
    "30b-a3b",
];

/// The presets with experts; they default to qwen3moe.
pub const MOE_PRESETS: [&str; 4] = ["moe-tiny", "moe-small", "7b-a1b", "30b-a3b"];

/// The architecture a preset is written as when none is asked for: qwen3moe
/// for the mixture-of-experts presets, llama for the rest (and for names
/// that are not presets, which [`SynthOptions::preset`] then refuses).
pub fn default_arch(preset: &str) -> SynthArch {
    if is_moe_preset(preset) {
        SynthArch::Qwen3Moe
    } else {
        SynthArch::Llama
    }
}

pub fn is_moe_preset(name: &str) -> bool {
    MOE_PRESETS.iter().any(|p| p.eq_ignore_ascii_case(name))
}

impl SynthOptions {
    /// A named shape in Q4_0 with seed 0. `tiny` and `moe-tiny` are for tests
    /// (milliseconds to write); their dimensions are multiples of 256 so
    /// every quant type, K-quants included, is valid for them. `1b`, `8b` and
    /// `70b` are Llama 3.2 1B, Llama 3 8B and Llama 3 70B; the Qwen
    /// architectures take the same shapes so scaling runs compare like with
    /// like. `moe-small` (32 experts, 57 MB at Q4_0, a second to write) is
    /// a mixture of experts whose weights, not the runtime, decide whether
    /// it fits: for transcripts and notebooks. `7b-a1b` is OLMoE-1B-7B's
    /// shape and `30b-a3b` Qwen3-30B-A3B's.
    ///
    /// The MoE presets need an arch with experts: qwen2moe, qwen3moe, or
    /// llama (which with experts is Mixtral). qwen2 and qwen3 are refused
    /// with the MoE arch to use instead, and a MoE arch with a dense preset
    /// is refused by [`validate`](Self::validate) unless experts are added.
    pub fn preset(arch: SynthArch, name: &str) -> Result<Self, SynthError> {
        let lower = name.to_ascii_lowercase();
        // (layers, hidden, heads, kv_heads, ffn, vocab, context)
        let dense = match lower.as_str() {
            "tiny" => Some((2, 256, 4, 2, 512, 320, 512)),
            "1b" => Some((16, 2048, 32, 8, 8192, 128_256, 8192)),
            "8b" => Some((32, 4096, 32, 8, 14_336, 128_256, 8192)),
            "70b" => Some((80, 8192, 64, 8, 28_672, 128_256, 8192)),
            _ => None,
        };
        if let Some((layers, hidden, heads, kv_heads, ffn, vocab, context)) = dense {
            return Ok(Self {
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
                head_dim: None,
                moe: None,
            });
        }
        // (layers, hidden, heads, kv_heads, head_dim, experts, used, expert_ffn, vocab, context)
        let (layers, hidden, heads, kv_heads, head_dim, experts, used, expert_ffn, vocab, context) =
            match lower.as_str() {
                "moe-tiny" => (2, 256, 4, 2, None, 8, 2, 256, 320, 512),
                "moe-small" => (4, 512, 8, 4, None, 32, 4, 512, 320, 2048),
                "7b-a1b" => (16, 2048, 16, 16, None, 64, 8, 1024, 50_304, 4096),
                "30b-a3b" => (48, 2048, 32, 4, Some(128), 128, 8, 768, 151_936, 40_960),
                _ => {
                    return Err(SynthError::UnknownPreset {
                        name: name.to_string(),
                    })
                }
            };
        if !arch.requires_experts() && arch != SynthArch::Llama {
            return Err(SynthError::DenseArchWithExperts {
                arch,
                moe_arch: arch.with_experts(),
            });
        }
        Ok(Self {
            arch,
            layers,
            hidden,
            heads,
            kv_heads,
            ffn: expert_ffn,
            vocab,
            quant: GgmlType::Q4_0,
            seed: 0,
            context,
            head_dim,
            moe: Some(SynthMoe {
                experts,
                experts_used: used,
                expert_ffn,
                shared_ffn: None,
            }),
        })
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden / self.heads.max(1))
    }

    /// Width of the query projection (and the attention output's input).
    pub fn q_dim(&self) -> usize {
        self.heads * self.head_dim()
    }

    /// Whether the head dimension differs from `hidden / heads`, so the file
    /// must say so (`{arch}.attention.key_length`).
    pub fn head_dim_is_explicit(&self) -> bool {
        self.q_dim() != self.hidden
    }

    /// qwen2moe's shared expert width; `None` for every other model.
    pub fn shared_ffn(&self) -> Option<usize> {
        match (&self.moe, self.arch) {
            (Some(m), SynthArch::Qwen2Moe) => Some(
                m.shared_ffn
                    .unwrap_or(m.expert_ffn * SynthMoe::SHARED_FFN_FACTOR),
            ),
            _ => None,
        }
    }

    /// `{arch}.feed_forward_length` as llama.cpp and the real models' GGUF
    /// files have it: the dense width; for Mixtral the expert width (that is
    /// where llama.cpp reads it from); for qwen2moe the shared expert's
    /// (Hugging Face `intermediate_size`); for qwen3moe experts_used x
    /// expert_ffn (`intermediate_size` of both Qwen3 MoE releases, and the
    /// inverse of llama.cpp's fallback `n_ff / n_expert_used`).
    pub fn feed_forward_length(&self) -> usize {
        match &self.moe {
            None => self.ffn,
            Some(m) => match self.arch {
                SynthArch::Qwen2Moe => self.shared_ffn().unwrap_or(m.expert_ffn),
                SynthArch::Qwen3Moe => m.experts_used * m.expert_ffn,
                _ => m.expert_ffn,
            },
        }
    }

    /// Checks the shape is one llama.cpp (and this engine) can load, naming
    /// the first offending field and a nearby value that would work.
    pub fn validate(&self) -> Result<(), SynthError> {
        for (field, value) in [
            ("layers", self.layers),
            ("hidden", self.hidden),
            ("heads", self.heads),
            ("kv_heads", self.kv_heads),
            ("context", self.context),
        ] {
            if value == 0 {
                return Err(SynthError::Zero { field });
            }
        }
        if self.moe.is_none() && self.ffn == 0 {
            return Err(SynthError::Zero { field: "ffn" });
        }
        if self.head_dim == Some(0) {
            return Err(SynthError::Zero { field: "head_dim" });
        }
        if matches!(self.quant, GgmlType::Q8_1 | GgmlType::Q8K) {
            return Err(SynthError::NotAWeightType { quant: self.quant });
        }
        let block = self.quant.block_len();
        // Every constraint on hidden at once when it sets the head dimension:
        // whole heads, an even head dimension (RoPE rotates pairs) and whole
        // quant blocks. With an explicit head dimension, only whole blocks.
        let hidden_step = match self.head_dim {
            None => lcm(2 * self.heads, block),
            Some(_) => block,
        };
        if self.head_dim.is_none() && !self.hidden.is_multiple_of(self.heads) {
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
        let head_dim = self.head_dim();
        if !head_dim.is_multiple_of(2) {
            let (fix_field, suggestion) = match self.head_dim {
                None => ("hidden", nearest_multiple(self.hidden, hidden_step)),
                Some(d) => ("head_dim", nearest_multiple(d, 2)),
            };
            return Err(SynthError::OddHeadDim {
                head_dim,
                fix_field,
                suggestion,
            });
        }
        if self.head_dim.is_some() {
            if self.arch.q_dim_is_hidden() && self.q_dim() != self.hidden {
                return Err(SynthError::QDimNotHidden {
                    arch: self.arch,
                    heads: self.heads,
                    head_dim,
                    hidden: self.hidden,
                });
            }
            if !self.q_dim().is_multiple_of(block) {
                // The attention output's rows are heads x head_dim values.
                let step = lcm(2, block / gcd(self.heads, block));
                return Err(SynthError::QDimNotWholeBlocks {
                    heads: self.heads,
                    head_dim,
                    quant: self.quant,
                    block,
                    suggestion: nearest_multiple(head_dim, step),
                });
            }
        }
        let mut widths = vec![("hidden", self.hidden, hidden_step)];
        if self.moe.is_none() {
            widths.push(("ffn", self.ffn, block));
        }
        self.validate_moe(&mut widths)?;
        for (field, value, step) in widths {
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
        let moe = self.moe.unwrap_or(SynthMoe {
            experts: 0,
            experts_used: 0,
            expert_ffn: 0,
            shared_ffn: None,
        });
        for (field, value) in [
            ("layers", self.layers),
            ("hidden", self.hidden),
            ("ffn", self.feed_forward_length()),
            ("vocab", self.vocab),
            ("context", self.context),
            ("head_dim", head_dim),
            ("expert_ffn", moe.expert_ffn),
            ("shared_ffn", self.shared_ffn().unwrap_or(0)),
        ] {
            // GGUF stores these as u32, as llama.cpp reads them.
            if u32::try_from(value).is_err() {
                return Err(SynthError::TooLarge { field, value });
            }
        }
        Ok(())
    }

    /// The expert counts, and which arch may have experts; adds the widths
    /// that must be whole quant blocks to `widths`.
    fn validate_moe(
        &self,
        widths: &mut Vec<(&'static str, usize, usize)>,
    ) -> Result<(), SynthError> {
        let block = self.quant.block_len();
        let Some(m) = &self.moe else {
            if self.arch.requires_experts() {
                return Err(SynthError::ExpertsRequired { arch: self.arch });
            }
            return Ok(());
        };
        if self.arch.with_experts() != self.arch {
            return Err(SynthError::DenseArchWithExperts {
                arch: self.arch,
                moe_arch: self.arch.with_experts(),
            });
        }
        for (field, value) in [
            ("experts", m.experts),
            ("experts_used", m.experts_used),
            ("expert_ffn", m.expert_ffn),
            ("shared_ffn", m.shared_ffn.unwrap_or(1)),
        ] {
            if value == 0 {
                return Err(SynthError::Zero { field });
            }
        }
        if m.experts_used > m.experts {
            return Err(SynthError::TooManyExpertsUsed {
                used: m.experts_used,
                experts: m.experts,
            });
        }
        if m.experts > MAX_EXPERTS {
            return Err(SynthError::TooManyExperts {
                experts: m.experts,
                max: MAX_EXPERTS,
            });
        }
        if m.shared_ffn.is_some() && self.arch != SynthArch::Qwen2Moe {
            return Err(SynthError::NoSharedExpert { arch: self.arch });
        }
        widths.push(("expert_ffn", m.expert_ffn, block));
        if let Some(shared) = self.shared_ffn() {
            widths.push(("shared_ffn", shared, block));
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
