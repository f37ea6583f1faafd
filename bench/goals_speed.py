"""One process against llama.cpp: decode (memory-bound 8b, in-cache small
files), prefill, long context, and the roofline and peak memory of the 8b.
Every comparison is shardlab bench and llama-bench alternating on the same
file, threads and cores (goals_lib.pairs)."""

import os

from goals_lib import (C, Failed, NotHere, Pair, add, against_llama, attempt, compare, cores,
                       failure, llama_bench, median, need, pairs, probe, shape, shardlab_bench,
                       verdict, warm)

QUANTS = ("q4_0", "q4_k", "q8_0")


def threads_label(t):
    return f"{t} thread{'s' if t > 1 else ''}"


def smollm2():
    """SmolLM2 Q4_1 decode and prefill against llama.cpp at 1 and 2 threads."""
    reps = 2 if C.quick else 3
    for t in (1, 2):
        goal = f"SmolLM2 Q4_1, {threads_label(t)}: shardlab / llama.cpp"

        def cell(t=t):
            ps = pairs(need(C.smol, "SmolLM2", "--smollm2"), t, 128, 64, reps, timeout=600)
            against_llama("SmolLM2 Q4_1", ps, "tg", "tg64", t)
            against_llama("SmolLM2 Q4_1", ps, "pp", "pp128", t)
        attempt(goal, ">= 1.0x", cell)


def decode():
    """Goal 1, memory-bound: the 8b in Q4_0, Q4_K and Q8_0 at 1 and 2
    threads, decode against llama-bench (median of alternating pairs), and
    the decode's share of the bandwidth `shardlab bench` probes at that
    thread count (weight bytes x tok/s / bandwidth). Two threads take
    five pairs: there both engines run at the memory's limit, which on a
    shared VM swings by a third from minute to minute, and a median of
    three pairs then flips on one bad minute."""
    for q in QUANTS:
        name = f"8b {q.upper()}"
        for t in (1, 2):
            reps = 1 if C.quick else (3 if t == 1 else 5)
            goal = f"{name} decode (tg16), {threads_label(t)}: shardlab / llama.cpp"
            rgoal = f"{name} decode, {threads_label(t)}: weight bytes x tok/s / bandwidth probed at {threads_label(t)}"
            try:
                path = need(C.big.get(q), f"8b {q}", f"--8b {q}=FILE")
                if t == 1:
                    warm(path)
            except NotHere as e:
                add(goal, "-", ">= 1.0x", failure(e))
                add(rgoal, "-", ">= 80%", failure(e))
                continue
            ps = pairs(path, t, 32, 16, reps, probe=True, timeout=1800)
            against_llama(name, ps, "tg", "tg16", t)
            attempt(rgoal, ">= 80%", lambda: roofline(ps, rgoal))


def roofline(ps, goal):
    runs = [x.ours for x in ps if x.ours]
    if not runs:
        raise Failed(str(ps[0].ours_err))
    t = ps[0].threads
    if all("roofline" in r for r in runs):
        frac = median([r["roofline"] for r in runs])
        bw = median([r["bandwidth"] for r in runs])
        each = ", ".join(f"{100 * r['roofline']:.0f}%" for r in runs)
        text = f"{100 * frac:.0f}%" + (f" (runs: {each})" if len(runs) > 1 else "") + \
            f"; `shardlab bench`'s probe {bw:.1f} GB/s"
        # llama.cpp reads the same weights per token: its share of the same
        # probe, pair by pair, shows whether both sit at the memory's limit,
        # where neither can be much faster than the other.
        theirs = [x.theirs["tg"] / x.ours["tg"] * x.ours["roofline"]
                  for x in ps if x.ours and x.theirs and x.theirs.get("tg")]
        if theirs:
            text += f"; llama.cpp beside it {100 * median(theirs):.0f}%"
    else:
        # This build printed no roofline line: the same from `shardlab probe`.
        bw, _ = probe(1, t)
        weights = runs[0].get("weights")
        if not weights:
            raise Failed("no weight size in the bench output")
        tg = median([r["tg"] for r in runs])
        frac = weights * tg / (bw * 1e9)
        text = f"{weights / 1e9:.2f} GB x {tg:.2f} tok/s / {bw:.1f} GB/s (`shardlab probe`) = {100 * frac:.0f}%"
    add(goal, text, ">= 80%", verdict(frac, 0.8))


