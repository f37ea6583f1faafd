//! What the front end asks while a cell is being typed: completion (from
//! the shell's completer, which reads the command table), `:help` text
//! for the command under the cursor, and whether a cell is complete (an
//! open `"""` block is not).

use serde_json::{json, Value};
use shardlab_repl::command::lookup;
use shardlab_repl::lines::LineAssembler;
use shardlab_repl::shell::helper::ShellHelper;

/// The byte offset of code point `cursor` (Jupyter counts code points).
fn byte_offset(code: &str, cursor: usize) -> usize {
    code.char_indices()
        .nth(cursor)
        .map_or(code.len(), |(i, _)| i)
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

/// The line holding byte `pos`, and where it starts.
fn line_at(code: &str, pos: usize) -> (usize, &str) {
    let start = code[..pos].rfind('\n').map_or(0, |i| i + 1);
    let end = code[pos..].find('\n').map_or(code.len(), |i| pos + i);
    (start, &code[start..end])
}

/// complete_reply content.
pub fn complete(helper: &ShellHelper, code: &str, cursor: usize) -> Value {
    let pos = byte_offset(code, cursor);
    let (start, line) = line_at(code, pos);
    let (word_start, pairs) = helper.candidates(line, pos - start);
    let mut matches: Vec<String> = pairs
        .into_iter()
        .map(|p| p.replacement.trim_end().to_string())
        .collect();
    matches.dedup();
    json!({
        "status": "ok",
        "matches": matches,
        "cursor_start": chars(&code[..start + word_start]),
        "cursor_end": cursor,
        "metadata": {},
    })
}

/// inspect_reply content: the help of the command on the cursor's line.
pub fn inspect(code: &str, cursor: usize) -> Value {
    let pos = byte_offset(code, cursor);
    let (_, line) = line_at(code, pos);
    let name = line
        .trim_start()
        .strip_prefix(':')
        .and_then(|b| b.split_whitespace().next());
    match name.and_then(lookup) {
        Some(spec) => {
            let mut text = format!(":{} — {}\nusage: {}", spec.name, spec.summary, spec.usage);
            if !spec.help.is_empty() {
                text.push('\n');
                text.push_str(spec.help);
            }
            json!({"status": "ok", "found": true, "data": {"text/plain": text}, "metadata": {}})
        }
        None => json!({"status": "ok", "found": false, "data": {}, "metadata": {}}),
    }
}

/// Whether a cell's `"""` blocks are all closed.
pub fn cell_is_complete(code: &str) -> bool {
    let mut a = LineAssembler::new();
    for line in code.lines() {
        a.push(line);
    }
    !a.pending()
}

/// is_complete_reply content.
pub fn is_complete(code: &str) -> Value {
    if cell_is_complete(code) {
        json!({"status": "complete"})
    } else {
        json!({"status": "incomplete", "indent": ""})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_command_names_on_the_cursor_line() {
        let h = ShellHelper::new();
        let r = complete(&h, ":sh", 3);
        assert_eq!(r["matches"], json!([":shard"]));
        assert_eq!(
            (r["cursor_start"].clone(), r["cursor_end"].clone()),
            (json!(0), json!(3))
        );
        let code = "hello é\n:shard ten";
        let r = complete(&h, code, chars(code));
        assert_eq!(r["matches"], json!(["tensor"]), "{r}");
        assert_eq!(r["cursor_start"], json!(chars("hello é\n:shard ")));
    }

    #[test]
    fn inspect_gives_help_and_blocks_make_cells_incomplete() {
        let r = inspect(":connect local 2", 4);
        assert_eq!(r["found"], true);
        assert!(r["data"]["text/plain"]
            .as_str()
            .unwrap()
            .contains("usage: :connect"));
        assert_eq!(inspect("just a prompt", 2)["found"], false);
        assert!(cell_is_complete(":nodes\n\"\"\"\nhi\n\"\"\""));
        assert_eq!(is_complete("\"\"\"\nstill open")["status"], "incomplete");
    }
}
