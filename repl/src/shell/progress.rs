//! Per-node progress bars (bytes and MB/s) while weights stream to the
//! nodes. Interactive shell only: transcripts and scripts stay quiet.

use std::collections::HashMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use shardlab_engine::cluster::coordinator::LoadProgress;

const TEMPLATE: &str =
    "  {prefix:<28} [{bar:32}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} {msg}";

/// Draws one bar per node on stderr, created as nodes first report.
pub struct LoadBars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
    style: ProgressStyle,
}

impl LoadBars {
    pub fn new() -> Self {
        let style = ProgressStyle::with_template(TEMPLATE)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        LoadBars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
            style,
        }
    }

    pub fn update(&self, event: LoadProgress) {
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        match event {
            LoadProgress::Sending {
                node, sent, total, ..
            } => {
                let bar = bars.entry(node.clone()).or_insert_with(|| {
                    let b = self.multi.add(ProgressBar::new(total));
                    b.set_style(self.style.clone());
                    b.set_prefix(node.clone());
                    b
                });
                if total == 0 {
                    bar.set_message("shard cached on the node");
                }
                bar.set_length(total);
                bar.set_position(sent);
            }
            LoadProgress::Loaded { node, report } => {
                if let Some(bar) = bars.get(&node) {
                    bar.finish_with_message(if report.from_cache {
                        "loaded (from its cache)"
                    } else if report.from_local_file {
                        "loaded (its own copy)"
                    } else if report.local_file_miss.is_some() {
                        "loaded (streamed, not from its --model-dir)"
                    } else {
                        "loaded"
                    });
                }
            }
        }
    }

    /// Removes finished bars so the next load starts clean.
    pub fn clear(&self) {
        if let Ok(mut bars) = self.bars.lock() {
            bars.clear();
        }
        let _ = self.multi.clear();
    }
}

impl Default for LoadBars {
    fn default() -> Self {
        Self::new()
    }
}
