//! text/html for tables: what a notebook shows for `:stats`, `:nodes`,
//! `:plan`, `:bench` and `:help`.

use shardlab_repl::output::{Rich, Table};

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn cell(r: &Rich) -> String {
    escape(&r.render(false))
}

/// A `<table>` with the title as caption and the notes under it.
pub fn table(t: &Table) -> String {
    let mut s = String::from("<div class=\"shardlab\"><table>");
    if let Some(title) = &t.title {
        s.push_str(&format!(
            "<caption style=\"text-align:left\">{}</caption>",
            cell(title)
        ));
    }
    s.push_str("<thead><tr>");
    for h in &t.headers {
        s.push_str(&format!("<th>{}</th>", escape(h)));
    }
    s.push_str("</tr></thead><tbody>");
    for row in &t.rows {
        s.push_str("<tr>");
        for c in row {
            s.push_str(&format!("<td>{}</td>", cell(c)));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    for n in &t.notes {
        s.push_str(&format!("<p>{}</p>", cell(n)));
    }
    s.push_str("</div>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardlab_repl::output::Varies;

    #[test]
    fn tables_are_escaped_html_with_real_values() {
        let mut t = Table::new(&["node", "RSS"]).titled("stats <tensor>");
        t.row(vec![
            "node0".into(),
            Rich::varies(Varies::Bytes, "12.0 MiB"),
        ]);
        t.note("a & b");
        let h = table(&t);
        assert!(h.starts_with("<div class=\"shardlab\"><table>"), "{h}");
        assert!(h.contains("<caption style=\"text-align:left\">stats &lt;tensor&gt;</caption>"));
        assert!(h.contains("<th>node</th><th>RSS</th>"));
        assert!(h.contains("<td>node0</td><td>12.0 MiB</td>"), "{h}");
        assert!(h.contains("<p>a &amp; b</p>"));
    }
}
