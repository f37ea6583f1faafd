#!/usr/bin/env bash
# Heartbeats: how soon a hung node is named, and what the beats cost.
#
# 1. Detection. `shardlab run` on 3 local nodes (tensor, 1 thread each)
#    with a ~1100-token prompt, a step deadline of 120 s and --no-recover.
#    Once all three have loaded, node1 is stopped (SIGSTOP) half a second
#    into the prefill. Prints the seconds from the stop to the run exiting,
#    and its error, for each trial.
# 2. Cost. `shardlab bench` decode on SmolLM2 tensor 2 with heartbeats on
#    (--heartbeat 1.5, the default) and off (--heartbeat 0), alternating,
#    ROUNDS times; prints each pair and the median ratio on/off.
#
#   bench/heartbeat.sh [TRIALS] [ROUNDS]       (defaults 5 and 5)
#
# About 3 minutes for the defaults on a 2-core host.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/shardlab
trials=${1:-5}
rounds=${2:-5}
work=$(mktemp -d)
trap 'pkill -CONT -f "shardlab node" 2>/dev/null || true; rm -rf "$work"' EXIT

prompt=$(python3 -c "print(' '.join(['The quick brown fox jumps over the lazy dog near the river bank.'] * 100))")
echo "## Detection: node1 stopped mid-prefill, step deadline 120 s"
for t in $(seq "$trials"); do
    SHARDLAB_STEP_TIMEOUT=120 "$bin" run --nodes local:3 -t 1 --no-recover -n 4 \
        --temperature 0 -p "$prompt" >"$work/out" 2>"$work/err" &
    run=$!
    for _ in $(seq 600); do
        [ "$(grep -c 'loaded' "$work/err" || true)" -ge 3 ] && break
        sleep 0.05
    done
    sleep 0.5
    node1=$(pgrep -P "$run" -f "name node1")
    kill -STOP "$node1"
    stopped=$(date +%s.%N)
    wait "$run" || true
    exited=$(date +%s.%N)
    kill -CONT "$node1" 2>/dev/null || true
    python3 -c "print(f'trial $t: named after {$exited - $stopped:.2f} s')"
    tail -1 "$work/err"
done

echo
echo "## Cost: decode tok/s, SmolLM2 tensor 2, heartbeats on / off"
decode() { # heartbeat seconds -> decode tok/s
    "$bin" bench --nodes local:2 --no-probe --json --gen 64 --heartbeat "$1" 2>/dev/null |
        python3 -c "
import json, sys
s = json.load(sys.stdin)['rows'][0]['result']['Ok']['stats']
print((s['generated_tokens'] - 1) / s['decode_seconds'])"
}
ratios=()
for r in $(seq "$rounds"); do
    on=$(decode 1.5)
    off=$(decode 0)
    ratio=$(python3 -c "print(f'{$on / $off:.3f}')")
    ratios+=("$ratio")
    printf 'round %d: on %.1f, off %.1f tok/s, on/off %s\n' "$r" "$on" "$off" "$ratio"
done
python3 -c "
import statistics, sys
print(f'median on/off: {statistics.median(map(float, sys.argv[1:])):.3f}')" "${ratios[@]}"
