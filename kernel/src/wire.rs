//! Jupyter wire messages: the frames of one message on a ZeroMQ socket and
//! their HMAC-SHA256 signature. Every incoming message goes through
//! [`decode`], which refuses a bad signature before anything reads the
//! content, and then parses the header and the typed [`Request`] once.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use jupyter_protocol::{Header, JupyterMessage};
use serde_json::Value;
use sha2::Sha256;

use crate::message::Incoming;
use crate::request::Request;

/// Separates routing identities from the signed parts of a message.
pub const DELIMITER: &[u8] = b"<IDS|MSG>";

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("message has no <IDS|MSG> delimiter frame")]
    NoDelimiter,
    #[error("message has {0} frames after the delimiter; at least 5 needed")]
    TooFewFrames(usize),
    #[error("message signature does not match (msg_type {msg_type:?}); dropped")]
    BadSignature { msg_type: String },
    #[error("message {part} is not valid: {source}")]
    Json {
        part: &'static str,
        source: serde_json::Error,
    },
    #[error("encoding the {part} of a {msg_type} message: {source}")]
    Encode {
        part: &'static str,
        msg_type: String,
        source: serde_json::Error,
    },
    #[error("signing key rejected: {0}")]
    Key(String),
}

/// Signs and checks messages with the connection file's key. An empty key
/// means signing is off, as the protocol allows.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl Signer {
    pub fn new(key: &str) -> Self {
        Signer {
            key: key.as_bytes().to_vec(),
        }
    }

    fn mac(&self, parts: &[&[u8]]) -> Result<Hmac<Sha256>, WireError> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .map_err(|e| WireError::Key(e.to_string()))?;
        for p in parts {
            mac.update(p);
        }
        Ok(mac)
    }

    /// The hex signature of the four JSON parts ("" when signing is off).
    pub fn sign(&self, parts: &[&[u8]]) -> Result<String, WireError> {
        if self.key.is_empty() {
            return Ok(String::new());
        }
        Ok(hex::encode(self.mac(parts)?.finalize().into_bytes()))
    }

    /// Whether `signature` (hex) signs `parts`, compared in constant time.
    pub fn verify(&self, signature: &[u8], parts: &[&[u8]]) -> Result<bool, WireError> {
        if self.key.is_empty() {
            return Ok(true);
        }
        let Ok(raw) = hex::decode(signature) else {
            return Ok(false);
        };
        Ok(self.mac(parts)?.verify_slice(&raw).is_ok())
    }
}

fn parse<T: serde::de::DeserializeOwned>(part: &'static str, bytes: &[u8]) -> Result<T, WireError> {
    serde_json::from_slice(bytes).map_err(|source| WireError::Json { part, source })
}

/// An empty object (the protocol's "no parent") is `None`.
fn parse_parent(bytes: &[u8]) -> Result<Option<Header>, WireError> {
    let value: Value = parse("parent_header", bytes)?;
    if value.as_object().is_some_and(|o| o.is_empty()) || value.is_null() {
        return Ok(None);
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|source| WireError::Json {
            part: "parent_header",
            source,
        })
}

/// Frames (as a ROUTER or SUB socket delivers them) to a verified message.
/// A content the kernel cannot serve is not an error here: it becomes the
/// message's `request` error, which the server answers.
pub fn decode(frames: Vec<Bytes>, signer: &Signer) -> Result<Incoming, WireError> {
    let split = frames
        .iter()
        .position(|f| f.as_ref() == DELIMITER)
        .ok_or(WireError::NoDelimiter)?;
    let rest = &frames[split + 1..];
    if rest.len() < 5 {
        return Err(WireError::TooFewFrames(rest.len()));
    }
    let parts: [&[u8]; 4] = [&rest[1], &rest[2], &rest[3], &rest[4]];
    if !signer.verify(&rest[0], &parts)? {
        // Read the type only to say what was dropped; nothing else is looked at.
        let msg_type = parse::<Value>("header", &rest[1])
            .ok()
            .and_then(|h| h["msg_type"].as_str().map(str::to_string))
            .unwrap_or_default();
        return Err(WireError::BadSignature { msg_type });
    }
    let header: Header = parse("header", &rest[1])?;
    Ok(Incoming {
        identities: frames[..split].to_vec(),
        parent_header: parse_parent(&rest[2])?,
        metadata: parse("metadata", &rest[3])?,
        request: Request::parse(&header.msg_type, &rest[4]),
        header,
    })
}

