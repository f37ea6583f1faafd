//! The thread that owns the [`Session`] and runs cells: a cell runs line
//! by line (a `"""` block is one prompt), generated text streams out as it
//! comes, each command's output goes out as display_data, and the first
//! failing command stops the cell with an error, as an exception would.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shardlab_repl::lines::LineAssembler;
use shardlab_repl::output::Rich;
use shardlab_repl::{Output, Session, Sink};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;

use crate::display::{show, Shown};
use crate::wire::Message;

/// Sends iopub messages (the iopub task signs and publishes them).
#[derive(Clone)]
pub struct Publisher {
    pub tx: UnboundedSender<Message>,
    pub session_id: String,
}

impl Publisher {
    pub fn publish(&self, parent: &Message, msg_type: &str, content: Value) {
        // The receiver only goes away when the kernel is shutting down.
        let _ = self
            .tx
            .send(parent.publish(&self.session_id, msg_type, content));
    }

    pub fn status(&self, parent: &Message, state: &str) {
        self.publish(parent, "status", json!({ "execution_state": state }));
    }
}

/// One cell to run; `done` gets the execute_reply content.
pub struct Job {
    pub request: Message,
    pub execution_count: u64,
    pub done: oneshot::Sender<Value>,
}

/// Why a cell stopped early.
#[derive(Debug, Clone, PartialEq)]
pub struct CellError {
    pub ename: String,
    pub evalue: String,
    pub traceback: Vec<String>,
}

impl CellError {
    fn content(&self) -> Value {
        json!({"ename": self.ename, "evalue": self.evalue, "traceback": self.traceback})
    }
}

/// Runs jobs until the sending side closes, then releases the nodes.
pub fn serve(mut session: Session, jobs: Receiver<Job>, publisher: Publisher) {
    let cancel = session.cancel_flag();
    while let Ok(job) = jobs.recv() {
        let code = job.request.content["code"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let silent = job.request.content["silent"].as_bool().unwrap_or(false);
        if !silent {
            publisher.publish(
                &job.request,
                "execute_input",
                json!({"code": code, "execution_count": job.execution_count}),
            );
        }
        let mut out = |msg_type: &str, content: Value| {
            if !silent {
                publisher.publish(&job.request, msg_type, content);
            }
        };
        let reply = match run_cell(&mut session, &code, &cancel, &mut out) {
            Ok(()) => json!({
                "status": "ok",
                "execution_count": job.execution_count,
                "user_expressions": {},
                "payload": [],
            }),
            Err(e) => {
                out("error", e.content());
                let mut r = e.content();
                r["status"] = "error".into();
                r["execution_count"] = job.execution_count.into();
                r
            }
        };
        // The shell task waits for this unless the kernel is going away.
        let _ = job.done.send(reply);
    }
    session.shutdown();
}

/// How long generated text may wait before it is sent: tokens go out in
/// small batches rather than one message each.
const STREAM_EVERY: Duration = Duration::from_millis(100);

/// Streams text to the cell's stdout as it is generated.
struct StreamSink<'a> {
    out: &'a mut dyn FnMut(&str, Value),
    pending: String,
    last_sent: Instant,
    /// Whether the last text written did not end a line.
    open_line: bool,
}

impl<'a> StreamSink<'a> {
    fn new(out: &'a mut dyn FnMut(&str, Value)) -> Self {
        StreamSink {
            out,
            pending: String::new(),
            last_sent: Instant::now(),
            open_line: false,
        }
    }

    fn write(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.open_line = !text.ends_with('\n');
        self.pending.push_str(text);
        if self.last_sent.elapsed() >= STREAM_EVERY {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            let text = std::mem::take(&mut self.pending);
            (self.out)("stream", json!({"name": "stdout", "text": text}));
        }
        self.last_sent = Instant::now();
    }

    /// Ends an unfinished line and sends what is pending.
    fn finish(&mut self) {
        if self.open_line {
            self.write("\n");
        }
        self.flush();
    }
}

impl Sink for StreamSink<'_> {
    fn text(&mut self, piece: &str) {
        self.write(piece);
    }
    fn note(&mut self, line: &Rich) {
        self.finish();
        self.write(&format!("{}\n", line.render(false)));
        self.flush();
    }
}

/// Runs one cell's commands in order; `out` gets (msg_type, content) for
/// each iopub message.
pub fn run_cell(
    session: &mut Session,
    code: &str,
    cancel: &Arc<AtomicBool>,
    out: &mut dyn FnMut(&str, Value),
) -> Result<(), CellError> {
    // An interrupt that came while nothing ran must not stop this cell.
    cancel.store(false, Ordering::SeqCst);
    let mut lines = LineAssembler::new();
    let mut started = 0;
    for (n, line) in code.lines().enumerate() {
        if !lines.pending() {
            started = n + 1;
        }
        let Some(input) = lines.push(line) else {
            continue;
        };
        let output = {
            let mut sink = StreamSink::new(&mut *out);
            let output = session.exec_line(&input, &mut sink);
            sink.finish();
            output
        };
        for shown in show(&output) {
            match shown {
                Shown::Data(data) => out(
                    "display_data",
                    json!({"data": data, "metadata": {}, "transient": {}}),
                ),
                Shown::Error(message) => {
                    return Err(CellError {
                        ename: "CommandError".into(),
                        evalue: message.clone(),
                        traceback: vec![
                            format!("line {started}: {}", first_line(&input)),
                            format!("error: {message}"),
                        ],
                    })
                }
            }
        }
        if cancel.swap(false, Ordering::SeqCst) {
            return Err(CellError {
                ename: "Interrupted".into(),
                evalue: "the cell was interrupted".into(),
                traceback: vec![format!(
                    "line {started}: {}: interrupted; the session is kept",
                    first_line(&input)
                )],
            });
        }
        if matches!(output, Output::Quit) {
            out(
                "stream",
                json!({"name": "stderr", "text": ":quit does nothing in a notebook; shut the kernel down from the front end\n"}),
            );
        }
    }
    if lines.pending() {
        return Err(CellError {
            ename: "IncompleteInput".into(),
            evalue: format!("the \"\"\" block opened on line {started} is never closed"),
            traceback: vec![format!("line {started}: \"\"\" never closed")],
        });
    }
    Ok(())
}

fn first_line(input: &str) -> &str {
    input.lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_batched_and_an_open_line_is_ended() {
        let mut sent: Vec<String> = Vec::new();
        let mut out = |_: &str, v: Value| sent.push(v["text"].as_str().unwrap().to_string());
        let mut sink = StreamSink::new(&mut out);
        sink.text(" Paris");
        sink.text(".");
        sink.finish();
        assert_eq!(sent, vec![" Paris.\n".to_string()]);
    }
}
