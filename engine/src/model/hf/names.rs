//! Tensor names: Hugging Face (`model.layers.3.self_attn.q_proj.weight`)
//! to GGUF (`blk.3.attn_q.weight`) and back. The forward pass and
//! [`crate::model::weights::tensor_plan`] speak GGUF names only, so every
//! HF tensor is renamed once, at load.
//!
//! Mixture-of-experts checkpoints store one tensor per expert
//! (`model.layers.3.mlp.experts.7.up_proj.weight`); GGUF stacks them into
//! one 3-D tensor per layer, experts outermost (`blk.3.ffn_up_exps.weight`).
//! Those map to a GGUF name plus an expert index. Qwen and Mixtral name the
//! MoE block differently, so going back to HF needs [`MoeNames`].

use crate::model::config::Arch;
/// Whole-model tensors: (HF name, GGUF name).
const GLOBAL: [(&str, &str); 3] = [
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
];

/// Per-layer tensors: (suffix after `model.layers.N.`, suffix after `blk.N.`).
const LAYER: [(&str, &str); 15] = [
    ("input_layernorm.weight", "attn_norm.weight"),
    ("self_attn.q_proj.weight", "attn_q.weight"),
    ("self_attn.k_proj.weight", "attn_k.weight"),
    ("self_attn.v_proj.weight", "attn_v.weight"),
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("self_attn.q_proj.bias", "attn_q.bias"),
    ("self_attn.k_proj.bias", "attn_k.bias"),
    ("self_attn.v_proj.bias", "attn_v.bias"),
    ("self_attn.o_proj.bias", "attn_output.bias"),
    ("self_attn.q_norm.weight", "attn_q_norm.weight"),
    ("self_attn.k_norm.weight", "attn_k_norm.weight"),
    ("post_attention_layernorm.weight", "ffn_norm.weight"),
    ("mlp.gate_proj.weight", "ffn_gate.weight"),
    ("mlp.up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
];

/// Qwen MoE blocks (qwen2_moe, qwen3_moe): the router, and qwen2_moe's
/// shared expert with its scalar gate.
const QWEN_MOE_LAYER: [(&str, &str); 5] = [
    ("mlp.gate.weight", "ffn_gate_inp.weight"),
    (
        "mlp.shared_expert.gate_proj.weight",
        "ffn_gate_shexp.weight",
    ),
    ("mlp.shared_expert.up_proj.weight", "ffn_up_shexp.weight"),
    (
        "mlp.shared_expert.down_proj.weight",
        "ffn_down_shexp.weight",
    ),
    ("mlp.shared_expert_gate.weight", "ffn_gate_inp_shexp.weight"),
];

/// Mixtral's router.
const MIXTRAL_LAYER: [(&str, &str); 1] = [("block_sparse_moe.gate.weight", "ffn_gate_inp.weight")];

/// Per-expert tensors: (suffix after `{prefix}E.`, stacked suffix after `blk.N.`).
const QWEN_EXPERTS: (&str, [(&str, &str); 3]) = (
    "mlp.experts.",
    [
        ("gate_proj.weight", "ffn_gate_exps.weight"),
        ("up_proj.weight", "ffn_up_exps.weight"),
        ("down_proj.weight", "ffn_down_exps.weight"),
    ],
);

/// Mixtral: `w1` is the gate, `w3` the up and `w2` the down projection.
const MIXTRAL_EXPERTS: (&str, [(&str, &str); 3]) = (
    "block_sparse_moe.experts.",
    [
        ("w1.weight", "ffn_gate_exps.weight"),
        ("w3.weight", "ffn_up_exps.weight"),
        ("w2.weight", "ffn_down_exps.weight"),
    ],
);

const HF_LAYER_PREFIX: &str = "model.layers.";
const GGUF_LAYER_PREFIX: &str = "blk.";

/// How a family names its MoE tensors in Hugging Face checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoeNames {
    /// `mlp.gate`, `mlp.experts.E.{gate,up,down}_proj`, `mlp.shared_expert*`.
    Qwen,
    /// `block_sparse_moe.gate`, `block_sparse_moe.experts.E.{w1,w3,w2}`.
    Mixtral,
}

