//! The one list of tensor-frame tags, shared by the control protocol
//! (`cluster`) and the collectives (`parallel`).

/// What a tensor frame carries, in the low byte of its header's tag. The
/// collectives put more above it (wire precision, sequence id) so a frame
/// of the wrong kind or sequence is caught where it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum TensorTag {
    /// The payload of a link probe, after `Absorb` or `Emit`.
    Probe = 0,
    /// A tensor-group member's all-reduce partial sums.
    Partial = 1,
    /// Hidden states handed to the next pipeline stage.
    Hidden = 2,
    /// A head node's slice of the logits, after `StepDone`.
    Logits = 3,
    /// A chunk of weights, after the `TensorChunk` that says which.
    Weights = 4,
}

impl TensorTag {
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// The kind a received tag announces, if it is one of these.
    pub fn of(tag: u32) -> Option<Self> {
        [
            Self::Probe,
            Self::Partial,
            Self::Hidden,
            Self::Logits,
            Self::Weights,
        ]
        .into_iter()
        .find(|t| t.code() == tag & 0xff)
    }
}
