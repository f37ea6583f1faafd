//! Transcripts: recorded sessions that replay as tests. `format` reads and
//! writes the file format (transcripts/README.md), `pattern` matches lines
//! with placeholders, `transcriber` renders a session's output the way a
//! transcript stores it, and `replay` runs a file and diffs or blesses it.

pub mod format;
pub mod pattern;
pub mod replay;
mod transcriber;

pub use transcriber::Transcriber;
