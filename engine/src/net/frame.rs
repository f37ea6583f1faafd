//! Frames: the unit that crosses a socket, and how bytes become one.
//!
//! Every frame starts with a fixed 12-byte header:
//!
//! ```text
//! magic "SHLB" (4) | protocol version u16 LE (2) | kind u8 (1) | flags u8 (1) | payload length u32 LE (4)
//! ```
//!
//! A control payload is one JSON-serialized message. A tensor payload is a
//! [`TensorHeader`] (dtype, shape, a caller-chosen tag) followed by the raw
//! little-endian elements. A close frame says the sender is done: the
//! connection ended on purpose, not cut short.
//!
//! Flag [`FLAG_SEALED`] marks a frame sealed with the connection's keys
//! (see [`super::seal`]): its payload is encrypted (a tensor's header stays
//! readable) and followed by a [`TAG_LEN`]-byte tag, which the length
//! counts. Only a connection holding the keys can read one, so
//! [`parse_frame`] refuses them.
//!
//! Parsing is a pure function of a byte slice. "Not enough bytes yet" is the
//! value `Ok(None)`, never an error, so the same code serves a socket reader
//! and a fuzzer. The header is validated (magic, version, kind, flags, length
//! cap) before the payload is looked at, so a hostile length claim costs
//! nothing.

use std::fmt;

use super::error::FrameError;
pub use super::tensor::{TensorDtype, TensorHeader, MAX_TENSOR_DIMS, TENSOR_HEADER_FIXED};

pub const MAGIC: &[u8; 4] = b"SHLB";
/// 2: frames after the handshake are sealed; close frames.
/// 3: nodes calibrate themselves when asked (`Calibrate`).
/// 4: AES-256-GCM in place of ChaCha20-Poly1305; keys move every 2^20
///    segments.
pub const PROTOCOL_VERSION: u16 = 4;
pub const HEADER_LEN: usize = 12;
pub const DEFAULT_MAX_CONTROL: u32 = 4 << 20;
pub const DEFAULT_MAX_TENSOR: u32 = 512 << 20;
/// The one flag: the payload is sealed and ends in a tag.
pub const FLAG_SEALED: u8 = 0x01;
pub use super::seal::TAG_LEN;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    Control = 1,
    Tensor = 2,
    /// The sender's last frame: no payload (a sealed one: only its tag).
    Close = 3,
}

impl FrameKind {
    pub fn from_code(code: u8) -> Result<Self, FrameError> {
        match code {
            1 => Ok(FrameKind::Control),
            2 => Ok(FrameKind::Tensor),
            3 => Ok(FrameKind::Close),
            _ => Err(FrameError::UnknownKind { code }),
        }
    }
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameKind::Control => "control",
            FrameKind::Tensor => "tensor",
            FrameKind::Close => "close",
        })
    }
}

/// Per-kind payload caps. A peer that claims more is refused from the
/// header alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    pub max_control: u32,
    pub max_tensor: u32,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_control: DEFAULT_MAX_CONTROL,
            max_tensor: DEFAULT_MAX_TENSOR,
        }
    }
}

impl FrameLimits {
    pub fn cap(&self, kind: FrameKind) -> u32 {
        match kind {
            FrameKind::Control => self.max_control,
            FrameKind::Tensor => self.max_tensor,
            FrameKind::Close => TAG_LEN as u32,
        }
    }
}

/// A validated frame header: the payload that follows is `len` bytes of
/// `kind`, the last [`TAG_LEN`] of them a tag when `sealed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: FrameKind,
    pub len: u32,
    pub sealed: bool,
}

impl FrameHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(MAGIC);
        h[4..6].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        h[6] = self.kind as u8;
        h[7] = if self.sealed { FLAG_SEALED } else { 0 };
        h[8..12].copy_from_slice(&self.len.to_le_bytes());
        h
    }

    /// Payload bytes once opened: all of them when not sealed, the
    /// segments without their tags when sealed.
    pub fn plain_len(&self) -> Result<usize, FrameError> {
        if !self.sealed {
            return Ok(self.len as usize);
        }
        super::seal::plain_len(self.len as usize)
            .ok_or(FrameError::BadSealedLength { len: self.len })
    }
}

