//! The command parser (`repl::command::parse`) on arbitrary text, one line
//! at a time through the same `"""` line assembler the shell uses.
//!
//! Invariants: a command parses the same with different surrounding
//! whitespace; a line that does not start with `:` is a prompt holding the
//! line; and a multi-line (`"""`) block is always a prompt, never a command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardlab_repl::lines::LineAssembler;
use shardlab_repl::{parse, Command};

fn check_line(line: &str) {
    let parsed = parse(line);
    if let Err(e) = &parsed {
        let _ = e.to_string();
    }
    let trimmed = line.trim();
    match &parsed {
        Ok(Command::Prompt(_)) | Ok(Command::Nothing) => {}
        other => {
            let padded = format!(" \t{trimmed} \r\n");
            assert_eq!(&parse(&padded), other, "whitespace changed {line:?}");
        }
    }
    if !trimmed.is_empty() && !trimmed.starts_with(':') && !trimmed.starts_with("\\:") {
        let want = line.trim_end_matches(['\n', '\r']).to_string();
        assert_eq!(parsed, Ok(Command::Prompt(want)), "{line:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check_line(&text);
    let mut assembler = LineAssembler::new();
    for line in text.lines() {
        let in_block = assembler.pending();
        let Some(input) = assembler.push(line) else {
            continue;
        };
        check_line(&input);
        if in_block && !input.trim().is_empty() {
            let parsed = parse(&input);
            assert!(
                matches!(parsed, Ok(Command::Prompt(_))),
                "a \"\"\" block became {parsed:?}: {input:?}"
            );
        }
    }
});
