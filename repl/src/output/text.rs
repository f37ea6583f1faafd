//! The plain-text renderer: what the shell prints, and (with `masked`) the
//! form transcripts store, where measured values become placeholders.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table as Comfy};
use shardlab_engine::model::generate::StopReason;

use super::{BarChart, BarKind, Fragment, GenerationReport, Output, Rich, Table, Varies};

/// Width of a `:trace` timeline in characters.
pub const BAR_WIDTH: usize = 48;

/// Renders `output` as lines of text ending in a newline (empty for
/// [`Output::Empty`]). With `masked`, measured values print as placeholders.
pub fn render(output: &Output, masked: bool) -> String {
    let mut out = String::new();
    render_into(output, masked, &mut out);
    out
}

fn render_into(output: &Output, masked: bool, out: &mut String) {
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    match output {
        Output::Empty | Output::Quit => {}
        Output::Text(t) => line(t.render(masked)),
        Output::Error(t) => line(format!("error: {}", t.render(masked))),
        Output::Table(t) => line(table(t, masked)),
        Output::Generation(g) => line(summary(g).render(masked)),
        Output::Bars(b) => line(bars(b, masked)),
        Output::Report(r) => render_into(&r.view, masked, out),
        Output::Many(parts) => {
            for p in parts {
                render_into(p, masked, out);
            }
        }
    }
}

fn table(t: &Table, masked: bool) -> String {
    let mut c = Comfy::new();
    c.load_preset(UTF8_FULL_CONDENSED);
    c.set_header(t.headers.clone());
    for row in &t.rows {
        c.add_row(row.iter().map(|r| Cell::new(r.render(masked))));
    }
    for (i, numeric) in numeric_columns(t).into_iter().enumerate() {
        if let (true, Some(col)) = (numeric, c.column_mut(i)) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut s = String::new();
    if let Some(title) = &t.title {
        s.push_str(&title.render(masked));
        s.push('\n');
    }
    s.push_str(&c.to_string());
    for n in &t.notes {
        s.push('\n');
        s.push_str(&n.render(masked));
    }
    s
}

/// Columns whose every cell is a measured number or starts with a digit
/// are right-aligned. Decided from the cells' kinds, so that a transcript's
/// placeholders line up the same way the values do.
fn numeric_columns(t: &Table) -> Vec<bool> {
    (0..t.headers.len())
        .map(|i| {
            let mut any = false;
            let all = t.rows.iter().all(|row| match row.get(i) {
                None => true,
                Some(cell) => {
                    let numeric = match cell.0.first() {
                        None => true,
                        Some(Fragment::Varies(k, _)) => {
                            !matches!(k, Varies::Addr | Varies::Path | Varies::Any | Varies::Bars)
                        }
                        Some(Fragment::Fixed(s)) => {
                            s == "-" || s.starts_with(|c: char| c.is_ascii_digit())
                        }
                    };
                    any |= !cell.0.is_empty();
                    numeric
                }
            });
            all && any
        })
        .collect()
}

/// The one line under a generation: tokens, rates, time to first token.
pub fn summary(g: &GenerationReport) -> Rich {
    let s = &g.stats;
    let mut r = Rich::from(format!("[{} tokens", s.generated_tokens));
    if s.reused_tokens > 0 {
        r = r.push(format!(", {} prompt tokens reused", s.reused_tokens));
    }
    r = r
        .push(" · prefill ")
        .push_varies(Varies::Rate, rate(s.prefill_tokens_per_second()))
        .push(" · decode ")
        .push_varies(Varies::Rate, rate(s.decode_tokens_per_second()))
        .push(" · TTFT ")
        .push_varies(Varies::Time, duration(s.time_to_first_token));
    if let Some(layout) = &g.layout {
        r = r.push(format!(" · {layout}"));
    }
    r.push(format!(" · {}]", stop_name(s.stop)))
}

pub fn stop_name(stop: StopReason) -> &'static str {
    match stop {
        StopReason::Eos => "end of text",
        StopReason::StopString => "stop string",
        StopReason::MaxTokens => "max_tokens reached",
        StopReason::ContextFull => "context full",
        StopReason::Cancelled => "cancelled",
    }
}