/// Reads a frame header from the front of `buf`. Checks the magic on
/// however many bytes are present, so garbage is refused at once rather
/// than after twelve bytes.
pub fn parse_header(buf: &[u8], limits: &FrameLimits) -> Result<Option<FrameHeader>, FrameError> {
    let seen = buf.len().min(MAGIC.len());
    if buf[..seen] != MAGIC[..seen] {
        return Err(FrameError::BadMagic {
            found: buf[..seen].to_vec(),
        });
    }
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let version = u16::from_le_bytes([buf[4], buf[5]]);
    if version != PROTOCOL_VERSION {
        return Err(FrameError::UnsupportedVersion {
            found: version,
            ours: PROTOCOL_VERSION,
        });
    }
    let kind = FrameKind::from_code(buf[6])?;
    let sealed = match buf[7] {
        0 => false,
        FLAG_SEALED => true,
        flags => return Err(FrameError::UnknownFlags { flags }),
    };
    let len = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    if kind == FrameKind::Close {
        let expected = if sealed { TAG_LEN as u32 } else { 0 };
        if len != expected {
            return Err(FrameError::BadClose { len, expected });
        }
    }
    let cap = limits.cap(kind);
    if len > cap {
        return Err(FrameError::TooLarge {
            kind,
            len: u64::from(len),
            cap: u64::from(cap),
        });
    }
    Ok(Some(FrameHeader { kind, len, sealed }))
}

/// One whole frame, owning its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A JSON-serialized control message.
    Control(Vec<u8>),
    Tensor {
        header: TensorHeader,
        data: Vec<u8>,
    },
    /// The sender is done (see [`FrameKind::Close`]).
    Close,
}

impl Frame {
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::Control(_) => FrameKind::Control,
            Frame::Tensor { .. } => FrameKind::Tensor,
            Frame::Close => FrameKind::Close,
        }
    }

    /// Appends the encoded frame to `out`. Fails, leaving `out` as it was,
    /// when the frame could not be parsed back: tensor data that does not
    /// match its shape, or a payload over the u32 length field. (Caps are
    /// the receiver's business; [`checked_len`] applies them when sending.)
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let (payload_len, kind) = match self {
            Frame::Control(payload) => (payload.len() as u64, FrameKind::Control),
            Frame::Tensor { header, data } => {
                header.check_data_len(data.len() as u64)?;
                (
                    header.encoded_len() as u64 + data.len() as u64,
                    FrameKind::Tensor,
                )
            }
            Frame::Close => (0, FrameKind::Close),
        };
        let unlimited = FrameLimits {
            max_control: u32::MAX,
            max_tensor: u32::MAX,
        };
        let len = checked_len(kind, payload_len, &unlimited)?;
        let sealed = false;
        out.extend_from_slice(&FrameHeader { kind, len, sealed }.encode());
        match self {
            Frame::Control(payload) => out.extend_from_slice(payload),
            Frame::Tensor { header, data } => {
                header.encode(out);
                out.extend_from_slice(data);
            }
            Frame::Close => {}
        }
        Ok(())
    }
}

/// The u32 wire length of a payload, or why it cannot be sent.
pub fn checked_len(kind: FrameKind, len: u64, limits: &FrameLimits) -> Result<u32, FrameError> {
    let cap = limits.cap(kind);
    match u32::try_from(len) {
        Ok(l) if l <= cap => Ok(l),
        _ => Err(FrameError::TooLarge {
            kind,
            len,
            cap: u64::from(cap),
        }),
    }
}

