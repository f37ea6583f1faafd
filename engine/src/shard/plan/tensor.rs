//! Tensor parallelism within one group of nodes: who owns which Q heads,
//! FFN columns and vocabulary rows (docs/ARCHITECTURE.md, "Slicing rules").
//!
//! Heads come in contiguous ranges whose boundaries, times head_dim, fall on
//! block boundaries of `attn_output.weight` (its input dimension is cut,
//! row-parallel). While there are at least as many KV heads as nodes a GQA
//! group stays whole; beyond that Q heads are spread evenly and the KV heads
//! they read are replicated. The FFN is cut in whole blocks of
//! `ffn_down.weight` and sized so every node's weight bytes come out even.
//! The vocabulary is cut evenly (rows, any granularity). The expert layout,
//! whose nodes hold whole experts, replicates attention when its heads
//! cannot be split.

use std::ops::Range;

use super::apportion::{even_shares, level_shares, ranges, round_shares};
use super::error::PlanError;
use super::memory::weight_bytes;
use super::summary::{gcd, lcm, ModelSummary};
use crate::model::layout::LocalLayout;
use crate::model::weights::dense_ffn_names;

/// How a tensor group divides a mixture-of-experts layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpertSplit {
    /// Every node runs every expert on its share of each one's columns.
    Columns,
    /// Each node runs whole experts (the expert layout).
    Whole,
}

/// The layouts of `n` equally fast tensor-parallel nodes running `layers`;
/// `embed` and `head` say whether this group embeds tokens and computes
/// logits.
pub fn tensor_group(
    model: &ModelSummary,
    n: usize,
    layers: Range<usize>,
    embed: bool,
    head: bool,
    experts: ExpertSplit,
) -> Result<Vec<LocalLayout>, PlanError> {
    weighted_tensor_group(model, &vec![1.0; n], layers, embed, head, experts)
}

/// As [`tensor_group`], for nodes of relative speeds `speeds` (one per
/// node): heads, FFN columns, experts and vocabulary rows are shared in
/// proportion to speed, so the slower node gets less work.
pub fn weighted_tensor_group(
    model: &ModelSummary,
    speeds: &[f64],
    layers: Range<usize>,
    embed: bool,
    head: bool,
    experts: ExpertSplit,
) -> Result<Vec<LocalLayout>, PlanError> {
    let n = speeds.len();
    // Whole experts on each node need no split heads: when the blocks of
    // attn_output forbid one, every node computes all heads instead.
    let (heads, replicated_attention) = match (split_heads(model, speeds), experts) {
        (Ok(heads), _) => (heads, false),
        (Err(PlanError::HeadAlignment { .. }), ExpertSplit::Whole) if n > 1 => {
            (vec![0..model.config.n_heads; n], true)
        }
        (Err(e), _) => return Err(e),
    };
    let vocab = if head {
        ranges(&weighted_shares(model.config.vocab, speeds))
    } else {
        vec![0..0; n]
    };
    let moe = model.config.moe.as_ref();
    let base: Vec<LocalLayout> = heads
        .into_iter()
        .zip(vocab)
        .map(|(q_heads, vocab)| LocalLayout {
            layers: layers.clone(),
            q_heads,
            ffn: 0..0,
            experts: 0..0,
            expert_ffn: 0..moe.map_or(0, |m| m.expert_ffn),
            vocab,
            embed,
            head,
            replicated_attention,
        })
        .collect();
    // Experts first (the bulk of a MoE layer), then the dense FFN levels
    // what is left.
    let base = match (moe, experts) {
        (None, _) => base,
        (Some(_), ExpertSplit::Columns) => {
            let all = |l: &LocalLayout| LocalLayout {
                experts: 0..moe.map_or(0, |m| m.n_experts),
                ..l.clone()
            };
            let base: Vec<LocalLayout> = base.iter().map(all).collect();
            let cols = split_expert_ffn(model, &base, speeds)?;
            base.into_iter()
                .zip(cols)
                .map(|(l, expert_ffn)| LocalLayout { expert_ffn, ..l })
                .collect()
        }
        (Some(_), ExpertSplit::Whole) => {
            let owned = split_experts(model, &base, speeds)?;
            base.into_iter()
                .zip(owned)
                .map(|(l, experts)| LocalLayout { experts, ..l })
                .collect()
        }
    };
    let ffn = split_ffn(model, &base, speeds)?;
    Ok(base
        .into_iter()
        .zip(ffn)
        .map(|(layout, ffn)| LocalLayout { ffn, ..layout })
        .collect())
}

