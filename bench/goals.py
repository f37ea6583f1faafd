#!/usr/bin/env python3
"""Measures every goal of BENCHMARKS.md (issue 13) in one run and prints the table.

Called by bench/run.sh, which builds shardlab and llama.cpp and makes the
files first. Each measurement prints its command and raw output (so the
numbers can be checked), then the table at the end compares ratios taken
in this one run: the machine is shared and noisy, so only figures from the
same run are compared, shardlab and llama.cpp alternating.

Usage: bench/goals.py SHARDLAB LLAMA_BIN_DIR [--smollm2 GGUF]
           [--8b q4_0=GGUF --8b q4_k=GGUF --8b q8_0=GGUF]
           [--small q4_0=GGUF --small q4_k=GGUF --small q8_0=GGUF]
           [--moe-7b GGUF] [--moe-30b GGUF] [--quick] [--moe] [--only NAME[,NAME]]

--8b takes the synthetic Llama-3-8B files (`shardlab synth --preset 8b`),
--small the files small enough to stay in cache (the compute-bound goal).
A goal whose file is not given prints "not run here" and the others run.
--quick takes fewer pairs and skips the slowest cells (8b at context 8192,
the 8b memory cells at context 4096); --moe runs the MoE goals only;
--only runs the goals named (--list names them). Every row's verdict is
"met", "missed: NN% of the target", "reported" (no target), "not run
here: WHY" or "failed: WHY" (a command failed; the run goes on).
"""

import argparse
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import goals_cluster  # noqa: E402
import goals_memory  # noqa: E402
import goals_speed  # noqa: E402
from goals_lib import C, EXTRA, ROWS, _probes  # noqa: E402

# In the order they run: the small files first, then each 8b file's cells
# together (they share the page cache), the MoE files last (the 30b one
# evicts everything else).
GOALS = [
    ("smollm2", goals_speed.smollm2, "SmolLM2 Q4_1 decode and prefill against llama.cpp, 1 and 2 threads"),
    ("cache", goals_speed.cache, "goal 1, compute-bound: in-cache Q4_0/Q4_K/Q8_0 decode against llama.cpp"),
    ("decode", goals_speed.decode, "goal 1, memory-bound: 8b Q4_0/Q4_K/Q8_0 decode at 1 and 2 threads, roofline"),
    ("prefill", goals_speed.prefill, "goal 2: 8b prefill of 32 and 512 tokens, 2 threads"),
    ("peak", goals_memory.peak, "done when: the 8b's peak RSS against file + KV"),
    ("context", goals_speed.context, "goal 3: prefill and decode at depth 2048 and 8192, SmolLM2 and 8b"),
    ("exactness", goals_memory.exactness, "goal 4: the cost of f64 exactness per kernel (reported)"),
    ("kv", goals_memory.kv, "goal 5: f16 KV by default; perplexity and KL per KV precision"),
    ("memory", goals_memory.memory, "goal 6: predicted memory against each node's peak RSS"),
    ("cluster", goals_cluster.cluster, "goal 7: tensor 2 against the ideal, all-reduce and skew, pipeline"),
    ("scale16", goals_cluster.scale16, "goal 8: scaling to 16 cores (bench/scale16.sh)"),
    ("moe", goals_cluster.moe, "mixtures of experts against llama.cpp and over 2 nodes"),
]


def files(pairs, flag):
    out = {}
    for item in pairs or []:
        quant, sep, path = item.partition("=")
        if not sep:
            sys.exit(f"{flag} takes QUANT=FILE, not {item!r}")
        out[quant.lower()] = path
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shardlab")
    ap.add_argument("llama", metavar="LLAMA_BIN_DIR")
    ap.add_argument("--smollm2")
    ap.add_argument("--8b", dest="big", action="append", metavar="QUANT=GGUF")
    ap.add_argument("--small", action="append", metavar="QUANT=GGUF")
    ap.add_argument("--moe-7b")
    ap.add_argument("--moe-30b")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--moe", action="store_true", help="the MoE goals only")
    ap.add_argument("--only", help="comma-separated goal names")
    ap.add_argument("--list", action="store_true", help="name every goal and exit")
    a = ap.parse_args()
    if a.list:
        for name, _, what in GOALS:
            print(f"{name:10} {what}")
        return
    C.shardlab, C.llama, C.smol = a.shardlab, a.llama, a.smollm2
    C.big, C.small = files(a.big, "--8b"), files(a.small, "--small")
    C.moe_7b, C.moe_30b, C.quick = a.moe_7b, a.moe_30b, a.quick
    names = [n for n, _, _ in GOALS]
    if a.only:
        chosen = a.only.split(",")
        unknown = [n for n in chosen if n not in names]
        if unknown:
            sys.exit(f"unknown goal(s) {', '.join(unknown)}; goals: {', '.join(names)}")
    elif a.moe:
        chosen = ["moe"]
    else:
        chosen = names

    def stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    # A run stopped from outside still prints what it measured.
    signal.signal(signal.SIGTERM, stop)
    started = time.time()
    print("## machine")
    print(subprocess.run("lscpu | grep -E 'Model name|^CPU\\(s\\)|Flags' | cut -c1-200; uptime",
                         shell=True, capture_output=True, text=True).stdout)
    try:
        for name, fn, what in GOALS:
            if name not in chosen:
                continue
            print(f"\n## {name}: {what}", flush=True)
            goal_started = time.time()
            try:
                fn()
            except Exception as e:  # a bug in one goal must not lose the others' rows
                import traceback
                traceback.print_exc()
                ROWS.append((f"{name}: {what}", "-", "", f"failed: {type(e).__name__}: {e}"))
            print(f"## {name} took {(time.time() - goal_started) / 60:.1f} min", flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted: the table holds what was measured so far")
    finally:
        print_table(started)


def print_table(started):
    print("\n## goals (this run)\n")
    bw = {k: v[0] for k, v in _probes.items()}
    if bw:
        print("memory bandwidth (`shardlab probe`): " + ", ".join(
            f"{g} group(s) of {c} core(s): {b:.1f} GB/s alone" for (g, c), b in sorted(bw.items())) + "\n")
    print("| goal | measured | target | verdict |")
    print("|---|---|---|---|")
    for r in ROWS:
        print("| " + " | ".join(str(x).replace("|", "/") for x in r) + " |")
    for title, table in EXTRA:
        print(f"\n### {title}\n\n{table}")
    print(f"\n(the run took {(time.time() - started) / 60:.0f} min{', --quick' if C.quick else ''})")


if __name__ == "__main__":
    main()
