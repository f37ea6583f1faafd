#!/usr/bin/env bash
# Scaling to 16 cores: the synthetic Llama-3-70B (`70b` preset, Q4_0, about
# 40 GB) on 4 local nodes of 4 pinned cores each, against one shardlab
# process of 16 threads and against llama.cpp's llama-bench at 16 threads,
# all on the same cores (0-15) and the same GGUF file.
#   - the nodes are started here, node i pinned with taskset to cores
#     [i*C, (i+1)*C), each with --threads C and --model-dir set to the
#     file's directory, so each maps the one file and cuts its slices from
#     it: nothing is streamed by the coordinator, nothing written to disk
#   - layouts: tensor over the nodes, and hybrid:2x(NODES/2) (pipeline on 2
#     or an odd number of nodes)
#   - REPS rounds, alternating (tensor, hybrid, one process, llama.cpp,
#     tensor, ...); the table gives the median of each configuration
#   - the peak memory of each node (VmHWM, and its own memory, RssAnon,
#     sampled every second): each node should hold its slices once (its
#     kernels' row order, in its own memory) and no more
# Before timing, one untimed load of each layout checks that every node cut
# its slices from the file (tried again if the coordinator's wait for a
# node's first answer, 60 s plus one per 16 MiB of its shard, runs out, as
# it can on a slow disk), and the file is read once into the page cache.
# Disk for the 70b: the file (37 GiB), nothing more. Memory: about 77 GiB
# keeps the file cached beside the nodes' slices (40 GiB all together);
# with less, the file is read again before each one-process and llama.cpp
# run.
#
# Usage: bench/scale16.sh     needs 16 cores. Measured on one (2026-12-04,
#                             BENCHMARKS.md): the 70b file written in 86 s,
#                             the first load 78 s, one round (tensor, one
#                             process, llama.cpp) under 4 minutes, so about
#                             15 minutes for the default 3 rounds of tensor
#                             alone, more with hybrid
# The shape comes from the environment (defaults in brackets):
#   NODES [4]  CORES_PER_NODE [4]  PRESET [70b]  QUANT [q4_0]  PROMPT [32]
#   GEN [16]  REPS [3]  LAYOUTS ["tensor hybrid:2x2"]
#   MODEL [a GGUF to use instead of the synthetic one]
#   RESULTS [a file for the raw JSON lines]  BENCH_TIMEOUT [1800 s per run]
#   PREPARE_TRIES [5]  SYNTH_TIMEOUT [14400 s]
#   DEADLINE [none; seconds from the start: no timed run starts after it,
#   and the table gives the rounds done, so a machine lent for a short
#   while still yields figures]
#   SHARDLAB_BIN [a built shardlab; default: cargo build --release]
#   LLAMA_BIN_DIR [llama.cpp's bin dir; default: bench/llamacpp.sh builds it,
#   with JOBS [all cores] jobs]
#   SHARDLAB_HOME [~/.cache/shardlab; the file is kept in its synth/]
# Prints the table on stdout, progress on stderr; exits 2 before building or
# writing anything when the machine has too few cores or too little disk. A
# failed run keeps its logs (not the slices) and says where.
# A rehearsal of the same steps on a small machine (2 cores: about a minute,
# and 15 s more to write the 0.8 GB file the first time):
#   NODES=2 CORES_PER_NODE=1 PRESET=1b REPS=1 bench/scale16.sh
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

NODES=${NODES:-4}
CORES_PER_NODE=${CORES_PER_NODE:-4}
PRESET=${PRESET:-70b}
QUANT=${QUANT:-q4_0}
PROMPT=${PROMPT:-32}
GEN=${GEN:-16}
REPS=${REPS:-3}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-1800}

say() { echo "[scale16] $*" >&2; }
die() { say "$*"; exit 1; }
refuse() { say "$*"; exit 2; }

for v in NODES CORES_PER_NODE PROMPT GEN REPS BENCH_TIMEOUT ${DEADLINE:+DEADLINE}; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || refuse "$v must be a positive integer, not '${!v}'"
done
[ "$GEN" -ge 2 ] || refuse "GEN must be at least 2 (the first token comes with the prefill)"
C=$CORES_PER_NODE
cores=cores
[ "$C" -gt 1 ] || cores=core
T=$((NODES * C))  # all the cores: the one process and llama.cpp get as many threads
last=$((T - 1))

