//! What a front end may ask this kernel, as typed values. A message's
//! content is parsed once, here, at the wire edge: the handlers match on
//! [`Request`] and never look at a `msg_type` string or raw JSON.

use jupyter_protocol::{
    CommClose, CommInfoRequest, CommMsg, CommOpen, CompleteRequest, ExecuteRequest, HistoryRequest,
    InspectRequest, IsCompleteRequest, JupyterMessageContent, ShutdownRequest, UnknownMessage,
};
use serde_json::{json, Value};

/// A shell or control request this kernel serves.
#[derive(Debug, Clone)]
pub enum Request {
    KernelInfo,
    Execute(ExecuteRequest),
    Complete(CompleteRequest),
    Inspect(InspectRequest),
    IsComplete(IsCompleteRequest),
    CommInfo(CommInfoRequest),
    History(HistoryRequest),
    Shutdown(ShutdownRequest),
    Interrupt,
    CommOpen(CommOpen),
    CommMsg(CommMsg),
    CommClose(CommClose),
}

/// Why a correctly signed message is not a [`Request`] this kernel serves.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("shardlab's kernel does not handle {msg_type}")]
    Unsupported { msg_type: String },
    #[error("{msg_type} content is not valid: {source}")]
    Malformed {
        msg_type: String,
        source: serde_json::Error,
    },
    #[error("{msg_type} is served on the shell channel, not control")]
    ShellOnly { msg_type: String },
}

impl Request {
    /// Parses the content frame of a message whose header says `msg_type`.
    pub fn parse(msg_type: &str, content: &[u8]) -> Result<Request, RequestError> {
        let malformed = |source| RequestError::Malformed {
            msg_type: msg_type.to_string(),
            source,
        };
        let value: Value = serde_json::from_slice(content).map_err(malformed)?;
        let typed =
            JupyterMessageContent::from_type_and_content(msg_type, value).map_err(malformed)?;
        Ok(match typed {
            JupyterMessageContent::KernelInfoRequest(_) => Request::KernelInfo,
            JupyterMessageContent::ExecuteRequest(r) => Request::Execute(r),
            JupyterMessageContent::CompleteRequest(r) => Request::Complete(r),
            JupyterMessageContent::InspectRequest(r) => Request::Inspect(r),
            JupyterMessageContent::IsCompleteRequest(r) => Request::IsComplete(r),
            JupyterMessageContent::CommInfoRequest(r) => Request::CommInfo(r),
            JupyterMessageContent::HistoryRequest(r) => Request::History(r),
            JupyterMessageContent::ShutdownRequest(r) => Request::Shutdown(r),
            JupyterMessageContent::InterruptRequest(_) => Request::Interrupt,
            JupyterMessageContent::CommOpen(r) => Request::CommOpen(r),
            JupyterMessageContent::CommMsg(r) => Request::CommMsg(r),
            JupyterMessageContent::CommClose(r) => Request::CommClose(r),
            // Replies, iopub messages, and types this kernel has no use for
            // (debug_request, input_reply, ...).
            _ => {
                return Err(RequestError::Unsupported {
                    msg_type: msg_type.to_string(),
                })
            }
        })
    }

    /// The message type this request arrived as.
    pub fn msg_type(&self) -> &'static str {
        match self {
            Request::KernelInfo => "kernel_info_request",
            Request::Execute(_) => "execute_request",
            Request::Complete(_) => "complete_request",
            Request::Inspect(_) => "inspect_request",
            Request::IsComplete(_) => "is_complete_request",
            Request::CommInfo(_) => "comm_info_request",
            Request::History(_) => "history_request",
            Request::Shutdown(_) => "shutdown_request",
            Request::Interrupt => "interrupt_request",
            Request::CommOpen(_) => "comm_open",
            Request::CommMsg(_) => "comm_msg",
            Request::CommClose(_) => "comm_close",
        }
    }
}

impl RequestError {
    pub fn msg_type(&self) -> &str {
        match self {
            RequestError::Unsupported { msg_type }
            | RequestError::Malformed { msg_type, .. }
            | RequestError::ShellOnly { msg_type } => msg_type,
        }
    }

