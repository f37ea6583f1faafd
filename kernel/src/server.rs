//! The sockets: shell and control (ROUTER), iopub (PUB), stdin (ROUTER,
//! bound but unused: commands never ask for input) and heartbeat (REP),
//! each served by its own task so that control messages (interrupt,
//! shutdown) are heard while a cell runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};
use shardlab_repl::shell::helper::ShellHelper;
use shardlab_repl::Session;
use tokio::sync::{oneshot, Notify};
use zeromq::{PubSocket, RepSocket, RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

use crate::assist;
use crate::connection::ConnectionInfo;
use crate::executor::{self, Job, Publisher};
use crate::wire::{decode, encode, Message, Signer, PROTOCOL_VERSION};
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

async fn send<S: SocketSend>(socket: &mut S, msg: &Message, signer: &Signer) {
    let sent = match encode(msg, signer) {
        Ok(frames) => match ZmqMessage::try_from(frames) {
            Ok(m) => socket.send(m).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = sent {
        eprintln!("shardlab kernel: sending {}: {e}", msg.msg_type());
    }
}

pub async fn serve(info: ConnectionInfo, session: Session) -> Result<(), KernelError> {
    let signer = Signer::new(&info.key);
    let mut shell = bind(RouterSocket::new(), &info, info.shell_port).await?;
    let mut control = bind(RouterSocket::new(), &info, info.control_port).await?;
    let _stdin = bind(RouterSocket::new(), &info, info.stdin_port).await?;
    let mut iopub = bind(PubSocket::new(), &info, info.iopub_port).await?;
    let mut hb = bind(RepSocket::new(), &info, info.hb_port).await?;

    let (iopub_tx, mut iopub_rx) = tokio::sync::mpsc::unbounded_channel::<Message>();
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
        session_id: crate::wire::new_id(),
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
        loop {
            let Ok(raw) = control.recv().await else { break };
            let Some(msg) = verified(raw, &control_shared.signer) else {
                continue;
            };
            let reply = handle_control(&control_shared, &msg);
            send(&mut control, &reply, &control_shared.signer).await;
            if control_shared.stopping.load(Ordering::SeqCst) {
                control_shared.shutdown.notify_one();
            }
        }
    });

    let helper = ShellHelper::new();
    let mut execution_count = 0u64;
    loop {
        let raw = tokio::select! {
            r = shell.recv() => r,
            _ = shared.shutdown.notified() => break,
        };
        let Ok(raw) = raw else { break };
        let Some(msg) = verified(raw, &shared.signer) else {
            continue;
        };
        publisher.status(&msg, "busy");
        let reply = match msg.msg_type() {
            "execute_request" => {
                if !msg.content["silent"].as_bool().unwrap_or(false) {
                    execution_count += 1;
                }
                let (done, wait) = oneshot::channel();
                let job = Job {
                    request: msg.clone(),
                    execution_count,
                    done,
                };
                let content = if jobs_tx.send(job).is_ok() {
                    wait.await.ok()
                } else {
                    None
                };
                let content = content.unwrap_or_else(|| {
                    json!({"status": "error", "execution_count": execution_count,
                           "ename": "KernelError", "evalue": "the session thread stopped",
                           "traceback": ["the session thread stopped"]})
                });
                Some(reply(&shared, &msg, "execute_reply", content))
            }
            "shutdown_request" => {
                shared.stopping.store(true, Ordering::SeqCst);
                Some(handle_control(&shared, &msg))
            }
            _ => common(&shared, &helper, &msg),
        };
        if let Some(r) = reply {
            send(&mut shell, &r, &shared.signer).await;
        }
        publisher.status(&msg, "idle");
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

/// Decodes a message, dropping (and logging) it if the signature is bad.
fn verified(raw: ZmqMessage, signer: &Signer) -> Option<Message> {
    match decode(frames_of(raw), signer) {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("shardlab kernel: {e}");
            None
        }
    }
}

fn reply(shared: &Shared, msg: &Message, msg_type: &str, content: Value) -> Message {
    msg.reply(&shared.publisher.session_id, msg_type, content)
}

fn handle_control(shared: &Shared, msg: &Message) -> Message {
    match msg.msg_type() {
        "shutdown_request" => {
            shared.stopping.store(true, Ordering::SeqCst);
            shared.cancel.store(true, Ordering::SeqCst);
            let restart = msg.content["restart"].as_bool().unwrap_or(false);
            reply(
                shared,
                msg,
                "shutdown_reply",
                json!({"status": "ok", "restart": restart}),
            )
        }
        "interrupt_request" => {
            shared.cancel.store(true, Ordering::SeqCst);
            reply(shared, msg, "interrupt_reply", json!({"status": "ok"}))
        }
        _ => common(shared, &ShellHelper::new(), msg).unwrap_or_else(|| unknown(shared, msg)),
    }
}

fn unknown(shared: &Shared, msg: &Message) -> Message {
    let t = msg.msg_type();
    let reply_type = t
        .strip_suffix("_request")
        .map_or_else(|| format!("{t}_reply"), |b| format!("{b}_reply"));
    reply(
        shared,
        msg,
        &reply_type,
        json!({"status": "error", "ename": "NotImplemented",
        "evalue": format!("shardlab's kernel does not handle {t}"), "traceback": []}),
    )
}

/// Requests answered the same on shell and control.
fn common(shared: &Shared, helper: &ShellHelper, msg: &Message) -> Option<Message> {
    let code = msg.content["code"].as_str().unwrap_or("");
    let cursor = msg.content["cursor_pos"].as_u64().unwrap_or(0) as usize;
    let (t, content) = match msg.msg_type() {
        "kernel_info_request" => ("kernel_info_reply", kernel_info()),
        "complete_request" => ("complete_reply", assist::complete(helper, code, cursor)),
        "inspect_request" => ("inspect_reply", assist::inspect(code, cursor)),
        "is_complete_request" => ("is_complete_reply", assist::is_complete(code)),
        "comm_info_request" => ("comm_info_reply", json!({"status": "ok", "comms": {}})),
        "history_request" => ("history_reply", json!({"status": "ok", "history": []})),
        "comm_open" => {
            // No comm targets: close it straight away, as the protocol asks.
            let id = msg.content["comm_id"].clone();
            shared
                .publisher
                .publish(msg, "comm_close", json!({"comm_id": id, "data": {}}));
            return None;
        }
        "comm_msg" | "comm_close" => return None,
        other => {
            eprintln!("shardlab kernel: unhandled message type {other}");
            return Some(unknown(shared, msg));
        }
    };
    Some(reply(shared, msg, t, content))
}

pub fn kernel_info() -> Value {
    json!({
        "status": "ok",
        "protocol_version": PROTOCOL_VERSION,
        "implementation": "shardlab",
        "implementation_version": env!("CARGO_PKG_VERSION"),
        "language_info": {
            "name": "shardlab",
            "version": env!("CARGO_PKG_VERSION"),
            "mimetype": "text/x-shardlab",
            "file_extension": ".shardlab",
            "pygments_lexer": "text",
            "codemirror_mode": "text/plain",
        },
        "banner": "shardlab: one model split across machines. `:help` lists the commands.",
        "help_links": [],
    })
}
