//! Link probes, node side: `Absorb` takes a tensor frame of announced size
//! from the coordinator, `Emit` sends one back, so the coordinator can time
//! the link both ways.

use super::load::LOAD_DEADLINE;
use crate::cluster::messages::{FromNode, Phase, TensorTag};
use crate::net::{Connection, NetError, TensorDtype, TensorHeader};

/// The largest link probe a node sends back.
const MAX_PROBE_BYTES: u64 = 64 << 20;

/// Why a probe failed (the connection is fine).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("announced {announced} bytes, got {got}")]
    SizeMismatch { announced: u64, got: u64 },
    #[error("{bytes} bytes is over the {MAX_PROBE_BYTES}-byte probe limit")]
    TooLarge { bytes: u64 },
}

fn failure(e: ProbeError) -> FromNode {
    FromNode::error(Phase::LinkProbe, e)
}

/// Receives the probe's frame and says whether it was whole.
pub(super) fn absorb(conn: &mut Connection, bytes: u64) -> Result<(), NetError> {
    let mut sink = Vec::new();
    conn.recv_tensor_into(LOAD_DEADLINE, &mut sink)?;
    let reply = if sink.len() as u64 == bytes {
        FromNode::Ok
    } else {
        failure(ProbeError::SizeMismatch {
            announced: bytes,
            got: sink.len() as u64,
        })
    };
    conn.send_control(&reply)
}

/// Answers `Ok` and sends `bytes` zero bytes, or refuses an oversized probe.
pub(super) fn emit(conn: &mut Connection, bytes: u64) -> Result<(), NetError> {
    if bytes > MAX_PROBE_BYTES {
        return conn.send_control(&failure(ProbeError::TooLarge { bytes }));
    }
    conn.send_control(&FromNode::Ok)?;
    let payload = vec![0u8; bytes as usize];
    let header =
        TensorHeader::new(TensorDtype::Bytes, &[bytes], TensorTag::Probe.code()).map_err(|e| {
            NetError::Encode {
                peer: conn.peer().to_string(),
                what: "link probe",
                problem: e.to_string(),
            }
        })?;
    conn.send_tensor(&header, &payload)
}
