//! `:plan best`: every layout of the connected nodes, fastest first, with
//! the ones that do not fit last and why.

use shardlab_engine::orchestrator::report::{Objective, RankReport};

use super::speed::workload;
use super::Literals;
use crate::output::text::{duration, rate};
use crate::output::{Rich, Table, Varies};

pub fn rank(report: &RankReport, lits: &Literals) -> Table {
    let mut t = Table::new(&["rank", "layout", "fits", "decode", "prefill", "first token"]).titled(
        format!(
            "layouts by predicted {} speed ({})",
            report.objective,
            workload(&report.workload)
        ),
    );
    let best = report.best();
    for (i, row) in report.rows.iter().enumerate() {
        let winner = best == Some(&row.layout);
        let figures = match &row.prediction {
            Some(p) => [
                Rich::varies(Varies::Rate, rate(p.decode_tok_s)),
                Rich::varies(Varies::Rate, rate(p.prefill_tok_s)),
                Rich::varies(Varies::Time, duration(p.ttft)),
            ],
            None => ["-".into(), "-".into(), "-".into()],
        };
        let mut cells = vec![
            Rich::from(if winner {
                format!("* {}", i + 1)
            } else {
                (i + 1).to_string()
            }),
            row.layout.to_string().into(),
            match &row.refusal {
                None => "yes".into(),
                Some(r) => Rich::masking(&shorten(r), lits),
            },
        ];
        cells.extend(figures);
        t.row(cells);
    }
    let by = match report.objective {
        Objective::Decode => "decode tok/s",
        Objective::Prefill => "prefill tok/s",
    };
    match best {
        Some(l) => t.note(format!(
            "* = the fastest layout that fits, by predicted {by}: `:shard best` loads {l}"
        )),
        None => t.note("no layout fits: `:shard best` would refuse"),
    }
    t
}

/// The refusal without what follows its first "; " (the layout to try
/// instead, which this table already ranks). Cut at a clause, never at a
/// width, so a masked address cannot move where the cut falls.
fn shorten(refusal: &str) -> String {
    refusal
        .split("; ")
        .next()
        .unwrap_or(refusal)
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::shorten;

    #[test]
    fn refusals_keep_their_first_clause() {
        assert_eq!(
            shorten("node0 short by 5 MiB; try tensor"),
            "node0 short by 5 MiB"
        );
        assert_eq!(shorten("no suggestion"), "no suggestion");
    }
}
