//! Predicted speed as text: the lines under `:plan`'s table and the
//! figures `:plan best` ranks by. Every figure varies with the machine.

use shardlab_engine::shard::plan::speed::{SpeedPrediction, Workload};

use crate::output::text::{duration, rate};
use crate::output::{Rich, Varies};

/// "0.42 ms", "12.3 ms", "1.20 s": seconds per token, kept readable
/// below a millisecond, where tiny models decode.
pub fn per_token(seconds: f64) -> String {
    if seconds < 0.01 {
        format!("{:.2} ms", seconds * 1e3)
    } else if seconds < 1.0 {
        format!("{:.1} ms", seconds * 1e3)
    } else {
        duration(seconds)
    }
}

/// "64-token prompt, 64 generated" (", 4 in flight" when several).
pub fn workload(w: &Workload) -> String {
    let mut s = format!(
        "{}-token prompt, {} generated",
        w.prompt_tokens, w.gen_tokens
    );
    if w.in_flight > 1 {
        s.push_str(&format!(", {} in flight", w.in_flight));
    }
    s
}

/// `predicted speed (...): prefill R, decode R, first token T`.
pub fn summary(p: &SpeedPrediction) -> Rich {
    Rich::from(format!(
        "predicted speed ({}): prefill ",
        workload(&p.workload)
    ))
    .push_varies(Varies::Rate, rate(p.prefill_tok_s))
    .push(", decode ")
    .push_varies(Varies::Rate, rate(p.decode_tok_s))
    .push(", first token ")
    .push_varies(Varies::Time, duration(p.ttft))
}

/// Where a decoded token's time goes: each stage's compute, all-reduce and
/// hand-off, then the coordinator's part. Terms that are zero by the
/// layout's shape (no all-reduce on a one-node stage) are left out.
pub fn breakdown(p: &SpeedPrediction) -> Rich {
    let mut line = Rich::from("per decoded token:");
    let several = p.stages.len() > 1;
    for (i, st) in p.stages.iter().enumerate() {
        line = line.push(if i == 0 { " " } else { "; " });
        if several {
            line = line.push(format!("stage {i} "));
        }
        line = line
            .push("compute ")
            .push_varies(Varies::Time, per_token(st.decode_compute));
        for (name, s) in [
            ("all-reduce", st.decode_allreduce),
            ("hand-off", st.decode_hop),
        ] {
            if s > 0.0 {
                line = line
                    .push(format!(", {name} "))
                    .push_varies(Varies::Time, per_token(s));
            }
        }
    }
    if p.coordinator > 0.0 {
        line = line
            .push("; coordinator ")
            .push_varies(Varies::Time, per_token(p.coordinator));
    }
    line
}