impl MoeNames {
    /// Llama with experts is Mixtral; every other MoE arch is a Qwen one.
    pub fn for_arch(arch: Arch) -> Self {
        match arch {
            Arch::Llama => Self::Mixtral,
            _ => Self::Qwen,
        }
    }

    fn layer(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Qwen => &QWEN_MOE_LAYER,
            Self::Mixtral => &MIXTRAL_LAYER,
        }
    }

    fn experts(self) -> (&'static str, [(&'static str, &'static str); 3]) {
        match self {
            Self::Qwen => QWEN_EXPERTS,
            Self::Mixtral => MIXTRAL_EXPERTS,
        }
    }
}

const ALL_MOE_NAMES: [MoeNames; 2] = [MoeNames::Qwen, MoeNames::Mixtral];

/// Splits `{prefix}{N}.{rest}` into (N, rest). `N` must be written canonically
/// (no sign, no leading zeros) so that the mapping is one-to-one.
fn split_layer<'a>(name: &'a str, prefix: &str) -> Option<(usize, &'a str)> {
    let rest = name.strip_prefix(prefix)?;
    let (num, suffix) = rest.split_once('.')?;
    let n: usize = num.parse().ok()?;
    (n.to_string() == num).then_some((n, suffix))
}

/// The GGUF name for a Hugging Face tensor name, or `None` for tensors the
/// engine does not use and for per-expert tensors (see
/// [`hf_expert_name_to_gguf`]). Qwen and Mixtral MoE names are both known.
pub fn hf_name_to_gguf(name: &str) -> Option<String> {
    if let Some((_, g)) = GLOBAL.iter().find(|(h, _)| *h == name) {
        return Some((*g).to_string());
    }
    let (layer, suffix) = split_layer(name, HF_LAYER_PREFIX)?;
    let (_, g) = LAYER
        .iter()
        .chain(QWEN_MOE_LAYER.iter())
        .chain(MIXTRAL_LAYER.iter())
        .find(|(h, _)| *h == suffix)?;
    Some(format!("{GGUF_LAYER_PREFIX}{layer}.{g}"))
}

/// For one expert's tensor (`model.layers.N.mlp.experts.E.up_proj.weight`,
/// `model.layers.N.block_sparse_moe.experts.E.w3.weight`), the stacked GGUF
/// tensor it is part of (`blk.N.ffn_up_exps.weight`) and the expert `E`.
pub fn hf_expert_name_to_gguf(name: &str) -> Option<(String, usize)> {
    let (layer, suffix) = split_layer(name, HF_LAYER_PREFIX)?;
    ALL_MOE_NAMES.iter().find_map(|names| {
        let (prefix, table) = names.experts();
        let (expert, rest) = split_layer(suffix, prefix)?;
        let (_, g) = table.iter().find(|(h, _)| *h == rest)?;
        Some((format!("{GGUF_LAYER_PREFIX}{layer}.{g}"), expert))
    })
}

/// The Hugging Face name for a GGUF tensor name, or `None` when HF has no
/// counterpart (such as `rope_freqs.weight`) and for stacked expert tensors
/// (see [`gguf_expert_name_to_hf`]). `moe` picks the MoE block's names.
pub fn gguf_name_to_hf(name: &str, moe: MoeNames) -> Option<String> {
    if let Some((h, _)) = GLOBAL.iter().find(|(_, g)| *g == name) {
        return Some((*h).to_string());
    }
    let (layer, suffix) = split_layer(name, GGUF_LAYER_PREFIX)?;
    let (h, _) = LAYER
        .iter()
        .chain(moe.layer().iter())
        .find(|(_, g)| *g == suffix)?;
    Some(format!("{HF_LAYER_PREFIX}{layer}.{h}"))
}