def cache():
    """Goal 1, compute-bound: small files that stay in cache, 1 thread,
    decode against llama-bench (and prefill beside it, reported)."""
    reps = 2 if C.quick else 3
    for q in QUANTS:
        goal = f"in-cache {q.upper()} decode (tg256), 1 thread: shardlab / llama.cpp"

        def cell(q=q):
            path = need(C.small.get(q), f"small {q}", f"--small {q}=FILE")
            s = shape(path)
            name = (f"in-cache {q.upper()} ({s['arch']}, {s['layers']} layers, hidden {s['hidden']}, "
                    f"FFN {s['ffn']}, {s['heads']}/{s['kv_heads']} heads, vocab {s['vocab']}; "
                    f"{os.path.getsize(path) / 1048576:.1f} MiB)")
            ps = pairs(path, 1, 128, 256, reps, timeout=600)
            against_llama(name, ps, "tg", "tg256", 1)
            pgoal = f"{name} prefill (pp128), 1 thread: shardlab / llama.cpp"

            def pp():
                text, _ = compare(ps, "pp")
                add(pgoal, text, "(no goal)", "reported")
            attempt(pgoal, "(no goal)", pp)
        attempt(goal, ">= 1.0x", cell)


def prefill():
    """Goal 2: prefill of 32- and 512-token prompts on the 8b, 2 threads
    (pp32 shares its runs with the 2-thread decode cells)."""
    reps = 1 if C.quick else 3
    for q in QUANTS:
        name = f"8b {q.upper()}"
        for p in (32, 512):
            goal = f"{name} prefill (pp{p}), 2 threads: shardlab / llama.cpp"

            def cell(q=q, p=p, name=name):
                path = need(C.big.get(q), f"8b {q}", f"--8b {q}=FILE")
                if p == 32:
                    warm(path)
                    ps = pairs(path, 2, 32, 16, reps, probe=True, timeout=1800)
                else:
                    ps = pairs(path, 2, 512, 4, reps, timeout=3600, llama_n=0)
                against_llama(name, ps, "pp", f"pp{p}", 2)
            attempt(goal, ">= 1.0x", cell)


def context_cell(path, t, depth, reps, timeout, gen=32):
    """Alternating pairs at one context length: shardlab's prefill of
    `depth` tokens and decode after it, llama-bench's `-p N -n 0` and
    `-p 0 -n 32 -d N` (as bench/context.sh). Its prefill is warmed by an
    untimed 8-token prompt, as shardlab's is, rather than by a second
    untimed run of the whole prompt (llama-bench's own warm-up), which at
    8128 tokens on the 8b took about 12 minutes a pair."""
    done = []
    for _ in range(reps):
        pair = Pair(t)
        try:
            pair.ours = shardlab_bench(path, t, depth, gen, cores=cores(t), timeout=timeout)
        except Failed as e:
            pair.ours_err = e
        try:
            pp = llama_bench(path, t, depth, 0, timeout=timeout, short_warmup=True)["pp"]
            tg = llama_bench(path, t, 0, gen, depth=depth, timeout=timeout)["tg"]
            pair.theirs = {"pp": pp, "tg": tg}
        except (Failed, NotHere) as e:
            pair.theirs_err = e
        done.append(pair)
        if isinstance(pair.theirs_err, NotHere) and pair.ours_err:
            break
    return done


def context():
    """Goal 3: decode at depth 2048 and 8192 and prefill of as many tokens,
    on SmolLM2 (1 thread, as bench/context.sh) and the 8b Q4_0 (2 threads).
    A model whose context is 8192 cannot hold 8192 tokens and 32 more, so
    the long cell is its context less 64 (8128), as in bench/context.sh.
    Two alternating pairs a cell (one with --quick, and for the 8b at 8192,
    whose pair took 37 minutes on a 2-core Xeon guest on 2026-12-06)."""
    models = (("SmolLM2 Q4_1", C.smol, "--smollm2", 1, False),
              ("8b Q4_0", C.big.get("q4_0"), "--8b q4_0=FILE", 2, True))
    for name, path, flag, t, big in models:
        for depth in (2048, 8192):
            what = f"{name}, {threads_label(t)}"
            goals = {"pp": f"{what}: prefill of {depth} tokens, shardlab / llama.cpp",
                     "tg": f"{what}: decode at depth {depth} (tg32), shardlab / llama.cpp"}
            try:
                if big and depth == 8192 and C.quick:
                    raise NotHere("--quick")
                path = need(path, name, flag)
                ctx = shape(path)["context"] or 8192
                n = min(depth, ctx - 64)
                reps = 1 if C.quick or (big and depth == 8192) else 2
                timeout = (1800 if depth == 8192 else 900) * (4 if big else 1)
                warm(path)
                ps = context_cell(path, t, n, reps, timeout)
            except (NotHere, Failed) as e:
                for g in goals.values():
                    add(g, "-", ">= 1.0x", failure(e))
                continue
            note = f" (for {depth}: the model's context is {ctx})" if n != depth else ""
            pairs_note = f", {len(ps)} alternating pairs" if len(ps) > 1 else ""
            for kind, g in goals.items():
                g = g.replace(f" {depth} ", f" {n} ", 1).replace(":", f"{note}:", 1) + pairs_note

                def row(kind=kind, g=g):
                    text, ratio = compare(ps, kind)
                    add(g, text, ">= 1.0x", verdict(ratio, 1.0))
                attempt(g, ">= 1.0x", row)
