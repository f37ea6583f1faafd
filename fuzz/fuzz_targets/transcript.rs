//! The transcript parser (`repl::transcript::format`) on arbitrary text.
//! A transcript that parses is written back by `to_text` and parses again
//! to the same header, inputs and expected output. Each entry's command
//! goes through the command parser, and each expected line is compiled as
//! a placeholder pattern and matched against its neighbours.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardlab_repl::transcript::format::{parse, Transcript};
use shardlab_repl::transcript::pattern::LinePattern;

/// Each entry's input and expected lines.
type Entries = Vec<(Vec<String>, Vec<String>)>;

/// What a rewrite keeps: line numbers may move (trailing blank output lines
/// are dropped), the content may not.
fn content(t: &Transcript) -> (Vec<String>, Entries) {
    let entries = t
        .entries
        .iter()
        .map(|e| (e.input.clone(), e.expected.clone()))
        .collect();
    (t.header.clone(), entries)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = parse(text) else {
        return;
    };
    let again = t.to_text();
    let back = match parse(&again) {
        Ok(b) => b,
        Err(e) => panic!("to_text output does not parse: {e}\n{again}"),
    };
    assert_eq!(
        content(&back),
        content(&t),
        "rewrite changed the transcript"
    );
    let mut previous = String::new();
    for e in &t.entries {
        let _ = shardlab_repl::parse(&e.command());
        for line in &e.expected {
            let p = LinePattern::new(line);
            assert!(p.matches(line), "a line must match itself: {line:?}");
            let _ = p.matches(&previous);
            previous.clone_from(line);
        }
    }
});
