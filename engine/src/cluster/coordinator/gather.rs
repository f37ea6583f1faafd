//! The frame a step's answers are gathered in, shared by single and
//! batched steps: every live node in plan order, one deadline for the
//! whole gather, each node's own receive; a node whose connection failed
//! is marked dead, and the error returned names the node that actually
//! failed: not a node whose only trouble was that peer closing its link.

use std::ops::Range;
use std::time::{Duration, Instant};

use super::{recv_error, Cluster, ClusterError};
use crate::cluster::messages::{FromNode, Phase, StepMetrics};
use crate::net::{Connection, TensorHeader};
use crate::parallel::step_deadline::for_rows;

/// After the step deadline has passed, a reply already on its way still
/// gets this long: a survivor's "my peer timed out" must not be mistaken for
/// silence just because an earlier node used up the shared deadline.
const LATE_REPLY_GRACE: Duration = Duration::from_millis(500);

/// The time left before `end`, never less than the grace.
fn left(end: Instant) -> Duration {
    end.saturating_duration_since(Instant::now())
        .max(LATE_REPLY_GRACE)
}

/// Why one node's part of a gather failed.
pub(super) struct NodeFailure {
    error: ClusterError,
    /// The connection itself failed, so the node is gone; otherwise the
    /// node reported the error and only the step is lost.
    transport: bool,
    /// The node reported a peer closing its link mid-step: the knock-on of
    /// that peer's failure, named only when no other cause is known.
    peer_closed: bool,
}

/// One live node's turn in a gather: its connection, its part of the plan,
/// and where its step metrics go.
pub(super) struct NodeTurn<'a> {
    conn: &'a mut Connection,
    label: &'a str,
    phase: Phase,
    end: Instant,
    deadline: Duration,
    /// The step's rows, which sized `deadline`.
    rows: usize,
    /// This node's slice of the vocabulary.
    pub vocab: Range<usize>,
    /// Whether this node holds the head (sends logits).
    pub head: bool,
    /// The cluster's reused buffer for tensor frames.
    pub buf: &'a mut Vec<u8>,
    /// This node's metrics of the last step.
    pub last_step: &'a mut Option<StepMetrics>,
}

impl NodeTurn<'_> {
    /// The node's next control message, within what is left of the deadline.
    pub fn recv_control(&mut self) -> Result<FromNode, NodeFailure> {
        let reply = self.conn.recv_control::<FromNode>(left(self.end));
        reply.map_err(|e| self.lost(e))
    }

    /// The node's next tensor frame, into `buf`.
    pub fn recv_tensor(&mut self) -> Result<TensorHeader, NodeFailure> {
        let header = self.conn.recv_tensor_into(left(self.end), self.buf);
        header.map_err(|e| self.lost(e))
    }

    /// The node sent something it should not have: it is out of step.
    pub fn fail(&self, message: String) -> NodeFailure {
        NodeFailure {
            error: ClusterError::new(self.label, self.phase, message),
            transport: true,
            peer_closed: false,
        }
    }

    /// The node answered with an error of its own (`peer_closed`: as
    /// `FromNode::Error` says).
    pub fn reported(&self, message: String, peer_closed: bool) -> NodeFailure {
        NodeFailure {
            error: ClusterError::new(self.label, self.phase, message),
            transport: false,
            peer_closed,
        }
    }

    fn lost(&self, e: crate::net::NetError) -> NodeFailure {
        // Say where the deadline comes from: the node may only be slow.
        let note = format!(
            ", the step deadline for {} rows (SHARDLAB_STEP_TIMEOUT sets it per decode step; \
             a step gets one per 16 rows)",
            self.rows
        );
        NodeFailure {
            error: recv_error(self.label, self.phase, self.deadline, &note, e),
            transport: true,
            peer_closed: false,
        }
    }
}