/// `total` units in proportion to `speeds`: evenly when the speeds are
/// equal (the first nodes get the extra unit), at least one each where
/// there are enough.
fn weighted_shares(total: usize, speeds: &[f64]) -> Vec<usize> {
    let n = speeds.len();
    if speeds.windows(2).all(|w| w[0] == w[1]) {
        return even_shares(total, n);
    }
    let ideal = level_shares(&vec![0.0; n], speeds, 1.0, total as f64);
    round_shares(&ideal, total, usize::from(total >= n))
}

/// Units of `unit_layout`'s extra bytes each node takes so weight bytes
/// over speed come out level: the node with the lighter rest, or the
/// faster one, takes more.
fn level_units(
    model: &ModelSummary,
    base: &[LocalLayout],
    speeds: &[f64],
    one_unit: impl Fn(&LocalLayout) -> LocalLayout,
    units: usize,
) -> Result<Vec<usize>, PlanError> {
    let n = base.len();
    let mut rest = Vec::with_capacity(n);
    for layout in base {
        rest.push(weight_bytes(model, layout)? as f64);
    }
    let cost = weight_bytes(model, &one_unit(&base[0]))? as f64 - rest[0];
    let ideal = level_shares(&rest, speeds, cost, units as f64);
    // A node may own none of a tensor narrower than one unit per node.
    let min = usize::from(units >= n);
    Ok(round_shares(&ideal, units, min))
}

/// Whole experts per node, contiguous, balanced by bytes (every expert of
/// a layer weighs the same, so by count where nothing else differs).
fn split_experts(
    model: &ModelSummary,
    base: &[LocalLayout],
    speeds: &[f64],
) -> Result<Vec<Range<usize>>, PlanError> {
    let n_experts = model.config.moe.as_ref().map_or(0, |m| m.n_experts);
    if base.len() <= 1 {
        return Ok(vec![0..n_experts; base.len()]);
    }
    let counts = level_units(
        model,
        base,
        speeds,
        |l| LocalLayout {
            experts: 0..1,
            ..l.clone()
        },
        n_experts,
    )?;
    Ok(ranges(&counts))
}

/// Columns of every expert's FFN per node, in whole blocks of
/// `ffn_down_exps`; when there are fewer blocks than nodes some own none.
fn split_expert_ffn(
    model: &ModelSummary,
    base: &[LocalLayout],
    speeds: &[f64],
) -> Result<Vec<Range<usize>>, PlanError> {
    let width = model.config.moe.as_ref().map_or(0, |m| m.expert_ffn);
    if base.len() <= 1 {
        return Ok(vec![0..width; base.len()]);
    }
    let moe_layers: Vec<usize> = (0..model.config.n_layers)
        .filter(|&l| model.config.is_moe_layer(l))
        .collect();
    let (block, dtype) = model.input_block_in("ffn_down_exps.weight", &moe_layers)?;
    if !width.is_multiple_of(block) {
        return Err(PlanError::FfnAlignment {
            tensor: "ffn_down_exps.weight".into(),
            dtype: dtype.name().to_string(),
            block,
            ffn: width,
        });
    }
    let none = |l: &LocalLayout| LocalLayout {
        expert_ffn: 0..0,
        ..l.clone()
    };
    let bare: Vec<LocalLayout> = base.iter().map(none).collect();
    let counts = level_units(
        model,
        &bare,
        speeds,
        |l| LocalLayout {
            expert_ffn: 0..block,
            ..l.clone()
        },
        width / block,
    )?;
    Ok(ranges(
        &counts.iter().map(|k| k * block).collect::<Vec<_>>(),
    ))
}

