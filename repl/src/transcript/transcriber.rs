//! Collects what one command printed (streamed text, notes, the rendered
//! output) as a transcript stores it: with placeholders when `masked`.

use crate::output::{text::render, Output, Rich};
use crate::session::Sink;

pub struct Transcriber {
    out: String,
    masked: bool,
}

impl Transcriber {
    pub fn new(masked: bool) -> Self {
        Transcriber {
            out: String::new(),
            masked,
        }
    }

    pub fn output(&mut self, output: &Output) {
        let rendered = render(output, self.masked);
        if !rendered.is_empty() {
            self.end_line();
            self.out.push_str(&rendered);
        }
    }

    /// Everything collected, ending in a newline unless empty.
    pub fn finish(mut self) -> String {
        self.end_line();
        self.out
    }

    fn end_line(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push('\n');
        }
    }
}

impl Sink for Transcriber {
    fn text(&mut self, piece: &str) {
        self.out.push_str(piece);
    }

    fn note(&mut self, line: &Rich) {
        self.end_line();
        self.out.push_str(&line.render(self.masked));
        self.out.push('\n');
    }
}
