#!/usr/bin/env bash
# bench/serve.sh — `shardlab serve` beside llama.cpp's llama-server on the
# same GGUF file: aggregate generated tokens/s and time to first token
# (p50, p99) at 1, 4 and 16 concurrent streaming clients
# (bench/serve_load.py), one server after the other on an idle machine.
#
#   bench/serve.sh [--model ALIAS|GGUF] [--threads N] [--ctx N] [--tokens N] [--nodes local:N]
#
# Defaults: SmolLM2 (its GGUF from the model store), 2 threads, context 512
# per sequence, 64 tokens per client, one shardlab process. llama-server
# gets a slot per client: -np 16 -c 16xCTX -t THREADS (its continuous
# batching is on by default). With --nodes, shardlab runs tensor over
# the local nodes, one thread each.
set -euo pipefail
cd "$(dirname "$0")/.."

model=smollm2 threads=2 ctx=512 tokens=64 nodes=""
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --ctx) ctx=$2; shift 2 ;;
        --tokens) tokens=$2; shift 2 ;;
        --nodes) nodes=$2; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "bench/serve.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

cargo build --release --quiet
exe=target/release/shardlab
bench/llamacpp.sh build >&2
bin=$(bench/llamacpp.sh path)
gguf=$model
if [ ! -f "$gguf" ]; then
    gguf=$("$exe" models pull "$model" 2>/dev/null | tail -1 | awk '{print $NF}')
fi
[ -f "$gguf" ] || { echo "bench/serve.sh: no GGUF file for $model" >&2; exit 1; }

clients=(1 4 16)
wait_health() {
    for _ in $(seq 600); do
        python3 -c "import urllib.request,sys; urllib.request.urlopen('$1/health', timeout=2)" 2>/dev/null && return 0
        sleep 0.5
    done
    echo "bench/serve.sh: $1 never became healthy" >&2
    return 1
}
pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; wait 2>/dev/null || true' EXIT

echo "== shardlab serve ($gguf, ${nodes:-one process}, $threads threads, ctx $ctx, $tokens tokens per client)"
args=(serve --model "$gguf" --listen 127.0.0.1:18401 --parallel 16 --ctx "$ctx")
if [ -n "$nodes" ]; then args+=(--nodes "$nodes" --layout tensor -t 1); else args+=(-t "$threads"); fi
"$exe" "${args[@]}" 2>/dev/null &
pid=$!
wait_health http://127.0.0.1:18401
python3 bench/serve_load.py http://127.0.0.1:18401/v1 "$gguf" "${clients[@]}" --tokens "$tokens"
kill -TERM $pid; wait $pid || true; pid=""

echo "== llama-server (-np 16 -c $((16 * ctx)) -t $threads)"
"$bin/llama-server" -m "$gguf" --host 127.0.0.1 --port 18402 -np 16 -c $((16 * ctx)) -t "$threads" >/dev/null 2>&1 &
pid=$!
wait_health http://127.0.0.1:18402
python3 bench/serve_load.py http://127.0.0.1:18402/v1 "$gguf" "${clients[@]}" --tokens "$tokens"
kill -TERM $pid; wait $pid || true; pid=""
