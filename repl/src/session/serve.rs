//! `:serve [ADDR]` and `:serve off`: the OpenAI-compatible server on this
//! session's model and cluster, run between commands. The HTTP side runs
//! on its own thread and only queues requests; the generation runs here,
//! one scheduler turn at a time, whenever the front end has nothing else to
//! do ([`Session::serve_turn`]). So `:stats`, `:trace` and `:links` keep
//! working while it serves, and `:stats` shows its requests.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use shardlab_engine::orchestrator::report::ServingFigures;
use shardlab_engine::orchestrator::serving::{ServeFailure, ServeQueue, Serving, Turn};
use shardlab_server::{RunningServer, Served, ServerOptions, DEFAULT_MAX_BODY};

use super::{Session, SessionError, Sink};
use crate::command::{Command, ServeCommand};
use crate::output::{Output, Rich, Varies};

/// How long an idle turn waits for a request before looking for the
/// front end's next input again.
const BETWEEN_TURNS: Duration = Duration::from_millis(20);

/// Requests that may wait for a sequence; past that they get a 429.
const QUEUE: usize = 64;

/// The longest `:serve off` waits for the requests in flight to finish
/// before failing the rest.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);

pub(super) struct WorkbenchServer {
    http: RunningServer,
    serving: Serving,
    url: String,
}

impl WorkbenchServer {
    pub(super) fn figures(&self) -> ServingFigures {
        ServingFigures {
            url: self.url.clone(),
            parallel: self.serving.parallel(),
            counts: self.serving.queue().counts(),
            kv_room: self.serving.kv_room(),
            kv_reserved: self.serving.kv_reserved(),
            broken: self.serving.broken().map(str::to_string),
        }
    }
}

impl Session {
    pub(super) fn serve(
        &mut self,
        cmd: ServeCommand,
        sink: &mut dyn Sink,
    ) -> Result<Output, SessionError> {
        match cmd {
            ServeCommand::Off => self.serve_off(),
            ServeCommand::On {
                listen,
                parallel,
                api_key_file,
            } => self.serve_on(listen, parallel, api_key_file.as_deref(), sink),
        }
    }

    fn serve_on(
        &mut self,
        listen: SocketAddr,
        parallel: usize,
        api_key_file: Option<&Path>,
        sink: &mut dyn Sink,
    ) -> Result<Output, SessionError> {
        if let Some(server) = &self.server {
            return Err(SessionError::state(format!(
                "already serving on {}; `:serve off` first",
                server.url
            )));
        }
        let api_key = api_key_file
            .map(shardlab_server::read_api_key)
            .transpose()
            .map_err(|e| SessionError::state(e.to_string()))?;
        self.core.ensure_runner(&mut |name| {
            sink.note(&Rich::from(format!("loading {name} into this process")))
        })?;
        let model = self.core.require_model()?;
        let file_name = model
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let served = Served {
            id: model.name.clone(),
            aliases: file_name.into_iter().collect(),
            context: self.core.planned_context()?,
        };
        let queue = Arc::new(ServeQueue::new(QUEUE));
        let options = ServerOptions {
            listen,
            api_key,
            served,
            max_body: DEFAULT_MAX_BODY,
        };
        let http = shardlab_server::start(options, queue.clone(), self.core.monitor()).map_err(
            |source| SessionError::Io {
                what: format!("listening on {listen}"),
                source,
            },
        )?;
        let url = format!("http://{}", http.addr());
        let room = self.core.kv_room().ok();
        let line = Rich::from("serving ")
            .push(self.core.require_model()?.name.clone())
            .push(" on ")
            .push_varies(Varies::Addr, url.clone())
            .push(format!(
                " (OpenAI API under /v1; {parallel} requests at once, {QUEUE} may wait); `:serve off` stops it"
            ));
        let line = match room {
            Some(room) => line
                .push("; KV memory holds ")
                .push_varies(Varies::Int, room.positions.to_string())
                .push(format!(
                    " positions for all requests together ({} limits it)",
                    room.node
                )),
            None => line,
        };
        self.server = Some(WorkbenchServer {
            http,
            serving: Serving::new(queue, parallel),
            url,
        });
        Ok(Output::Text(line))
    }

