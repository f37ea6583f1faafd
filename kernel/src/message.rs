//! Messages in and out: a verified incoming message with its [`Request`]
//! parsed, and the kernel's own messages (replies on shell/control,
//! broadcasts on iopub) built with fresh headers.

use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use jupyter_protocol::{Header, JupyterMessage, JupyterMessageContent};
use serde_json::{json, Value};

use crate::request::{Request, RequestError};

/// The messaging protocol version this kernel speaks.
pub const PROTOCOL_VERSION: &str = "5.3";

/// One verified message from a front end.
#[derive(Debug)]
pub struct Incoming {
    /// Routing frames before the delimiter (the ROUTER peer id first).
    pub identities: Vec<Bytes>,
    pub header: Header,
    pub parent_header: Option<Header>,
    pub metadata: Value,
    /// The content, parsed by the header's `msg_type`.
    pub request: Result<Request, RequestError>,
}

/// A fresh id for a message or a session (a random UUID).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Now, to the microsecond: jupyter_client parses at most six fractional
/// digits, and a longer date would reach its users as an unparsed string.
fn now() -> DateTime<Utc> {
    DateTime::<Utc>::from(std::time::SystemTime::now()).trunc_subsecs(6)
}

/// A header for a message this kernel sends in `session`.
pub fn new_header(session: &str, msg_type: &str) -> Header {
    Header {
        msg_id: new_id(),
        username: "shardlab".to_string(),
        session: session.to_string(),
        date: now(),
        msg_type: msg_type.to_string(),
        version: PROTOCOL_VERSION.to_string(),
    }
}

fn child(
    session: &str,
    parent: &Header,
    identities: Vec<Bytes>,
    content: JupyterMessageContent,
) -> JupyterMessage {
    JupyterMessage {
        zmq_identities: identities,
        header: new_header(session, content.message_type()),
        parent_header: Some(parent.clone()),
        metadata: json!({}),
        content,
        buffers: Vec::new(),
        channel: None,
    }
}

/// The answer to `request`: routed back to its sender, its header as parent.
pub fn reply(
    session: &str,
    request: &Incoming,
    content: impl Into<JupyterMessageContent>,
) -> JupyterMessage {
    child(
        session,
        &request.header,
        request.identities.clone(),
        content.into(),
    )
}

/// A broadcast on iopub caused by the message with header `parent`; its
/// routing frame is the topic subscribers filter on.
pub fn publish(
    session: &str,
    parent: &Header,
    content: impl Into<JupyterMessageContent>,
) -> JupyterMessage {
    let content = content.into();
    let topic = format!("kernel.{session}.{}", content.message_type());
    child(session, parent, vec![Bytes::from(topic)], content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jupyter_protocol::{Status, StreamContent};

    #[test]
    fn headers_are_fresh_and_dated_in_utc_to_the_microsecond() {
        let a = new_header("s1", "status");
        let b = new_header("s1", "status");
        assert_ne!(a.msg_id, b.msg_id);
        assert_eq!(a.msg_id.len(), 36, "{}", a.msg_id);
        assert_eq!(a.version, PROTOCOL_VERSION);
        let text = serde_json::to_value(&a).unwrap()["date"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(text.ends_with('Z'), "{text}");
        let fraction = text
            .rsplit_once('.')
            .map_or("", |(_, f)| f.trim_end_matches('Z'));
        assert!(fraction.len() <= 6, "{text}");
        assert!(a.date.timestamp() > 1_700_000_000, "{text}");
    }

    #[test]
    fn replies_route_back_and_broadcasts_carry_a_topic() {
        let parent = new_header("client", "execute_request");
        let incoming = Incoming {
            identities: vec![Bytes::from_static(b"peer")],
            header: parent.clone(),
            parent_header: None,
            metadata: json!({}),
            request: Ok(Request::KernelInfo),
        };
        let r = reply("kernel", &incoming, Status::idle());
        assert_eq!(r.zmq_identities, vec![Bytes::from_static(b"peer")]);
        assert_eq!(
            r.parent_header.as_ref().map(|h| h.msg_id.as_str()),
            Some(parent.msg_id.as_str())
        );
        assert_eq!(r.header.session, "kernel");
        let p = publish("kernel", &parent, StreamContent::stdout("hi"));
        assert_eq!(p.header.msg_type, "stream");
        assert_eq!(
            p.zmq_identities,
            vec![Bytes::from_static(b"kernel.kernel.stream")]
        );
    }
}
