//! A node's connections to the other nodes of its session.

use std::time::{Duration, Instant};

use super::step_deadline::for_rows;
use super::wire::{
    decode_hidden, encode_hidden, encode_partials, sum_partials_in_rank_order, WireDtype,
};
use crate::cluster::messages::{PeerTraffic, Span, SpanKind};
use crate::model::error::ModelError;
use crate::model::transformer::AllReduce;
use crate::net::{Connection, NetError, TensorDtype, TensorHeader, TensorTag};

/// Tags on activation tensor frames, so a frame arriving out of turn is caught.
const TAG_PARTIAL: u32 = TensorTag::Partial.code();
const TAG_HIDDEN: u32 = TensorTag::Hidden.code();

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
    /// Samples ever taken, for the rings above.
    allreduces: u64,
    hops: u64,
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

    /// Keeps the last [`MAX_SAMPLES`] as a ring (order does not matter for
    /// percentiles), so a full buffer costs no shifting.
    fn push_sample(samples: &mut Vec<f64>, count: &mut u64, v: f64) {
        if samples.len() < MAX_SAMPLES {
            samples.push(v);
        } else {
            samples[(*count % MAX_SAMPLES as u64) as usize] = v;
        }
        *count += 1;
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
    wire: WireDtype,
    /// One buffer of partials per rank as they travel, reused every step.
    /// This rank's own slot holds its encoded partials at a lossy wire; at
    /// f64 it stays empty (the partial goes out as it is).
    bufs: Vec<Vec<u8>>,
    /// Encoded hidden states, sent or received.
    hidden_buf: Vec<u8>,
    /// One rank's decoded partials while summing at a lossy wire; at f64,
    /// this rank's own partials when it adds them after the first two.
    summand: Vec<f64>,
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
        wire: WireDtype,
    ) -> Self {
        let n = group.len();
        let wrap = |p: Option<(String, Connection)>| p.map(|(name, conn)| Peer { name, conn });
        Self {
            my_rank,
            group: group.into_iter().map(wrap).collect(),
            prev: wrap(prev),
            next: wrap(next),
            deadline,
            wire,
            bufs: vec![Vec::new(); n],
            hidden_buf: Vec::new(),
            summand: Vec::new(),
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

    /// Cuts every link at once, with `reason`. After an exchange failed the
    /// streams are out of step and the mesh is done for; closing it now
    /// tells the peers that may be waiting on this node, instead of
    /// leaving them to their deadline.
    pub fn close(&mut self, reason: &str) {
        let peers = self.group.iter_mut().flatten();
        for peer in peers
            .chain(self.prev.iter_mut())
            .chain(self.next.iter_mut())
        {
            if let Ok(cutter) = peer.conn.cutter() {
                cutter.cut(reason);
            }
        }
    }

    pub fn group_size(&self) -> usize {
        self.group.len().max(1)
    }

    pub fn wire(&self) -> WireDtype {
        self.wire
    }

    pub fn begin_step(&mut self) {
        self.stats.step_wait = 0.0;
        self.stats.step_sent = 0;
        self.stats.step_received = 0;
        self.stats.step_spans.clear();
        self.stats.step_start = Some(Instant::now());
    }

    /// Sends this stage's output hidden states of sequence `seq` to the
    /// next stage, in one frame.
    pub fn send_hidden(&mut self, x: &[f32], seq: u32) -> Result<(), NetError> {
        self.send_hidden_tagged(x, hidden_tag(self.wire, seq))
    }

    /// Sends every segment's hidden rows of a batched step (`digest`: the
    /// segment list's, `StepSegment::digest`) in one frame.
    pub fn send_hidden_batch(&mut self, x: &[f32], digest: u32) -> Result<(), NetError> {
        self.send_hidden_tagged(x, batch_tag(self.wire, digest))
    }

    /// Receives a batched step's hidden rows, `tokens` in all, sent with
    /// [`Self::send_hidden_batch`] for the same segment list.
    pub fn recv_hidden_batch(
        &mut self,
        x: &mut Vec<f32>,
        tokens: usize,
        hidden: usize,
        digest: u32,
    ) -> Result<(), NetError> {
        let tag = batch_tag(self.wire, digest);
        self.recv_hidden_tagged(x, tokens, tokens * hidden, tag, &|| {
            format!("{tokens} rows of a batched step (segments {digest:#x})")
        })
    }

    fn send_hidden_tagged(&mut self, x: &[f32], tag: u32) -> Result<(), NetError> {
        let Some(next) = self.next.as_mut() else {
            return Ok(());
        };
        let started = Instant::now();
        encode_hidden(self.wire, x, &mut self.hidden_buf);
        let header = bytes_header(self.hidden_buf.len(), tag)?;
        next.conn.send_tensor(&header, &self.hidden_buf)?;
        self.stats
            .record(&next.name, self.hidden_buf.len() as u64, 0, 0.0);
        self.stats.span(SpanKind::Send, started);
        CommStats::push_sample(
            &mut self.stats.hop_seconds,
            &mut self.stats.hops,
            started.elapsed().as_secs_f64(),
        );
        Ok(())
    }

    /// Receives the previous stage's hidden states of sequence `seq` into
    /// `x` (resized to `tokens * hidden`).
    pub fn recv_hidden(
        &mut self,
        x: &mut Vec<f32>,
        tokens: usize,
        hidden: usize,
        seq: u32,
    ) -> Result<(), NetError> {
        let (n, wire) = (tokens * hidden, self.wire);
        self.recv_hidden_tagged(x, tokens, n, hidden_tag(wire, seq), &|| {
            format!("{n} hidden values of sequence {seq} as {wire}")
        })
    }

    /// Receives `n` values, the hidden states of a step of `rows` rows,
    /// within that step's deadline (`step_deadline::for_rows`).
    fn recv_hidden_tagged(
        &mut self,
        x: &mut Vec<f32>,
        rows: usize,
        n: usize,
        tag: u32,
        what: &dyn Fn() -> String,
    ) -> Result<(), NetError> {
        let Some(prev) = self.prev.as_mut() else {
            return Err(NetError::Broken {
                peer: "previous stage".into(),
                reason: "this node has no previous stage to receive from".into(),
            });
        };
        let started = Instant::now();
        let deadline = for_rows(self.deadline, rows);
        let header = match prev.conn.recv_tensor_into(deadline, &mut self.hidden_buf) {
            Ok(header) => header,
            // Say what was awaited and where the deadline comes from: the
            // previous stage may only be slow, not gone.
            Err(NetError::Timeout { peer, after, .. }) => {
                return Err(NetError::Timeout {
                    what: format!(
                        "{} (the step deadline for {rows} rows: a stage this slow needs a \
                         longer --step-timeout, or SHARDLAB_STEP_TIMEOUT for local nodes)",
                        what()
                    ),
                    peer,
                    after,
                })
            }
            Err(e) => return Err(e),
        };
        let expected = self.wire.hidden_bytes(n);
        check_frame(&prev.name, &header, tag, expected, what)?;
        decode_hidden(self.wire, &self.hidden_buf, n, x);
        self.stats.record(
            &prev.name,
            0,
            expected as u64,
            started.elapsed().as_secs_f64(),
        );
        self.stats.step_wait += started.elapsed().as_secs_f64();
        self.stats.span(SpanKind::Receive, started);
        Ok(())
    }

    /// Replaces `partial` with the sum of every group member's partials,
    /// added in rank order so all members get the same bits. An error
    /// names the peer that failed.
    pub fn all_reduce_partials(&mut self, partial: &mut [f64]) -> Result<(), NetError> {
        let n = self.group.len();
        if n <= 1 {
            return Ok(());
        }
        let started = Instant::now();
        let Self {
            my_rank: me,
            group,
            deadline,
            wire,
            bufs,
            summand,
            stats,
            ..
        } = self;
        let (me, deadline, wire) = (*me, *deadline, *wire);
        // What goes out is what this rank adds, so every member sums the
        // same values: at f64 the partial's own bytes, at a lossy wire its
        // encoding, kept in this rank's slot.
        if wire != WireDtype::F64 {
            encode_partials(wire, partial, &mut bufs[me]);
        }
        let len = wire.partial_bytes(partial.len());
        let tag = partial_tag(wire);
        let header = bytes_header(len, tag)?;
        let (before, rest) = bufs.split_at_mut(me);
        let (own_slot, after) = rest.split_at_mut(1);
        let own: &[u8] = if wire == WireDtype::F64 {
            f64_bytes(partial)
        } else {
            &own_slot[0]
        };
        let expect = || format!("{len} bytes of partial sums as {wire}");
        if len <= EAGER_BYTES {
            for peer in group.iter_mut().flatten() {
                peer.conn.send_tensor(&header, own)?;
            }
            for (r, peer) in group.iter_mut().enumerate() {
                let Some(peer) = peer else { continue };
                let buf = if r < me {
                    &mut before[r]
                } else {
                    &mut after[r - me - 1]
                };
                let waiting = Instant::now();
                let h = peer.conn.recv_tensor_into(deadline, buf)?;
                check_frame(&peer.name, &h, tag, len, expect)?;
                let waited = waiting.elapsed().as_secs_f64();
                stats.record(&peer.name, len as u64, len as u64, waited);
            }
        } else {
            for (r, peer) in group.iter_mut().enumerate() {
                let Some(peer) = peer else { continue };
                let buf = if r < me {
                    &mut before[r]
                } else {
                    &mut after[r - me - 1]
                };
                let waiting = Instant::now();
                if me < r {
                    peer.conn.send_tensor(&header, own)?;
                    let h = peer.conn.recv_tensor_into(deadline, buf)?;
                    check_frame(&peer.name, &h, tag, len, expect)?;
                } else {
                    let h = peer.conn.recv_tensor_into(deadline, buf)?;
                    check_frame(&peer.name, &h, tag, len, expect)?;
                    peer.conn.send_tensor(&header, own)?;
                }
                let waited = waiting.elapsed().as_secs_f64();
                stats.record(&peer.name, len as u64, len as u64, waited);
            }
        }
        sum_partials_in_rank_order(wire, me, bufs, partial, summand);
        let secs = started.elapsed().as_secs_f64();
        stats.step_wait += secs;
        stats.span(SpanKind::Wait, started);
        CommStats::push_sample(&mut stats.allreduce_seconds, &mut stats.allreduces, secs);
        Ok(())
    }
}

impl AllReduce for PeerLinks {
    fn all_reduce(&mut self, buf: &mut [f64]) -> Result<(), ModelError> {
        self.all_reduce_partials(buf)
            .map_err(|e| ModelError::Collective {
                message: e.to_string(),
                peer_closed: e.peer_closed(),
            })
    }
}

fn partial_tag(wire: WireDtype) -> u32 {
    TAG_PARTIAL | wire.code() << 8
}

/// The sequence id rides in the tag so a hand-off of the wrong sequence is
/// caught (pipelined sequences must arrive in the order they were issued).
fn hidden_tag(wire: WireDtype, seq: u32) -> u32 {
    TAG_HIDDEN | wire.code() << 8 | (seq & 0xffff) << 16
}

/// A batched step's hand-off: the top bit of the upper half marks it (a
/// sequence id stays below it), the segment list's digest fills the rest.
fn batch_tag(wire: WireDtype, digest: u32) -> u32 {
    TAG_HIDDEN | wire.code() << 8 | (0x8000 | (digest & 0x7fff)) << 16
}

fn bytes_header(len: usize, tag: u32) -> Result<TensorHeader, NetError> {
    TensorHeader::new(TensorDtype::Bytes, &[len as u64], tag).map_err(|e| NetError::Encode {
        peer: "peer".into(),
        what: "activation header",
        problem: e.to_string(),
    })
}

fn check_frame(
    peer: &str,
    h: &TensorHeader,
    tag: u32,
    bytes: usize,
    expected: impl FnOnce() -> String,
) -> Result<(), NetError> {
    if h.tag() == tag && h.dtype() == TensorDtype::Bytes && h.numel() == Some(bytes as u64) {
        Ok(())
    } else {
        Err(NetError::UnexpectedFrame {
            peer: peer.to_string(),
            expected: format!("{} (tag {tag:#x})", expected()),
            got: format!(
                "{} tensor {:?} (tag {:#x})",
                h.dtype().name(),
                h.dims(),
                h.tag()
            ),
        })
    }
}

/// The bytes of an f64 slice, little-endian (as [`f32_bytes`]).
fn f64_bytes(x: &[f64]) -> &[u8] {
    // SAFETY: as for f32_bytes.
    unsafe { std::slice::from_raw_parts(x.as_ptr() as *const u8, std::mem::size_of_val(x)) }
}

/// The bytes of an f32 slice, little-endian (the only byte order shardlab
/// runs on; `lib.rs` refuses to build for big-endian targets).
pub fn f32_bytes(x: &[f32]) -> &[u8] {
    // SAFETY: u8 has alignment 1 and every f32 bit pattern is valid bytes;
    // the length covers exactly the slice's memory.
    unsafe { std::slice::from_raw_parts(x.as_ptr() as *const u8, std::mem::size_of_val(x)) }
}
