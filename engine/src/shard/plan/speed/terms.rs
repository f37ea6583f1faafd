//! The cost model's terms, one function each, so each can be checked on its
//! own (docs/ARCHITECTURE.md, "Predicting speed"). Times are seconds per
//! token (decode) or per prompt (prefill); rates come from a node's
//! [`Calibration`] and the links' measured round trip and bandwidth.

use serde::{Deserialize, Serialize};

use super::work::NodeWork;
use crate::calibration::Calibration;
use crate::model::gguf::GgmlType;
use crate::model::transformer::PREFILL_BATCH;

/// A measured link: the coordinator to one node, or an estimate of the
/// link between two nodes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinkCost {
    /// Round trip of a small message, seconds.
    pub rtt: f64,
    /// Bytes per second one way.
    pub bandwidth: f64,
}

impl LinkCost {
    /// The link between two nodes, judged from each one's link to the
    /// coordinator: the slower round trip and the narrower bandwidth.
    pub fn between(a: LinkCost, b: LinkCost) -> LinkCost {
        LinkCost {
            rtt: a.rtt.max(b.rtt),
            bandwidth: a.bandwidth.min(b.bandwidth),
        }
    }
}

/// Weights up to this size stay in a node's caches from one token to the
/// next (a laptop's or server's last-level cache), so only arithmetic counts.
pub const IN_CACHE_BYTES: f64 = 16.0 * 1024.0 * 1024.0;

/// What a node gets of its machine while the nodes it runs beside are busy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HostShare {
    /// Fraction of its threads' compute it gets (below 1 when the busy
    /// nodes on its machine want more threads than it has cores).
    pub compute: f64,
    /// Bytes per second it can read from memory.
    pub bandwidth: f64,
}

/// Each node's share of its machine when the nodes in `busy` run at once:
/// nodes on one host (by name) split its cores and its bandwidth in
/// proportion to their threads. `busy` holds indices into `nodes`.
pub fn host_shares(nodes: &[Calibration], busy: &[usize]) -> Vec<(usize, HostShare)> {
    busy.iter()
        .map(|&i| {
            let me = &nodes[i];
            let threads: usize = busy
                .iter()
                .filter(|&&j| nodes[j].host == me.host)
                .map(|&j| nodes[j].threads)
                .sum::<usize>()
                .max(1);
            let compute = (me.cores as f64 / threads as f64).min(1.0);
            let fair = me.host_bandwidth * me.threads as f64 / threads as f64;
            (
                i,
                HostShare {
                    compute,
                    bandwidth: me.bandwidth.min(fair).max(1.0),
                },
            )
        })
        .collect()
}

/// Seconds per token of a node's matmuls: for each type, the kernel's
/// arithmetic (at its compute share) plus the memory time the arithmetic
/// does not hide (measured by streaming, stretched when the node gets less
/// than its own bandwidth; none when its weights fit in [`IN_CACHE_BYTES`]),
/// and never faster than its bandwidth share allows; then the thread
/// pool's dispatch per call.
pub fn decode_matmul_seconds(work: &NodeWork, cal: &Calibration, share: HostShare) -> f64 {
    let in_cache = work.weight_bytes() <= IN_CACHE_BYTES;
    let stretch = (cal.bandwidth / share.bandwidth).max(1.0);
    let streamed: f64 = work
        .types
        .iter()
        .map(|t| {
            let rate = cal.kernel(t.dtype);
            let arithmetic = rate.arithmetic_seconds(t.bytes, t.rows) / share.compute;
            if in_cache {
                return arithmetic;
            }
            let memory = t.bytes * rate.memory_seconds_per_byte() * stretch;
            (arithmetic + memory).max(t.bytes / share.bandwidth)
        })
        .sum();
    streamed + work.matmuls as f64 * cal.call_overhead / share.compute
}

