//! What the front end asks while a cell is being typed: completion (from
//! the shell's completer, which reads the command table), `:help` text
//! for the command under the cursor, and whether a cell is complete (an
//! open `"""` block is not).

use jupyter_protocol::{
    CompleteReply, InspectReply, IsCompleteReply, Media, MediaType, ReplyStatus,
};
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
pub fn complete(helper: &ShellHelper, code: &str, cursor: usize) -> CompleteReply {
    let pos = byte_offset(code, cursor);
    let (start, line) = line_at(code, pos);
    let (word_start, pairs) = helper.candidates(line, pos - start);
    let mut matches: Vec<String> = pairs
        .into_iter()
        .map(|p| p.replacement.trim_end().to_string())
        .collect();
    matches.dedup();
    CompleteReply {
        status: ReplyStatus::Ok,
        matches,
        cursor_start: chars(&code[..start + word_start]),
        cursor_end: cursor,
        metadata: Default::default(),
        error: None,
    }
}

/// inspect_reply content: the help of the command on the cursor's line.
pub fn inspect(code: &str, cursor: usize) -> InspectReply {
    let pos = byte_offset(code, cursor);
    let (_, line) = line_at(code, pos);
    let name = line
        .trim_start()
        .strip_prefix(':')
        .and_then(|b| b.split_whitespace().next());
    let Some(spec) = name.and_then(lookup) else {
        return InspectReply::default();
    };
    let mut text = format!(":{} — {}\nusage: {}", spec.name, spec.summary, spec.usage);
    if !spec.help.is_empty() {
        text.push('\n');
        text.push_str(spec.help);
    }
    InspectReply {
        found: true,
        data: Media::new(vec![MediaType::Plain(text)]),
        ..InspectReply::default()
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
pub fn is_complete(code: &str) -> IsCompleteReply {
    if cell_is_complete(code) {
        IsCompleteReply::complete()
    } else {
        IsCompleteReply::incomplete(String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jupyter_protocol::IsCompleteReplyStatus;

    #[test]
    fn completes_command_names_on_the_cursor_line() {
        let h = ShellHelper::new();
        let r = complete(&h, ":sh", 3);
        assert_eq!(r.matches, vec![":shard".to_string()]);
        assert_eq!((r.cursor_start, r.cursor_end), (0, 3));
        let code = "hello é\n:shard ten";
        let r = complete(&h, code, chars(code));
        assert_eq!(r.matches, vec!["tensor".to_string()], "{r:?}");
        assert_eq!(r.cursor_start, chars("hello é\n:shard "));
    }

    #[test]
    fn inspect_gives_help_and_blocks_make_cells_incomplete() {
        let r = inspect(":connect local 2", 4);
        assert!(r.found);
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["data"]["text/plain"]
            .as_str()
            .unwrap()
            .contains("usage: :connect"));
        assert_eq!(json["status"], "ok");
        assert!(!inspect("just a prompt", 2).found);
        assert!(cell_is_complete(":nodes\n\"\"\"\nhi\n\"\"\""));
        assert_eq!(
            is_complete("\"\"\"\nstill open").status,
            IsCompleteReplyStatus::Incomplete
        );
        assert_eq!(is_complete(":help").status, IsCompleteReplyStatus::Complete);
    }
}
