//! How activations travel between nodes: the wire precision of all-reduce
//! partials and pipeline hand-offs, and the codecs for each.
//!
//! `F64` (the default) sends partials exactly, so every layout is
//! bit-identical to one process. The others trade that for fewer bytes:
//! `F32` (half the bytes of f64 partials; hidden states are f32 already, so
//! it is exact for those), `F16` and `Bf16` (2 bytes a value), and `Q8`
//! (blocks of 32 values as one f32 scale and 32 signed bytes, 1.125 bytes a
//! value). A tensor group stays bit-identical *among its members* at any
//! precision: each member sums the decoded form of its own partial too.

use half::{bf16, f16};
use serde::{Deserialize, Serialize};

/// Values per Q8 block; each block carries its own scale.
pub const Q8_BLOCK: usize = 32;
const Q8_BLOCK_BYTES: usize = 4 + Q8_BLOCK;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireDtype {
    #[default]
    F64,
    F32,
    F16,
    Bf16,
    Q8,
}

impl WireDtype {
    pub const ALL: [WireDtype; 5] = [
        WireDtype::F64,
        WireDtype::F32,
        WireDtype::F16,
        WireDtype::Bf16,
        WireDtype::Q8,
    ];

    pub fn name(self) -> &'static str {
        match self {
            WireDtype::F64 => "f64",
            WireDtype::F32 => "f32",
            WireDtype::F16 => "f16",
            WireDtype::Bf16 => "bf16",
            WireDtype::Q8 => "q8",
        }
    }

    /// A small number carried in frame tags, so a peer using another wire
    /// precision is caught instead of misread.
    pub(crate) fn code(self) -> u32 {
        self as u32
    }

    /// Bytes on the wire for `n` partial sums (f64 at full precision).
    pub fn partial_bytes(self, n: usize) -> usize {
        match self {
            WireDtype::F64 => n * 8,
            _ => self.hidden_bytes(n),
        }
    }

    /// Bytes on the wire for `n` hidden-state values (f32 at full precision).
    pub fn hidden_bytes(self, n: usize) -> usize {
        match self {
            WireDtype::F64 | WireDtype::F32 => n * 4,
            WireDtype::F16 | WireDtype::Bf16 => n * 2,
            WireDtype::Q8 => n.div_ceil(Q8_BLOCK) * Q8_BLOCK_BYTES,
        }
    }
}

impl std::fmt::Display for WireDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for WireDtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        WireDtype::ALL
            .into_iter()
            .find(|w| w.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                format!("unknown wire precision '{s}' (expected f64, f32, f16, bf16 or q8)")
            })
    }
}

/// Encodes partial sums into `out` (cleared first; its capacity is reused).
pub fn encode_partials(wire: WireDtype, x: &[f64], out: &mut Vec<u8>) {
    out.clear();
    match wire {
        WireDtype::F64 => {
            for v in x {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        _ => encode_values(wire, x.iter().map(|&v| v as f32), x.len(), out),
    }
}

/// Decodes `n` partial sums from `bytes` into `out`. `bytes` must be
/// exactly `wire.partial_bytes(out.len())` long (the caller checked the frame).
pub fn decode_partials(wire: WireDtype, bytes: &[u8], out: &mut [f64]) {
    match wire {
        WireDtype::F64 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                *o = f64::from_le_bytes(b);
            }
        }
        _ => decode_values(wire, bytes, out.len(), |i, v| out[i] = f64::from(v)),
    }
}

/// Replaces `partial`, this rank's own partial sums, with the sum of every
/// rank's in rank order, so every member of the group gets the same bits.
/// `received[r]` holds rank `r`'s partials as they came off the wire.
///
/// At f64 this rank's own values go in as they are (`received[me]` is not
/// read: its partials went out straight from `partial`) and the sum reads
/// the peers' bytes in place: no copy of the own partial, no decoded copy
/// of a peer's. With two ranks it is one pass. At the lossy wires every rank
/// adds what the wire carried, its own rounded values included, so
/// `received[me]` must hold this rank's encoded partials.
pub fn sum_partials_in_rank_order(
    wire: WireDtype,
    me: usize,
    received: &[Vec<u8>],
    partial: &mut [f64],
    scratch: &mut Vec<f64>,
) {
    if wire != WireDtype::F64 {
        decode_partials(wire, &received[0], partial);
        scratch.resize(partial.len(), 0.0);
        for buf in received.iter().skip(1) {
            decode_partials(wire, buf, scratch);
            for (acc, x) in partial.iter_mut().zip(scratch.iter()) {
                *acc += x;
            }
        }
        return;
    }
    let f64_at = |bytes: &[u8]| f64::from_le_bytes(bytes.try_into().expect("8 bytes"));
    let values = |r: usize| received[r].chunks_exact(8).map(f64_at);
    // A rank past the first two adds its own values after the partial has
    // been overwritten: keep them.
    if me >= 2 {
        scratch.clear();
        scratch.extend_from_slice(partial);
    }
    // Ranks 0 and 1 add the other's values to their own: IEEE addition
    // commutes, so rank 1's `own + peer` has the bits of `peer + own`.
    match me {
        0 | 1 => partial
            .iter_mut()
            .zip(values(1 - me))
            .for_each(|(p, v)| *p += v),
        _ => partial
            .iter_mut()
            .zip(values(0).zip(values(1)))
            .for_each(|(p, (a, b))| *p = a + b),
    }
    for r in 2..received.len() {
        if r == me {
            partial
                .iter_mut()
                .zip(scratch.iter())
                .for_each(|(p, v)| *p += v);
        } else {
            partial.iter_mut().zip(values(r)).for_each(|(p, v)| *p += v);
        }
    }
}

