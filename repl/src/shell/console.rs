//! Printing a command's results to a terminal or a plain stream: streamed
//! text as it comes, then the rendered output on a fresh line.

use std::io::Write;

use shardlab_engine::cluster::coordinator::LoadProgress;
use shardlab_engine::model::store::PullEvent;

use super::progress::LoadBars;
use crate::output::{text::render, Output, Rich};
use crate::session::Sink;

pub struct Console<'a> {
    out: &'a mut dyn Write,
    at_line_start: bool,
    bars: Option<LoadBarsFn>,
}

/// The bars and the closure the coordinator calls with progress.
struct LoadBarsFn {
    bars: std::sync::Arc<LoadBars>,
    call: Box<dyn Fn(LoadProgress) + Sync + Send>,
}

impl<'a> Console<'a> {
    /// `progress` draws per-node load bars on stderr.
    pub fn new(out: &'a mut dyn Write, progress: bool) -> Self {
        let bars = progress.then(|| {
            let bars = std::sync::Arc::new(LoadBars::new());
            let b = bars.clone();
            LoadBarsFn {
                bars,
                call: Box::new(move |e| b.update(e)),
            }
        });
        Console {
            out,
            at_line_start: true,
            bars,
        }
    }

    /// Prints `output` (real values, no placeholders) on a fresh line.
    pub fn finish(&mut self, output: &Output) {
        if let Some(b) = &self.bars {
            b.bars.clear();
        }
        let text = render(output, false);
        if !text.is_empty() {
            self.fresh_line();
            let _ = self.out.write_all(text.as_bytes());
            self.at_line_start = true;
        } else {
            self.fresh_line();
        }
        let _ = self.out.flush();
    }

    fn fresh_line(&mut self) {
        if !self.at_line_start {
            let _ = self.out.write_all(b"\n");
            self.at_line_start = true;
        }
    }
}

impl Sink for Console<'_> {
    fn text(&mut self, piece: &str) {
        if piece.is_empty() {
            return;
        }
        // A closed stdout (`| head`) is not worth failing a generation for.
        let _ = self.out.write_all(piece.as_bytes());
        let _ = self.out.flush();
        self.at_line_start = piece.ends_with('\n');
    }

    fn note(&mut self, line: &Rich) {
        self.fresh_line();
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
    }

    fn pull(&mut self, event: &PullEvent) {
        self.note(&Rich::from(event.to_string()));
    }

    fn load_progress(&self) -> Option<&(dyn Fn(LoadProgress) + Sync)> {
        self.bars
            .as_ref()
            .map(|b| b.call.as_ref() as &(dyn Fn(LoadProgress) + Sync))
    }
}