/// A message to signed frames, identities first.
pub fn encode(msg: &JupyterMessage, signer: &Signer) -> Result<Vec<Bytes>, WireError> {
    let json = |part: &'static str, value: Result<Vec<u8>, serde_json::Error>| {
        value.map_err(|source| WireError::Encode {
            part,
            msg_type: msg.header.msg_type.clone(),
            source,
        })
    };
    let parent = match &msg.parent_header {
        Some(h) => json("parent_header", serde_json::to_vec(h))?,
        None => b"{}".to_vec(),
    };
    let parts = [
        json("header", serde_json::to_vec(&msg.header))?,
        parent,
        json("metadata", serde_json::to_vec(&msg.metadata))?,
        json("content", serde_json::to_vec(&msg.content))?,
    ];
    let refs: [&[u8]; 4] = [&parts[0], &parts[1], &parts[2], &parts[3]];
    let signature = signer.sign(&refs)?;
    let mut frames = msg.zmq_identities.clone();
    frames.push(Bytes::from_static(DELIMITER));
    frames.push(Bytes::from(signature));
    frames.extend(parts.into_iter().map(Bytes::from));
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{new_header, publish, reply};
    use crate::request::RequestError;
    use jupyter_protocol::{ExecuteRequest, JupyterMessageContent, Status};
    use serde_json::json;

    /// An execute_request as a front end would send it, framed and signed.
    fn request_frames(signer: &Signer, msg_type: &str, content: &[u8]) -> Vec<Bytes> {
        let header = serde_json::to_vec(&new_header("client", msg_type)).unwrap();
        let parts: [&[u8]; 4] = [&header, b"{}", b"{}", content];
        let signature = signer.sign(&parts).unwrap();
        let mut frames = vec![
            Bytes::from_static(b"peer"),
            Bytes::from_static(DELIMITER),
            Bytes::from(signature),
        ];
        frames.extend(parts.iter().map(|p| Bytes::copy_from_slice(p)));
        frames
    }

    fn execute_content(code: &str) -> Vec<u8> {
        serde_json::to_vec(&JupyterMessageContent::ExecuteRequest(ExecuteRequest::new(
            code.to_string(),
        )))
        .unwrap()
    }

    #[test]
    fn a_signed_request_decodes_to_its_typed_request() {
        let signer = Signer::new("secret");
        let frames = request_frames(&signer, "execute_request", &execute_content(":help"));
        let msg = decode(frames, &signer).unwrap();
        assert_eq!(msg.identities, vec![Bytes::from_static(b"peer")]);
        assert_eq!(msg.header.msg_type, "execute_request");
        assert!(msg.parent_header.is_none());
        assert!(
            matches!(msg.request, Ok(Request::Execute(ref e)) if e.code == ":help"),
            "{:?}",
            msg.request
        );
    }

    #[test]
    fn a_wrong_key_or_tampered_content_is_refused() {
        let signer = Signer::new("secret");
        let frames = request_frames(&signer, "execute_request", &execute_content(":help"));
        assert!(matches!(
            decode(frames.clone(), &Signer::new("not the key")),
            Err(WireError::BadSignature { ref msg_type }) if msg_type == "execute_request"
        ));
        let mut tampered = frames;
        let last = tampered.len() - 1;
        tampered[last] = Bytes::from(execute_content(":set seed 77"));
        assert!(matches!(
            decode(tampered, &signer),
            Err(WireError::BadSignature { .. })
        ));
    }

    #[test]
    fn unknown_types_and_bad_content_decode_with_a_typed_request_error() {
        let signer = Signer::new("k");
        let msg = decode(
            request_frames(&signer, "frobnicate_request", b"{}"),
            &signer,
        )
        .unwrap();
        assert!(matches!(msg.request, Err(RequestError::Unsupported { .. })));
        let msg = decode(
            request_frames(&signer, "execute_request", b"{oops"),
            &signer,
        )
        .unwrap();
        assert!(matches!(msg.request, Err(RequestError::Malformed { .. })));
    }

    #[test]
    fn a_header_that_is_not_json_is_a_wire_error() {
        let signer = Signer::new("k");
        let parts: [&[u8]; 4] = [b"{not json", b"{}", b"{}", b"{}"];
        let mut frames = vec![
            Bytes::from_static(DELIMITER),
            Bytes::from(signer.sign(&parts).unwrap()),
        ];
        frames.extend(parts.iter().map(|p| Bytes::copy_from_slice(p)));
        assert!(matches!(
            decode(frames, &signer),
            Err(WireError::Json { part: "header", .. })
        ));
    }

    #[test]
    fn the_kernels_messages_encode_to_frames_that_decode_and_verify() {
        let signer = Signer::new("secret");
        let incoming = decode(
            request_frames(&signer, "kernel_info_request", b"{}"),
            &signer,
        )
        .unwrap();
        let answer = reply("kernel", &incoming, Status::busy());
        let frames = encode(&answer, &signer).unwrap();
        assert_eq!(frames[0], Bytes::from_static(b"peer"));
        assert_eq!(frames[1], Bytes::from_static(DELIMITER));
        let parts: Vec<&[u8]> = frames[3..].iter().map(|f| f.as_ref()).collect();
        assert!(signer.verify(&frames[2], &parts).unwrap());
        let parent: Value = serde_json::from_slice(&frames[4]).unwrap();
        assert_eq!(parent["msg_id"], json!(incoming.header.msg_id));
        let content: Value = serde_json::from_slice(&frames[6]).unwrap();
        assert_eq!(content, json!({"execution_state": "busy"}));

        let no_parent = JupyterMessage {
            parent_header: None,
            ..publish("kernel", &incoming.header, Status::idle())
        };
        let frames = encode(&no_parent, &signer).unwrap();
        assert_eq!(frames[4].as_ref(), b"{}".as_slice());
    }

    #[test]
    fn signature_matches_a_known_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe".
        let s = Signer::new("Jefe");
        let sig = s.sign(&[b"what do ya want ", b"for nothing?"]).unwrap();
        assert_eq!(
            sig,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(s
            .verify(sig.as_bytes(), &[b"what do ya want for nothing?"])
            .unwrap());
        assert!(s
            .verify(
                sig.to_uppercase().as_bytes(),
                &[b"what do ya want for nothing?"]
            )
            .unwrap());
        assert!(!s.verify(b"zz", &[b"x"]).unwrap());
        assert!(!s.verify(b"abc", &[b"x"]).unwrap());
        assert!(Signer::new("").verify(b"", &[b"x"]).unwrap());
        assert_eq!(Signer::new("").sign(&[b"x"]).unwrap(), "");
    }

    #[test]
    fn frames_without_delimiter_or_parts_are_errors() {
        let signer = Signer::new("k");
        assert!(matches!(
            decode(vec![Bytes::from_static(b"x")], &signer),
            Err(WireError::NoDelimiter)
        ));
        assert!(matches!(
            decode(vec![Bytes::from_static(DELIMITER), Bytes::new()], &signer),
            Err(WireError::TooFewFrames(1))
        ));
    }
}
