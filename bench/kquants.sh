#!/usr/bin/env bash
# Decode and prefill of one file per quant type, shardlab beside llama.cpp,
# THREADS threads (default 1) pinned to cores 0..THREADS-1, alternating
# (each binary given, then llama-bench) for REPS rounds; prints every run
# and, per binary, the median of its per-round ratios to llama.cpp.
#   - shardlab: `bench -m FILE -t THREADS --prompt-tokens P --gen N --no-probe`
#   - llama.cpp: `llama-bench -m FILE -t THREADS -p P -n N -r 1` (bench/llamacpp.sh builds it)
#
# Usage: bench/kquants.sh P N FILE...
#   environment: REPS=3, THREADS=1, BINS="target/release/shardlab" (shardlab binaries, in turn)
# Example (in-cache files of the low-bit K-quants, before and after a change):
#   for q in q2_k q3_k q5_k; do
#     target/release/shardlab synth --arch llama --layers 2 --hidden 768 --heads 12 \
#       --kv-heads 4 --ffn 2048 --vocab 2048 --quant $q --out /tmp/small-$q.gguf
#   done
#   BINS="/tmp/shardlab-before target/release/shardlab" bench/kquants.sh 128 256 /tmp/small-q*.gguf
set -euo pipefail
cd "$(dirname "$0")/.."
p=${1:?usage: bench/kquants.sh P N FILE...}
n=${2:?usage: bench/kquants.sh P N FILE...}
shift 2
[ $# -ge 1 ] || { echo "give at least one model file" >&2; exit 2; }
reps=${REPS:-3}
threads=${THREADS:-1}
cores=0-$((threads - 1))
read -r -a bins <<<"${BINS:-target/release/shardlab}"
llama="$(bench/llamacpp.sh path)/llama-bench"

ours() { # ours BIN FILE: "prefill decode" tok/s
  taskset -c "$cores" "$1" bench -m "$2" -t "$threads" --prompt-tokens "$p" --gen "$n" --no-probe 2>&1 |
    awk '/^prefill /{pp=$2} /^decode /{tg=$2} END{print pp+0, tg+0}'
}
theirs() { # theirs FILE: "prefill decode" tok/s
  taskset -c "$cores" "$llama" -m "$1" -t "$threads" -p "$p" -n "$n" -r 1 -o json 2>/dev/null | python3 -c '
import json, sys
pp = tg = 0
for t in json.load(sys.stdin):
    if t.get("n_gen", 0) > 0: tg = t["avg_ts"]
    else: pp = t["avg_ts"]
print(f"{pp:.2f} {tg:.2f}")'
}
ratios=$(mktemp)
trap 'rm -f "$ratios"' EXIT
for file in "$@"; do
  echo "== $file (pp$p, tg$n, $threads thread(s))"
  for r in $(seq "$reps"); do
    declare -A got=()
    for b in "${bins[@]}"; do got[$b]=$(ours "$b" "$file"); done
    read -r lpp ltg < <(theirs "$file")
    for b in "${bins[@]}"; do
      read -r spp stg <<<"${got[$b]}"
      printf '  round %d  %-28s prefill %8.2f / %8.2f   decode %8.2f / %8.2f\n' \
        "$r" "$b" "$spp" "$lpp" "$stg" "$ltg"
      echo "$file $b $(python3 -c "print($spp / $lpp, $stg / $ltg)")" >>"$ratios"
    done
    unset got
  done
  for b in "${bins[@]}"; do
    grep -F "$file $b " "$ratios" | python3 -c '
import statistics, sys
rows = [l.split() for l in sys.stdin]
pp = statistics.median(float(r[-2]) for r in rows)
tg = statistics.median(float(r[-1]) for r in rows)
print(f"  median ratio to llama.cpp, {rows[0][1]}: prefill {pp:.2f}x, decode {tg:.2f}x")'
  done
done
