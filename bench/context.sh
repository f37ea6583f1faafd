#!/usr/bin/env bash
# How the cost grows with the context: prefill of an N-token prompt and
# decode at depth N, shardlab beside llama.cpp's llama-bench on the same
# GGUF (SmolLM2 Q4_1 unless -m is given), 1 thread, N from 128 to 8128.
# SmolLM2's context is 8192 tokens and the prompt and the 32 decoded tokens
# must fit in it, so the longest N here is 8128 rather than 8192.
# Each N runs shardlab, then llama.cpp, then both again (alternating, as
# the machine is shared and noisy); the table gives each engine's mean of
# its two runs and their ratio.
#
#   bench/context.sh [-m GGUF] [N ...]      (default N: 128 512 2048 8128)
#
# Prints one markdown table (BENCHMARKS.md, "Cost against context length").
# About 40 minutes for the defaults on a 2-core host; 8128 is most of it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/shardlab
model=$("$bin" models pull smollm2 2>/dev/null | tail -1)
if [ "${1:-}" = -m ]; then model=$2; shift 2; fi
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(128 512 2048 8128)
bench/llamacpp.sh build >/dev/null
llama=$(bench/llamacpp.sh path)
gen=32

ours() { # N -> "prefill decode" tok/s
    "$bin" bench -m "$model" --prompt-tokens "$1" --gen $gen -t 1 --no-probe --json 2>/dev/null |
        python3 -c "
import json, sys
s = json.load(sys.stdin)['rows'][0]['result']['Ok']['stats']
# The first decoded token comes with the prefill; the rest are timed.
print(s['prompt_tokens'] / s['prefill_seconds'], (s['generated_tokens'] - 1) / s['decode_seconds'])"
}

theirs() { # N -> "prefill decode" tok/s
    "$llama/llama-bench" -m "$model" -t 1 -r 1 -o json -p "$1" -n 0 >/tmp/shardlab-ctx-p.json 2>/dev/null
    "$llama/llama-bench" -m "$model" -t 1 -r 1 -o json -p 0 -n $gen -d "$1" >/tmp/shardlab-ctx-d.json 2>/dev/null
    python3 -c "
import json
p = json.load(open('/tmp/shardlab-ctx-p.json'))[0]['avg_ts']
d = json.load(open('/tmp/shardlab-ctx-d.json'))[0]['avg_ts']
print(p, d)"
}

echo "| context N | prefill shardlab | prefill llama.cpp | ratio | decode @N shardlab | decode @N llama.cpp | ratio |"
echo "|---|---|---|---|---|---|---|"
for n in "${sizes[@]}"; do
    read -r op1 od1 < <(ours "$n")
    read -r tp1 td1 < <(theirs "$n")
    read -r op2 od2 < <(ours "$n")
    read -r tp2 td2 < <(theirs "$n")
    python3 -c "
op, tp = ($op1 + $op2) / 2, ($tp1 + $tp2) / 2
od, td = ($od1 + $od2) / 2, ($td1 + $td2) / 2
print(f'| $n | {op:.1f} | {tp:.1f} | {op/tp:.2f}x | {od:.2f} | {td:.2f} | {od/td:.2f}x |')"
done
