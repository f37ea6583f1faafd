#!/usr/bin/env bash
# Sealed links: what AES-256-GCM on every frame costs.
#
# 1. The link benchmark (`:links`'s transfer each way, 32 MiB), one local
#    node connected sealed and plaintext in turn, on loopback and on the
#    emulated 10gbe and 1gbe links, ROUNDS rounds each; prints every
#    transfer and the median sealed/plaintext ratio per link
#    (engine/examples/link_seal_cost.rs).
# 2. Decode tok/s on tensor 2 over local nodes, sealed and plaintext
#    (--insecure-plaintext), alternating, ROUNDS rounds; MODEL is a GGUF
#    path or a store name (default smollm2; the issue's figure is the 8b
#    synthetic: `shardlab synth --preset 8b --quant q4_0 --out 8b.gguf`).
#
#   bench/seal.sh [ROUNDS] [MODEL]       (defaults 5 and smollm2)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin shardlab
cargo build --release --quiet -p shardlab-engine --example link_seal_cost
bin=$PWD/target/release/shardlab
rounds=${1:-5}
model=${2:-smollm2}

echo "## Link benchmark: sealed / plaintext"
target/release/examples/link_seal_cost "$bin" "$rounds" 32

echo
echo "## Decode tok/s, $model tensor 2, sealed / plaintext"
decode() { # extra flags -> decode tok/s
    "$bin" bench --model "$model" --nodes local:2 --no-probe --json --prompt-tokens 16 --gen 48 "$@" 2>/dev/null |
        python3 -c "
import json, sys
s = json.load(sys.stdin)['rows'][0]['result']['Ok']['stats']
print((s['generated_tokens'] - 1) / s['decode_seconds'])"
}
ratios=()
for r in $(seq "$rounds"); do
    sealed=$(decode)
    plain=$(decode --insecure-plaintext)
    ratio=$(python3 -c "print(f'{$sealed / $plain:.3f}')")
    ratios+=("$ratio")
    printf 'round %d: sealed %.2f, plaintext %.2f tok/s, sealed/plaintext %s\n' "$r" "$sealed" "$plain" "$ratio"
done
python3 -c "
import statistics, sys
print(f'median sealed/plaintext: {statistics.median(map(float, sys.argv[1:])):.3f}')" "${ratios[@]}"
