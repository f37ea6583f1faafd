//! Jupyter wire messages: the frames of one message on a ZeroMQ socket,
//! their HMAC-SHA256 signature, and building replies. Every incoming
//! message goes through [`decode`], which refuses a bad signature before
//! anything reads the content.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// Separates routing identities from the signed parts of a message.
pub const DELIMITER: &[u8] = b"<IDS|MSG>";
/// The messaging protocol version this kernel speaks.
pub const PROTOCOL_VERSION: &str = "5.3";

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("message has no <IDS|MSG> delimiter frame")]
    NoDelimiter,
    #[error("message has {0} frames after the delimiter; at least 5 needed")]
    TooFewFrames(usize),
    #[error("message signature does not match (msg_type {msg_type:?}); dropped")]
    BadSignature { msg_type: String },
    #[error("message {part} is not valid JSON: {source}")]
    Json {
        part: &'static str,
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
        let digest = self.mac(parts)?.finalize().into_bytes();
        Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Whether `signature` (hex) signs `parts`, compared in constant time.
    pub fn verify(&self, signature: &[u8], parts: &[&[u8]]) -> Result<bool, WireError> {
        if self.key.is_empty() {
            return Ok(true);
        }
        let Some(raw) = unhex(signature) else {
            return Ok(false);
        };
        Ok(self.mac(parts)?.verify_slice(&raw).is_ok())
    }
}

fn unhex(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

/// One decoded message.
#[derive(Debug, Clone)]
pub struct Message {
    /// Routing frames before the delimiter (the ROUTER peer id first).
    pub identities: Vec<Bytes>,
    pub header: Value,
    pub parent_header: Value,
    pub metadata: Value,
    pub content: Value,
}

impl Message {
    pub fn msg_type(&self) -> &str {
        self.header["msg_type"].as_str().unwrap_or("")
    }

    /// A message answering `self`: same routing, `self`'s header as parent.
    pub fn reply(&self, session: &str, msg_type: &str, content: Value) -> Message {
        Message {
            identities: self.identities.clone(),
            header: new_header(session, msg_type),
            parent_header: self.header.clone(),
            metadata: json!({}),
            content,
        }
    }

    /// A broadcast on iopub caused by `self` (routed by a topic frame).
    pub fn publish(&self, session: &str, msg_type: &str, content: Value) -> Message {
        Message {
            identities: vec![Bytes::from(format!("kernel.{session}.{msg_type}"))],
            header: new_header(session, msg_type),
            parent_header: self.header.clone(),
            metadata: json!({}),
            content,
        }
    }
}

/// A fresh header for a message this kernel sends.
pub fn new_header(session: &str, msg_type: &str) -> Value {
    json!({
        "msg_id": new_id(),
        "session": session,
        "username": "shardlab",
        "date": iso_now(),
        "msg_type": msg_type,
        "version": PROTOCOL_VERSION,
    })
}

/// A unique id: process id, time and a counter, hex, in uuid layout.
pub fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let hex = format!(
        "{:016x}{:08x}{:08x}",
        nanos as u64,
        std::process::id(),
        n as u32
    );
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The current UTC time as ISO 8601, as message headers carry it.
pub fn iso_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Frames (as a ROUTER or SUB socket delivers them) to a verified message.
pub fn decode(frames: Vec<Bytes>, signer: &Signer) -> Result<Message, WireError> {
    let split = frames
        .iter()
        .position(|f| f.as_ref() == DELIMITER)
        .ok_or(WireError::NoDelimiter)?;
    let rest = &frames[split + 1..];
    if rest.len() < 5 {
        return Err(WireError::TooFewFrames(rest.len()));
    }
    let parts: [&[u8]; 4] = [&rest[1], &rest[2], &rest[3], &rest[4]];
    let parse = |part: &'static str, bytes: &[u8]| {
        serde_json::from_slice::<Value>(bytes).map_err(|source| WireError::Json { part, source })
    };
    if !signer.verify(&rest[0], &parts)? {
        // Read the type only to say what was dropped; nothing else is looked at.
        let msg_type = parse("header", &rest[1])
            .ok()
            .and_then(|h| h["msg_type"].as_str().map(str::to_string))
            .unwrap_or_default();
        return Err(WireError::BadSignature { msg_type });
    }
    Ok(Message {
        identities: frames[..split].to_vec(),
        header: parse("header", &rest[1])?,
        parent_header: parse("parent_header", &rest[2])?,
        metadata: parse("metadata", &rest[3])?,
        content: parse("content", &rest[4])?,
    })
}

/// A message to signed frames, identities first.
pub fn encode(msg: &Message, signer: &Signer) -> Result<Vec<Bytes>, WireError> {
    let parts = [
        msg.header.to_string(),
        msg.parent_header.to_string(),
        msg.metadata.to_string(),
        msg.content.to_string(),
    ];
    let refs: [&[u8]; 4] = [
        parts[0].as_bytes(),
        parts[1].as_bytes(),
        parts[2].as_bytes(),
        parts[3].as_bytes(),
    ];
    let signature = signer.sign(&refs)?;
    let mut frames = msg.identities.clone();
    frames.push(Bytes::from_static(DELIMITER));
    frames.push(Bytes::from(signature));
    frames.extend(parts.into_iter().map(Bytes::from));
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        Message {
            identities: vec![Bytes::from_static(b"peer")],
            header: new_header("s1", "execute_request"),
            parent_header: json!({}),
            metadata: json!({}),
            content: json!({"code": ":help"}),
        }
    }

    #[test]
    fn signed_messages_round_trip_and_tampering_is_refused() {
        let signer = Signer::new("secret");
        let frames = encode(&sample(), &signer).unwrap();
        let back = decode(frames.clone(), &signer).unwrap();
        assert_eq!(back.msg_type(), "execute_request");
        assert_eq!(back.content["code"], ":help");
        assert_eq!(back.identities, vec![Bytes::from_static(b"peer")]);

        let wrong = Signer::new("not the key");
        assert!(matches!(
            decode(frames.clone(), &wrong),
            Err(WireError::BadSignature { ref msg_type }) if msg_type == "execute_request"
        ));
        let mut tampered = frames;
        let last = tampered.len() - 1;
        tampered[last] = Bytes::from_static(br#"{"code": ":set seed 77"}"#);
        assert!(matches!(
            decode(tampered, &signer),
            Err(WireError::BadSignature { .. })
        ));
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
        assert!(!s.verify(b"zz", &[b"x"]).unwrap());
    }

    #[test]
    fn dates_are_iso_utc() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let now = iso_now();
        assert!(now.ends_with('Z') && now.len() == 27, "{now}");
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
