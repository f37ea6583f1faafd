#!/usr/bin/env bash
# Reproduces the figures in BENCHMARKS.md on this machine, in one run so the
# ratios compare like with like:
#   1. llama.cpp's llama-bench and `shardlab bench` on SmolLM2, 1 and 2 threads
#   2. one node (pinned to one core) against tensor 2 and pipeline 2 (each
#      node pinned to its own core), on SmolLM2 and on the synthetic 8b Q4_0
# Usage: bench/run.sh [--skip-8b]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/shardlab
home=${SHARDLAB_HOME:-$HOME/.cache/shardlab}
model=$("$bin" models pull smollm2 2>/dev/null | tail -1)
bench/llamacpp.sh build >/dev/null
llama=$(bench/llamacpp.sh path)

echo "## machine"
lscpu | grep -E 'Model name|^CPU\(s\)' || true
uptime

echo "## SmolLM2 Q4_1: llama.cpp vs shardlab, one process"
for t in 1 2; do
  cores=$([ "$t" = 1 ] && echo 0 || echo 0-1)
  taskset -c "$cores" "$llama/llama-bench" -m "$model" -t "$t" -p 128 -n 64 -r 3 2>/dev/null | grep -E 'pp128|tg64'
  taskset -c "$cores" "$bin" bench --model "$model" --threads "$t" --prompt-tokens 128 --gen 64 2>/dev/null
done

echo "## SmolLM2 Q4_1: one node vs 2 nodes, one core each"
taskset -c 0 "$bin" bench --model "$model" --threads 1 --prompt-tokens 32 --gen 64 --no-probe 2>/dev/null
for layout in tensor pipeline; do
  "$bin" bench --model "$model" --threads 1 --prompt-tokens 32 --gen 64 --nodes local:2 --layout "$layout" --pin --no-probe 2>/dev/null
done

if [ "${1:-}" != "--skip-8b" ]; then
  big="$home/synth/llama-8b-q4_0.gguf"
  mkdir -p "$home/synth"
  [ -f "$big" ] || "$bin" synth --arch llama --preset 8b --quant q4_0 --out "$big"
  echo "## synthetic Llama-3-8B shape, Q4_0: one node vs 2 nodes, one core each"
  taskset -c 0 "$bin" bench --model "$big" --threads 1 --prompt-tokens 8 --gen 8 2>/dev/null
  for layout in tensor pipeline; do
    "$bin" bench --model "$big" --threads 1 --prompt-tokens 8 --gen 8 --nodes local:2 --layout "$layout" --pin --no-probe 2>/dev/null
  done
fi
