//! A session: the command language over the engine's
//! [`Orchestrator`], which owns the nodes, the open model, the layout in
//! place and the figures. The session adds what belongs to the shell, the
//! notebook and transcripts: settings, chat turns, recording, and
//! [`Session::exec`], which applies one [`Command`] and returns an
//! [`Output`]. Every command front end (shell, script, transcript,
//! notebook) goes through here, so a command behaves the same everywhere.
//!
//! One file per group of commands: `nodes` (connect, nodes, links, kill),
//! `model` (load, model), `layout` (plan, shard), `prompt` (generation),
//! `settings`, `stats`, `trace`, `bench`, `help`, `record`.

mod bench;
mod error;
mod help;
mod layout;
mod model;
mod nodes;
mod prompt;
mod record;
mod serve;
mod settings;
mod stats;
mod trace;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use shardlab_engine::cluster::coordinator::LoadProgress;
use shardlab_engine::model::chat::ChatMessage;
use shardlab_engine::model::store::{ModelStore, PullEvent};
use shardlab_engine::orchestrator::{Monitor, Orchestrator, OrchestratorConfig};

pub use error::SessionError;
pub use settings::Settings;
pub use shardlab_engine::orchestrator::DEFAULT_STEP_TIMEOUT;

use crate::command::{parse, Command};
use crate::output::{Output, Rich, Varies};
use record::Recorder;

/// Where streamed text and progress go while a command runs.
pub trait Sink {
    /// A piece of generated text, as soon as it is final.
    fn text(&mut self, piece: &str);
    /// A status line printed before the command's output (e.g. that the
    /// model is being loaded into this process).
    fn note(&mut self, _line: &Rich) {}
    /// Model install progress (the first `:load` of an alias).
    fn pull(&mut self, _event: &PullEvent) {}
    /// Per-node weight streaming progress; front ends that draw bars return one.
    fn load_progress(&self) -> Option<&(dyn Fn(LoadProgress) + Sync)> {
        None
    }
}

/// A sink that drops everything.
pub struct NullSink;

impl Sink for NullSink {
    fn text(&mut self, _piece: &str) {}
}

/// Fixed for the life of a session; read from the environment at the edge.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub store: ModelStore,
    /// The `shardlab` binary that `:connect local` starts as `shardlab node`.
    pub node_exe: PathBuf,
    /// Worker threads per local node unless `:connect local --threads` says.
    pub threads_per_node: usize,
    /// How long one generation step may take across the cluster before the
    /// silent node is named ([`DEFAULT_STEP_TIMEOUT`] unless
    /// `SHARDLAB_STEP_TIMEOUT` says otherwise).
    pub step_timeout: std::time::Duration,
    /// The link to emulate from the start (`shardlab shell --link`).
    pub link: Option<shardlab_engine::net::LinkProfile>,
}

pub struct Session {
    config: SessionConfig,
    settings: Settings,
    /// Nodes, the open model, the layout in place and the figures.
    core: Orchestrator,
    /// Chat turns so far (chat mode).
    chat: Vec<ChatMessage>,
    recorder: Option<Recorder>,
    cancel: Arc<AtomicBool>,
    /// The OpenAI-compatible server, while `:serve` runs one.
    server: Option<serve::WorkbenchServer>,
    /// What happened to the server between commands, told at the next one.
    server_notice: Option<String>,
}

impl Session {
    pub fn new(config: SessionConfig) -> Self {
        let mut core = Orchestrator::new(OrchestratorConfig {
            store: config.store.clone(),
            node_exe: config.node_exe.clone(),
            threads_per_node: config.threads_per_node,
            step_timeout: config.step_timeout,
            client_name: "shell".into(),
        });
        // No nodes yet: this only records the link for later connects.
        let _ = core.emulate_links(config.link.clone());
        Session {
            config,
            settings: Settings::default(),
            core,
            chat: Vec::new(),
            recorder: None,
            cancel: Arc::new(AtomicBool::new(false)),
            server: None,
            server_notice: None,
        }
    }

    /// Reads live figures while a generation runs (another thread's view).
    pub fn monitor(&self) -> Monitor {
        self.core.monitor()
    }

