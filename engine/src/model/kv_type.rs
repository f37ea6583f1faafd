//! The precision the KV cache stores keys and values in.
//!
//! `F16` is the default, as in llama.cpp: half the bytes of `F32` and a
//! logit difference the tests bound. `Q8_0` stores each head's row as
//! llama.cpp's Q8_0 blocks (32 values: an f16 scale and 32 signed bytes,
//! 1.0625 bytes a value). Every layout stores the same values for the same
//! KV head (a block never spans two heads), so layouts still agree exactly
//! with one process at the same KV precision.

use serde::{Deserialize, Serialize};

/// Values per Q8_0 block.
pub const KV_Q8_BLOCK: usize = 32;
const KV_Q8_BLOCK_BYTES: usize = 2 + KV_Q8_BLOCK;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvType {
    F32,
    #[default]
    F16,
    Q8_0,
}

impl KvType {
    pub const ALL: [KvType; 3] = [KvType::F32, KvType::F16, KvType::Q8_0];

    pub fn name(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
        }
    }

    /// Bytes one cached row of `values` keys (or values) takes.
    pub fn row_bytes(self, values: usize) -> usize {
        match self {
            KvType::F32 => values * 4,
            KvType::F16 => values * 2,
            KvType::Q8_0 => values.div_ceil(KV_Q8_BLOCK) * KV_Q8_BLOCK_BYTES,
        }
    }

    /// Whether heads of `head_dim` values can be stored: Q8_0 blocks must
    /// not straddle two heads, because different nodes may own them.
    pub fn check_head_dim(self, head_dim: usize) -> Result<(), String> {
        if self == KvType::Q8_0 && !head_dim.is_multiple_of(KV_Q8_BLOCK) {
            return Err(format!(
                "a q8_0 KV cache needs a head size that is a multiple of {KV_Q8_BLOCK}; \
                 this model's is {head_dim} (use --kv f16)"
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for KvType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for KvType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let want = s.trim().to_ascii_lowercase();
        KvType::ALL
            .into_iter()
            .find(|k| k.name() == want || (want == "q8" && *k == KvType::Q8_0))
            .ok_or_else(|| format!("unknown KV cache precision '{s}' (expected f32, f16 or q8_0)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_are_named() {
        for k in KvType::ALL {
            assert_eq!(k.name().parse::<KvType>(), Ok(k));
        }
        assert_eq!("Q8".parse::<KvType>(), Ok(KvType::Q8_0));
        let err = "f8".parse::<KvType>().unwrap_err();
        assert!(err.contains("'f8'") && err.contains("q8_0"), "{err}");
    }

    #[test]
    fn row_bytes_per_precision() {
        assert_eq!(KvType::F32.row_bytes(64), 256);
        assert_eq!(KvType::F16.row_bytes(64), 128);
        assert_eq!(KvType::Q8_0.row_bytes(64), 68);
        assert!(KvType::Q8_0.check_head_dim(80).is_err());
        assert!(KvType::Q8_0.check_head_dim(128).is_ok());
        assert!(KvType::F16.check_head_dim(80).is_ok());
    }
}