/// Seconds per token of attention over `depth` cached positions: the KV
/// bytes at the bandwidth share, or the multiply-adds at the f32 kernel's
/// rate, whichever is slower.
pub fn decode_attention_seconds(
    work: &NodeWork,
    depth: f64,
    cal: &Calibration,
    share: HostShare,
) -> f64 {
    let read = work.kv_bytes_per_position * depth / share.bandwidth;
    let macs = 2.0 * work.attention_width * depth;
    read.max(macs / mac_rate(cal, share))
}

/// Seconds for a prompt of `tokens`: each weight type streamed once per
/// prefill batch, or its multiply-adds at the batched kernel's rate,
/// whichever is slower; and causal attention's multiply-adds.
pub fn prefill_seconds(work: &NodeWork, tokens: f64, cal: &Calibration, share: HostShare) -> f64 {
    let batches = (tokens / PREFILL_BATCH as f64).ceil().max(1.0);
    let matmuls: f64 = work
        .types
        .iter()
        .map(|t| {
            let stream = t.bytes * batches / share.bandwidth;
            let compute = t.bytes * tokens / (cal.kernel(t.dtype).prefill * share.compute).max(1.0);
            stream.max(compute)
        })
        .sum();
    // Scores and values, each over half the square on average (causal).
    let attention = work.attention_width * tokens * tokens / mac_rate(cal, share);
    matmuls + attention + batches * work.matmuls as f64 * cal.call_overhead
}

/// Multiply-adds per second of float work (attention), judged from the
/// f32 kernel's one-token rate (4 bytes a multiply-add).
fn mac_rate(cal: &Calibration, share: HostShare) -> f64 {
    (cal.kernel(GgmlType::F32).decode / 4.0 * share.compute).max(1.0)
}

/// What one exchange of frames costs the two processes beyond the link
/// (a send, a receive, a thread woken), measured as the loopback
/// all-reduce's p50 less half a loopback round trip (BENCHMARKS.md).
pub const EXCHANGE_SECONDS: f64 = 20e-6;

/// One all-reduce among `n` nodes of `bytes` each: every node sends its
/// part to each peer at once and waits for theirs, so half a round trip
/// (the parts cross at the same time), the exchange's own cost, and the
/// bytes of `n - 1` parts through the link. Nothing for one node.
///
/// `compute` is the least compute share among the nodes: a node whose core
/// another holds answers late, which stretches the processes' part of the
/// exchange (its own cost, and up to as much again of the round trip, all
/// of a loopback round trip) but not the wire's.
pub fn allreduce_seconds(n: usize, bytes: f64, link: LinkCost, compute: f64) -> f64 {
    if n <= 1 {
        return 0.0;
    }
    let software_in_rtt = (link.rtt / 2.0).min(EXCHANGE_SECONDS);
    let wire = link.rtt / 2.0 - software_in_rtt + (n - 1) as f64 * bytes / link.bandwidth;
    wire + (EXCHANGE_SECONDS + software_in_rtt) / compute.clamp(1e-3, 1.0)
}

/// A hand-off of `bytes` from one pipeline stage to the next: half a round
/// trip and the bytes.
pub fn hop_seconds(bytes: f64, link: LinkCost) -> f64 {
    link.rtt / 2.0 + bytes / link.bandwidth
}

/// The coordinator's part of a step: the request out and the logits back.
pub fn coordinator_seconds(logit_bytes: f64, link: LinkCost) -> f64 {
    link.rtt + logit_bytes / link.bandwidth
}