fn bars(b: &BarChart, masked: bool) -> String {
    let labels: Vec<String> = b.rows.iter().map(|r| r.label.render(masked)).collect();
    let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let mut s = b.title.render(masked);
    for (row, label) in b.rows.iter().zip(&labels) {
        let drawn = if masked {
            Varies::Bars.placeholder()
        } else {
            draw(&row.segments, b.span, BAR_WIDTH)
        };
        s.push_str(&format!("\n{label:<width$} │{drawn}│"));
    }
    s.push_str("\n█ compute  ▒ wait  ▶ send  ◀ receive");
    let experts = b.rows.iter().flat_map(|r| &r.segments);
    if experts.into_iter().any(|seg| seg.kind == BarKind::Expert) {
        s.push_str("  ▓ experts");
    }
    for n in &b.notes {
        s.push('\n');
        s.push_str(&n.render(masked));
    }
    s
}

fn glyph(kind: BarKind) -> char {
    match kind {
        BarKind::Compute => '█',
        BarKind::Expert => '▓',
        BarKind::Wait => '▒',
        BarKind::Send => '▶',
        BarKind::Receive => '◀',
    }
}

/// One timeline of `width` cells over `span` seconds; each cell shows the
/// kind that covers most of it, blank where nothing does.
pub fn draw(segments: &[super::BarSegment], span: f64, width: usize) -> String {
    if span <= 0.0 || width == 0 {
        return " ".repeat(width);
    }
    let cell = span / width as f64;
    (0..width)
        .map(|i| {
            let (a, b) = (i as f64 * cell, (i + 1) as f64 * cell);
            segments
                .iter()
                .map(|s| {
                    let overlap = (s.start + s.seconds).min(b) - s.start.max(a);
                    (overlap, s.kind)
                })
                .filter(|(o, _)| *o > 0.0)
                .max_by(|x, y| x.0.total_cmp(&y.0))
                .map_or(' ', |(_, k)| glyph(k))
        })
        .collect()
}

/// "12.3 tok/s".
pub fn rate(per_second: f64) -> String {
    format!("{per_second:.1} tok/s")
}

/// "850 µs", "85 ms", "1.20 s".
pub fn duration(seconds: f64) -> String {
    if seconds < 1e-3 {
        format!("{:.0} µs", seconds * 1e6)
    } else if seconds < 1.0 {
        format!("{:.0} ms", seconds * 1e3)
    } else {
        format!("{seconds:.2} s")
    }
}

/// "96.3 MiB".
pub fn bytes(n: u64) -> String {
    let n = n as f64;
    if n >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", n / (1u64 << 30) as f64)
    } else if n >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", n / (1u64 << 20) as f64)
    } else if n >= 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::super::BarSegment;
    use super::*;

    #[test]
    fn tables_align_measured_columns_the_same_masked_or_not() {
        let mut t = Table::new(&["node", "rtt"]);
        t.row(vec!["node0".into(), Rich::varies(Varies::Time, "120 µs")]);
        t.row(vec!["node1".into(), Rich::varies(Varies::Time, "95 µs")]);
        assert_eq!(numeric_columns(&t), vec![false, true]);
        let masked = render(&Output::Table(t.clone()), true);
        assert!(masked.contains("node0 ┆ {time} │"), "{masked}");
        let plain = render(&Output::Table(t), false);
        assert!(plain.contains("┆  95 µs │"), "{plain}");
    }

    #[test]
    fn timelines_show_the_dominant_kind_per_cell() {
        let segs = [
            BarSegment {
                kind: BarKind::Compute,
                start: 0.0,
                seconds: 0.5,
            },
            BarSegment {
                kind: BarKind::Wait,
                start: 0.5,
                seconds: 0.25,
            },
        ];
        assert_eq!(draw(&segs, 1.0, 8), "████▒▒  ");
        assert_eq!(draw(&segs, 0.0, 3), "   ");
    }

    #[test]
    fn units_read_naturally() {
        assert_eq!(duration(0.000_85), "850 µs");
        assert_eq!(duration(0.085), "85 ms");
        assert_eq!(duration(1.2), "1.20 s");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 19), "1.5 MiB");
        assert_eq!(bytes(3 << 30), "3.00 GiB");
    }

    #[test]
    fn errors_are_prefixed_and_many_renders_in_order() {
        let o = Output::text("a").then(Output::error("b"));
        assert_eq!(render(&o, false), "a\nerror: b\n");
        assert!(o.is_error());
    }
}