impl Cluster {
    /// Gives every live node its turn at `receive`, which returns how many
    /// vocabulary columns of logits that node delivered; fails if any node
    /// failed, or if the head nodes did not cover the whole vocabulary.
    /// `rows`, the step's rows, sizes its deadline (`step_deadline::for_rows`).
    pub(super) fn gather(
        &mut self,
        phase: Phase,
        rows: usize,
        mut receive: impl FnMut(&mut NodeTurn<'_>) -> Result<usize, NodeFailure>,
    ) -> Result<(), ClusterError> {
        let Some(loaded) = &self.loaded else {
            return Err(ClusterError::cluster(phase, "no model is loaded"));
        };
        let vocab = loaded.config.vocab;
        let plan_nodes: Vec<(Range<usize>, bool)> = loaded
            .plan
            .nodes
            .iter()
            .map(|np| (np.layout.vocab.clone(), np.layout.head))
            .collect();
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_alive())
            .collect();
        let mut failures: Vec<NodeFailure> = Vec::new();
        if live.len() != plan_nodes.len() {
            failures.push(NodeFailure {
                error: self.left_the_cluster(phase),
                transport: false,
                peer_closed: false,
            });
        }
        let mut covered = 0usize;
        // One deadline for the whole gather, not one per node: a cut-off
        // node is named after the step deadline, not after N of them.
        let deadline = for_rows(self.step_deadline, rows);
        let end = Instant::now() + deadline;
        for (k, &i) in live.iter().enumerate() {
            let Some((vocab_range, head)) = plan_nodes.get(k).cloned() else {
                break;
            };
            let node = &mut self.nodes[i];
            let label = node.label();
            let result = match node.conn(phase) {
                Err(error) => Err(NodeFailure {
                    error,
                    transport: true,
                    peer_closed: false,
                }),
                Ok(conn) => receive(&mut NodeTurn {
                    conn,
                    label: &label,
                    phase,
                    end,
                    deadline,
                    rows,
                    vocab: vocab_range,
                    head,
                    buf: &mut self.recv_buf,
                    last_step: &mut self.last_step[i],
                }),
            };
            match result {
                Ok(columns) => covered += columns,
                Err(failure) => {
                    // A reply that never came means the node is gone (or out
                    // of step); an error reply means the node is fine but
                    // the step is lost.
                    if failure.transport {
                        node.mark_failed(&failure.error.message);
                    }
                    failures.push(failure);
                }
            }
        }
        if !failures.is_empty() {
            let errors = causes_first(failures);
            let e = self.root_cause(errors, phase);
            self.broken = Some(e.clone());
            return Err(e);
        }
        if covered != vocab {
            return Err(ClusterError::cluster(
                phase,
                format!("the head nodes returned {covered} of {vocab} logits"),
            ));
        }
        Ok(())
    }
}

/// The failures' errors in node order, except that those which only report
/// a peer closing its link come last: a stage that gave up on a slow
/// predecessor closes its links, and the predecessor, answering first,
/// would otherwise be blamed with "node1 closed the connection".
fn causes_first(failures: Vec<NodeFailure>) -> Vec<ClusterError> {
    let (knock_ons, causes): (Vec<_>, Vec<_>) = failures.into_iter().partition(|f| f.peer_closed);
    causes
        .into_iter()
        .chain(knock_ons)
        .map(|f| f.error)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(node: &str, peer_closed: bool) -> NodeFailure {
        NodeFailure {
            error: ClusterError::new(node, Phase::Prefill, "m"),
            transport: false,
            peer_closed,
        }
    }

    #[test]
    fn a_node_that_only_saw_its_peer_close_is_named_after_that_peer() {
        let order = |fs: Vec<NodeFailure>| -> Vec<String> {
            causes_first(fs).into_iter().map(|e| e.node).collect()
        };
        assert_eq!(
            order(vec![failure("node0", true), failure("node1", false)]),
            ["node1", "node0"]
        );
        assert_eq!(
            order(vec![
                failure("node0", false),
                failure("node1", true),
                failure("node2", false)
            ]),
            ["node0", "node2", "node1"],
            "otherwise node order"
        );
        assert_eq!(
            order(vec![failure("node0", true), failure("node1", true)]),
            ["node0", "node1"],
            "all knock-ons: node order"
        );
    }
}
