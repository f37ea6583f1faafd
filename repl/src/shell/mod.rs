//! The interactive shell (rustyline: history, completion, hints, `"""`
//! prompts, Ctrl-C handling) and `--script` runs without a terminal. Both
//! feed lines through [`crate::lines::LineAssembler`] into the session.

mod cancel;
mod console;
pub mod helper;
mod progress;
mod reader;
mod typeahead;

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver};

use rustyline::config::Config;
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{CompletionType, Editor};
use shardlab_engine::model::store::ModelStore;

pub use cancel::CancelWatcher;
pub use console::Console;
use helper::ShellHelper;
use reader::{Candidates, LineReader};

use crate::lines::LineAssembler;
use crate::output::Output;
use crate::session::Session;
use crate::transcript::format::MARKER;

const PROMPT: &str = "shardlab> ";
const CONTINUATION: &str = "     ...> ";

#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error("the line editor failed: {0}")]
    Readline(#[from] ReadlineError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the shell keeps its history: `<shardlab home>/history`.
pub fn history_path(store: &ModelStore) -> PathBuf {
    store.home().join("history")
}

fn banner() -> String {
    format!(
        "shardlab {} · :help lists the commands · Tab completes · Ctrl-C stops a generation · Ctrl-D leaves\n\
         try: :connect local 2 · :load smollm2 · :shard tensor · then type a prompt",
        env!("CARGO_PKG_VERSION")
    )
}

/// Runs the interactive shell until `:quit` or Ctrl-D, then releases the nodes.
pub fn run_interactive(session: &mut Session, history: &Path) -> Result<(), ShellError> {
    let config = Config::builder()
        .auto_add_history(false)
        .completion_type(CompletionType::List)
        .history_ignore_space(true)
        .build();
    let mut editor: Editor<ShellHelper, FileHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(ShellHelper::new()));
    if let Some(dir) = history.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // A missing history file is the first run, not an error.
    let _ = editor.load_history(history);
    // The editor reads on its own thread; meanwhile this one serves.
    let reader =
        LineReader::start(editor, history.to_path_buf()).map_err(|source| ShellError::Io {
            path: history.to_path_buf(),
            source,
        })?;
    println!("{}", banner());
    let mut lines = LineAssembler::new();
    let stdout = std::io::stdout();
    // Type-ahead from the last command: lines to run, then a prompt pre-fill.
    let mut queued: VecDeque<String> = VecDeque::new();
    let mut prefill = String::new();
    loop {
        let prompt = if lines.pending() {
            CONTINUATION
        } else {
            PROMPT
        };
        let read = match queued.pop_front() {
            Some(line) => {
                println!("{prompt}{line}");
                Ok(line)
            }
            None => reader.read(
                prompt,
                std::mem::take(&mut prefill),
                candidates(session),
                &mut |wait| {
                    session.serve_turn(wait);
                    session.is_serving()
                },
            ),
        };
        let line = match read {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                lines.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                session.shutdown();
                return Err(e.into());
            }
        };
        let Some(input) = lines.push(&line) else {
            continue;
        };
        let watch = CancelWatcher::start(session.cancel_flag());
        let output = {
            let mut out = stdout.lock();
            let mut console = Console::new(&mut out, true);
            let output = session.exec_line(&input, &mut console);
            console.finish(&output);
            output
        };
        let (typed_lines, rest) = typeahead::split(&watch.finish());
        queued.extend(typed_lines);
        prefill = rest;
        if matches!(output, Output::Quit) {
            break;
        }
    }
    session.shutdown();
    println!("bye (nodes released)");
    Ok(())
}

/// What completion offers now: model names, node addresses and names.
fn candidates(session: &Session) -> Candidates {
    let mut models: Vec<String> = ModelStore::aliases()
        .iter()
        .flat_map(|a| std::iter::once(a.name).chain(a.also.iter().copied()))
        .map(str::to_string)
        .collect();
    if let Ok(cached) = session.config().store.list() {
        models.extend(cached.into_iter().map(|m| m.path.display().to_string()));
    }
    Candidates {
        models,
        addresses: session.addresses_used().to_vec(),
        node_names: session.node_names(),
    }
}

/// Runs the commands in `path` (or stdin for `-`), echoing each as `> `
/// and printing its output. Returns whether every command succeeded.
/// While `:serve` runs a server, it serves between lines (a script on a
/// pipe keeps serving until its next line comes), and the end of the
/// script stops the server as `:serve off` does.
pub fn run_script(
    session: &mut Session,
    path: &Path,
    out: &mut dyn Write,
) -> Result<bool, ShellError> {
    let io = |source| ShellError::Io {
        path: path.to_path_buf(),
        source,
    };
    let reader: Box<dyn BufRead + Send> = if path == Path::new("-") {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(path).map_err(io)?,
        ))
    };
    let script_lines = read_on_a_thread(reader).map_err(io)?;
    let mut lines = LineAssembler::new();
    let mut ok = true;
    while let Some(line) = session.recv_serving(&script_lines) {
        let line = line.map_err(io)?;
        let _ = writeln!(out, "{MARKER}{line}");
        let Some(input) = lines.push(&line) else {
            continue;
        };
        let mut console = Console::new(out, false);
        let output = session.exec_line(&input, &mut console);
        console.finish(&output);
        ok &= !output.is_error();
        if matches!(output, Output::Quit) {
            break;
        }
    }
    if session.is_serving() {
        let mut console = Console::new(out, false);
        let output = session.exec_line(":serve off", &mut console);
        console.finish(&output);
        ok &= !output.is_error();
    }
    session.shutdown();
    Ok(ok)
}

type ScriptLines = Receiver<std::io::Result<String>>;

/// The lines of `reader`, read on their own thread so the session can
/// serve while the next one is on its way.
fn read_on_a_thread(reader: Box<dyn BufRead + Send>) -> std::io::Result<ScriptLines> {
    let (tx, rx) = channel();
    std::thread::Builder::new()
        .name("script-lines".into())
        .spawn(move || {
            for line in reader.lines() {
                if tx.send(line).is_err() {
                    return;
                }
            }
        })?;
    Ok(rx)
}