# 1. Cores: the shape must fit the cores this process may run on (0..T-1).
have=$(nproc)
missing=$(python3 -c "import os; print(' '.join(str(c) for c in range($T) if c not in os.sched_getaffinity(0)))")
if [ "$have" -lt "$T" ] || [ -n "$missing" ]; then
    [ "$have" -lt "$T" ] && missing=  # all of them would be listed
    refuse "this machine gives this process $have cores${missing:+ (not cores $missing)}; $NODES nodes x $C cores need $T, cores 0-$last.
[scale16] For a rehearsal on a smaller machine, ask for a smaller shape, e.g.
[scale16]   NODES=2 CORES_PER_NODE=1 PRESET=1b REPS=1 $0"
fi
for tool in taskset timeout python3 df dd du; do
    command -v "$tool" >/dev/null || die "needs $tool"
done

# 2. The file, and the disk for it.
home=${SHARDLAB_HOME:-$HOME/.cache/shardlab}
mkdir -p "$home/synth"
gib() { python3 -c "print(f'{$1 / 2**30:.1f}')"; }
# Bytes of the weights (file) and of the token embedding, which every node
# of a tensor group holds whole: from the preset's shape (synth/options.rs).
estimate() { # PRESET QUANT -> "file_bytes embedding_bytes"
    python3 - "$1" "$2" <<'PY'
import sys
shapes = {  # layers, hidden, heads, kv_heads, ffn, vocab
    "tiny": (2, 256, 4, 2, 512, 320), "1b": (16, 2048, 32, 8, 8192, 128256),
    "8b": (32, 4096, 32, 8, 14336, 128256), "70b": (80, 8192, 64, 8, 28672, 128256)}
bits = {"q4_0": 4.5, "q4_1": 5, "q5_0": 5.5, "q5_1": 6, "q8_0": 8.5, "q2_k": 2.625,
        "q3_k": 3.4375, "q4_k": 4.5, "q5_k": 5.5, "q6_k": 6.5625, "f16": 16, "bf16": 16, "f32": 32}
preset, quant = sys.argv[1].lower(), sys.argv[2].lower()
if preset not in shapes or quant not in bits:
    sys.exit(f"no size estimate for preset {preset!r} quant {quant!r} (presets: {', '.join(shapes)})")
layers, h, heads, kvh, ffn, vocab = shapes[preset]
kv = kvh * h // heads
params = layers * (2 * h * h + 2 * h * kv + 3 * h * ffn) + 2 * vocab * h
b = bits[quant] / 8
print(int(params * b * 1.01) + (1 << 20), int(vocab * h * b))
PY
}
if [ -n "${MODEL:-}" ]; then
    file=$(realpath "$MODEL")
    [ -f "$file" ] || die "MODEL=$MODEL is not a file"
    file_bytes=$(stat -c %s "$file")
    embd_bytes=$((file_bytes / 50))  # a guess: no shape to go by
    label="$(basename "$file")"
else
    file=$home/synth/llama-$PRESET-$QUANT.gguf
    read -r file_bytes embd_bytes < <(estimate "$PRESET" "$QUANT") || die "cannot size the $PRESET file"
    [ -f "$file" ] && file_bytes=$(stat -c %s "$file")
    label="synthetic llama $PRESET $QUANT"
fi
# The nodes' slices of one layout, in their memory: the file once, plus the
# embedding again on every node but one, plus 3%.
slice_bytes=$((file_bytes + file_bytes * 3 / 100 + (NODES - 1) * embd_bytes))
if [ -z "${LAYOUTS:-}" ]; then
    if [ $((NODES % 2)) -eq 0 ] && [ "$NODES" -ge 4 ]; then second=hybrid:2x$((NODES / 2)); else second=pipeline; fi
    LAYOUTS=tensor
    [ "$NODES" -gt 1 ] && LAYOUTS="tensor $second"