/// Where a tensor payload's data starts, judged from the payload's first
/// bytes (`prefix`, possibly incomplete) and its full length `len`.
/// `Ok(None)`: the tensor header is not all here yet.
pub fn tensor_layout(prefix: &[u8], len: u32) -> Result<Option<(TensorHeader, usize)>, FrameError> {
    Ok(tensor_layout_of(prefix, len, false)?.map(|(th, th_len, _)| (th, th_len)))
}

/// [`tensor_layout`] for a plaintext or a sealed payload: the tensor
/// header, its length, and the data's length once opened.
pub fn tensor_layout_of(
    prefix: &[u8],
    len: u32,
    sealed: bool,
) -> Result<Option<(TensorHeader, usize, usize)>, FrameError> {
    let len = len as usize;
    let prefix = &prefix[..prefix.len().min(len)];
    match TensorHeader::parse(prefix)? {
        Some((th, th_len)) => {
            let rest = len - th_len;
            let data_len = if sealed {
                super::seal::plain_len(rest)
                    .ok_or(FrameError::BadSealedLength { len: rest as u32 })?
            } else {
                rest
            };
            th.check_data_len(data_len as u64)?;
            Ok(Some((th, th_len, data_len)))
        }
        None if prefix.len() == len => Err(FrameError::ShortTensorPayload { len }),
        None => Ok(None),
    }
}

