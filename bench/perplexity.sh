#!/usr/bin/env bash
# Quality of each KV-cache and wire precision on a real text: perplexity and
# KL divergence against an exact reference, by `shardlab perplexity`, with
# llama.cpp's `llama-perplexity` on the same text and file beside them.
#
#   bench/perplexity.sh [CHUNKS]     (default: every 512-token chunk)
#
# The text is bench/text/alice-ch1-2.txt (chapters I-II of Alice's
# Adventures in Wonderland, public domain; see bench/text/README.md).
# Prints one markdown table (BENCHMARKS.md, "KV cache and wire precision").
set -euo pipefail
cd "$(dirname "$0")/.."
CHUNKS=${1:-}
TEXT=bench/text/alice-ch1-2.txt
CTX=512
cargo build --release --quiet
EXE=target/release/shardlab
"$EXE" models pull smollm2 >/dev/null
MODEL=$(ls "${SHARDLAB_HOME:-$HOME/.cache/shardlab}"/models/smollm2/*.gguf | head -1)
BIN=$(bench/llamacpp.sh path)
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
limit=()
[ -n "$CHUNKS" ] && limit=(--chunks "$CHUNKS")

ours() { # label, then flags for shardlab perplexity
    local label=$1; shift
    "$EXE" perplexity --text "$TEXT" --ctx $CTX -t 1 --json "${limit[@]}" "$@" 2>"$OUT/log" |
        python3 -c "
import json, sys
r = json.loads(sys.stdin.read().strip().splitlines()[-1])
print(f\"| shardlab | $label | {r['perplexity']:.4f} | {r['mean_kl']:.6f} | {r['p99_kl']:.6f} | {100*r['same_top']:.2f}% | {r['tokens']} |\")
" || { tail -5 "$OUT/log" >&2; exit 1; }
}

theirs() { # label, then llama-perplexity flags
    local label=$1; shift
    local lc=()
    [ -n "$CHUNKS" ] && lc=(--chunks "$CHUNKS")
    "$BIN/llama-perplexity" -m "$MODEL" -f "$TEXT" -c $CTX -b $CTX -t 1 "${lc[@]}" \
        --kl-divergence-base "$OUT/base.kld" --kl-divergence "$@" >"$OUT/llama.log" 2>&1 ||
        { tail -5 "$OUT/llama.log" >&2; exit 1; }
    python3 - "$label" "$OUT/llama.log" <<'PY'
import re, sys
label, log = sys.argv[1], open(sys.argv[2]).read()
def num(pat):
    m = re.search(pat, log)
    if not m:
        sys.exit(f"llama-perplexity printed no {pat!r}:\n" + log[-2000:])
    return float(m.group(1))
ppl = num(r"Mean PPL\(Q\)\s*:\s*(-?[\d.]+)")
kl = num(r"Mean\s+KLD:\s*(-?[\d.]+)")
p99 = num(r"99\.0%\s+KLD:\s*(-?[\d.]+)")
top = num(r"Same top p:\s*(-?[\d.]+)")
print(f"| llama.cpp | {label} | {ppl:.4f} | {kl:.6f} | {p99:.6f} | {top:.2f}% | |")
PY
}

echo "| engine | run | perplexity | mean KL | p99 KL | same top token | tokens scored |"
echo "|---|---|---|---|---|---|---|"
ours "one process, KV f32 (the reference)" --kv f32
ours "one process, KV f16 (default)" --kv f16
ours "one process, KV q8_0" --kv q8_0
for wire in f64 f32 f16 bf16 q8; do
    ours "tensor 2, wire $wire, KV f32" --kv f32 --nodes local:2 --layout tensor --wire "$wire"
done
# llama.cpp's reference: f32 KV without flash attention, its logits saved
# for the KL divergence of the others.
"$BIN/llama-perplexity" -m "$MODEL" -f "$TEXT" -c $CTX -b $CTX -t 1 ${CHUNKS:+--chunks $CHUNKS} \
    -fa off -ctk f32 -ctv f32 --kl-divergence-base "$OUT/base.kld" >"$OUT/base.log" 2>&1 ||
    { tail -5 "$OUT/base.log" >&2; exit 1; }
theirs "KV f32, no flash attention (its reference)" -fa off -ctk f32 -ctv f32
theirs "KV f16 (default)" -ctk f16 -ctv f16
theirs "KV q8_0 (flash attention)" -fa on -ctk q8_0 -ctv q8_0
