//! The line editor on a thread of its own, so that the session's thread
//! can run the server's turns (`:serve`) while the person types. The shell
//! asks for one line at a time, handing over the prompt, a pre-fill and
//! fresh completion candidates, and gets the line back over a channel.

use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::Editor;

use super::helper::ShellHelper;

/// What completion offers, refreshed after every command.
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    pub models: Vec<String>,
    pub addresses: Vec<String>,
    pub node_names: Vec<String>,
}

struct Request {
    prompt: &'static str,
    prefill: String,
    candidates: Candidates,
}

pub struct LineReader {
    requests: Sender<Request>,
    lines: Receiver<Result<String, ReadlineError>>,
}

impl LineReader {
    /// Moves `editor` to its own thread; lines typed that are not blank
    /// are added to the history and appended to `history`.
    pub fn start(
        mut editor: Editor<ShellHelper, FileHistory>,
        history: PathBuf,
    ) -> std::io::Result<Self> {
        let (requests, asked) = channel::<Request>();
        let (answer, lines) = channel();
        std::thread::Builder::new()
            .name("line-editor".into())
            .spawn(move || {
                while let Ok(request) = asked.recv() {
                    if let Some(h) = editor.helper_mut() {
                        h.models = request.candidates.models;
                        h.addresses = request.candidates.addresses;
                        h.node_names = request.candidates.node_names;
                    }
                    let read = editor.readline_with_initial(request.prompt, (&request.prefill, ""));
                    if let Ok(line) = &read {
                        if !line.trim().is_empty() {
                            let _ = editor.add_history_entry(line.as_str());
                            let _ = editor.append_history(&history);
                        }
                    }
                    if answer.send(read).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self { requests, lines })
    }

    /// The next line. While the person types, `idle` is called again and
    /// again with the longest it may take; once it returns `false` (nothing
    /// more to do meanwhile) this just waits for the line.
    pub fn read(
        &self,
        prompt: &'static str,
        prefill: String,
        candidates: Candidates,
        idle: &mut dyn FnMut(Duration) -> bool,
    ) -> Result<String, ReadlineError> {
        let gone = || ReadlineError::Io(std::io::Error::other("the line editor stopped"));
        self.requests
            .send(Request {
                prompt,
                prefill,
                candidates,
            })
            .map_err(|_| gone())?;
        // Short: a key press waits at most this long for a turn to end.
        let slice = Duration::from_millis(20);
        loop {
            match self.lines.recv_timeout(Duration::ZERO) {
                Ok(read) => return read,
                Err(RecvTimeoutError::Disconnected) => return Err(gone()),
                Err(RecvTimeoutError::Timeout) => {}
            }
            if !idle(slice) {
                return self.lines.recv().map_err(|_| gone())?;
            }
        }
    }
}