/// Contiguous Q-head ranges covering `0..n_heads`, one per node, in
/// proportion to the nodes' `speeds`.
pub fn split_heads(model: &ModelSummary, speeds: &[f64]) -> Result<Vec<Range<usize>>, PlanError> {
    let n = speeds.len();
    let c = &model.config;
    let heads = c.n_heads;
    let (block, dtype) = model.input_block("attn_output.weight")?;
    // The fewest heads whose width is a whole number of blocks.
    let unit = block / gcd(block, c.head_dim);
    let split = |unit: usize| -> Option<Vec<Range<usize>>> {
        let units = heads.div_ceil(unit);
        // Only more nodes than heads may leave a node without any.
        if units < n && n <= heads {
            return None;
        }
        let mut end_unit = 0;
        let mut start = 0;
        Some(
            weighted_shares(units, speeds)
                .into_iter()
                .map(|k| {
                    end_unit += k;
                    let end = (end_unit * unit).min(heads);
                    let r = start..end;
                    start = end;
                    r
                })
                .collect(),
        )
    };
    if n <= c.n_kv_heads {
        if let Some(r) = split(lcm(c.group_size(), unit)) {
            return Ok(r);
        }
    }
    split(unit).ok_or_else(|| PlanError::HeadAlignment {
        heads,
        nodes: n,
        tensor: "attn_output.weight".into(),
        dtype: dtype.name().to_string(),
        head_dim: c.head_dim,
        block,
        unit,
        max_nodes: heads.div_ceil(unit),
        moe: c.moe.is_some(),
    })
}

