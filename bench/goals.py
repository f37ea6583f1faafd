#!/usr/bin/env python3
"""Measures every speed goal of BENCHMARKS.md in one run and prints the table.

Called by bench/run.sh, which builds shardlab and llama.cpp first. Each
measurement prints its raw output (so the numbers can be checked), then the
table at the end compares ratios taken in this one run: the machine is
shared and noisy, so only figures from the same run are compared.

Usage: bench/goals.py SHARDLAB LLAMA_BIN_DIR SMOLLM2_GGUF Q4_0_8B Q4_K_8B MOE_7B_A1B MOE_30B_A3B
                      [--quick] [--moe]
--moe measures the mixture-of-experts goals only (with the bandwidth probe).
"""

import re
import subprocess
import sys
import time

QUICK = "--quick" in sys.argv
MOE_ONLY = "--moe" in sys.argv
args = [a for a in sys.argv[1:] if a not in ("--quick", "--moe")]
if len(args) != 7:
    sys.exit(__doc__)
SHARDLAB, LLAMA, SMOL, BIG_Q4_0, BIG_Q4_K, MOE_7B, MOE_30B = args

rows = []  # (goal, measured, target, verdict)


def sh(cmd, cores=None):
    """Runs a command (pinned to `cores` with taskset), echoes and returns its stdout."""
    if cores is not None:
        cmd = ["taskset", "-c", cores] + cmd
    print("$ " + " ".join(cmd), flush=True)
    started = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True)
    print(out.stdout.rstrip())
    if out.returncode != 0:
        print(out.stderr[-3000:])
        raise SystemExit(f"command failed ({out.returncode}): {' '.join(cmd)}")
    print(f"  [{time.time() - started:.0f} s]", flush=True)
    return out.stdout


def number(pattern, text, what):
    m = re.search(pattern, text)
    if not m:
        raise SystemExit(f"could not find {what} in the output above")
    return float(m.group(1))


def llama_bench(model, threads, p, n, reps):
    cores = "0" if threads == 1 else f"0-{threads - 1}"
    out = sh([f"{LLAMA}/llama-bench", "-m", model, "-t", str(threads),
              "-p", str(p), "-n", str(n), "-r", str(reps)], cores)
    pp = number(rf"\|\s*pp{p}\s*\|\s*([0-9.]+)", out, f"llama.cpp pp{p}")
    tg = number(rf"\|\s*tg{n}\s*\|\s*([0-9.]+)", out, f"llama.cpp tg{n}")
    return pp, tg