/// Tokens per second of a pipeline of stages taking `stage` seconds each
/// (hand-offs included) plus `fixed` seconds per step outside them, with
/// `in_flight` sequences: one sequence waits for every stage; several keep
/// the slowest stage busy, and no pipeline runs faster than that stage.
pub fn pipeline_tokens_per_second(stage: &[f64], fixed: f64, in_flight: usize) -> f64 {
    let cycle: f64 = stage.iter().sum::<f64>() + fixed;
    let k = in_flight.max(1) as f64;
    let slowest = stage.iter().copied().fold(0.0, f64::max);
    k / cycle.max(k * slowest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibration::KernelRate;
    use crate::shard::plan::speed::work::TypeWork;

    fn cal(host: &str, cores: usize, threads: usize) -> Calibration {
        Calibration {
            host: host.into(),
            cores,
            threads,
            bandwidth: 10e9 * threads as f64,
            host_bandwidth: 10e9 * cores as f64,
            call_overhead: 0.0,
            // Streamed as fast as in cache: arithmetic hides all memory time.
            kernels: vec![
                KernelRate {
                    dtype: GgmlType::Q4_0,
                    decode: 5e9,
                    prefill: 50e9,
                    streamed: 5e9,
                    row_overhead: 0.0,
                },
                KernelRate {
                    dtype: GgmlType::F32,
                    decode: 4e9,
                    prefill: 8e9,
                    streamed: 4e9,
                    row_overhead: 0.0,
                },
            ],
            seconds: 0.0,
        }
    }

    fn work(bytes: f64) -> NodeWork {
        NodeWork {
            types: vec![TypeWork {
                dtype: GgmlType::Q4_0,
                bytes,
                rows: 0.0,
            }],
            matmuls: 10,
            kv_bytes_per_position: 1000.0,
            attention_width: 100.0,
            layers: 2,
        }
    }

    const ALONE: HostShare = HostShare {
        compute: 1.0,
        bandwidth: 10e9,
    };

    #[test]
    fn nodes_on_one_host_split_its_cores_and_bandwidth() {
        let nodes = [
            cal("a", 2, 1),
            cal("a", 2, 1),
            cal("a", 2, 1),
            cal("b", 4, 2),
        ];
        let shares = host_shares(&nodes, &[0, 1, 2, 3]);
        // Three one-thread nodes on two cores: 2/3 of a core each, and a
        // third of the host's 20 GB/s.
        assert!((shares[0].1.compute - 2.0 / 3.0).abs() < 1e-12);
        assert!((shares[0].1.bandwidth - 20e9 / 3.0).abs() < 1.0);
        // The node alone on its host keeps everything it measured.
        assert_eq!(shares[3].1.compute, 1.0);
        assert_eq!(shares[3].1.bandwidth, 20e9);
        // Only the busy nodes count: two of three share without contention.
        let two = host_shares(&nodes, &[0, 1]);
        assert_eq!(two[0].1.compute, 1.0);
        assert_eq!(two[0].1.bandwidth, 10e9);
    }

    #[test]
    fn decode_matmuls_run_at_the_slower_of_memory_and_kernel() {
        let c = cal("a", 2, 1);
        // Kernel 5 GB/s under 10 GB/s of memory: the kernel decides.
        assert!((decode_matmul_seconds(&work(5e9), &c, ALONE) - 1.0).abs() < 1e-12);
        // Half the compute: twice the time.
        let half = HostShare {
            compute: 0.5,
            ..ALONE
        };
        assert!((decode_matmul_seconds(&work(5e9), &c, half) - 2.0).abs() < 1e-12);
        // Memory slower than the kernel: memory decides.
        let slow = HostShare {
            compute: 1.0,
            bandwidth: 1e9,
        };
        assert!((decode_matmul_seconds(&work(5e9), &c, slow) - 5.0).abs() < 1e-12);
        // Streaming at 2.5 GB/s where the kernel alone runs at 5: half of
        // each byte's time is memory's (0.2 ns), and it doubles when the
        // node gets half its bandwidth.
        let mut c = c;
        c.kernels[0].streamed = 2.5e9;
        assert!((decode_matmul_seconds(&work(5e9), &c, ALONE) - 2.0).abs() < 1e-9);
        let crowded = HostShare {
            compute: 1.0,
            bandwidth: 5e9,
        };
        assert!((decode_matmul_seconds(&work(5e9), &c, crowded) - 3.0).abs() < 1e-9);
        // Weights that stay in cache: arithmetic only.
        let small = 8e6;
        assert!((decode_matmul_seconds(&work(small), &c, ALONE) - small / 5e9).abs() < 1e-12);
        // Dispatch: 10 calls at 1 ms.
        let c = Calibration {
            call_overhead: 1e-3,
            ..c
        };
        assert!((decode_matmul_seconds(&work(0.0), &c, ALONE) - 0.01).abs() < 1e-12);
    }

    #[test]
    fn attention_grows_with_depth_at_the_slower_of_reading_and_arithmetic() {
        let c = cal("a", 2, 1);
        let w = work(0.0);
        assert_eq!(decode_attention_seconds(&w, 0.0, &c, ALONE), 0.0);
        // 1000 bytes a position at 10 GB/s: 1e-7 s a position; 200
        // multiply-adds at 1e9 a second: 2e-7 s. Arithmetic decides.
        let t = decode_attention_seconds(&w, 1000.0, &c, ALONE);
        assert!((t - 2e-4).abs() < 1e-12, "{t}");
        assert!((decode_attention_seconds(&w, 2000.0, &c, ALONE) - 2.0 * t).abs() < 1e-12);
    }

    #[test]
    fn prefill_streams_weights_once_per_batch_or_computes_whichever_is_slower() {
        let c = cal("a", 2, 1);
        let w = NodeWork {
            attention_width: 0.0,
            matmuls: 0,
            ..work(1e9)
        };
        // 100 tokens x 1 GB at 50 GB/s: 2 s of compute, over 0.1 s of streaming.
        assert!((prefill_seconds(&w, 100.0, &c, ALONE) - 2.0).abs() < 1e-9);
        // One token: streaming (0.1 s) beats the compute (0.02 s).
        assert!((prefill_seconds(&w, 1.0, &c, ALONE) - 0.1).abs() < 1e-9);
        // Attention grows with the square of the prompt.
        let a = NodeWork {
            types: Vec::new(),
            attention_width: 100.0,
            ..w
        };
        let t1 = prefill_seconds(&a, 100.0, &c, ALONE);
        let t2 = prefill_seconds(&a, 200.0, &c, ALONE);
        assert!((t2 / t1 - 4.0).abs() < 1e-9, "{t1} {t2}");
    }

    #[test]
    fn all_reduce_hop_and_coordinator_price_latency_and_bytes() {
        let link = LinkCost {
            rtt: 1e-4,
            bandwidth: 1e9,
        };
        assert_eq!(allreduce_seconds(1, 1e6, link, 1.0), 0.0);
        let fixed = 5e-5 + EXCHANGE_SECONDS;
        assert!((allreduce_seconds(2, 1e6, link, 1.0) - (fixed + 1e-3)).abs() < 1e-12);
        assert!((allreduce_seconds(3, 1e6, link, 1.0) - (fixed + 2e-3)).abs() < 1e-12);
        // Crowded cores stretch the processes' part: the exchange's own
        // cost and as much of the round trip, not the wire's bytes.
        let crowded = allreduce_seconds(2, 1e6, link, 0.5);
        let want = (5e-5 - EXCHANGE_SECONDS) + 1e-3 + 2.0 * 2.0 * EXCHANGE_SECONDS;
        assert!((crowded - want).abs() < 1e-12, "{crowded} {want}");
        assert!((hop_seconds(1e6, link) - (5e-5 + 1e-3)).abs() < 1e-12);
        assert!((coordinator_seconds(1e6, link) - (1e-4 + 1e-3)).abs() < 1e-12);
        let slow = LinkCost {
            rtt: 1e-2,
            bandwidth: 1e6,
        };
        assert_eq!(LinkCost::between(link, slow), slow);
    }

    #[test]
    fn a_pipeline_waits_for_every_stage_unless_sequences_fill_it() {
        // One sequence: the sum of the stages and the fixed part.
        assert!((pipeline_tokens_per_second(&[0.1, 0.1], 0.05, 1) - 1.0 / 0.25).abs() < 1e-9);
        // Four in flight: the slowest stage bounds it (4 / max(0.25, 0.4)).
        assert!((pipeline_tokens_per_second(&[0.1, 0.1], 0.05, 4) - 10.0).abs() < 1e-9);
        // Two in flight, still cycle-bound: 2 / 0.25.
        assert!((pipeline_tokens_per_second(&[0.1, 0.1], 0.05, 2) - 8.0).abs() < 1e-9);
    }
}