/// Parses one plaintext frame from the front of `buf`. `Ok(None)` means
/// the bytes so far are a valid beginning and more are needed;
/// `Ok(Some((frame, n)))` consumed the first `n` bytes. A sealed frame is
/// an error: opening one takes the connection's keys.
pub fn parse_frame(buf: &[u8], limits: &FrameLimits) -> Result<Option<(Frame, usize)>, FrameError> {
    let Some(header) = parse_header(buf, limits)? else {
        return Ok(None);
    };
    if header.sealed {
        return Err(FrameError::SealedWithoutKey);
    }
    let body = &buf[HEADER_LEN..];
    let len = header.len as usize;
    // The tensor header is judged before the whole payload is here.
    let tensor = match header.kind {
        FrameKind::Tensor => match tensor_layout(body, header.len)? {
            Some(t) => Some(t),
            None => return Ok(None),
        },
        FrameKind::Control | FrameKind::Close => None,
    };
    if body.len() < len {
        return Ok(None);
    }
    let payload = &body[..len];
    let frame = match tensor {
        None if header.kind == FrameKind::Close => Frame::Close,
        None => Frame::Control(payload.to_vec()),
        Some((header, th_len)) => Frame::Tensor {
            header,
            data: payload[th_len..].to_vec(),
        },
    };
    Ok(Some((frame, HEADER_LEN + len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn limits() -> FrameLimits {
        FrameLimits::default()
    }

    fn control_frame() -> Frame {
        Frame::Control(br#"{"type":"Step","pos":7}"#.to_vec())
    }

    fn tensor_frame() -> Frame {
        let header = TensorHeader::new(TensorDtype::F32, &[2, 3], 42).unwrap();
        let data: Vec<u8> = (0..24u8).collect();
        Frame::Tensor { header, data }
    }

    fn encoded(frame: &Frame) -> Vec<u8> {
        let mut out = Vec::new();
        frame.encode(&mut out).unwrap();
        out
    }

    #[test]
    fn control_round_trip() {
        let frame = control_frame();
        let bytes = encoded(&frame);
        assert_eq!(&bytes[..4], MAGIC);
        assert_eq!(bytes.len(), HEADER_LEN + 23);
        let (back, used) = parse_frame(&bytes, &limits()).unwrap().unwrap();
        assert_eq!(back, frame);
        assert_eq!(used, bytes.len());
    }

    #[test]
    fn tensor_round_trip_and_back_to_back_frames() {
        let t = tensor_frame();
        let c = control_frame();
        let mut bytes = encoded(&t);
        let first = bytes.len();
        c.encode(&mut bytes).unwrap();
        assert_eq!(first, HEADER_LEN + TENSOR_HEADER_FIXED + 16 + 24);
        let (back, used) = parse_frame(&bytes, &limits()).unwrap().unwrap();
        assert_eq!(back, t);
        assert_eq!(used, first);
        let Frame::Tensor { header, .. } = &back else {
            panic!("expected a tensor, got {back:?}");
        };
        assert_eq!(header.dims(), &[2, 3]);
        assert_eq!(header.tag(), 42);
        assert_eq!(header.dtype(), TensorDtype::F32);
        let (back2, used2) = parse_frame(&bytes[used..], &limits()).unwrap().unwrap();
        assert_eq!(back2, c);
        assert_eq!(used + used2, bytes.len());
    }

    #[test]
    fn scalar_and_bytes_tensors_round_trip() {
        for (dtype, dims, n) in [
            (TensorDtype::F16, vec![], 2usize),
            (TensorDtype::Bf16, vec![3], 6),
            (TensorDtype::Bytes, vec![5, 1], 5),
        ] {
            let header = TensorHeader::new(dtype, &dims, 1).unwrap();
            let frame = Frame::Tensor {
                header,
                data: vec![9; n],
            };
            let bytes = encoded(&frame);
            let (back, _) = parse_frame(&bytes, &limits()).unwrap().unwrap();
            assert_eq!(back, frame);
        }
    }

    #[test]
    fn every_truncation_is_incomplete() {
        for frame in [control_frame(), tensor_frame()] {
            let bytes = encoded(&frame);
            for cut in 0..bytes.len() {
                match parse_frame(&bytes[..cut], &limits()) {
                    Ok(None) => {}
                    other => panic!("{} cut at {cut}: {other:?}", frame.kind()),
                }
            }
        }
    }

    #[test]
    fn bad_magic_is_refused_from_the_first_byte() {
        let err = parse_frame(b"GET / HTTP/1.1\r\n", &limits()).unwrap_err();
        assert_eq!(
            err,
            FrameError::BadMagic {
                found: b"GET ".to_vec()
            }
        );
        let err = parse_frame(b"X", &limits()).unwrap_err();
        assert!(matches!(err, FrameError::BadMagic { .. }), "{err:?}");
        assert!(err.to_string().contains("SHLB"), "{err}");
    }

    #[test]
    fn header_errors_come_before_the_payload() {
        let good = FrameHeader {
            kind: FrameKind::Control,
            len: 10,
            sealed: false,
        }
        .encode();
        let mut v = good;
        v[4..6].copy_from_slice(&1u16.to_le_bytes());
        assert_eq!(
            parse_frame(&v, &limits()).unwrap_err(),
            FrameError::UnsupportedVersion {
                found: 1,
                ours: PROTOCOL_VERSION
            }
        );
        let mut k = good;
        k[6] = 9;
        assert_eq!(
            parse_frame(&k, &limits()).unwrap_err(),
            FrameError::UnknownKind { code: 9 }
        );
        let mut k0 = good;
        k0[6] = 0;
        assert_eq!(
            parse_frame(&k0, &limits()).unwrap_err(),
            FrameError::UnknownKind { code: 0 }
        );
        let mut f = good;
        f[7] = 0x80;
        assert_eq!(
            parse_frame(&f, &limits()).unwrap_err(),
            FrameError::UnknownFlags { flags: 0x80 }
        );
        // A 4 GiB claim is refused with only the 12 header bytes present.
        let huge = FrameHeader {
            kind: FrameKind::Tensor,
            len: u32::MAX,
            sealed: false,
        }
        .encode();
        assert_eq!(
            parse_frame(&huge, &limits()).unwrap_err(),
            FrameError::TooLarge {
                kind: FrameKind::Tensor,
                len: u64::from(u32::MAX),
                cap: u64::from(DEFAULT_MAX_TENSOR),
            }
        );
        let big_control = FrameHeader {
            kind: FrameKind::Control,
            len: DEFAULT_MAX_CONTROL + 1,
            sealed: false,
        }
        .encode();
        assert!(matches!(
            parse_frame(&big_control, &limits()).unwrap_err(),
            FrameError::TooLarge {
                kind: FrameKind::Control,
                ..
            }
        ));
    }

    #[test]
    fn tensor_cap_is_configurable() {
        let bytes = encoded(&tensor_frame());
        let tight = FrameLimits {
            max_control: 100,
            max_tensor: 20,
        };
        let err = parse_frame(&bytes, &tight).unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { cap: 20, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn tensor_header_errors() {
        let bytes = encoded(&tensor_frame());
        let mut d = bytes.clone();
        d[HEADER_LEN] = 7;
        assert_eq!(
            parse_frame(&d, &limits()).unwrap_err(),
            FrameError::UnknownDtype { code: 7 }
        );
        let mut n = bytes.clone();
        n[HEADER_LEN + 1] = 9;
        assert_eq!(
            parse_frame(&n, &limits()).unwrap_err(),
            FrameError::TooManyDims { ndim: 9 }
        );
        let mut r = bytes.clone();
        r[HEADER_LEN + 2] = 1;
        assert!(matches!(
            parse_frame(&r, &limits()).unwrap_err(),
            FrameError::ReservedNotZero { .. }
        ));
        // Shape says 2x3 f32 = 24 bytes; claim a shape of 2x4 instead.
        let mut s = bytes.clone();
        s[HEADER_LEN + TENSOR_HEADER_FIXED + 8] = 4;
        let err = parse_frame(&s, &limits()).unwrap_err();
        assert_eq!(
            err,
            FrameError::DataLength {
                dims: vec![2, 4],
                dtype: "f32",
                expected: 32,
                found: 24
            }
        );
        // A tensor payload too short to hold even the fixed header.
        let mut short = FrameHeader {
            kind: FrameKind::Tensor,
            len: 3,
            sealed: false,
        }
        .encode()
        .to_vec();
        short.extend_from_slice(&[0, 0, 0]);
        assert_eq!(
            parse_frame(&short, &limits()).unwrap_err(),
            FrameError::ShortTensorPayload { len: 3 }
        );
    }

    #[test]
    fn encode_refuses_data_that_does_not_match_the_shape() {
        let header = TensorHeader::new(TensorDtype::F32, &[4], 0).unwrap();
        let mut out = vec![1, 2];
        let err = Frame::Tensor {
            header,
            data: vec![0; 15],
        }
        .encode(&mut out)
        .unwrap_err();
        assert!(matches!(
            err,
            FrameError::DataLength {
                expected: 16,
                found: 15,
                ..
            }
        ));
        assert_eq!(out, vec![1, 2], "a failed encode leaves the buffer alone");
    }

    #[test]
    fn garbage_and_mutations_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let valid = [encoded(&control_frame()), encoded(&tensor_frame())];
        let mut outcomes = [0usize; 3];
        for i in 0..20_000 {
            let mut bytes = if i % 2 == 0 {
                let n = rng.random_range(0..64);
                (0..n).map(|_| rng.random::<u8>()).collect::<Vec<u8>>()
            } else {
                valid[i % 4 / 2].clone()
            };
            if i % 2 == 1 {
                for _ in 0..rng.random_range(1..4) {
                    let at = rng.random_range(0..bytes.len());
                    bytes[at] = rng.random();
                }
                bytes.truncate(rng.random_range(0..=bytes.len()));
            }
            let slot = match parse_frame(&bytes, &limits()) {
                Ok(Some((_, used))) => {
                    assert!(used <= bytes.len());
                    0
                }
                Ok(None) => 1,
                Err(_) => 2,
            };
            outcomes[slot] += 1;
        }
        // The mix actually exercised all three outcomes.
        assert!(outcomes.iter().all(|&n| n > 0), "{outcomes:?}");
    }
}
