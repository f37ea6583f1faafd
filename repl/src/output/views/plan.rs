//! `:plan`: one row per node with its share of the model and its predicted memory.

use shardlab_engine::orchestrator::report::PlanReport;

use super::{range, speed, Literals};
use crate::output::text::bytes;
use crate::output::{Rich, Table, Varies};

pub fn plan(report: &PlanReport, lits: &Literals) -> Table {
    let p = &report.plan;
    let mut t = Table::new(&[
        "node",
        "stage/rank",
        "layers",
        "Q heads",
        "KV heads",
        "FFN cols",
        "vocab",
        "weights",
        "KV cache",
        "other",
        "predicted",
        "budget",
        "decode/token",
    ])
    .titled(format!(
        "plan: {} over {} node{}, context {} tokens",
        p.request,
        p.nodes.len(),
        if p.nodes.len() == 1 { "" } else { "s" },
        p.context
    ));
    // The cache's precision beside its bytes: the column a user reads when
    // deciding whether `:set kv` would make it fit.
    t.headers[8] = format!("KV cache ({})", p.kv);
    let moe = p.nodes.iter().any(|np| !np.layout.experts.is_empty());
    if moe {
        t.headers.insert(6, "experts".into());
        t.headers.insert(7, "expert cols".into());
    }
    for (i, (np, row)) in p.nodes.iter().zip(&report.rows).enumerate() {
        let l = &np.layout;
        let m = &np.memory;
        let mut cells = vec![
            Rich::masking(&np.name, lits),
            format!("{}/{}", np.stage, np.rank).into(),
            range(&l.layers).into(),
            range(&l.q_heads).into(),
            range(&row.kv_heads).into(),
            range(&l.ffn).into(),
            range(&l.vocab).into(),
            bytes(m.weights).into(),
            bytes(m.kv_cache).into(),
            bytes(m.scratch + m.overhead).into(),
            bytes(m.total()).into(),
            if row.budget_fixed || np.budget_bytes == u64::MAX {
                bytes(np.budget_bytes).into()
            } else {
                Rich::varies(Varies::Bytes, bytes(np.budget_bytes))
            },
            match report.speed.as_ref().and_then(|s| s.node_decode.get(i)) {
                Some(&s) => Rich::varies(Varies::Time, speed::per_token(s)),
                None => "-".into(),
            },
        ];
        if moe {
            cells.insert(6, range(&l.experts).into());
            cells.insert(7, range(&l.expert_ffn).into());
        }
        t.row(cells);
    }
    if p.nodes.iter().any(|np| np.layout.replicated_attention) {
        t.note("attention replicated: its heads cannot be split on these blocks, so every node computes all of them and holds the whole KV cache");
    }
    t.note("other = prefill scratch + runtime; stage/rank = pipeline stage and place in its tensor group (all-reduce order); decode/token = predicted compute per decoded token");
    match (&report.speed, &report.speed_missing) {
        (Some(s), _) => {
            t.note(speed::summary(s));
            t.note(speed::breakdown(s));
        }
        (None, Some(why)) => {
            t.note(Rich::from("no speed prediction: ").append(Rich::masking(why, lits)))
        }
        (None, None) => {}
    }
    t
}
