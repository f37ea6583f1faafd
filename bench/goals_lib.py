"""What every goal of bench/goals.py shares: the run's configuration, the
table's rows and verdicts, bounded commands, and the measurements that
several goals read (shardlab bench beside llama-bench in alternating
pairs, the bandwidth probe, a GGUF file's shape).

Standard library only. Every command runs in a process group of its own
under a timeout, so a hang ends as a failed row, not a stuck run.
"""

import json
import os
import re
import signal
import statistics
import struct
import subprocess
import time


class Failed(Exception):
    """A measurement could not be taken (a command failed or printed no figure)."""


class NotHere(Exception):
    """A measurement that this run does not take, and why."""


class Config:
    shardlab = ""
    llama = ""          # llama.cpp's bin dir (llama-bench, llama-perplexity, ggml-rpc-server)
    smol = None         # SmolLM2 GGUF
    big = {}            # quant -> 8b synthetic GGUF
    small = {}          # quant -> small in-cache synthetic GGUF
    moe_7b = None
    moe_30b = None
    quick = False
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


C = Config()
ROWS = []     # (goal, measured, target, verdict)
EXTRA = []    # (title, text) printed after the table (bench/scale16.sh's table)


def add(goal, measured, target, verdict):
    ROWS.append((goal, measured, target, verdict))


def verdict(value, target, higher_is_better=True):
    ok = value >= target if higher_is_better else value <= target
    if ok:
        return "met"
    # How far along the way to the target the measurement got.
    reached = value / target if higher_is_better else target / value
    return f"missed: {100 * reached:.0f}% of the target"


def failure(e):
    """The verdict of a measurement that was not taken."""
    return f"not run here: {e}" if isinstance(e, NotHere) else f"failed: {e}"


def attempt(goal, target, fn):
    """Runs fn(); a measurement that failed or is not taken here becomes
    this goal's row, and the run goes on."""
    try:
        fn()
    except (NotHere, Failed) as e:
        add(goal, "-", target, failure(e))


def need(path, what, flag):
    if not path or not os.path.exists(path):
        raise NotHere(f"no {what} file given ({flag})")
    return path


def need_llama(tool="llama-bench"):
    exe = os.path.join(C.llama, tool)
    if not os.access(exe, os.X_OK):
        raise NotHere(f"no {tool} in {C.llama} (bench/llamacpp.sh build)")
    return exe


def cores(threads):
    return "0" if threads == 1 else f"0-{threads - 1}"


def sh(cmd, cores=None, timeout=600, env=None, echo=True, check=True):
    """Runs a command (pinned to `cores` with taskset) in its own process
    group, killed whole after `timeout` seconds; echoes its stdout and
    returns (stdout, stderr). Raises Failed on a timeout or, with check,
    a non-zero exit."""
    if cores is not None:
        cmd = ["taskset", "-c", cores] + cmd
    print("$ " + " ".join(cmd), flush=True)
    started = time.time()
    full_env = None if env is None else {**os.environ, **env}
    try:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             errors="replace", start_new_session=True, env=full_env)
    except OSError as e:
        raise Failed(f"could not start {cmd[0]}: {e}")
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(p)
        out, err = p.communicate()
        print(out.rstrip()[-3000:])
        print(err.rstrip()[-2000:])
        raise Failed(f"timed out after {timeout} s: {short(cmd)}")
    except BaseException:
        kill_group(p)
        raise
    if echo:
        print(out.rstrip())
    if check and p.returncode != 0:
        print(err.rstrip()[-3000:])
        last = [l for l in err.strip().splitlines() if l.strip()]
        why = last[-1][:160] if last else ""
        raise Failed(f"{short(cmd)} exited {p.returncode}" + (f": {why}" if why else ""))
    print(f"  [{time.time() - started:.0f} s]", flush=True)
    return out, err


def kill_group(p):
    """Kills the process group this script started for one command."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def short(cmd):
    if cmd[:1] == ["taskset"]:
        cmd = cmd[3:]
    names = [os.path.basename(c) if "/" in c else c for c in cmd[:3]]
    return "`" + " ".join(names) + (" ...`" if len(cmd) > 3 else "`")


def number(pattern, text, what):
    m = re.search(pattern, text)
    if not m:
        raise Failed(f"no {what} in the output")
    return float(m.group(1))


def rate(x):
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def median(xs):
    return statistics.median(xs)


def warm(path):
    """Reads a model file once, so the run after it finds it in the page cache."""
    started = time.time()
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass
    print(f"(read {path} into the page cache in {time.time() - started:.0f} s)", flush=True)


# ---------------------------------------------------------------- GGUF shape

def gguf_meta(path):
    """A GGUF file's metadata: scalars as values, arrays as their length."""
    types = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
             10: "<Q", 11: "<q", 12: "<d"}
    with open(path, "rb") as f:
        def read(fmt):
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

        def string():
            return f.read(read("<Q")).decode("utf-8", "replace")

        def value(t):
            if t == 8:
                return string()
            if t == 9:
                inner, n = read("<I"), read("<Q")
                if inner == 8:
                    for _ in range(n):
                        f.seek(read("<Q"), 1)
                elif inner in types:
                    f.seek(n * struct.calcsize(types[inner]), 1)
                else:
                    for _ in range(n):
                        value(inner)
                return n
            return read(types[t])

        if f.read(4) != b"GGUF":
            raise Failed(f"{path} is not a GGUF file")
        read("<I")
        read("<Q")
        meta = {}
        for _ in range(read("<Q")):
            key = string()
            meta[key] = value(read("<I"))
    return meta


