//! `:help`: printed from the command table, like everything else about
//! the commands.

use crate::command::{lookup, COMMANDS};
use crate::output::{Output, Table};

pub fn help(name: Option<&str>) -> Output {
    if let Some(spec) = name.and_then(lookup) {
        let mut text = format!(":{} — {}\nusage: {}", spec.name, spec.summary, spec.usage);
        if !spec.aliases.is_empty() {
            let a: Vec<String> = spec.aliases.iter().map(|a| format!(":{a}")).collect();
            text.push_str(&format!("\nalso: {}", a.join(", ")));
        }
        if !spec.help.is_empty() {
            text.push('\n');
            text.push_str(spec.help);
        }
        return Output::text(text);
    }
    let mut t = Table::new(&["command", "what it does"]);
    for spec in COMMANDS.iter().filter(|c| !c.debug) {
        t.row(vec![format!(":{}", spec.name).into(), spec.summary.into()]);
    }
    t.note("Any other line is a prompt; a line of \"\"\" starts and ends a multi-line one.");
    t.note("Debugging (local clusters): :kill NODE. `:help COMMAND` for details.");
    Output::Table(t)
}
