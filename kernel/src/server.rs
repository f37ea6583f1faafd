//! The sockets: shell and control (ROUTER), iopub (PUB), stdin (ROUTER,
//! bound but unused: commands never ask for input) and heartbeat (REP),
//! each served by its own task so that control messages (interrupt,
//! shutdown) are heard while a cell runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use bytes::Bytes;
use jupyter_protocol::{
    CodeMirrorMode, CommClose, CommInfoReply, ExecuteRequest, ExecutionCount, ExecutionState,
    HistoryReply, InterruptReply, JupyterMessage, JupyterMessageContent, KernelInfoReply,
    LanguageInfo, ReplyStatus, ShutdownReply,
};
use shardlab_repl::shell::helper::ShellHelper;
use shardlab_repl::Session;
use tokio::sync::{oneshot, Notify};
use zeromq::{PubSocket, RepSocket, RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

use crate::assist;
use crate::connection::ConnectionInfo;
use crate::executor::{self, CellError, Job, Publisher};
use crate::message::{new_id, reply, Incoming, PROTOCOL_VERSION};
use crate::request::{Request, RequestError};
use crate::wire::{decode, encode, Signer};
use crate::KernelError;

/// What the shell and control tasks share.
struct Shared {
    signer: Signer,
    publisher: Publisher,
    cancel: Arc<AtomicBool>,
    shutdown: Notify,
    stopping: AtomicBool,
}

async fn bind<S: Socket>(
    mut socket: S,
    info: &ConnectionInfo,
    port: u16,
) -> Result<S, KernelError> {
    let endpoint = info.endpoint(port);
    socket
        .bind(&endpoint)
        .await
        .map_err(|source| KernelError::Bind { endpoint, source })?;
    Ok(socket)
}

fn frames_of(msg: ZmqMessage) -> Vec<Bytes> {
    msg.into_vec()
}

async fn send<S: SocketSend>(socket: &mut S, msg: &JupyterMessage, signer: &Signer) {
    let sent = match encode(msg, signer) {
        Ok(frames) => match ZmqMessage::try_from(frames) {
            Ok(m) => socket.send(m).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = sent {
        eprintln!("shardlab kernel: sending {}: {e}", msg.header.msg_type);
    }
}

pub async fn serve(info: ConnectionInfo, session: Session) -> Result<(), KernelError> {
    let signer = Signer::new(&info.key);
    let mut shell = bind(RouterSocket::new(), &info, info.shell_port).await?;
    let mut control = bind(RouterSocket::new(), &info, info.control_port).await?;
    let _stdin = bind(RouterSocket::new(), &info, info.stdin_port).await?;
    let mut iopub = bind(PubSocket::new(), &info, info.iopub_port).await?;
    let mut hb = bind(RepSocket::new(), &info, info.hb_port).await?;

    let (iopub_tx, mut iopub_rx) = tokio::sync::mpsc::unbounded_channel::<JupyterMessage>();
    let iopub_signer = signer.clone();
    tokio::spawn(async move {
        while let Some(msg) = iopub_rx.recv().await {
            send(&mut iopub, &msg, &iopub_signer).await;
        }
    });
    tokio::spawn(async move {
        while let Ok(ping) = hb.recv().await {
            if hb.send(ping).await.is_err() {
                break;
            }
        }
    });

    let publisher = Publisher {
        tx: iopub_tx,
        session_id: new_id(),
    };
    let shared = Arc::new(Shared {
        signer,
        publisher: publisher.clone(),
        cancel: session.cancel_flag(),
        shutdown: Notify::new(),
        stopping: AtomicBool::new(false),
    });
    let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
    let exec_publisher = publisher.clone();
    let executor = std::thread::Builder::new()
        .name("shardlab-session".into())
        .spawn(move || executor::serve(session, jobs_rx, exec_publisher))
        .map_err(KernelError::Thread)?;

    let control_shared = shared.clone();
    tokio::spawn(async move {
        let helper = ShellHelper::new();
        loop {
            let Ok(raw) = control.recv().await else { break };
            let Some(msg) = verified(raw, &control_shared.signer) else {
                continue;
            };
            let answer = match &msg.request {
                Ok(Request::Execute(_)) => refuse(
                    &control_shared,
                    &msg,
                    &RequestError::ShellOnly {
                        msg_type: msg.header.msg_type.clone(),
                    },
                ),
                Ok(request) => answer(&control_shared, &helper, &msg, request),
                Err(e) => refuse(&control_shared, &msg, e),
            };
            if let Some(r) = answer {
                send(&mut control, &r, &control_shared.signer).await;
            }
            if control_shared.stopping.load(Ordering::SeqCst) {
                control_shared.shutdown.notify_one();
            }
        }
    });

    let helper = ShellHelper::new();
    let mut execution_count = ExecutionCount::new(0);
    loop {
        let raw = tokio::select! {
            r = shell.recv() => r,
            _ = shared.shutdown.notified() => break,
        };
        let Ok(raw) = raw else { break };
        let Some(msg) = verified(raw, &shared.signer) else {
            continue;
        };
        publisher.status(&msg.header, ExecutionState::Busy);
        let answer = match &msg.request {
            Ok(Request::Execute(request)) => {
                if !request.silent {
                    execution_count.increment();
                }
                Some(execute(&shared, &jobs_tx, &msg, request, execution_count).await)
            }
            Ok(request) => answer(&shared, &helper, &msg, request),
            Err(e) => refuse(&shared, &msg, e),
        };
        if let Some(r) = answer {
            send(&mut shell, &r, &shared.signer).await;
        }
        publisher.status(&msg.header, ExecutionState::Idle);
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
    }
    // Stop a running generation, then let the session release its nodes.
    shared.cancel.store(true, Ordering::SeqCst);
    drop(jobs_tx);
    let _ = tokio::task::spawn_blocking(move || executor.join()).await;
    // Give iopub a moment to flush the last status messages.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    Ok(())
}

/// Decodes a message, dropping (and logging) it if the signature is bad or
/// its frames are not a message.
fn verified(raw: ZmqMessage, signer: &Signer) -> Option<Incoming> {
    match decode(frames_of(raw), signer) {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("shardlab kernel: {e}");
            None
        }
    }
}

/// Runs a cell on the session thread and waits for its execute_reply.
async fn execute(
    shared: &Shared,
    jobs: &mpsc::Sender<Job>,
    msg: &Incoming,
    request: &ExecuteRequest,
    execution_count: ExecutionCount,
) -> JupyterMessage {
    let (done, wait) = oneshot::channel();
    let job = Job {
        parent: msg.header.clone(),
        request: request.clone(),
        execution_count,
        done,
    };
    let content = if jobs.send(job).is_ok() {
        wait.await.ok()
    } else {
        None
    };
    let content = content.unwrap_or_else(|| {
        CellError {
            ename: "KernelError".into(),
            evalue: "the session thread stopped".into(),
            traceback: vec!["the session thread stopped".into()],
        }
        .reply(execution_count)
    });
    reply(&shared.publisher.session_id, msg, content)
}

/// The error reply for a message the kernel does not serve (none for
/// messages that are not requests).
fn refuse(shared: &Shared, msg: &Incoming, error: &RequestError) -> Option<JupyterMessage> {
    eprintln!("shardlab kernel: {error}");
    let content = error.reply()?;
    Some(reply(&shared.publisher.session_id, msg, content))
}

/// Every request but execute, answered the same on shell and control.
fn answer(
    shared: &Shared,
    helper: &ShellHelper,
    msg: &Incoming,
    request: &Request,
) -> Option<JupyterMessage> {
    let content: JupyterMessageContent = match request {
        Request::KernelInfo => kernel_info().into(),
        Request::Complete(r) => assist::complete(helper, &r.code, r.cursor_pos).into(),
        Request::Inspect(r) => assist::inspect(&r.code, r.cursor_pos).into(),
        Request::IsComplete(r) => assist::is_complete(&r.code).into(),
        Request::CommInfo(_) => CommInfoReply::default().into(),
        Request::History(_) => HistoryReply::default().into(),
        Request::Shutdown(r) => {
            shared.stopping.store(true, Ordering::SeqCst);
            shared.cancel.store(true, Ordering::SeqCst);
            ShutdownReply {
                restart: r.restart,
                status: ReplyStatus::Ok,
                error: None,
            }
            .into()
        }
        Request::Interrupt => {
            shared.cancel.store(true, Ordering::SeqCst);
            InterruptReply::new().into()
        }
        Request::CommOpen(open) => {
            // No comm targets: close it straight away, as the protocol asks.
            shared.publisher.publish(
                &msg.header,
                CommClose {
                    comm_id: open.comm_id.clone(),
                    data: Default::default(),
                },
            );
            return None;
        }
        Request::CommMsg(_) | Request::CommClose(_) => return None,
        Request::Execute(_) => {
            let e = RequestError::ShellOnly {
                msg_type: request.msg_type().to_string(),
            };
            return refuse(shared, msg, &e);
        }
    };
    Some(reply(&shared.publisher.session_id, msg, content))
}

pub fn kernel_info() -> KernelInfoReply {
    KernelInfoReply {
        status: ReplyStatus::Ok,
        protocol_version: PROTOCOL_VERSION.to_string(),
        implementation: "shardlab".to_string(),
        implementation_version: env!("CARGO_PKG_VERSION").to_string(),
        language_info: LanguageInfo {
            name: "shardlab".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            mimetype: Some("text/x-shardlab".to_string()),
            file_extension: Some(".shardlab".to_string()),
            pygments_lexer: Some("text".to_string()),
            codemirror_mode: Some(CodeMirrorMode::Simple("text/plain".to_string())),
            nbconvert_exporter: None,
        },
        banner: "shardlab: one model split across machines. `:help` lists the commands."
            .to_string(),
        help_links: Vec::new(),
        debugger: false,
        error: None,
    }
}