fi
read -r -a layouts <<<"$LAYOUTS"
[ ${#layouts[@]} -ge 1 ] || refuse "LAYOUTS is empty"
# Disk: the file, if it is still to be written; the nodes map it.
free_bytes=$(df -B1 --output=avail "$home" | tail -1 | tr -d ' ')
need=0
[ -f "$file" ] || need=$((file_bytes + file_bytes / 50))
if [ "$free_bytes" -lt "$need" ]; then
    refuse "needs $(gib $need) GiB free under $home for the file; it has $(gib "$free_bytes") GiB"
fi
say "disk: $(gib "$free_bytes") GiB free under $home; this run writes $(gib $need) GiB"

# 3. The binaries, and the file.
if [ -n "${SHARDLAB_BIN:-}" ]; then
    bin=$(realpath "$SHARDLAB_BIN")
    [ -x "$bin" ] || die "SHARDLAB_BIN=$SHARDLAB_BIN is not an executable"
else
    cargo build --release --quiet
    bin=$PWD/target/release/shardlab
fi
if [ -n "${LLAMA_BIN_DIR:-}" ]; then
    llama=$LLAMA_BIN_DIR
else
    JOBS=${JOBS:-$(nproc)} bench/llamacpp.sh build >/dev/null
    llama=$(bench/llamacpp.sh path)
fi
[ -x "$llama/llama-bench" ] || die "no llama-bench in $llama"

if [ ! -f "$file" ]; then
    say "writing $file ($(gib "$file_bytes") GiB; minutes per 10 GB)"
    timeout "${SYNTH_TIMEOUT:-14400}" "$bin" synth --arch llama --preset "$PRESET" --quant "$QUANT" \
        --out "$file" || die "synth failed"
    file_bytes=$(stat -c %s "$file")
else
    say "reusing $file"
fi
dir=$(dirname "$file")

# Memory: the file (one process, llama.cpp) should stay in the page cache
# beside the nodes' slices.
mem_total=$(($(awk '/^MemTotal:/ { print $2 }' /proc/meminfo) * 1024))
rewarm=false
if [ "$mem_total" -lt $((file_bytes + file_bytes / 10)) ]; then
    say "WARNING: memory ($(gib "$mem_total") GiB) is too small to hold the file ($(gib "$file_bytes") GiB) in the page cache: every run reads weights from disk, and the figures measure the disk, not the cores"
    rewarm=true
elif [ "$mem_total" -lt $((file_bytes + slice_bytes + slice_bytes / 10)) ]; then
    say "memory ($(gib "$mem_total") GiB) cannot keep the file cached beside the nodes' slices ($(gib $((file_bytes + slice_bytes))) GiB together): the file is read again before each one-process and llama.cpp run"
    rewarm=true
fi

# 4. The nodes.
work=$(mktemp -d "$home/scale16.XXXXXX")
node_pids=()
child=
sampler=
cleanup() {
    local rc=$? pid
    set +e
    trap - EXIT INT TERM
    [ -n "$child" ] && kill "$child" 2>/dev/null
    [ -n "$sampler" ] && kill "$sampler" 2>/dev/null
    for pid in "${node_pids[@]}"; do kill "$pid" 2>/dev/null; done
    for _ in $(seq 50); do
        local alive=false
        for pid in "${node_pids[@]}" $child; do kill -0 "$pid" 2>/dev/null && alive=true; done
        $alive || break
        sleep 0.1
    done
    for pid in "${node_pids[@]}" $child; do kill -9 "$pid" 2>/dev/null; done
    if [ "$rc" -ne 0 ]; then
        # The logs are kept for a look; any shard a node was streamed
        # (which takes the disk), not.
        rm -rf "$work"/node*/shards
        say "logs kept in $work"
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A command under a time limit, in the background so that a signal to this
# script is handled at once (and the command killed by the trap).
bounded() { # SECONDS CMD... (stdout/stderr as redirected by the caller)
    local rc=0
    timeout "$@" &
    child=$!
    wait "$child" || rc=$?
    child=
    return "$rc"
}

(umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$work/token")
# A free loopback port below the ephemeral range, so that no outgoing
# connection or port-0 listener takes it between the check and the node's bind.
free_port() {
    python3 -c "
import random, socket
low = int(open('/proc/sys/net/ipv4/ip_local_port_range').read().split()[0])
for _ in range(1000):
    port = random.randrange(20000, max(low, 20001))
    try:
        socket.socket().bind(('127.0.0.1', port))
    except OSError:
        continue
    print(port)
    break"
}
start_node() { # I: starts node I on cores [I*C, (I+1)*C), waits for it to listen
    local i=$1 tries port
    for tries in 1 2 3 4 5; do
        port=$(free_port)
        taskset -c "$((i * C))-$((i * C + C - 1))" "$bin" node --listen "127.0.0.1:$port" \
            --token-file "$work/token" --threads "$C" --model-dir "$dir" --cache-dir "$work/node$i" \
            --name "node$i" >"$work/node$i.log" 2>&1 &
        node_pids[i]=$!
        for _ in $(seq 300); do
            if grep -q "listening on" "$work/node$i.log"; then
                addrs+=${addrs:+,}127.0.0.1:$port
                return
            fi
            kill -0 "${node_pids[i]}" 2>/dev/null || break
            sleep 0.2
        done
        grep -q "Address already in use" "$work/node$i.log" || break
        say "node$i: port $port was taken; another (try $tries)"
    done
    cat "$work/node$i.log" >&2
    die "node$i did not start listening"
}
addrs=
for i in $(seq 0 $((NODES - 1))); do start_node "$i"; done
say "$NODES nodes on $addrs, $C $cores each (pinned), slicing from $dir"

# Each node's peak own (anonymous) and mapped-file memory, sampled every
# second: VmHWM alone counts the pages of the files it maps, which the page
# cache shares.
(
    set +e
    declare -a anon mapped
    while :; do
        for i in "${!node_pids[@]}"; do
            while read -r k v _; do
                case $k in
                RssAnon:) [ "$v" -gt "${anon[i]:-0}" ] && anon[i]=$v ;;
                RssFile:) [ "$v" -gt "${mapped[i]:-0}" ] && mapped[i]=$v ;;
                esac
            done <"/proc/${node_pids[i]}/status"
            echo "${anon[i]:-0} ${mapped[i]:-0}" >"$work/peak$i.tmp" && mv "$work/peak$i.tmp" "$work/peak$i"
        done
        sleep 1
    done
) 2>/dev/null &
sampler=$!

# 5. Measurements. Every one appends a line to $work/all.jsonl.
: >"$work/all.jsonl"
record() { # CONFIG ENGINE ROUND RAW-JSON-FILE
    python3 - "$@" >>"$work/all.jsonl" <<'PY'
import json, sys
config, engine, rnd, path = sys.argv[1:5]
raw = open(path).read().strip()
if engine == "shardlab":
    raw = json.loads(raw.splitlines()[-1])
    if raw.get("error") or raw.get("decode_tok_s") is None:
        sys.exit(f"{config}: the bench reported an error: {raw.get('error')}")
    prefill, decode = raw["prefill_tok_s"], raw["decode_tok_s"]
else:
    raw = json.loads(raw)
    prefill = next(t["avg_ts"] for t in raw if t["n_prompt"] > 0 and t["n_gen"] == 0)
    decode = next(t["avg_ts"] for t in raw if t["n_gen"] > 0 and t["n_prompt"] == 0)
print(json.dumps({"config": config, "engine": engine, "round": int(rnd),
                  "prefill_tok_s": prefill, "decode_tok_s": decode, "raw": raw}))
PY
}
failed() { # WHAT ERRFILE
    tr '\r' '\n' <"$2" | tail -30 >&2
    die "$1 failed"
}
ok_json() { # FILE: the bench's last line is a report without an error
    python3 -c '
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
sys.exit(0 if not r.get("error") and r.get("decode_tok_s") is not None else 1)' "$1" 2>/dev/null
}
try_cluster() { # LAYOUT ROUND PROMPT GEN: one run of the nodes; fails without stopping
    local out=$work/$1-r$2
    out=${out//:/_}
    bounded "$BENCH_TIMEOUT" "$bin" bench --model "$file" --nodes "$addrs" --token-file "$work/token" \
        --layout "$1" --threads "$C" --prompt-tokens "$3" --gen "$4" --no-probe --json \
        >"$out.json" 2>"$out.err" && ok_json "$out.json" || return 1
    # How the nodes got their weights: sliced from the file, from their
    # shard cache, or (not wanted here) streamed by the coordinator.
    local sliced cached streamed slowest
    sliced=$(grep -c "sliced from its local model file" "$out.err" || true)
    cached=$(grep -c "from its shard cache" "$out.err" || true)
    streamed=$(grep "MiB of weights in" "$out.err" | grep -vc "sliced from\|from its shard cache" || true)
    slowest=$(sed -n 's/.*loaded \([0-9.]*\) MiB of weights in \([0-9.]*\) s.*/\2 s (\1 MiB)/p' "$out.err" |
        sort -n | tail -1)
    echo "$1 round $2: $sliced sliced from the file, $cached from their shard cache, $streamed streamed; slowest node ${slowest:-?}" \
        >>"$work/loads"
    [ "$streamed" -eq 0 ] || say "WARNING: $streamed node(s) were streamed their slices for $1 (--model-dir not used)"
}
cluster() { # LAYOUT ROUND: a timed run
    local out=$work/$1-r$2
    out=${out//:/_}
    try_cluster "$1" "$2" "$PROMPT" "$GEN" || failed "shardlab $1 (round $2)" "$out.err"
    record "shardlab $1, $NODES nodes x $C $cores" shardlab "$2" "$out.json"
}
# The first load of a layout has every node read its slices from the file
# and hash them before it answers, and the coordinator waits 60 s plus one
# per 16 MiB for that answer: on a slow disk it may give up first. The file
# is in the page cache afterwards, so the load is tried again.
prepare() { # LAYOUT
    local try out=$work/$1-r0 t0=$SECONDS
    out=${out//:/_}
    for try in $(seq "${PREPARE_TRIES:-5}"); do
        if try_cluster "$1" 0 4 2; then
            say "  $(tail -1 "$work/loads") in $((SECONDS - t0)) s"
            return
        fi
        say "  load $try of $1 failed: $(tr '\r' '\n' <"$out.err" | grep -i "error\|fail\|deadline" | tail -1)"
        [ "$try" -lt "${PREPARE_TRIES:-5}" ] || break
        say "  the nodes may still be cutting their slices; trying again in $((30 * try)) s"
        sleep $((30 * try)) & child=$!
        wait "$child"
        child=
    done
    failed "shardlab $1 (the untimed first load)" "$out.err"
}
single() { # ROUND
    local out=$work/single-r$1
    $rewarm && warm
    bounded "$BENCH_TIMEOUT" taskset -c "0-$last" "$bin" bench --model "$file" --threads "$T" \
        --prompt-tokens "$PROMPT" --gen "$GEN" --no-probe --json \
        >"$out.json" 2>"$out.err" || failed "shardlab one process (round $1)" "$out.err"
    record "shardlab, one process, $T threads" shardlab "$1" "$out.json"
}
llamacpp() { # ROUND
    local out=$work/llama-r$1
    $rewarm && warm
    bounded "$BENCH_TIMEOUT" taskset -c "0-$last" "$llama/llama-bench" -m "$file" -t "$T" \
        -p "$PROMPT" -n "$GEN" -r 1 -o json >"$out.json" 2>"$out.err" \
        || failed "llama-bench (round $1)" "$out.err"
    record "llama.cpp llama-bench, $T threads" llama.cpp "$1" "$out.json"
}
warm() {
    local t0=$SECONDS
    bounded "$BENCH_TIMEOUT" dd if="$file" of=/dev/null bs=64M status=none || die "could not read $file"
    say "read $file into the page cache in $((SECONDS - t0)) s"
}

for layout in "${layouts[@]}"; do
    say "preparing $layout: the nodes cut their slices (untimed)"
    prepare "$layout"
done
sync
warm
# Whether DEADLINE has passed; if so, says what is skipped (once).
stopped=
past_deadline() { # WHAT
    [ -n "${DEADLINE:-}" ] && [ $(($(date +%s) - started)) -ge "$DEADLINE" ] || return 1
    stopped="stopped at the deadline (DEADLINE=$DEADLINE s) before $1"
    say "$stopped"
}
for r in $(seq "$REPS"); do
    for layout in "${layouts[@]}"; do
        past_deadline "$layout in round $r" && break 2
        say "round $r/$REPS: shardlab $layout over $NODES nodes"
        cluster "$layout" "$r"
    done
    past_deadline "the one process in round $r" && break
    say "round $r/$REPS: shardlab, one process, $T threads"
    single "$r"
    past_deadline "llama.cpp in round $r" && break
    say "round $r/$REPS: llama.cpp, $T threads"
    llamacpp "$r"
done
[ -s "$work/all.jsonl" ] || die "${stopped:-no run finished}: nothing to report"

# 6. Memory of the nodes, just before they are stopped.
for i in "${!node_pids[@]}"; do
    hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/${node_pids[i]}/status")
    read -r anon mapped <"$work/peak$i" 2>/dev/null || { anon=0; mapped=0; }
    slices=$(du -sb "$work/node$i" | cut -f1)
    echo "node$i $((i * C))-$((i * C + C - 1)) $hwm $anon $mapped $slices"
done >"$work/memory"

# 7. The table.
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
tpc=$(lscpu | sed -n 's/^Thread(s) per core: *//p' | head -1)
python3 - "$work/all.jsonl" "$work/memory" "$work/loads" "${RESULTS:-}" <<PY
import json, statistics, sys
rows_path, mem_path, loads_path, results = sys.argv[1:5]
runs = [json.loads(l) for l in open(rows_path)]
configs = list(dict.fromkeys(r["config"] for r in runs))
med = {}
for c in configs:
    rs = [r for r in runs if r["config"] == c]
    med[c] = (statistics.median(r["prefill_tok_s"] for r in rs),
              statistics.median(r["decode_tok_s"] for r in rs),
              statistics.median(r["raw"]["predicted_decode_tok_s"] for r in rs)
              if rs[0]["engine"] == "shardlab" else None,
              [r["decode_tok_s"] for r in rs])
def decode_of(prefix):  # a configuration's median decode, if it ran
    return next((med[c][1] for c in configs if prefix in c), None)
one, llama = decode_of("one process"), decode_of("llama.cpp")
ratio = lambda d, base: f"{d / base:.2f}x" if base else "-"
rounds = sorted({len([r for r in runs if r["config"] == c]) for c in configs})
print("machine: $cpu, $(nproc) CPUs ($tpc thread(s) per core), "
      f"{$mem_total / 2**30:.1f} GiB memory; file: $file ($label, {$file_bytes / 2**30:.1f} GiB)")
print("$NODES nodes x $C pinned $cores against $T threads on cores 0-$last; prompt $PROMPT tokens, "
      "$GEN generated; median of " + ("$REPS round(s)" if rounds == [$REPS] else
      f"the {'-'.join(map(str, rounds))} round(s) done of $REPS") + ", alternating")
if "$stopped":
    print("$stopped")
print()
print("| configuration | prefill tok/s | decode tok/s | decode vs one process | decode vs llama.cpp | predicted decode |")
print("|---|---|---|---|---|---|")
for c in configs:
    p, d, pred, _ = med[c]
    print(f"| {c} | {p:.2f} | {d:.2f} | {ratio(d, one)} | {ratio(d, llama)} | "
          + (f"{pred:.2f}" if pred is not None else "") + " |")
print()
print("decode tok/s, each round: " + "; ".join(
    f"{c}: " + " ".join(f"{x:.2f}" for x in med[c][3]) for c in configs))
print()
print("| node | cores | VmHWM (peak RSS) | peak RssAnon (own memory) | peak RssFile (mapped files) | written to its shard cache (all layouts) |")
print("|---|---|---|---|---|---|")
mem = []
for line in open(mem_path):
    name, cores, hwm, anon, mapped, slices = line.split()
    gib = lambda kib: f"{int(kib) / 2**20:.2f} GiB"
    mem.append({"node": name, "cores": cores, "vmhwm_kib": int(hwm), "rss_anon_peak_kib": int(anon),
                "rss_file_peak_kib": int(mapped), "slices_bytes": int(slices)})
    print(f"| {name} | {cores} | {gib(hwm)} | {gib(anon)} | {gib(mapped)} | {int(slices) / 2**30:.2f} GiB |")
print()
print("VmHWM counts the pages of the model file the node maps while it cuts its slices (shared through")
print("the page cache); RssAnon is what it holds privately, its slices in its kernels' row order (sampled")
print("every second). Nothing should be written to the shard cache: the nodes map the file.")
print("loads: " + "; ".join(l.strip() for l in open(loads_path)))
if results:
    with open(results, "w") as f:
        f.write(json.dumps({"machine": "$cpu", "cpus": $(nproc), "mem_total": $mem_total,
                            "file": "$file", "file_bytes": $file_bytes, "nodes": $NODES,
                            "cores_per_node": $C, "prompt": $PROMPT, "gen": $GEN, "reps": $REPS,
                            "stopped": "$stopped" or None}) + "\n")
        for r in runs:
            f.write(json.dumps(r) + "\n")
        f.write(json.dumps({"memory": mem}) + "\n")
    print(f"raw JSON lines: {results}")
PY
say "done in $(( $(date +%s) - started )) s"
