//! A node's connections to the other nodes of its session.

use std::time::{Duration, Instant};

use crate::cluster::messages::{PeerTraffic, Span, SpanKind};
use crate::model::error::ModelError;
use crate::model::transformer::AllReduce;
use crate::net::{Connection, NetError, TensorDtype, TensorHeader};

/// Tags on activation tensor frames, so a frame arriving out of turn is caught.
const TAG_PARTIAL: u32 = 1;
const TAG_HIDDEN: u32 = 2;

/// Partials at or below this size are sent to every peer before receiving:
/// they fit in socket buffers, so nobody blocks. Larger ones go pairwise in
/// a fixed order (lower rank sends first) so two big writes never face each
/// other.
const EAGER_BYTES: usize = 256 * 1024;

/// How many latency samples to keep for percentiles.
const MAX_SAMPLES: usize = 4096;

/// Traffic and timing counters for one node.
#[derive(Debug, Default, Clone)]
pub struct CommStats {
    pub traffic: Vec<PeerTraffic>,
    pub allreduce_seconds: Vec<f64>,
    pub hop_seconds: Vec<f64>,
    /// Time blocked in exchanges during the current step.
    pub step_wait: f64,
    pub step_sent: u64,
    pub step_received: u64,
    /// Communication spans of the current step (start relative to `step_start`).
    pub step_spans: Vec<Span>,
    pub step_start: Option<Instant>,
}

impl CommStats {
    /// `waited`: seconds spent blocked receiving from `peer`.
    fn record(&mut self, peer: &str, sent: u64, received: u64, waited: f64) {
        self.step_sent += sent;
        self.step_received += received;
        match self.traffic.iter_mut().find(|t| t.peer == peer) {
            Some(t) => {
                t.bytes_sent += sent;
                t.bytes_received += received;
                t.waited_seconds += waited;
            }
            None => self.traffic.push(PeerTraffic {
                peer: peer.to_string(),
                bytes_sent: sent,
                bytes_received: received,
                waited_seconds: waited,
            }),
        }
    }

    fn span(&mut self, kind: SpanKind, started: Instant) {
        let seconds = started.elapsed().as_secs_f64();
        let start = self
            .step_start
            .map_or(0.0, |s| started.saturating_duration_since(s).as_secs_f64());
        self.step_spans.push(Span {
            kind,
            start,
            seconds,
        });
    }

    fn push_sample(samples: &mut Vec<f64>, v: f64) {
        if samples.len() >= MAX_SAMPLES {
            samples.remove(0);
        }
        samples.push(v);
    }
}

struct Peer {
    name: String,
    conn: Connection,
}

/// Connections of one node: its tensor group (by rank) and its pipeline
/// neighbours.
pub struct PeerLinks {
    my_rank: usize,
    /// Group members by rank; `None` at `my_rank`.
    group: Vec<Option<Peer>>,
    prev: Option<Peer>,
    next: Option<Peer>,
    deadline: Duration,
    /// One receive buffer per rank, reused every step.
    bufs: Vec<Vec<u8>>,
    pub stats: CommStats,
}

impl PeerLinks {
    /// `group[r]` is the connection to rank `r` (`None` for this node).
    pub fn new(
        my_rank: usize,
        group: Vec<Option<(String, Connection)>>,
        prev: Option<(String, Connection)>,
        next: Option<(String, Connection)>,
        deadline: Duration,
    ) -> Self {
        let n = group.len();
        let wrap = |p: Option<(String, Connection)>| p.map(|(name, conn)| Peer { name, conn });
        Self {
            my_rank,
            group: group.into_iter().map(wrap).collect(),
            prev: wrap(prev),
            next: wrap(next),
            deadline,
            bufs: vec![Vec::new(); n],
            stats: CommStats::default(),
        }
    }

    /// Emulates `profile` on every link this node sends on (`None`: off).
    pub fn emulate(&mut self, profile: Option<&crate::net::LinkProfile>) -> Result<(), NetError> {
        let peers = self.group.iter_mut().flatten();
        for peer in peers
            .chain(self.prev.iter_mut())
            .chain(self.next.iter_mut())
        {
            peer.conn.emulate(profile)?;
        }
        Ok(())
    }

