#!/usr/bin/env bash
# Reproduces every goal of BENCHMARKS.md (issue 13) in one run and prints one
# table with a verdict per goal ("met", "missed: NN% of the target",
# "reported", "not run here: WHY", "failed: WHY"), so the ratios compare
# like with like on a shared, noisy machine. bench/goals.py does the
# measuring (`--list` names the goals); what it measures:
#   - decode against llama.cpp's llama-bench on the same GGUF, threads and
#     cores, shardlab and llama.cpp alternating, median of 3 pairs: SmolLM2
#     Q4_1 at 1 and 2 threads; the synthetic 8b in Q4_0, Q4_K and Q8_0 at 1
#     and 2 threads (memory-bound; 5 pairs at 2 threads, where both
#     engines meet the memory's limit and the VM's swing), with its share
#     of the bandwidth the bench probes at that thread count (>= 80%) and
#     llama.cpp's beside it;
#     small files that stay in cache (2 layers, hidden 768, 8.5-16 MiB) in
#     the same three types at 1 thread (compute-bound)
#   - prefill of 32 and 512 tokens on the 8b (2 threads) against llama.cpp
#   - long context: prefill of 2048 and 8128 tokens and decode at that depth
#     (llama-bench -p N -n 0 and -p 0 -n 32 -d N), SmolLM2 at 1 thread and
#     the 8b Q4_0 at 2 threads (8128: the context is 8192 and the 32 decoded
#     tokens must fit)
#   - the cost of the kernels' f64 exactness (reported from docs/ARCHITECTURE.md)
#   - the KV cache's default (f16), and perplexity and KL of KV f16 and q8_0
#     against f32 on bench/text/alice-ch1-2.txt, beside llama-perplexity's
#   - the planner's memory prediction against each node's peak RSS, single,
#     tensor 2, pipeline 2 and hybrid 2x2, contexts 512 and 4096 filled,
#     SmolLM2 and the 8b; the 8b's peak RSS in one process against its file
#   - `shardlab probe`: two pinned bandwidth probes at once against one alone,
#     the ideal speedup of a memory-bound decode on 2 nodes; tensor over 2
#     nodes (one core each, pinned) against one node on one core and that
#     ideal, in three alternating triples (probe, one node, tensor 2; one
#     with --quick) whose median share is the verdict; all-reduce latency
#     against a raw loopback round trip, with the skew between peers;
#     pipeline over 2 nodes with 4 sequences in flight against one node,
#     in three alternating pairs whose median ratio is the verdict;
#     llama.cpp's RPC split beside them
#   - scaling to 16 cores (bench/scale16.sh, on a host with 16 cores)
#   - mixtures of experts (synthetic qwen3moe 7b-a1b and 30b-a3b, Q4_0): one
#     node against llama.cpp; expert and tensor over 2 nodes against the
#     probe's ideal; a 3 GiB budget per node refused on 1, run on 2 and 3
# It builds what it needs: shardlab (release; SHARDLAB_BIN=PATH uses that
# binary instead), llama.cpp (bench/llamacpp.sh, cached under
# ~/.cache/shardlab), SmolLM2, and the synthetic files the chosen goals read,
# in ~/.cache/shardlab/synth: the 8b in Q4_0, Q4_K and Q8_0 (about 4.2, 4.2
# and 8.0 GiB), the small in-cache files (33 MiB) and the MoE files (3.9 and
# 17.2 GB; the 30b-a3b one needs that much free memory to stay in the page
# cache). About 40 GB of files, plus up to 25 GB of shards the local nodes
# keep (~/.cache/shardlab/nodes) and 4.5 GB at a time in a scratch home for
# the memory goal: have 70 GB free for a full run.
# Usage: bench/run.sh [--quick] [--moe] [--only GOAL[,GOAL]]
#   On a 2-core host a full run takes about 2.5 hours (2026-12-06, an
#   Intel Xeon guest: 152 minutes; the context cells 67 of them, 37 the 8b
#   at 8128 (one pair); the memory cells 37, most of them the 8b at
#   context 4096; prefill 18, decode 11, cluster and MoE about 6 each;
#   2026-12-07, an AMD Zen 4 guest: 128 minutes, context 59, memory 29;
#   the same guest later that day: 123 minutes, context 56, memory 27).
#   --quick (fewer pairs: one a cell on the 8b, MoE and context cells, two
#   on SmolLM2 and the small files; no 8b cells at 8128, no 8b memory cells
#   at 4096, 2 chunks of perplexity, KV f16 only) about 30 minutes; --moe
#   runs the MoE goals only (6 minutes of measuring on 2026-12-06, once the
#   files are in the page cache); --only runs the goals named.
#   Making the files the first time adds about 10 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${SHARDLAB_BIN:-}" ]; then
  bin=$SHARDLAB_BIN
else
  cargo build --release --quiet
  bin=target/release/shardlab
fi
home=${SHARDLAB_HOME:-$HOME/.cache/shardlab}
synth=$home/synth
mkdir -p "$synth"

# The goals this run measures, so only their files are made.
goals=all
prev=
for a in "$@"; do
  case "$a" in
    --moe) goals=moe ;;
    --only=*) goals=${a#--only=} ;;
  esac
  [ "$prev" = --only ] && goals=$a
  prev=$a
done
wants() { # wants GOAL...: true if any of them runs
  local g
  [ "$goals" = all ] && return 0
  for g in "$@"; do
    case ",$goals," in *,"$g",*) return 0 ;; esac
  done
  return 1
}
synth_once() { # synth_once FILE SYNTH-ARGS...: writes FILE unless it is there (through a temporary name)
  local f=$1; shift
  [ -f "$f" ] && return 0
  echo "making $f" >&2
  "$bin" synth "$@" --out "$f.part.gguf" >/dev/null
  mv "$f.part.gguf" "$f"
}

model=$("$bin" models pull smollm2 2>/dev/null | tail -1)
bench/llamacpp.sh build >/dev/null
llama=$(bench/llamacpp.sh path)

args=(--smollm2 "$model")
if wants decode prefill peak context memory cluster; then
  for q in q4_0 q4_k q8_0; do
    # Only the Q4_0 file serves the goals after prefill.
    [ $q = q4_0 ] || wants decode prefill || continue
    synth_once "$synth/llama-8b-$q.gguf" --arch llama --preset 8b --quant "$q"
    args+=(--8b "$q=$synth/llama-8b-$q.gguf")
  done
fi
if wants cache; then
  # Small enough to stay in cache (8.5 MiB in Q4_0 and Q4_K, 16 MiB in Q8_0):
  # the compute-bound goal.
  for q in q4_0 q4_k q8_0; do
    synth_once "$synth/small-llama-$q.gguf" --arch llama --layers 2 --hidden 768 --heads 12 \
      --kv-heads 4 --ffn 2048 --vocab 2048 --quant "$q"
    args+=(--small "$q=$synth/small-llama-$q.gguf")
  done
fi
if wants moe; then
  # Mixtures of experts (qwen3moe): the OLMoE-1B-7B and Qwen3-30B-A3B shapes.
  synth_once "$synth/qwen3moe-7b-a1b-q4_0.gguf" --arch qwen3moe --preset 7b-a1b --quant q4_0
  synth_once "$synth/qwen3moe-30b-a3b-q4_0.gguf" --arch qwen3moe --preset 30b-a3b --quant q4_0
  args+=(--moe-7b "$synth/qwen3moe-7b-a1b-q4_0.gguf" --moe-30b "$synth/qwen3moe-30b-a3b-q4_0.gguf")
fi
exec python3 bench/goals.py "$bin" "$llama" "${args[@]}" "$@"