def shape(path):
    """(architecture, layers, hidden, ffn, heads, kv heads, head dim, vocab, context)."""
    m = gguf_meta(path)
    a = m["general.architecture"]
    heads = m[f"{a}.attention.head_count"]
    hidden = m[f"{a}.embedding_length"]
    return {
        "arch": a,
        "layers": m[f"{a}.block_count"],
        "hidden": hidden,
        "ffn": m.get(f"{a}.feed_forward_length", 0),
        "heads": heads,
        "kv_heads": m.get(f"{a}.attention.head_count_kv", heads),
        "head_dim": m.get(f"{a}.attention.key_length", hidden // heads),
        "vocab": m.get(f"{a}.vocab_size", m.get("tokenizer.ggml.tokens", 0)),
        "context": m.get(f"{a}.context_length", 0),
    }


def kv_bytes(path, context, bytes_per_value=2):
    """The KV cache of `context` positions (f16 by default): K and V of every layer."""
    s = shape(path)
    return 2 * s["layers"] * s["kv_heads"] * s["head_dim"] * context * bytes_per_value


# ------------------------------------------------- shardlab beside llama.cpp

def shardlab_bench(model, threads, p, n, extra=(), cores=None, timeout=900, probe=False):
    """One `shardlab bench` of one process (or the layout in `extra`):
    {pp, tg, out, roofline?, bandwidth?, weights?, peak?}."""
    flags = [] if probe else ["--no-probe"]
    out, _ = sh([C.shardlab, "bench", "--model", model, "--threads", str(threads),
                 "--prompt-tokens", str(p), "--gen", str(n), *flags, *extra], cores, timeout)
    r = {"pp": number(r"prefill\s+([0-9.]+) tok/s", out, "prefill tok/s"),
         "tg": number(r"decode\s+([0-9.]+) tok/s", out, "decode tok/s"),
         "out": out}
    m = re.search(r"memory bandwidth \((\d+) threads?\) ([0-9.]+) GB/s; decode reads "
                  r"([0-9.]+) GB/s of weights = ([0-9.]+)% of", out)
    if m:
        r["bandwidth"] = float(m.group(2))
        r["roofline"] = float(m.group(4)) / 100
    m = re.search(r"\(([0-9.]+) MiB of weights\)", out)
    if m:
        r["weights"] = float(m.group(1)) * 1048576
    m = re.search(r"peak memory of this process ([0-9.]+) MiB", out)
    if m:
        r["peak"] = float(m.group(1)) * 1048576
    return r


def llama_bench(model, threads, p, n, depth=0, timeout=900, short_warmup=False):
    """One llama-bench repetition: {pp, tg} (tok/s) for the tests it ran.
    short_warmup: instead of llama-bench's own warm-up, which runs the whole
    prompt once more untimed (an 8128-token prompt on the 8b: about 12
    minutes), an untimed 8-token prompt on the same loaded model pages the
    weights in, as `shardlab bench`'s own 8-token warm-up does."""
    exe = need_llama()
    short_warmup = short_warmup and p > 8
    prompts = f"8,{p}" if short_warmup else str(p)
    cmd = [exe, "-m", model, "-t", str(threads), "-p", prompts, "-n", str(n), "-r", "1", "-o", "json"]
    if short_warmup:
        cmd += ["--no-warmup"]
    if depth:
        cmd += ["-d", str(depth)]
    out, _ = sh(cmd, cores(threads), timeout, echo=False)
    try:
        tests = json.loads(out)
    except ValueError:
        print(out[-2000:])
        raise Failed("llama-bench printed no JSON")
    r = {}
    for t in tests:
        key = "tg" if t.get("n_gen", 0) > 0 else "pp"
        if key == "pp" and t.get("n_prompt") != p:
            continue  # the short warm-up prompt
        r[key] = float(t["avg_ts"])
        print(f"  llama-bench {key}{t.get('n_gen') or t.get('n_prompt')}"
              f"{' @ depth ' + str(t.get('n_depth')) if t.get('n_depth') else ''}: {r[key]:.2f} tok/s")
    if (p and "pp" not in r) or (n and "tg" not in r):
        raise Failed("llama-bench reported no figure for a test it was asked for")
    return r


class Pair:
    """One shardlab run and the llama.cpp run right after it; either side may
    have failed (its error kept) without losing the other."""

    def __init__(self, threads):
        self.threads = threads
        self.ours = self.theirs = None
        self.ours_err = self.theirs_err = None


_pairs = {}


def pairs(model, threads, p, n, reps, probe=False, timeout=900, llama_n=None):
    """`reps` alternating pairs of `shardlab bench` and `llama-bench` on the
    same file, threads and cores (taken once per run: a later goal asking
    for the same cells reuses them, and more are added if it asks for more).
    llama_n: the tokens llama-bench decodes (default n; 0 for a prefill-only
    comparison, as shardlab bench always decodes at least one)."""
    key = (model, threads, p, n, probe, llama_n)
    done = _pairs.setdefault(key, [])
    ln = n if llama_n is None else llama_n
    while len(done) < reps:
        pair = Pair(threads)
        try:
            pair.ours = shardlab_bench(model, threads, p, n, cores=cores(threads),
                                       timeout=timeout, probe=probe)
        except Failed as e:
            pair.ours_err = e
        try:
            pair.theirs = llama_bench(model, threads, p, ln, timeout=timeout)
        except (Failed, NotHere) as e:
            pair.theirs_err = e
        done.append(pair)
        if isinstance(pair.theirs_err, NotHere) and pair.ours_err:
            break
    return done[:reps]


def compare(ps, kind):
    """A row's measured text and the median of the per-pair ratios, from
    pairs' `kind` ("pp" or "tg"). Raises Failed / NotHere when no pair has
    both sides."""
    both = [(x.ours[kind], x.theirs[kind]) for x in ps if x.ours and x.theirs]
    if not both:
        ours = [x.ours[kind] for x in ps if x.ours]
        err = next((x.theirs_err for x in ps if x.theirs_err), None) or \
            next((x.ours_err for x in ps if x.ours_err), None)
        if isinstance(err, NotHere):
            raise NotHere(f"{err} (shardlab alone: {', '.join(rate(o) for o in ours)} tok/s)")
        raise Failed(str(err) if err else "no measurement")
    ratio = median([a / b for a, b in both])
    text = ", ".join(f"{rate(a)}/{rate(b)}" for a, b in both)
    failed = len(ps) - len(both)
    if len(both) > 1:
        text += f": median {ratio:.2f}x"
    else:
        text += f" = {ratio:.2f}x"
    if failed:
        text += f" ({failed} of {len(ps)} pairs failed)"
    return text, ratio


def against_llama(name, ps, kind, label, threads, target=1.0):
    """A shardlab / llama.cpp row from alternating pairs."""
    what = "decode" if kind == "tg" else "prefill"
    t = f"{threads} thread{'s' if threads > 1 else ''}"
    n = len(ps)
    goal = f"{name} {what} ({label}), {t}: shardlab / llama.cpp" + \
        (f", {n} alternating pairs" if n > 1 else "")

    def row():
        text, ratio = compare(ps, kind)
        add(goal, text, f">= {target:.1f}x", verdict(ratio, target))
    attempt(goal, f">= {target:.1f}x", row)


# ------------------------------------------------------------ bandwidth probe

_probes = {}


def probe_now(groups, cores_per_group):
    """One `shardlab probe` taken now: (one group alone, all groups at once,
    both GB/s; ideal speedup of `groups` nodes)."""
    out, _ = sh([C.shardlab, "probe", "--groups", str(groups),
                 "--cores-per-group", str(cores_per_group), "--mib", "1024"], timeout=300)
    one = number(r"alone: ([0-9.]+) GB/s", out, "one group's bandwidth")
    both = number(r"at once: ([0-9.]+) GB/s in total", out, "the probes' total")
    ideal = number(r"nodes: ([0-9.]+)x", out, "ideal speedup")
    return one, both, ideal


def probe(groups, cores_per_group):
    """`shardlab probe`: (one group's bandwidth alone, GB/s; ideal speedup of
    `groups` nodes). Taken once per run."""
    key = (groups, cores_per_group)
    if key not in _probes:
        one, both, ideal = probe_now(groups, cores_per_group)
        _probes[key] = (one, ideal)
        if groups == 2 and cores_per_group == 1:
            add("Ideal 2-node speedup: two pinned bandwidth probes at once / one alone "
                "(`shardlab probe --groups 2`)",
                f"{both:.1f} / {one:.1f} GB/s = {ideal:.2f}x", "(reference)", "reported")
    return _probes[key]