    /// Setting this flag stops the generation in progress (Ctrl-C). Front
    /// ends clear it when a command starts (the shell's Ctrl-C watcher, the
    /// kernel at each cell), not the session when generating: a Ctrl-C
    /// while the model is still loading then stops the generation after.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Parses and runs one line (a multi-line prompt already joined),
    /// writing it to the transcript being recorded, if any.
    pub fn exec_line(&mut self, line: &str, sink: &mut dyn Sink) -> Output {
        let parsed = parse(line);
        let recording = self.recorder.is_some() && !matches!(parsed, Ok(Command::Record(_)));
        let mut copy = crate::transcript::Transcriber::new(true);
        let output = {
            let mut tee = Tee {
                inner: sink,
                copy: recording.then_some(&mut copy),
            };
            if let Some(notice) = self.server_notice.take() {
                tee.note(&self.mask(&notice));
            }
            match parsed {
                Ok(cmd) => self.exec(cmd, &mut tee),
                Err(e) => Output::error(e.to_string()),
            }
        };
        if recording {
            copy.output(&output);
            let failed = self
                .recorder
                .as_mut()
                .map(|r| r.write(line, &copy.finish()))
                .and_then(Result::err);
            if let Some(e) = failed {
                self.recorder = None;
                return output.then(Output::error(format!("{e}; recording stopped")));
            }
        }
        output
    }

    /// Runs one command. Failures come back as [`Output::Error`]; the
    /// session is always usable afterwards.
    pub fn exec(&mut self, cmd: Command, sink: &mut dyn Sink) -> Output {
        // What the settings say about planning applies from the next plan on.
        self.core.context = self.settings.context;
        self.core.wire = self.settings.wire;
        self.core.kv = self.settings.kv;
        self.core.set_recover(self.settings.recover);
        if let Err(e) = self.check_serving_allows(&cmd) {
            return Output::Error(self.mask(&e.to_string()));
        }
        let result = match cmd {
            Command::Nothing => Ok(Output::Empty),
            Command::Prompt(text) => self.prompt(&text, sink),
            Command::Connect(target) => self.connect(target),
            Command::Disconnect => self.disconnect(),
            Command::Nodes => self.nodes_table(),
            Command::Links => self.links(),
            Command::EmulateLinks(link) => self.emulate_links(link),
            Command::Kill { node, after } => self.kill(&node, after),
            Command::Load(name) => self.load(&name, sink),
            Command::Unload => Ok(self.unload()),
            Command::Model => self.model_info(),
            Command::Plan(args) => self.plan(&args),
            Command::Shard(args) => self.shard(&args, sink),
            Command::Set(setting) => self.set(setting),
            Command::Reset => Ok(self.reset()),
            Command::Stats => self.stats(),
            Command::Trace => self.trace(),
            Command::Bench(args) => self.bench(&args, sink),
            Command::Record(path) => self.record(path),
            Command::Serve(cmd) => self.serve(cmd, sink),
            Command::Help(name) => Ok(help::help(name.as_deref())),
            Command::Quit => Ok(Output::Quit),
        };
        result.unwrap_or_else(|e| Output::Error(self.mask(&e.to_string())))
    }

    /// Stops the server (failing what is in flight), releases the nodes
    /// (local node processes stop) and stops recording.
    pub fn shutdown(&mut self) {
        self.stop_server_now();
        self.core.shutdown();
        self.recorder = None;
    }

    /// Addresses of nodes used this session, newest last.
    pub fn addresses_used(&self) -> &[String] {
        self.core.addresses_used()
    }

    /// Names of the connected nodes ("node0", ...).
    pub fn node_names(&self) -> Vec<String> {
        self.core.node_names()
    }

    /// `text` with what varies between runs (node addresses, the model's
    /// path, the shardlab home) marked, for messages built from engine errors.
    fn mask(&self, text: &str) -> Rich {
        Rich::masking(text, &self.literals())
    }

    fn literals(&self) -> Vec<(String, Varies)> {
        let mut lits: Vec<(String, Varies)> = Vec::new();
        if let Some(c) = self.core.cluster() {
            for h in c.nodes() {
                lits.push((h.addr.clone(), Varies::Addr));
            }
        }
        for a in self.core.addresses_used() {
            lits.push((a.clone(), Varies::Addr));
        }
        if let Some(m) = self.core.model() {
            lits.push((m.path.display().to_string(), Varies::Path));
        }
        lits.push((self.config.store.home().display().to_string(), Varies::Path));
        lits
    }
}

/// Passes everything to the front end's sink and, while recording, to the
/// transcript copy too.
struct Tee<'a> {
    inner: &'a mut dyn Sink,
    copy: Option<&'a mut crate::transcript::Transcriber>,
}

impl Sink for Tee<'_> {
    fn text(&mut self, piece: &str) {
        self.inner.text(piece);
        if let Some(c) = self.copy.as_mut() {
            c.text(piece);
        }
    }
    fn note(&mut self, line: &Rich) {
        self.inner.note(line);
        if let Some(c) = self.copy.as_mut() {
            c.note(line);
        }
    }
    fn pull(&mut self, event: &PullEvent) {
        self.inner.pull(event);
    }
    fn load_progress(&self) -> Option<&(dyn Fn(LoadProgress) + Sync)> {
        self.inner.load_progress()
    }
}

#[cfg(test)]
mod speed_tests;
#[cfg(test)]
mod tests;