/// FFN column ranges for layouts that are complete except for `ffn`: whole
/// blocks, the node with the lighter rest taking more, so weight bytes come
/// out even to within one block's worth (largest-remainder rounding). A MoE
/// model's dense FFN is its shared expert and its dense layers, if any.
pub fn split_ffn(
    model: &ModelSummary,
    base: &[LocalLayout],
    speeds: &[f64],
) -> Result<Vec<Range<usize>>, PlanError> {
    let c = &model.config;
    let n = base.len();
    if n <= 1 {
        return Ok(vec![0..c.ffn; n]);
    }
    let dense_layers: Vec<usize> = (0..c.n_layers).filter(|&l| c.has_dense_ffn(l)).collect();
    if dense_layers.is_empty() {
        return Ok(vec![0..0; n]);
    }
    let down = dense_ffn_names(c, dense_layers[0])[2];
    let (block, dtype) = model.input_block_in(down, &dense_layers)?;
    if !c.ffn.is_multiple_of(block) {
        return Err(PlanError::FfnAlignment {
            tensor: down.into(),
            dtype: dtype.name().to_string(),
            block,
            ffn: c.ffn,
        });
    }
    let counts = level_units(
        model,
        base,
        speeds,
        |l| LocalLayout {
            ffn: 0..block,
            ..l.clone()
        },
        c.ffn / block,
    )?;
    Ok(ranges(
        &counts.iter().map(|k| k * block).collect::<Vec<_>>(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gguf::GgmlType;
    use crate::shard::plan::fixtures::{
        config, kquant_model, llama70b, qwen2_like, smollm2_summary,
    };

    /// Ranges are contiguous, in order, and cover `0..total` exactly.
    fn assert_cover(rs: &[Range<usize>], total: usize, what: &str) {
        let mut at = 0;
        for r in rs {
            assert_eq!(r.start, at, "{what}: {rs:?} has a gap or overlap");
            assert!(r.end >= r.start, "{what}: {rs:?}");
            at = r.end;
        }
        assert_eq!(at, total, "{what}: {rs:?} does not cover 0..{total}");
    }

    fn group(model: &ModelSummary, n: usize) -> Vec<LocalLayout> {
        tensor_group(
            model,
            n,
            0..model.config.n_layers,
            true,
            true,
            ExpertSplit::Columns,
        )
        .unwrap()
    }

    /// Bytes of one FFN block across every layer (gate, up and down).
    fn ffn_block_bytes(model: &ModelSummary) -> u64 {
        let c = &model.config;
        let (block, _) = model.input_block("ffn_down.weight").unwrap();
        (0..c.n_layers)
            .map(|l| {
                let t = |s: &str| {
                    model
                        .tensor(&format!("blk.{l}.{s}.weight"))
                        .unwrap()
                        .clone()
                };
                let (g, u, d) = (t("ffn_gate"), t("ffn_up"), t("ffn_down"));
                block as u64 * (g.row_bytes(g.cols) + u.row_bytes(u.cols))
                    + d.rows as u64 * d.row_bytes(block)
            })
            .sum()
    }

    #[test]
    fn every_split_covers_heads_ffn_and_vocab_once() {
        for model in [smollm2_summary(), qwen2_like(), kquant_model(), llama70b()] {
            let c = &model.config;
            let (ffn_block, _) = model.input_block("ffn_down.weight").unwrap();
            for n in 1..=8 {
                let ls = group(&model, n);
                let name = format!("{} over {n}", c.name);
                assert_eq!(ls.len(), n);
                assert_cover(
                    &ls.iter().map(|l| l.q_heads.clone()).collect::<Vec<_>>(),
                    c.n_heads,
                    &name,
                );
                assert_cover(
                    &ls.iter().map(|l| l.ffn.clone()).collect::<Vec<_>>(),
                    c.ffn,
                    &name,
                );
                assert_cover(
                    &ls.iter().map(|l| l.vocab.clone()).collect::<Vec<_>>(),
                    c.vocab,
                    &name,
                );
                for l in &ls {
                    assert_eq!(l.layers, 0..c.n_layers);
                    assert!(l.embed && l.head);
                    assert_eq!(l.ffn.start % ffn_block, 0, "{name}: {:?}", l.ffn);
                    assert!(!l.ffn.is_empty(), "{name}: a node without FFN columns");
                    if n <= c.n_heads {
                        assert!(!l.q_heads.is_empty(), "{name}: a node without heads");
                    }
                }
                if n <= c.n_kv_heads {
                    // Whole GQA groups: the KV ranges partition the KV heads.
                    let kv: Vec<_> = ls.iter().map(|l| l.kv_heads(c)).collect();
                    assert_cover(&kv, c.n_kv_heads, &name);
                    for l in &ls {
                        assert_eq!(l.q_heads.start % c.group_size(), 0, "{name}");
                    }
                }
            }
        }
    }

    #[test]
    fn smollm2_on_two_nodes_is_six_and_three_heads() {
        let model = smollm2_summary();
        let ls = group(&model, 2);
        assert_eq!(ls[0].q_heads, 0..6);
        assert_eq!(ls[1].q_heads, 6..9);
        assert_eq!(ls[0].kv_heads(&model.config), 0..2);
        assert_eq!(ls[1].kv_heads(&model.config), 2..3);
        assert!(ls[1].ffn.len() > ls[0].ffn.len(), "{:?}", ls);
        assert_eq!(ls[0].vocab, 0..24576);
    }

    #[test]
    fn weight_bytes_come_out_even_to_one_ffn_block() {
        for model in [smollm2_summary(), qwen2_like(), kquant_model(), llama70b()] {
            let slack = ffn_block_bytes(&model);
            for n in 2..=8 {
                let bytes: Vec<u64> = group(&model, n)
                    .iter()
                    .map(|l| weight_bytes(&model, l).unwrap())
                    .collect();
                let (lo, hi) = (bytes.iter().min().unwrap(), bytes.iter().max().unwrap());
                assert!(
                    hi - lo <= slack,
                    "{} over {n}: {bytes:?}, one block is {slack}",
                    model.config.name
                );
            }
        }
    }

    #[test]
    fn more_nodes_than_kv_heads_replicate_kv() {
        let model = smollm2_summary();
        let ls = group(&model, 4);
        let heads: Vec<_> = ls.iter().map(|l| l.q_heads.len()).collect();
        assert_eq!(heads, vec![3, 2, 2, 2]);
        let kv: Vec<_> = ls.iter().map(|l| l.kv_heads(&model.config)).collect();
        assert!(
            kv.windows(2).any(|w| w[0].end > w[1].start),
            "{kv:?} should overlap"
        );

        let q = qwen2_like();
        let ls = group(&q, 3);
        let heads: Vec<_> = ls.iter().map(|l| l.q_heads.clone()).collect();
        assert_eq!(heads, vec![0..5, 5..10, 10..14]);
        let kv: Vec<_> = ls.iter().map(|l| l.kv_heads(&q.config)).collect();
        assert_eq!(kv, vec![0..1, 0..2, 1..2]);
    }

    #[test]
    fn more_nodes_than_heads_leave_some_without_heads() {
        let model = smollm2_summary();
        let ls = group(&model, 10);
        assert_eq!(ls.iter().filter(|l| l.q_heads.is_empty()).count(), 1);
        assert_eq!(ls[9].kv_heads(&model.config), 0..0);
        // The headless node makes up for it in FFN columns.
        assert!(ls[9].ffn.len() > ls[0].ffn.len(), "{ls:?}");
    }

    #[test]
    fn k_quant_heads_fall_on_256_wide_blocks() {
        let model = kquant_model();
        let c = &model.config;
        for n in 1..=8 {
            for l in group(&model, n) {
                assert_eq!(
                    l.q_heads.start * c.head_dim % 256,
                    0,
                    "over {n}: {:?}",
                    l.q_heads
                );
                assert_eq!(l.ffn.start % 256, 0);
            }
        }
        // 32 heads, 8 KV heads (groups of 4), blocks of 4 heads: 3 nodes get 12+12+8.
        let heads: Vec<_> = group(&model, 3).iter().map(|l| l.q_heads.len()).collect();
        assert_eq!(heads, vec![12, 12, 8]);
    }

    #[test]
    fn impossible_head_alignment_is_a_clear_error() {
        // 8 heads of 64 in Q4_K: only 2 aligned units, so 3..=8 nodes cannot all get heads.
        let model = ModelSummary::synthetic(
            config("tiny-k", 2, 512, (8, 8, 64), 512, 1000, true),
            GgmlType::Q4K,
        );
        let err = tensor_group(&model, 3, 0..2, true, true, ExpertSplit::Columns)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot split 8 attention heads over 3 nodes")
                && err.contains("Q4_K")
                && err.contains("multiple of 256 (4 heads)")
                && err.contains("at most 2 nodes"),
            "{err}"
        );
        assert!(tensor_group(&model, 2, 0..2, true, true, ExpertSplit::Columns).is_ok());
    }

    #[test]
    fn grouped_split_falls_back_to_replication_when_blocks_demand_it() {
        // Groups of 7 heads cannot meet 4-head K-quant units, so 2 nodes
        // split 16+12 and share a KV head.
        let c = config("gqa7-k", 2, 1792, (28, 4, 64), 1024, 1000, true);
        let model = ModelSummary::synthetic(c, GgmlType::Q4K);
        let ls = tensor_group(&model, 2, 0..2, true, true, ExpertSplit::Columns).unwrap();
        assert_eq!(ls[0].q_heads, 0..16);
        assert_eq!(ls[1].q_heads, 16..28);
        assert_eq!(ls[0].kv_heads(&model.config), 0..3);
        assert_eq!(ls[1].kv_heads(&model.config), 2..4);
    }

    #[test]
    fn groups_without_head_hold_no_vocab() {
        let model = smollm2_summary();
        let ls = tensor_group(&model, 2, 0..10, true, false, ExpertSplit::Columns).unwrap();
        assert!(ls
            .iter()
            .all(|l| l.vocab.is_empty() && !l.head && l.layers == (0..10)));
    }
}
