//! The thread that owns the [`Session`] and runs cells: a cell runs line
//! by line (a `"""` block is one prompt), generated text streams out as it
//! comes, each command's output goes out as display_data, and the first
//! failing command stops the cell with an error, as an exception would.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jupyter_protocol::{
    DisplayData, ErrorOutput, ExecuteInput, ExecuteReply, ExecuteRequest, ExecutionCount,
    ExecutionState, Header, JupyterMessage, JupyterMessageContent, Media, MediaType, ReplyError,
    ReplyStatus, Status, StreamContent,
};
use serde_json::Value;
use shardlab_repl::lines::LineAssembler;
use shardlab_repl::output::Rich;
use shardlab_repl::{Output, Session, Sink};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;

use crate::display::{show, Shown};
use crate::message::publish;

/// Sends iopub messages (the iopub task signs and publishes them).
#[derive(Clone)]
pub struct Publisher {
    pub tx: UnboundedSender<JupyterMessage>,
    pub session_id: String,
}

impl Publisher {
    pub fn publish(&self, parent: &Header, content: impl Into<JupyterMessageContent>) {
        // The receiver only goes away when the kernel is shutting down.
        let _ = self.tx.send(publish(&self.session_id, parent, content));
    }

    pub fn status(&self, parent: &Header, execution_state: ExecutionState) {
        self.publish(parent, Status { execution_state });
    }
}

/// One cell to run; `done` gets the execute_reply content.
pub struct Job {
    /// The execute_request's header, the parent of everything the cell sends.
    pub parent: Header,
    pub request: ExecuteRequest,
    pub execution_count: ExecutionCount,
    pub done: oneshot::Sender<ExecuteReply>,
}

/// Why a cell stopped early.
#[derive(Debug, Clone, PartialEq)]
pub struct CellError {
    pub ename: String,
    pub evalue: String,
    pub traceback: Vec<String>,
}

impl CellError {
    fn output(&self) -> ErrorOutput {
        ErrorOutput {
            ename: self.ename.clone(),
            evalue: self.evalue.clone(),
            traceback: self.traceback.clone(),
        }
    }

    /// The execute_reply for a cell that stopped with this error.
    pub fn reply(&self, execution_count: ExecutionCount) -> ExecuteReply {
        ExecuteReply {
            status: ReplyStatus::Error,
            error: Some(Box::new(ReplyError {
                ename: self.ename.clone(),
                evalue: self.evalue.clone(),
                traceback: self.traceback.clone(),
            })),
            ..ok_reply(execution_count)
        }
    }
}

/// The execute_reply for a cell that ran to its end.
pub fn ok_reply(execution_count: ExecutionCount) -> ExecuteReply {
    ExecuteReply {
        status: ReplyStatus::Ok,
        execution_count,
        payload: Vec::new(),
        user_expressions: Some(HashMap::new()),
        error: None,
    }
}

/// Runs jobs until the sending side closes, then releases the nodes.
/// While `:serve` runs a server, its turns run between cells.
pub fn serve(mut session: Session, jobs: Receiver<Job>, publisher: Publisher) {
    let cancel = session.cancel_flag();
    while let Some(job) = session.recv_serving(&jobs) {
        let silent = job.request.silent;
        if !silent {
            publisher.publish(
                &job.parent,
                ExecuteInput {
                    code: job.request.code.clone(),
                    execution_count: job.execution_count,
                },
            );
        }
        let mut out = |content: JupyterMessageContent| {
            if !silent {
                publisher.publish(&job.parent, content);
            }
        };
        let reply = match run_cell(&mut session, &job.request.code, &cancel, &mut out) {
            Ok(()) => ok_reply(job.execution_count),
            Err(e) => {
                out(e.output().into());
                e.reply(job.execution_count)
            }
        };
        // The shell task waits for this unless the kernel is going away.
        let _ = job.done.send(reply);
    }
    session.shutdown();
}

/// A display.rs mime bundle as typed media. The bundle is always an object
/// of mime types; should one ever not read back, its text still shows.
fn media(bundle: Value) -> Media {
    match serde_json::from_value::<Media>(bundle.clone()) {
        Ok(m) => m,
        Err(_) => Media::new(vec![MediaType::Plain(bundle.to_string())]),
    }
}

/// How long generated text may wait before it is sent: tokens go out in
/// small batches rather than one message each.
const STREAM_EVERY: Duration = Duration::from_millis(100);

/// Streams text to the cell's stdout as it is generated.
struct StreamSink<'a> {
    out: &'a mut dyn FnMut(JupyterMessageContent),
    pending: String,
    last_sent: Instant,
    /// Whether the last text written did not end a line.
    open_line: bool,
}

impl<'a> StreamSink<'a> {
    fn new(out: &'a mut dyn FnMut(JupyterMessageContent)) -> Self {
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
            (self.out)(StreamContent::stdout(&text).into());
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

/// Runs one cell's commands in order; `out` gets the content of each
/// iopub message.
pub fn run_cell(
    session: &mut Session,
    code: &str,
    cancel: &Arc<AtomicBool>,
    out: &mut dyn FnMut(JupyterMessageContent),
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
                Shown::Data(data) => out(DisplayData::new(media(data)).into()),
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
            out(StreamContent::stderr(
                ":quit does nothing in a notebook; shut the kernel down from the front end\n",
            )
            .into());
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
        let mut out = |c: JupyterMessageContent| match c {
            JupyterMessageContent::StreamContent(s) => sent.push(s.text),
            other => panic!("not a stream: {other:?}"),
        };
        let mut sink = StreamSink::new(&mut out);
        sink.text(" Paris");
        sink.text(".");
        sink.finish();
        assert_eq!(sent, vec![" Paris.\n".to_string()]);
    }

    #[test]
    fn replies_have_the_protocols_shape() {
        let ok = serde_json::to_value(ok_reply(ExecutionCount::new(3))).unwrap();
        assert_eq!(
            ok,
            serde_json::json!({"status": "ok", "execution_count": 3,
                "payload": [], "user_expressions": {}})
        );
        let e = CellError {
            ename: "CommandError".into(),
            evalue: "no model".into(),
            traceback: vec!["line 1: :generate".into()],
        };
        let err = serde_json::to_value(e.reply(ExecutionCount::new(4))).unwrap();
        assert_eq!(err["status"], "error");
        assert_eq!(err["execution_count"], 4);
        assert_eq!(err["ename"], "CommandError");
        assert_eq!(err["traceback"][0], "line 1: :generate");
    }

    #[test]
    fn mime_bundles_keep_every_type_through_typed_media() {
        let bundle = serde_json::json!({"text/plain": "t", "text/html": "<table></table>",
            "image/svg+xml": "<svg/>", "application/json": {"rows": [1]}});
        let shown = DisplayData::new(media(bundle.clone()));
        let back = serde_json::to_value(&shown).unwrap();
        assert_eq!(back["data"], bundle);
    }
}
