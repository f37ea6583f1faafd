//! Tensor names: Hugging Face (`model.layers.3.self_attn.q_proj.weight`)
//! to GGUF (`blk.3.attn_q.weight`) and back. The forward pass and
//! [`crate::model::weights::tensor_plan`] speak GGUF names only, so every
//! HF tensor is renamed once, at load.

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

const HF_LAYER_PREFIX: &str = "model.layers.";
const GGUF_LAYER_PREFIX: &str = "blk.";

/// Splits `{prefix}{N}.{rest}` into (N, rest). `N` must be written canonically
/// (no sign, no leading zeros) so that the mapping is one-to-one.
fn split_layer<'a>(name: &'a str, prefix: &str) -> Option<(usize, &'a str)> {
    let rest = name.strip_prefix(prefix)?;
    let (num, suffix) = rest.split_once('.')?;
    let n: usize = num.parse().ok()?;
    (n.to_string() == num).then_some((n, suffix))
}

/// The GGUF name for a Hugging Face tensor name, or `None` for tensors the
/// engine does not use.
pub fn hf_name_to_gguf(name: &str) -> Option<String> {
    if let Some((_, g)) = GLOBAL.iter().find(|(h, _)| *h == name) {
        return Some((*g).to_string());
    }
    let (layer, suffix) = split_layer(name, HF_LAYER_PREFIX)?;
    let (_, g) = LAYER.iter().find(|(h, _)| *h == suffix)?;
    Some(format!("{GGUF_LAYER_PREFIX}{layer}.{g}"))
}

/// The Hugging Face name for a GGUF tensor name, or `None` when HF has no
/// counterpart (such as `rope_freqs.weight`).
pub fn gguf_name_to_hf(name: &str) -> Option<String> {
    if let Some((h, _)) = GLOBAL.iter().find(|(_, g)| *g == name) {
        return Some((*h).to_string());
    }
    let (layer, suffix) = split_layer(name, GGUF_LAYER_PREFIX)?;
    let (h, _) = LAYER.iter().find(|(_, g)| *g == suffix)?;
    Some(format!("{HF_LAYER_PREFIX}{layer}.{h}"))
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
            assert_eq!(gguf_name_to_hf(gguf).as_deref(), Some(hf), "{gguf}");
        }
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
        ] {
            assert_eq!(hf_name_to_gguf(name), None, "{name}");
        }
        assert_eq!(gguf_name_to_hf("rope_freqs.weight"), None);
        assert_eq!(gguf_name_to_hf("blk.1.ffn_gate_exps.weight"), None);
    }
}
