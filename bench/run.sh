#!/usr/bin/env bash
# Reproduces every figure in BENCHMARKS.md's goal table in one run, so the
# ratios compare like with like on a shared, noisy machine:
#   - llama.cpp's llama-bench against `shardlab bench` on the same GGUF, the
#     same thread count and the same cores (SmolLM2 Q4_1 at 1 and 2 threads,
#     the synthetic 8b in Q4_0 and Q4_K at 1 thread)
#   - the 8b decode as a fraction of the measured memory bandwidth
#   - `shardlab probe`: two pinned bandwidth probes at once against one alone,
#     the ideal speedup of a memory-bound decode on 2 nodes
#   - tensor over 2 nodes (one core each, pinned) against one node on one core;
#     all-reduce latency against a raw loopback round trip of the same size;
#     pipeline over 2 nodes with 4 sequences in flight
#   - mixtures of experts (synthetic qwen3moe 7b-a1b and 30b-a3b, Q4_0): one
#     node against llama.cpp; expert and tensor over 2 nodes against the
#     probe's ideal; a 3 GiB budget per node refused on 1, run on 2 and 3
# It builds what it needs: shardlab (release), llama.cpp (bench/llamacpp.sh,
# cached under ~/.cache/shardlab), SmolLM2 and the synthetic 8b and MoE files
# (about 30 GB of disk in ~/.cache/shardlab/synth; the 30b-a3b file is 17 GB
# and needs that much free memory to stay in the page cache).
# Usage: bench/run.sh [--quick] [--moe]   (about 35 minutes; --quick about 15;
#                                          --moe: the MoE goals only)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/shardlab
home=${SHARDLAB_HOME:-$HOME/.cache/shardlab}
model=$("$bin" models pull smollm2 2>/dev/null | tail -1)
bench/llamacpp.sh build >/dev/null
llama=$(bench/llamacpp.sh path)
mkdir -p "$home/synth"
moe_only=false
for a in "$@"; do [ "$a" = --moe ] && moe_only=true; done
for q in q4_0 q4_k; do
  f="$home/synth/llama-8b-$q.gguf"
  $moe_only || [ -f "$f" ] || "$bin" synth --arch llama --preset 8b --quant "$q" --out "$f"
done
# Mixtures of experts (qwen3moe): the OLMoE-1B-7B and Qwen3-30B-A3B shapes.
for preset in 7b-a1b 30b-a3b; do
  f="$home/synth/qwen3moe-$preset-q4_0.gguf"
  [ -f "$f" ] || "$bin" synth --arch qwen3moe --preset "$preset" --quant q4_0 --out "$f"
done
exec python3 bench/goals.py "$bin" "$llama" "$model" \
  "$home/synth/llama-8b-q4_0.gguf" "$home/synth/llama-8b-q4_k.gguf" \
  "$home/synth/qwen3moe-7b-a1b-q4_0.gguf" "$home/synth/qwen3moe-30b-a3b-q4_0.gguf" "$@"