def llama_rpc(model, p, n, reps):
    """llama.cpp's own cluster: two ggml-rpc-server processes, one pinned
    core each, the model split by layers (-ts 1/1) between them."""
    servers = []
    try:
        for core, port in ((0, 50611), (1, 50612)):
            servers.append(subprocess.Popen(
                ["taskset", "-c", str(core), f"{LLAMA}/ggml-rpc-server", "-t", "1", "-p", str(port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1.0)
        out = sh([f"{LLAMA}/llama-bench", "-m", model, "--rpc", "127.0.0.1:50611,127.0.0.1:50612",
                  "-ngl", "99", "-ts", "1/1", "-t", "1", "-p", str(p), "-n", str(n), "-r", str(reps)])
    finally:
        for s in servers:
            s.kill()
            s.wait()
    return number(rf"\|\s*tg{n}\s*\|\s*([0-9.]+)", out, f"llama.cpp RPC tg{n}")


def shardlab_bench(model, threads, p, n, extra=(), cores=None):
    out = sh([SHARDLAB, "bench", "--model", model, "--threads", str(threads),
              "--prompt-tokens", str(p), "--gen", str(n), *extra], cores)
    pp = number(r"prefill\s+([0-9.]+) tok/s", out, "prefill tok/s")
    tg = number(r"decode\s+([0-9.]+) tok/s", out, "decode tok/s")
    return pp, tg, out


def refused(cmd):
    """Runs a command that must fail; returns its stderr."""
    print("$ " + " ".join(cmd) + "    (expected to be refused)", flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True)
    print(out.stderr.rstrip()[-1500:])
    if out.returncode == 0:
        raise SystemExit(f"expected a refusal: {' '.join(cmd)}")
    return out.stderr


def warm(path):
    """Reads a model file once, so the run after it finds it in the page cache."""
    started = time.time()
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass
    print(f"(read {path} into the page cache in {time.time() - started:.0f} s)", flush=True)


def probe(groups, cores_per_group):
    out = sh([SHARDLAB, "probe", "--groups", str(groups),
              "--cores-per-group", str(cores_per_group), "--mib", "1024"])
    one = number(r"alone: ([0-9.]+) GB/s", out, "one group's bandwidth")
    ideal = number(r"nodes: ([0-9.]+)x", out, "ideal speedup")
    return one, ideal


def verdict(value, target, higher_is_better=True):
    ok = value >= target if higher_is_better else value <= target
    if ok:
        return "met"
    # How far along the way to the target the measurement got.
    reached = value / target if higher_is_better else target / value
    return f"missed: {100 * reached:.0f}% of the target"


def against_llama(name, model, threads, p, n, reps):
    lp, lt = llama_bench(model, threads, p, n, reps)
    cores = "0" if threads == 1 else f"0-{threads - 1}"
    sp, st, out = shardlab_bench(model, threads, p, n, ["--no-probe"], cores)
    for kind, s, l, label in (("decode", st, lt, f"tg{n}"), ("prefill", sp, lp, f"pp{p}")):
        rows.append((f"{name} {kind} ({label}), {threads} thread(s): shardlab / llama.cpp",
                     f"{s:.2f} / {l:.2f} = {s / l:.2f}x", ">= 1.0x", verdict(s / l, 1.0)))
    return st


print("## machine")
print(subprocess.run("lscpu | grep -E 'Model name|^CPU\\(s\\)|Flags' | cut -c1-200; uptime",
                     shell=True, capture_output=True, text=True).stdout)

print("## memory bandwidth: one core alone, two pinned cores at once")
bw1, ideal2 = probe(2, 1)
bw2, _ = probe(1, 2)
rows.append(("Ideal 2-node speedup (2 pinned probes at once / one alone)", f"{ideal2:.2f}x",
             "(reference)", ""))

def dense():
    reps = 2 if QUICK else 3
    print("## SmolLM2 Q4_1, one process")
    for t in (1, 2):
        against_llama("SmolLM2 Q4_1", SMOL, t, 128, 64, reps)

    big_p, big_n = (8, 8) if QUICK else (32, 16)
    print("## synthetic 8b, one process, one thread")
    big_rates = {}
    for name, model in (("8b Q4_0", BIG_Q4_0), ("8b Q4_K", BIG_Q4_K)):
        big_rates[name] = against_llama(name, model, 1, big_p, big_n, 1 if QUICK else 2)

    print("## roofline of the 8b decode (weight bytes per token x tok/s / one core's bandwidth)")
    for name, model in (("8b Q4_0", BIG_Q4_0), ("8b Q4_K", BIG_Q4_K)):
        out = sh([SHARDLAB, "bench", "--model", model, "--threads", "1",
                  "--prompt-tokens", "4", "--gen", str(big_n)], "0")
        frac = number(r"= ([0-9.]+)% of one core", out, "roofline fraction") / 100
        rows.append((f"{name} decode, 1 thread: fraction of measured bandwidth", f"{100 * frac:.0f}%",
                     ">= 80%", verdict(frac, 0.8)))

    print("## cluster: one core per node, pinned; one node on one core as the baseline")
    _, single8, _ = shardlab_bench(BIG_Q4_0, 1, 8, big_n, ["--no-probe"], "0")
    _, tensor8, out = shardlab_bench(BIG_Q4_0, 1, 8, big_n,
                                     ["--nodes", "local:2", "--layout", "tensor", "--pin", "--no-probe"])
    speedup = tensor8 / single8
    rpc8 = llama_rpc(BIG_Q4_0, 8, big_n, 1)
    rows.append(("8b Q4_0 over 2 nodes, one sequence: shardlab tensor / llama.cpp RPC (layer split)",
                 f"{tensor8:.2f} / {rpc8:.2f} = {tensor8 / rpc8:.2f}x", "(no goal)", ""))
    rows.append(("8b Q4_0 tensor over 2 nodes / one node (decode)",
                 f"{tensor8:.2f} / {single8:.2f} = {speedup:.2f}x = {100 * speedup / ideal2:.0f}% of ideal",
                 f">= 90% of {ideal2:.2f}x", verdict(speedup / ideal2, 0.9)))
    ratios = [float(x) for x in re.findall(r"\(([0-9.]+)x raw RTT\)", out)]
    if ratios:
        worst = max(ratios)
        rows.append(("All-reduce p50 / raw loopback TCP round trip of the same size (8b, tensor 2)",
                     f"{worst:.2f}x", "<= 1.5x", verdict(worst, 1.5, higher_is_better=False)))

    _, single_s, _ = shardlab_bench(SMOL, 1, 32, 64, ["--no-probe"], "0")
    _, tensor_s, out = shardlab_bench(SMOL, 1, 32, 64,
                                      ["--nodes", "local:2", "--layout", "tensor", "--pin", "--no-probe"])
    rows.append(("SmolLM2 tensor over 2 nodes / one node (decode)",
                 f"{tensor_s:.1f} / {single_s:.1f} = {tensor_s / single_s:.2f}x", "(no goal)", ""))
    ratios = [float(x) for x in re.findall(r"\(([0-9.]+)x raw RTT\)", out)]
    if ratios:
        worst = max(ratios)
        rows.append(("All-reduce p50 / raw loopback TCP round trip (SmolLM2, tensor 2)",
                     f"{worst:.2f}x", "<= 1.5x", verdict(worst, 1.5, higher_is_better=False)))
    rpc_s = llama_rpc(SMOL, 32, 64, reps)
    rows.append(("SmolLM2 over 2 nodes, one sequence: shardlab tensor / llama.cpp RPC (layer split)",
                 f"{tensor_s:.1f} / {rpc_s:.1f} = {tensor_s / rpc_s:.2f}x", "(no goal)", ""))
    _, pipe_s, _ = shardlab_bench(SMOL, 1, 32, 64,
                                  ["--nodes", "local:2", "--layout", "pipeline", "--pin", "--no-probe",
                                   "--parallel", "4"])
    rows.append(("SmolLM2 pipeline over 2 nodes, 4 sequences in flight / one node, one sequence",
                 f"{pipe_s:.1f} / {single_s:.1f} = {pipe_s / single_s:.2f}x", ">= 1.7x",
                 verdict(pipe_s / single_s, 1.7)))

    _, pipe8, _ = shardlab_bench(BIG_Q4_0, 1, 8, big_n,
                                 ["--nodes", "local:2", "--layout", "pipeline", "--pin", "--no-probe",
                                  "--parallel", "4"])
    rows.append(("8b Q4_0 pipeline over 2 nodes, 4 sequences in flight / one node, one sequence",
                 f"{pipe8:.2f} / {single8:.2f} = {pipe8 / single8:.2f}x", ">= 1.7x",
                 verdict(pipe8 / single8, 1.7)))



def moe():
    """The mixture-of-experts goals: one node against llama.cpp, expert and
    tensor over 2 nodes against the probe's ideal, and a budget that one
    node cannot meet."""
    reps = 1 if QUICK else 2
    p, n = (8, 8) if QUICK else (32, 16)
    # The 30b file (16 GiB) evicts the 7b one from the page cache, so every
    # 7b figure comes first, each after reading the file once.
    print("## mixture of experts, one process, one thread: 7b-a1b")
    warm(MOE_7B)
    against_llama("7b-a1b Q4_0", MOE_7B, 1, p, n, reps)
    print("## 7b-a1b over 2 nodes, one core each, pinned; one node on one core as the baseline")
    warm(MOE_7B)
    _, one, _ = shardlab_bench(MOE_7B, 1, 8, n, ["--no-probe"], "0")
    rates = {}
    for layout in ("expert", "tensor"):
        _, rates[layout], _ = shardlab_bench(
            MOE_7B, 1, 8, n, ["--nodes", "local:2", "--layout", layout, "--pin", "--no-probe"])
        rows.append((f"7b-a1b Q4_0 {layout} over 2 nodes / one node (decode)",
                     f"{rates[layout]:.2f} / {one:.2f} = {rates[layout] / one:.2f}x", "(see below)", ""))
    best = max(rates, key=rates.get)
    speedup = rates[best] / one
    rows.append((f"7b-a1b Q4_0 over 2 nodes, the better layout ({best}) / one node",
                 f"{speedup:.2f}x = {100 * speedup / ideal2:.0f}% of ideal",
                 f">= 90% of {ideal2:.2f}x", verdict(speedup / ideal2, 0.9)))
    print("## 7b-a1b with 3 GiB per node: refused on one node, runs on 2 and 3")
    budget = ["--layout", "expert", "--mem-limit", "3G", "--no-probe"]
    err = refused([SHARDLAB, "bench", "--model", MOE_7B, "--threads", "1", "--prompt-tokens", "8",
                   "--gen", str(n), "--nodes", "local:1", *budget])
    if "does not fit" not in err:
        raise SystemExit("the one-node refusal did not say what does not fit")
    fits = []
    for nodes in (2, 3):
        # Three pinned nodes would need three cores: unpinned there.
        pin = ["--pin"] if nodes <= 2 else []
        _, r, _ = shardlab_bench(MOE_7B, 1, 8, n, ["--nodes", f"local:{nodes}", *budget, *pin])
        fits.append(f"{nodes} nodes {r:.2f} tok/s")
    rows.append(("7b-a1b Q4_0 (3.9 GB) with a 3 GiB budget per node, expert layout",
                 "refused on 1 node; " + ", ".join(fits), "refused, then runs",
                 "met"))
    print("## mixture of experts, one process, one thread: 30b-a3b")
    warm(MOE_30B)
    against_llama("30b-a3b Q4_0", MOE_30B, 1, p, n, reps)


if not MOE_ONLY:
    dense()
moe()

print("\n## goals (this run)\n")
print(f"memory bandwidth: one core {bw1 / 1:.1f} GB/s, two cores in one process {bw2:.1f} GB/s\n")
print("| goal | measured | target | verdict |")
print("|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