    pub fn group_size(&self) -> usize {
        self.group.len().max(1)
    }

    pub fn begin_step(&mut self) {
        self.stats.step_wait = 0.0;
        self.stats.step_sent = 0;
        self.stats.step_received = 0;
        self.stats.step_spans.clear();
        self.stats.step_start = Some(Instant::now());
    }

    /// Sends this stage's output hidden states to the next stage.
    pub fn send_hidden(&mut self, x: &[f32], tokens: usize) -> Result<(), NetError> {
        let Some(next) = self.next.as_mut() else {
            return Ok(());
        };
        let started = Instant::now();
        let header = f32_header(
            &[tokens as u64, (x.len() / tokens.max(1)) as u64],
            TAG_HIDDEN,
        )?;
        next.conn.send_tensor(&header, f32_bytes(x))?;
        let bytes = (x.len() * 4) as u64;
        let name = next.name.clone();
        self.stats.record(&name, bytes, 0, 0.0);
        self.stats.span(SpanKind::Send, started);
        CommStats::push_sample(&mut self.stats.hop_seconds, started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Receives the previous stage's hidden states into `x`.
    pub fn recv_hidden(
        &mut self,
        x: &mut Vec<f32>,
        tokens: usize,
        hidden: usize,
    ) -> Result<(), NetError> {
        let Some(prev) = self.prev.as_mut() else {
            return Err(NetError::Broken {
                peer: "previous stage".into(),
                reason: "this node has no previous stage to receive from".into(),
            });
        };
        let started = Instant::now();
        let slot = self.my_rank.min(self.bufs.len().saturating_sub(1));
        let buf = &mut self.bufs[slot];
        let mut local = std::mem::take(buf);
        let header = prev.conn.recv_tensor_into(self.deadline, &mut local)?;
        check_activation(&prev.name, &header, TAG_HIDDEN, tokens * hidden)?;
        x.clear();
        x.extend(
            local
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
        let name = prev.name.clone();
        let received = local.len() as u64;
        *buf = local;
        self.stats
            .record(&name, 0, received, started.elapsed().as_secs_f64());
        self.stats.step_wait += started.elapsed().as_secs_f64();
        self.stats.span(SpanKind::Receive, started);
        Ok(())
    }

    fn exchange(&mut self, partial: &mut [f64]) -> Result<(), NetError> {
        let n = self.group.len();
        if n <= 1 {
            return Ok(());
        }
        let started = Instant::now();
        let bytes = f64_bytes(partial);
        let header = TensorHeader::new(TensorDtype::Bytes, &[bytes.len() as u64], TAG_PARTIAL)
            .map_err(|e| NetError::Encode {
                peer: "peer".into(),
                what: "partial sums header",
                problem: e.to_string(),
            })?;
        let me = self.my_rank;
        let deadline = self.deadline;
        let eager = bytes.len() <= EAGER_BYTES;
        let mut traffic = Vec::with_capacity(n);
        if eager {
            for peer in self.group.iter_mut().flatten() {
                peer.conn.send_tensor(&header, bytes)?;
            }
            for (r, peer) in self.group.iter_mut().enumerate() {
                if let Some(peer) = peer {
                    let waiting = Instant::now();
                    let h = peer.conn.recv_tensor_into(deadline, &mut self.bufs[r])?;
                    check_partial(&peer.name, &h, bytes.len())?;
                    traffic.push((
                        peer.name.clone(),
                        bytes.len() as u64,
                        self.bufs[r].len() as u64,
                        waiting.elapsed().as_secs_f64(),
                    ));
                }
            }
        } else {
            for (r, peer) in self.group.iter_mut().enumerate() {
                let Some(peer) = peer else { continue };
                let waiting = Instant::now();
                if me < r {
                    peer.conn.send_tensor(&header, bytes)?;
                    let h = peer.conn.recv_tensor_into(deadline, &mut self.bufs[r])?;
                    check_partial(&peer.name, &h, bytes.len())?;
                } else {
                    let h = peer.conn.recv_tensor_into(deadline, &mut self.bufs[r])?;
                    check_partial(&peer.name, &h, bytes.len())?;
                    peer.conn.send_tensor(&header, bytes)?;
                }
                traffic.push((
                    peer.name.clone(),
                    bytes.len() as u64,
                    self.bufs[r].len() as u64,
                    waiting.elapsed().as_secs_f64(),
                ));
            }
        }
        for (name, s, r, waited) in traffic {
            self.stats.record(&name, s, r, waited);
        }
        // Sum in rank order so every member gets the same bits.
        let mut own = std::mem::take(&mut self.bufs[me]);
        own.clear();
        own.extend_from_slice(f64_bytes(partial));
        self.bufs[me] = own;
        for (i, v) in partial.iter_mut().enumerate() {
            let mut acc = 0.0f64;
            for (r, buf) in self.bufs.iter().enumerate() {
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[i * 8..i * 8 + 8]);
                let x = f64::from_le_bytes(b);
                acc = if r == 0 { x } else { acc + x };
            }
            *v = acc;
        }
        let secs = started.elapsed().as_secs_f64();
        self.stats.step_wait += secs;
        self.stats.span(SpanKind::Wait, started);
        CommStats::push_sample(&mut self.stats.allreduce_seconds, secs);
        Ok(())
    }
}

impl AllReduce for PeerLinks {
    fn all_reduce(&mut self, buf: &mut [f64]) -> Result<(), ModelError> {
        self.exchange(buf)
            .map_err(|e| ModelError::Collective(e.to_string()))
    }
}

fn f32_header(dims: &[u64], tag: u32) -> Result<TensorHeader, NetError> {
    TensorHeader::new(TensorDtype::F32, dims, tag).map_err(|e| NetError::Encode {
        peer: "peer".into(),
        what: "activation header",
        problem: e.to_string(),
    })
}

fn check_activation(peer: &str, h: &TensorHeader, tag: u32, values: usize) -> Result<(), NetError> {
    let ok = h.tag() == tag && h.dtype() == TensorDtype::F32 && h.numel() == Some(values as u64);
    if ok {
        Ok(())
    } else {
        Err(NetError::UnexpectedFrame {
            peer: peer.to_string(),
            expected: format!("{values} f32 activations (tag {tag})"),
            got: format!(
                "{} tensor {:?} (tag {})",
                h.dtype().name(),
                h.dims(),
                h.tag()
            ),
        })
    }
}

fn check_partial(peer: &str, h: &TensorHeader, bytes: usize) -> Result<(), NetError> {
    if h.tag() == TAG_PARTIAL && h.dtype() == TensorDtype::Bytes && h.numel() == Some(bytes as u64)
    {
        Ok(())
    } else {
        Err(NetError::UnexpectedFrame {
            peer: peer.to_string(),
            expected: format!("{bytes} bytes of partial sums (tag {TAG_PARTIAL})"),
            got: format!(
                "{} tensor {:?} (tag {})",
                h.dtype().name(),
                h.dims(),
                h.tag()
            ),
        })
    }
}

/// The bytes of an f64 slice, little-endian (see [`f32_bytes`]).
pub fn f64_bytes(x: &[f64]) -> &[u8] {
    // SAFETY: as for `f32_bytes`.
    unsafe { std::slice::from_raw_parts(x.as_ptr() as *const u8, std::mem::size_of_val(x)) }
}

/// The bytes of an f32 slice, little-endian (the only byte order shardlab
/// runs on; `lib.rs` refuses to build for big-endian targets).
pub fn f32_bytes(x: &[f32]) -> &[u8] {
    // SAFETY: u8 has alignment 1 and every f32 bit pattern is valid bytes;
    // the length covers exactly the slice's memory.
    unsafe { std::slice::from_raw_parts(x.as_ptr() as *const u8, std::mem::size_of_val(x)) }
}