/// Encodes hidden states into `out` (cleared first).
pub fn encode_hidden(wire: WireDtype, x: &[f32], out: &mut Vec<u8>) {
    out.clear();
    encode_values(wire, x.iter().copied(), x.len(), out);
}

/// Decodes hidden states; `out` is resized to `n` values.
pub fn decode_hidden(wire: WireDtype, bytes: &[u8], n: usize, out: &mut Vec<f32>) {
    out.clear();
    out.resize(n, 0.0);
    decode_values(wire, bytes, n, |i, v| out[i] = v);
}

/// The largest finite f16; partials beyond it saturate instead of turning
/// into infinities that would poison every later layer.
const F16_MAX: f32 = 65504.0;

fn encode_values(
    wire: WireDtype,
    values: impl Iterator<Item = f32> + Clone,
    n: usize,
    out: &mut Vec<u8>,
) {
    out.reserve(wire.hidden_bytes(n));
    match wire {
        WireDtype::F64 | WireDtype::F32 => {
            for v in values {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        WireDtype::F16 => {
            for v in values {
                let v = v.clamp(-F16_MAX, F16_MAX);
                out.extend_from_slice(&f16::from_f32(v).to_le_bytes());
            }
        }
        WireDtype::Bf16 => {
            for v in values {
                out.extend_from_slice(&bf16::from_f32(v).to_le_bytes());
            }
        }
        WireDtype::Q8 => {
            let mut block = [0.0f32; Q8_BLOCK];
            let mut it = values;
            let mut left = n;
            while left > 0 {
                let len = left.min(Q8_BLOCK);
                for b in block.iter_mut().take(len) {
                    *b = it.next().unwrap_or(0.0);
                }
                let amax = block[..len].iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let scale = amax / 127.0;
                let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                out.extend_from_slice(&scale.to_le_bytes());
                // Past the last value the block is padded with zeros.
                for (i, &v) in block.iter().enumerate() {
                    let q = if i < len {
                        (v * inv).round().clamp(-127.0, 127.0) as i8
                    } else {
                        0
                    };
                    out.push(q as u8);
                }
                left -= len;
            }
        }
    }
}

fn decode_values(wire: WireDtype, bytes: &[u8], n: usize, mut put: impl FnMut(usize, f32)) {
    match wire {
        WireDtype::F64 | WireDtype::F32 => {
            for (i, c) in bytes.chunks_exact(4).take(n).enumerate() {
                put(i, f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
            }
        }
        WireDtype::F16 => {
            for (i, c) in bytes.chunks_exact(2).take(n).enumerate() {
                put(i, f16::from_le_bytes([c[0], c[1]]).to_f32());
            }
        }
        WireDtype::Bf16 => {
            for (i, c) in bytes.chunks_exact(2).take(n).enumerate() {
                put(i, bf16::from_le_bytes([c[0], c[1]]).to_f32());
            }
        }
        WireDtype::Q8 => {
            for (b, block) in bytes.chunks_exact(Q8_BLOCK_BYTES).enumerate() {
                let scale = f32::from_le_bytes([block[0], block[1], block[2], block[3]]);
                for (j, &q) in block[4..].iter().enumerate() {
                    let i = b * Q8_BLOCK + j;
                    if i < n {
                        put(i, f32::from(q as i8) * scale);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| ((i as f64) * 0.37).sin() * (1.0 + (i % 7) as f64))
            .collect()
    }

    #[test]
    fn f64_partials_round_trip_exactly() {
        let x = sample(77);
        let mut bytes = Vec::new();
        encode_partials(WireDtype::F64, &x, &mut bytes);
        assert_eq!(bytes.len(), WireDtype::F64.partial_bytes(x.len()));
        let mut back = vec![0.0; x.len()];
        decode_partials(WireDtype::F64, &bytes, &mut back);
        assert_eq!(back, x);
    }

    #[test]
    fn reduced_precisions_stay_within_their_rounding_error() {
        // Relative to the block's largest value for q8, to each value for floats.
        let x = sample(100);
        let amax = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (wire, bound) in [
            (WireDtype::F32, 1e-7),
            (WireDtype::F16, 1e-3),
            (WireDtype::Bf16, 8e-3),
            (WireDtype::Q8, 1.0 / 254.0 + 1e-6),
        ] {
            let mut bytes = Vec::new();
            encode_partials(wire, &x, &mut bytes);
            assert_eq!(bytes.len(), wire.partial_bytes(x.len()), "{wire}");
            let mut back = vec![0.0; x.len()];
            decode_partials(wire, &bytes, &mut back);
            for (a, b) in x.iter().zip(&back) {
                let scale = if wire == WireDtype::Q8 { amax } else { a.abs() };
                assert!(
                    (a - b).abs() <= bound * scale,
                    "{wire}: {a} came back as {b}"
                );
            }
        }
    }

    #[test]
    fn f16_saturates_instead_of_overflowing() {
        let mut bytes = Vec::new();
        encode_hidden(WireDtype::F16, &[1e6, -1e6], &mut bytes);
        let mut back = Vec::new();
        decode_hidden(WireDtype::F16, &bytes, 2, &mut back);
        assert_eq!(back, vec![F16_MAX, -F16_MAX]);
    }

    #[test]
    fn names_parse_back() {
        for w in WireDtype::ALL {
            assert_eq!(w.name().parse::<WireDtype>(), Ok(w));
        }
        assert!("f8".parse::<WireDtype>().is_err());
    }
}