    fn ename(&self) -> &'static str {
        match self {
            RequestError::Unsupported { .. } => "NotImplemented",
            RequestError::Malformed { .. } => "BadRequest",
            RequestError::ShellOnly { .. } => "WrongChannel",
        }
    }

    /// The error reply the sender waits for: `x_request` is answered by an
    /// `x_reply` with status "error". Messages that are not requests get
    /// no answer (`None`), as the protocol expects none.
    pub fn reply(&self) -> Option<JupyterMessageContent> {
        let base = self.msg_type().strip_suffix("_request")?;
        Some(JupyterMessageContent::UnknownMessage(UnknownMessage {
            msg_type: format!("{base}_reply"),
            content: json!({
                "status": "error",
                "ename": self.ename(),
                "evalue": self.to_string(),
                "traceback": [],
            }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(msg_type: &str, content: Value) -> Result<Request, RequestError> {
        Request::parse(msg_type, content.to_string().as_bytes())
    }

    #[test]
    fn every_served_request_parses_into_its_variant() {
        let execute = json!({"code": ":help", "silent": false, "store_history": true,
            "user_expressions": {}, "allow_stdin": false, "stop_on_error": true});
        let cases: Vec<(&str, Value)> = vec![
            ("kernel_info_request", json!({})),
            ("execute_request", execute),
            ("complete_request", json!({"code": ":sh", "cursor_pos": 3})),
            (
                "inspect_request",
                json!({"code": ":shard", "cursor_pos": 2, "detail_level": 0}),
            ),
            ("is_complete_request", json!({"code": "\"\"\""})),
            ("comm_info_request", json!({})),
            (
                "history_request",
                json!({"hist_access_type": "tail", "n": 10, "output": false, "raw": true}),
            ),
            ("shutdown_request", json!({"restart": true})),
            ("interrupt_request", json!({})),
            (
                "comm_open",
                json!({"comm_id": "c1", "target_name": "t", "data": {}}),
            ),
            ("comm_msg", json!({"comm_id": "c1", "data": {"x": 1}})),
            ("comm_close", json!({"comm_id": "c1", "data": {}})),
        ];
        for (msg_type, content) in cases {
            let request = parse(msg_type, content).unwrap_or_else(|e| panic!("{msg_type}: {e}"));
            assert_eq!(request.msg_type(), msg_type);
        }
    }

    #[test]
    fn parsed_requests_carry_their_fields() {
        let r = parse(
            "execute_request",
            json!({"code": ":set seed 7", "silent": true, "store_history": false,
                   "user_expressions": {}, "allow_stdin": false, "stop_on_error": true}),
        );
        assert!(
            matches!(r, Ok(Request::Execute(ref e)) if e.code == ":set seed 7" && e.silent),
            "{r:?}"
        );
        let r = parse(
            "complete_request",
            json!({"code": ":help\n:set tem", "cursor_pos": 14}),
        );
        assert!(
            matches!(r, Ok(Request::Complete(ref c)) if c.cursor_pos == 14),
            "{r:?}"
        );
        let r = parse("shutdown_request", json!({"restart": true}));
        assert!(
            matches!(r, Ok(Request::Shutdown(ref s)) if s.restart),
            "{r:?}"
        );
        let r = parse(
            "comm_open",
            json!({"comm_id": "abc", "target_name": "t", "data": {}}),
        );
        assert!(
            matches!(r, Ok(Request::CommOpen(ref o)) if o.comm_id.0 == "abc"),
            "{r:?}"
        );
    }

    #[test]
    fn unknown_types_and_replies_are_unsupported_with_an_error_reply() {
        let err = parse("frobnicate_request", json!({"x": 1})).unwrap_err();
        assert!(
            matches!(err, RequestError::Unsupported { ref msg_type } if msg_type == "frobnicate_request")
        );
        let reply = err.reply().expect("a request is answered");
        assert_eq!(reply.message_type(), "frobnicate_reply");
        let body = serde_json::to_value(&reply).unwrap();
        assert_eq!(body["status"], "error");
        assert_eq!(body["ename"], "NotImplemented");
        assert!(body["evalue"]
            .as_str()
            .unwrap()
            .contains("frobnicate_request"));

        // A reply sent to the kernel is not a request it serves, and gets no answer.
        let err = parse(
            "execute_reply",
            json!({"status": "ok", "execution_count": 1}),
        )
        .unwrap_err();
        assert!(matches!(err, RequestError::Unsupported { .. }));
        assert!(err.reply().is_none());
        assert!(matches!(
            parse("debug_request", json!({})),
            Err(RequestError::Unsupported { .. })
        ));
    }

    #[test]
    fn malformed_content_is_a_typed_error_answered_as_bad_request() {
        let err = Request::parse("execute_request", b"{not json").unwrap_err();
        assert!(
            matches!(err, RequestError::Malformed { ref msg_type, .. } if msg_type == "execute_request")
        );
        // Valid JSON of the wrong shape: `code` missing, `cursor_pos` a string.
        let err = parse("complete_request", json!({"cursor_pos": "three"})).unwrap_err();
        assert!(matches!(err, RequestError::Malformed { .. }), "{err:?}");
        let reply = err.reply().expect("a request is answered");
        assert_eq!(reply.message_type(), "complete_reply");
        let body = serde_json::to_value(&reply).unwrap();
        assert_eq!(body["ename"], "BadRequest");
        assert!(matches!(
            parse("shutdown_request", json!({"restart": "yes"})),
            Err(RequestError::Malformed { .. })
        ));
    }
}
