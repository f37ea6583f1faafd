//! The header in front of a tensor frame's data: element type, shape, and
//! a tag the caller uses to say what the tensor is.
//!
//! It is fixed-size and `Copy` (at most [`MAX_TENSOR_DIMS`] dimensions) so
//! that receiving a tensor on the hot path allocates nothing for it, and it
//! is validated as soon as its bytes arrive: an unknown dtype, too many
//! dimensions or a shape whose byte count overflows is refused before any
//! data is read.

use std::fmt;

use super::error::FrameError;

/// Activations are at most [batch, seq, hidden]; eight leaves room.
pub const MAX_TENSOR_DIMS: usize = 8;
/// Fixed part of a tensor header: dtype, ndim, reserved u16, tag u32.
pub const TENSOR_HEADER_FIXED: usize = 8;

/// Element type of a tensor payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TensorDtype {
    F32 = 0,
    F16 = 1,
    Bf16 = 2,
    /// Opaque bytes: the shape counts bytes.
    Bytes = 3,
}

impl TensorDtype {
    pub fn from_code(code: u8) -> Result<Self, FrameError> {
        match code {
            0 => Ok(TensorDtype::F32),
            1 => Ok(TensorDtype::F16),
            2 => Ok(TensorDtype::Bf16),
            3 => Ok(TensorDtype::Bytes),
            _ => Err(FrameError::UnknownDtype { code }),
        }
    }

    pub fn size(self) -> u64 {
        match self {
            TensorDtype::F32 => 4,
            TensorDtype::F16 | TensorDtype::Bf16 => 2,
            TensorDtype::Bytes => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TensorDtype::F32 => "f32",
            TensorDtype::F16 => "f16",
            TensorDtype::Bf16 => "bf16",
            TensorDtype::Bytes => "bytes",
        }
    }
}

/// Describes the data of a tensor frame. Fixed-size and `Copy` so the
/// receive hot path never allocates for it.
///
/// Wire layout: dtype u8 | ndim u8 | reserved u16 (0) | tag u32 LE | dims u64 LE × ndim.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TensorHeader {
    dtype: TensorDtype,
    ndim: u8,
    tag: u32,
    dims: [u64; MAX_TENSOR_DIMS],
}

impl TensorHeader {
    /// `tag` says what the tensor is (a hidden state, partial sums of layer
    /// 7, ...); its meaning belongs to the caller.
    pub fn new(dtype: TensorDtype, dims: &[u64], tag: u32) -> Result<Self, FrameError> {
        if dims.len() > MAX_TENSOR_DIMS {
            return Err(FrameError::TooManyDims { ndim: dims.len() });
        }
        let mut d = [0u64; MAX_TENSOR_DIMS];
        d[..dims.len()].copy_from_slice(dims);
        let header = TensorHeader {
            dtype,
            // Fits: checked against MAX_TENSOR_DIMS (8) above.
            ndim: dims.len() as u8,
            tag,
            dims: d,
        };
        header.data_len()?;
        Ok(header)
    }

    pub fn dtype(&self) -> TensorDtype {
        self.dtype
    }

    pub fn tag(&self) -> u32 {
        self.tag
    }

    pub fn dims(&self) -> &[u64] {
        &self.dims[..usize::from(self.ndim)]
    }

    /// Element count (1 for a scalar).
    pub fn numel(&self) -> Option<u64> {
        self.dims()
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
    }

    /// Bytes of data the shape calls for.
    pub fn data_len(&self) -> Result<u64, FrameError> {
        self.numel()
            .and_then(|n| n.checked_mul(self.dtype.size()))
            .ok_or_else(|| FrameError::ShapeOverflow {
                dims: self.dims().to_vec(),
                dtype: self.dtype.name(),
            })
    }

    /// Bytes this header takes on the wire.
    pub fn encoded_len(&self) -> usize {
        TENSOR_HEADER_FIXED + 8 * usize::from(self.ndim)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.dtype as u8);
        out.push(self.ndim);
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&self.tag.to_le_bytes());
        for d in self.dims() {
            out.extend_from_slice(&d.to_le_bytes());
        }
    }

    /// Reads a tensor header from the front of a tensor payload.
    /// `Ok(None)`: more bytes needed. Returns the header and its length.
    pub fn parse(buf: &[u8]) -> Result<Option<(TensorHeader, usize)>, FrameError> {
        if buf.len() < TENSOR_HEADER_FIXED {
            return Ok(None);
        }
        let dtype = TensorDtype::from_code(buf[0])?;
        let ndim = usize::from(buf[1]);
        if ndim > MAX_TENSOR_DIMS {
            return Err(FrameError::TooManyDims { ndim });
        }
        let reserved = u16::from_le_bytes([buf[2], buf[3]]);
        if reserved != 0 {
            return Err(FrameError::ReservedNotZero { found: reserved });
        }
        let tag = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let len = TENSOR_HEADER_FIXED + 8 * ndim;
        if buf.len() < len {
            return Ok(None);
        }
        let mut dims = [0u64; MAX_TENSOR_DIMS];
        for (i, chunk) in buf[TENSOR_HEADER_FIXED..len].chunks_exact(8).enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            dims[i] = u64::from_le_bytes(b);
        }
        let header = TensorHeader {
            dtype,
            ndim: buf[1],
            tag,
            dims,
        };
        header.data_len()?;
        Ok(Some((header, len)))
    }

    /// Checks that `found` data bytes match the shape.
    pub fn check_data_len(&self, found: u64) -> Result<(), FrameError> {
        let expected = self.data_len()?;
        if expected != found {
            return Err(FrameError::DataLength {
                dims: self.dims().to_vec(),
                dtype: self.dtype.name(),
                expected,
                found,
            });
        }
        Ok(())
    }
}

impl fmt::Debug for TensorHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tensor(tag {}, {} {:?})",
            self.tag,
            self.dtype.name(),
            self.dims()
        )
    }
}

impl fmt::Display for TensorHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn construction_checks_the_shape() {
        assert_eq!(
            TensorHeader::new(TensorDtype::F32, &[1; 9], 0).unwrap_err(),
            FrameError::TooManyDims { ndim: 9 }
        );
        assert!(matches!(
            TensorHeader::new(TensorDtype::F32, &[u64::MAX, 2], 0).unwrap_err(),
            FrameError::ShapeOverflow { .. }
        ));
        let h = TensorHeader::new(TensorDtype::Bf16, &[3, 5], 11).unwrap();
        assert_eq!(h.data_len().unwrap(), 30);
        assert_eq!(h.numel(), Some(15));
        assert_eq!(h.encoded_len(), TENSOR_HEADER_FIXED + 16);
        assert_eq!(h.to_string(), "tensor(tag 11, bf16 [3, 5])");
    }

    #[test]
    fn encode_parse_round_trip_with_incomplete_prefixes() {
        let h = TensorHeader::new(TensorDtype::F16, &[2, 3, 4], 0xdead).unwrap();
        let mut bytes = Vec::new();
        h.encode(&mut bytes);
        assert_eq!(bytes.len(), h.encoded_len());
        for cut in 0..bytes.len() {
            assert_eq!(
                TensorHeader::parse(&bytes[..cut]).unwrap(),
                None,
                "cut {cut}"
            );
        }
        assert_eq!(TensorHeader::parse(&bytes).unwrap(), Some((h, bytes.len())));
    }
}