/// Whether `name` is a stacked expert tensor (`blk.N.ffn_*_exps.weight`).
pub fn is_gguf_expert_name(name: &str) -> bool {
    split_layer(name, GGUF_LAYER_PREFIX)
        .is_some_and(|(_, suffix)| QWEN_EXPERTS.1.iter().any(|(_, g)| *g == suffix))
}

/// The Hugging Face name of expert `expert` of a stacked GGUF tensor.
pub fn gguf_expert_name_to_hf(name: &str, expert: usize, moe: MoeNames) -> Option<String> {
    let (layer, suffix) = split_layer(name, GGUF_LAYER_PREFIX)?;
    let (prefix, table) = moe.experts();
    let (h, _) = table.iter().find(|(_, g)| *g == suffix)?;
    Some(format!("{HF_LAYER_PREFIX}{layer}.{prefix}{expert}.{h}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_names_the_forward_pass_needs() {
        let cases = [
            ("model.embed_tokens.weight", "token_embd.weight"),
            ("model.norm.weight", "output_norm.weight"),
            ("lm_head.weight", "output.weight"),
            (
                "model.layers.0.self_attn.q_proj.weight",
                "blk.0.attn_q.weight",
            ),
            (
                "model.layers.29.self_attn.o_proj.weight",
                "blk.29.attn_output.weight",
            ),
            ("model.layers.7.self_attn.k_proj.bias", "blk.7.attn_k.bias"),
            (
                "model.layers.3.self_attn.q_norm.weight",
                "blk.3.attn_q_norm.weight",
            ),
            (
                "model.layers.3.input_layernorm.weight",
                "blk.3.attn_norm.weight",
            ),
            (
                "model.layers.12.post_attention_layernorm.weight",
                "blk.12.ffn_norm.weight",
            ),
            (
                "model.layers.1.mlp.gate_proj.weight",
                "blk.1.ffn_gate.weight",
            ),
            ("model.layers.1.mlp.up_proj.weight", "blk.1.ffn_up.weight"),
            (
                "model.layers.1.mlp.down_proj.weight",
                "blk.1.ffn_down.weight",
            ),
        ];
        for (hf, gguf) in cases {
            assert_eq!(hf_name_to_gguf(hf).as_deref(), Some(gguf), "{hf}");
            for moe in ALL_MOE_NAMES {
                assert_eq!(gguf_name_to_hf(gguf, moe).as_deref(), Some(hf), "{gguf}");
            }
        }
    }

    #[test]
    fn maps_qwen_moe_names_both_ways() {
        let cases = [
            (
                "model.layers.2.mlp.gate.weight",
                "blk.2.ffn_gate_inp.weight",
            ),
            (
                "model.layers.2.mlp.shared_expert.gate_proj.weight",
                "blk.2.ffn_gate_shexp.weight",
            ),
            (
                "model.layers.2.mlp.shared_expert.up_proj.weight",
                "blk.2.ffn_up_shexp.weight",
            ),
            (
                "model.layers.2.mlp.shared_expert.down_proj.weight",
                "blk.2.ffn_down_shexp.weight",
            ),
            (
                "model.layers.2.mlp.shared_expert_gate.weight",
                "blk.2.ffn_gate_inp_shexp.weight",
            ),
        ];
        for (hf, gguf) in cases {
            assert_eq!(hf_name_to_gguf(hf).as_deref(), Some(gguf), "{hf}");
            assert_eq!(
                gguf_name_to_hf(gguf, MoeNames::Qwen).as_deref(),
                Some(hf),
                "{gguf}"
            );
            assert_eq!(hf_expert_name_to_gguf(hf), None, "{hf}");
        }
        let experts = [
            (
                "model.layers.0.mlp.experts.0.gate_proj.weight",
                "blk.0.ffn_gate_exps.weight",
                0,
            ),
            (
                "model.layers.11.mlp.experts.127.up_proj.weight",
                "blk.11.ffn_up_exps.weight",
                127,
            ),
            (
                "model.layers.3.mlp.experts.5.down_proj.weight",
                "blk.3.ffn_down_exps.weight",
                5,
            ),
        ];
        for (hf, gguf, e) in experts {
            assert_eq!(
                hf_expert_name_to_gguf(hf),
                Some((gguf.to_string(), e)),
                "{hf}"
            );
            assert_eq!(hf_name_to_gguf(hf), None, "{hf}");
            assert!(is_gguf_expert_name(gguf));
            assert_eq!(
                gguf_expert_name_to_hf(gguf, e, MoeNames::Qwen).as_deref(),
                Some(hf)
            );
            assert_eq!(gguf_name_to_hf(gguf, MoeNames::Qwen), None);
        }
    }

    #[test]
    fn maps_mixtral_moe_names_both_ways() {
        assert_eq!(
            hf_name_to_gguf("model.layers.31.block_sparse_moe.gate.weight").as_deref(),
            Some("blk.31.ffn_gate_inp.weight")
        );
        assert_eq!(
            gguf_name_to_hf("blk.31.ffn_gate_inp.weight", MoeNames::Mixtral).as_deref(),
            Some("model.layers.31.block_sparse_moe.gate.weight")
        );
        // w1 is the gate, w3 the up and w2 the down projection.
        let experts = [
            ("w1", "ffn_gate_exps"),
            ("w3", "ffn_up_exps"),
            ("w2", "ffn_down_exps"),
        ];
        for (w, g) in experts {
            let hf = format!("model.layers.4.block_sparse_moe.experts.6.{w}.weight");
            let gguf = format!("blk.4.{g}.weight");
            assert_eq!(hf_expert_name_to_gguf(&hf), Some((gguf.clone(), 6)), "{hf}");
            assert_eq!(
                gguf_expert_name_to_hf(&gguf, 6, MoeNames::Mixtral).as_deref(),
                Some(hf.as_str())
            );
        }
        // Mixtral has no shared expert.
        assert_eq!(
            gguf_name_to_hf("blk.0.ffn_gate_shexp.weight", MoeNames::Mixtral),
            None
        );
        assert_eq!(MoeNames::for_arch(Arch::Llama), MoeNames::Mixtral);
        assert_eq!(MoeNames::for_arch(Arch::Qwen2Moe), MoeNames::Qwen);
        assert_eq!(MoeNames::for_arch(Arch::Qwen3Moe), MoeNames::Qwen);
    }

    #[test]
    fn unknown_and_non_canonical_names_map_to_nothing() {
        for name in [
            "model.layers.01.mlp.up_proj.weight",
            "model.layers.+1.mlp.up_proj.weight",
            "model.layers.x.mlp.up_proj.weight",
            "model.layers.1.mlp.fc1.weight",
            "model.embed_tokens.bias",
            "vision_tower.weight",
            "model.layers.1.mlp.experts.01.up_proj.weight",
            "model.layers.1.mlp.experts.x.up_proj.weight",
            "model.layers.1.mlp.experts.1.w1.weight",
            "model.layers.1.block_sparse_moe.experts.1.up_proj.weight",
            "model.layers.1.mlp.experts.1.up_proj.bias",
        ] {
            assert_eq!(hf_name_to_gguf(name), None, "{name}");
            assert_eq!(hf_expert_name_to_gguf(name), None, "{name}");
        }
        for moe in ALL_MOE_NAMES {
            assert_eq!(gguf_name_to_hf("rope_freqs.weight", moe), None);
            assert_eq!(gguf_name_to_hf("blk.1.ffn_gate_exps.weight", moe), None);
            assert_eq!(
                gguf_expert_name_to_hf("blk.1.ffn_gate.weight", 0, moe),
                None
            );
        }
        assert!(!is_gguf_expert_name("blk.1.ffn_gate.weight"));
        assert!(!is_gguf_expert_name("ffn_gate_exps.weight"));
    }
}