    /// Stops taking requests, finishes those in flight (failing what is
    /// left after [`DRAIN_LIMIT`] or a Ctrl-C), and closes the port.
    fn serve_off(&mut self) -> Result<Output, SessionError> {
        let Some(mut server) = self.server.take() else {
            return Err(SessionError::state(
                "not serving (`:serve [ADDR]` starts it)",
            ));
        };
        let queue = server.serving.queue().clone();
        queue.close();
        self.cancel
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let started = std::time::Instant::now();
        while server.serving.in_flight() > 0 {
            let stop = started.elapsed() > DRAIN_LIMIT
                || self.cancel.load(std::sync::atomic::Ordering::Relaxed);
            if stop {
                server.serving.fail_all(ServeFailure::ShuttingDown);
                break;
            }
            match self.core.serve_turn(&mut server.serving, Duration::ZERO) {
                Ok(Turn::Stepped) | Ok(Turn::Idle) => {}
                Ok(Turn::Closed) | Ok(Turn::StepFailed(_)) => break,
                Err(e) => {
                    server.serving.fail_all(ServeFailure::Engine(e.to_string()));
                    break;
                }
            }
        }
        let figures = server.figures();
        server.http.stop();
        let c = figures.counts;
        Ok(Output::Text(
            Rich::from("stopped serving on ")
                .push_varies(Varies::Addr, figures.url)
                .push(": ")
                .push_varies(Varies::Int, c.done.to_string())
                .push(" requests done, ")
                .push_varies(Varies::Int, c.failed.to_string())
                .push(" failed, ")
                .push_varies(Varies::Int, c.cancelled.to_string())
                .push(" cancelled"),
        ))
    }

    /// Whether a server is running: front ends then call
    /// [`Self::serve_turn`] whenever they would otherwise wait.
    pub fn is_serving(&self) -> bool {
        self.server.is_some()
    }

    /// The next item from `rx` (a line, a notebook cell), running the
    /// server's turns while none has come; `None` once its sender is gone.
    pub fn recv_serving<T>(&mut self, rx: &Receiver<T>) -> Option<T> {
        loop {
            if !self.is_serving() {
                return rx.recv().ok();
            }
            match rx.try_recv() {
                Ok(item) => return Some(item),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => self.serve_turn(BETWEEN_TURNS),
            }
        }
    }

    /// One turn of the server: with requests in flight, one step of all of
    /// them; otherwise waits up to `wait` for one. Returns at once when
    /// not serving. A failed step, or a recovery, is told at the next
    /// command.
    pub fn serve_turn(&mut self, wait: Duration) {
        let Some(server) = self.server.as_mut() else {
            return;
        };
        let turn = self.core.serve_turn(&mut server.serving, wait);
        for r in self.core.take_recoveries() {
            let line = format!("the server {r}");
            self.server_notice = Some(match self.server_notice.take() {
                Some(before) => format!("{before}\n{line}"),
                None => line,
            });
        }
        let Some(server) = self.server.as_mut() else {
            return;
        };
        match turn {
            Ok(Turn::StepFailed(message)) => {
                self.server_notice = Some(format!(
                    "the server's step failed: {message}; requests get a 503 until `:shard` re-plans"
                ));
            }
            Ok(_) => {}
            Err(e) => {
                // Nothing to serve with: answer everyone, say so once, and
                // wait as an idle turn would.
                let why = format!("{e}; the workbench has no model running");
                server.serving.fail_all(ServeFailure::Engine(why));
                if self.server_notice.is_none() {
                    self.server_notice = Some(format!("the server cannot serve: {e}"));
                }
                std::thread::sleep(wait);
            }
        }
    }

    /// Closes the port and fails what waits or runs (the session is ending).
    pub(super) fn stop_server_now(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.serving.queue().close();
            server.serving.fail_all(ServeFailure::ShuttingDown);
            server.http.stop();
        }
    }

    /// Refuses commands that would change the served model or its nodes
    /// under the server's clients. `:shard` may re-plan (after a node died,
    /// say); the requests in flight then fail.
    pub(super) fn check_serving_allows(&self, cmd: &Command) -> Result<(), SessionError> {
        let what = match cmd {
            Command::Load(_) => ":load",
            Command::Unload => ":unload",
            Command::Connect(_) => ":connect",
            Command::Disconnect => ":disconnect",
            Command::Bench(_) => ":bench",
            _ => return Ok(()),
        };
        match &self.server {
            Some(server) => Err(SessionError::state(format!(
                "{what} would change what the server on {} is serving; `:serve off` first",
                server.url
            ))),
            None => Ok(()),
        }
    }

    /// The server's requests for `:stats`.
    pub(super) fn serving_figures(&self) -> Option<ServingFigures> {
        self.server.as_ref().map(WorkbenchServer::figures)
    }
}
