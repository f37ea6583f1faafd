#!/usr/bin/env python3
"""llama.cpp reference fixtures for mixture-of-experts models written by
`shardlab synth --preset moe-tiny` (qwen3moe, qwen2moe, Mixtral).

For each file: `shardlab synth` writes it (for the Q4_K_M case an F16 file that
`llama-quantize` converts); llama.cpp, driven through the ctypes bindings of
the llama-cpp-python sdist that `bench/llamacpp.sh` built, tokenizes a fixed
prompt, prefills it, stores the last-position logits, then takes 16 greedy
steps. The same greedy text is cross-checked against `llama-completion`, and a
second, instrumented run records which experts llama.cpp's routers chose.

Usage (see ../README.md, "MoE fixtures"):
    bench/llamacpp.sh build
    cargo build --release --bin shardlab
    $CACHE/venv-ref/bin/python tests/reference/moe/make_moe_fixtures.py \
        --shardlab target/release/shardlab [--check] [--keep DIR]
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
sys.path.insert(0, str(HERE.parent))
# The dense script locates the build and bindings at import and has the
# helpers; reuse them rather than repeat them.
import make_fixtures as ref  # noqa: E402
from make_fixtures import C, LOG, np  # noqa: E402

PRESET = "moe-tiny"
# (fixture name, --arch, --quant, --seed, llama-quantize type or None)
FILES = [
    ("qwen3moe_q8_0", "qwen3moe", "q8_0", 1, None),
    ("qwen3moe_q4_0", "qwen3moe", "q4_0", 2, None),
    ("mixtral_q4_0", "llama", "q4_0", 3, None),
    ("qwen2moe_q8_0", "qwen2moe", "q8_0", 4, None),
    ("qwen3moe_q4_k_m", "qwen3moe", "f16", 5, "Q4_K_M"),
]
# Screened among 30 short prompts: for all five files no router near-tie
# (k-th vs (k+1)-th router logit < 0.01) at a prompt position, and the most
# greedy steps before a top-2 logit gap < 0.05 or a router near-tie (random
# models have flat logits: standard deviation about 1).
PROMPT = "She sells sea shells"
N_GEN = 16
# Committed only below this size (random weights do not compress).
MAX_COMMITTED_GGUF = 4 << 20
CONTEXT = {"type_k": C.GGML_TYPE_F32, "type_v": C.GGML_TYPE_F32,
           "flash_attn_type": C.LLAMA_FLASH_ATTN_TYPE_DISABLED}
CLI_FLAGS = ["-fa", "off", "-ctk", "f32", "-ctv", "f32"]


class GgmlTensor(ctypes.Structure):
    """`struct ggml_tensor` of the pinned ggml (GGML_MAX_DIMS 4, MAX_OP_PARAMS
    64, MAX_SRC 10, MAX_NAME 64), enough to read a named F32 result."""
    _fields_ = [("type", ctypes.c_int), ("buffer", ctypes.c_void_p),
                ("ne", ctypes.c_int64 * 4), ("nb", ctypes.c_size_t * 4),
                ("op", ctypes.c_int), ("op_params", ctypes.c_int32 * 16),
                ("flags", ctypes.c_int32), ("src", ctypes.c_void_p * 10),
                ("view_src", ctypes.c_void_p), ("view_offs", ctypes.c_size_t),
                ("data", ctypes.c_void_p), ("name", ctypes.c_char * 64),
                ("extra", ctypes.c_void_p), ("padding", ctypes.c_char * 8)]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(cmd: list) -> bytes:
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True,
                          stdin=subprocess.DEVNULL).stdout


def completion(path: Path) -> bytes:
    """llama-completion's greedy text. Its logger is asynchronous and never
    flushed at exit (llama.cpp issue 22142), so stdout is often cut short;
    it is whole when the perf report, logged after it, reached stderr."""
    cmd = [str(ref.BIN_DIR / "llama-completion"), "-m", str(path), "-p", PROMPT, "--no-escape",
           "-n", str(N_GEN), "--temp", "0", "--repeat-penalty", "1.0", "-t", "1", "-tb", "1",
           "-c", "512", "-b", "512", "-ub", "512", "-no-cnv", "--no-display-prompt", "-sp",
           "--simple-io", *CLI_FLAGS]
    for _ in range(50):
        r = subprocess.run(cmd, check=True, capture_output=True, stdin=subprocess.DEVNULL)
        if b"total time" in r.stderr:
            return r.stdout
    raise RuntimeError(f"llama-completion never finished its output for {path}")


def detokenize_bytes(vocab, toks: list[int]) -> bytes:
    """Random models emit byte tokens that are not UTF-8 on their own."""
    arr = (C.llama_token * max(1, len(toks)))(*toks)
    buf = ctypes.create_string_buffer(64 + 64 * len(toks))
    n = C.llama_detokenize(vocab, arr, len(toks), buf, len(buf), False, True)
    assert n >= 0, n
    return buf.raw[:n]


def generate(model, n_vocab, prompt_ids, observe=None):
    """Prefill, then N_GEN greedy steps (past end-of-generation tokens).
    `observe(layer, first_position, router_logits)` sees every
    `ffn_moe_logits-N` tensor llama.cpp computes, rows by position."""
    variant = dict(CONTEXT)
    next_pos = [0]  # the position after the batch being decoded
    if observe is not None:
        @C.ggml_backend_sched_eval_callback
        def cb(t, ask, _user):
            t = ctypes.cast(t, ctypes.POINTER(GgmlTensor)).contents
            if not t.name.startswith(b"ffn_moe_logits-"):
                return not ask
            if ask:
                return True
            assert t.type == C.GGML_TYPE_F32 and t.nb[0] == 4 and t.nb[1] == 4 * t.ne[0]
            rows, cols = t.ne[1], t.ne[0]
            data = np.ctypeslib.as_array(ctypes.cast(t.data, ctypes.POINTER(ctypes.c_float)),
                                         shape=(rows * cols,))
            observe(int(t.name.split(b"-")[1]), next_pos[0] - rows, data.reshape(rows, cols).copy())
            return True
        variant["cb_eval"] = cb  # referenced until the context is freed

    def decode(ctx, toks):
        next_pos[0] += len(toks)
        ref.decode(ctx, toks)

    ctx, settings = ref.make_ctx(model, variant)
    sampler = C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
    C.llama_sampler_chain_add(sampler, C.llama_sampler_init_greedy())
    try:
        decode(ctx, prompt_ids)
        prefill = logits = ref.logits_last(ctx, n_vocab)
        gen, steps = [], []
        for i in range(N_GEN):
            tok = C.llama_sampler_sample(sampler, ctx, -1)
            top2 = ref.topk(logits, 2)
            assert tok == top2[0][0], (tok, top2)
            gen.append(tok)
            steps.append({"id": tok, "logit": top2[0][1],
                          "runner_up_id": top2[1][0], "runner_up_logit": top2[1][1]})
            if i + 1 < N_GEN:
                decode(ctx, [tok])
                logits = ref.logits_last(ctx, n_vocab)
    finally:
        C.llama_sampler_free(sampler)
        C.llama_free(ctx)
    settings = {k: v for k, v in settings.items() if k != "flash_attn_log"}
    return settings, prefill, gen, steps


def config_spread(model, n_vocab, prompt_ids, prefill):
    """How far llama.cpp's default context (f16 KV, flash attention auto)
    moves the prefill logits from the fixture's: the scale of honest
    numerical differences for these models."""
    ctx, settings = ref.make_ctx(model, {})
    try:
        ref.decode(ctx, prompt_ids)
        other = ref.logits_last(ctx, n_vocab)
    finally:
        C.llama_free(ctx)
    d = np.abs(other - prefill)
    return {"against": f"type_k={settings['type_k']} type_v={settings['type_v']} "
                       f"flash_attn={settings['flash_attn_resolved']}",
            "max": round(float(d.max()), 6), "mean": round(float(d.mean()), 6),
            "logits_std": round(float(prefill.std()), 6)}


def routing(model, n_vocab, prompt_ids, k, want):
    """Rerun with llama.cpp's router logits observed: per layer, the experts
    each position chose and the gap between the k-th and (k+1)-th router
    logit. The last layer runs its FFN only for rows whose logits are read,
    so during the prefill it sees only the last prompt position."""
    layers: dict[int, dict] = {}

    def observe(layer, first, logits):
        entry = layers.setdefault(layer, {"positions": [], "experts": [], "margins": []})
        for r, row in enumerate(logits):
            order = np.lexsort((np.arange(len(row)), -row))
            entry["positions"].append(first + r)
            entry["experts"].append(sorted(int(e) for e in order[:k]))
            entry["margins"].append(round(float(row[order[k - 1]] - row[order[k]]), 6))

    _, prefill, gen, _ = generate(model, n_vocab, prompt_ids, observe)
    assert (prefill.tobytes(), gen) == want, "observing the router changed llama.cpp's results"
    out = [layers[i] for i in sorted(layers)]
    least = min((m, li, p) for li, e in enumerate(out) for m, p in zip(e["margins"], e["positions"]))
    return {
        "source": "llama.cpp's ffn_moe_logits-N tensors through cb_eval, in a second run whose logits "
                  "and tokens are asserted identical to the first",
        "min_margin": {"margin": least[0], "layer": least[1], "position": least[2]},
        "distinct_expert_sets": [len({tuple(x) for x in e["experts"]}) for e in out],
        "layers": out,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shardlab", required=True, help="the shardlab binary (cargo build --bin shardlab)")
    ap.add_argument("--check", action="store_true", help="compare with the committed fixtures, write nothing")
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--keep", default=None, help="keep the GGUF files in this folder")
    args = ap.parse_args()
    out = Path(args.out)
    work = Path(args.keep or tempfile.mkdtemp(prefix="moe-fixtures-"))
    work.mkdir(parents=True, exist_ok=True)
    quantize_bin = ref.BIN_DIR / "llama-quantize"
    assert quantize_bin.exists(), "llama-quantize not built: run bench/llamacpp.sh build"
    build_info = dict(line.split("=", 1) for line in ref.helper("info").splitlines() if "=" in line)

    fixture = {
        "source": {
            "generator": "tests/reference/moe/make_moe_fixtures.py",
            "llama_cpp_python_version": ref.llama_cpp.__version__,
            "llama_cpp_commit": build_info.get("llama_cpp_commit"),
            "llama_cpp_build_flags": build_info.get("cmake_flags"),
            "llama_cpp_system_info": C.llama_print_system_info().decode().strip(),
        },
        "settings": {
            "prompt": PROMPT, "n_gen": N_GEN,
            "prompt_tokenization": "llama_tokenize(add_special=true, parse_special=true): BOS added "
                                   "(the synth vocab has add_bos_token=true)",
            "context": "llama_context_default_params() with n_ctx=n_batch=n_ubatch=512, 1 thread, "
                       "KV cache f32/f32, flash attention disabled; model n_gpu_layers=0",
            "prefill": "whole prompt in one llama_decode, last-position logits stored as little-endian f32",
            "sampling": "llama_sampler_init_greedy (asserted == argmax); never stops at EOS",
            "crosscheck": "text until the first end-of-generation token == stdout of `llama-completion -m GGUF "
                          f"-p PROMPT -n {N_GEN} --temp 0 --repeat-penalty 1.0 -t 1 -tb 1 -c 512 -b 512 -ub 512 "
                          "-no-cnv --no-display-prompt -sp --simple-io -fa off -ctk f32 -ctv f32`",
        },
        "models": {},
    }
    blobs: dict[str, bytes] = {}
    for name, arch, quant, seed, requant in FILES:
        synth_name = f"{name}.gguf" if requant is None else f"{name.rsplit('_q', 1)[0]}_{quant}_seed{seed}.gguf"
        synth_args = ["synth", "--preset", PRESET, "--arch", arch, "--quant", quant,
                      "--seed", str(seed), "--out", synth_name]
        run([args.shardlab, *synth_args[:-1], work / synth_name])
        entry = {"synth": {"preset": PRESET, "arch": arch, "quant": quant, "seed": seed,
                           "command": " ".join(["shardlab", *synth_args]),
                           "file": synth_name, "sha256": sha256(work / synth_name),
                           "bytes": (work / synth_name).stat().st_size}}
        path = work / synth_name
        if requant is not None:
            qname = f"{name}.gguf"
            qargs = [synth_name, qname, requant, "1"]
            run([quantize_bin, work / synth_name, work / qname, requant, "1"])
            # Twice: the committed file must be what llama-quantize always writes.
            run([quantize_bin, work / synth_name, work / "again.gguf", requant, "1"])
            assert sha256(work / "again.gguf") == sha256(work / qname), "llama-quantize is not deterministic"
            path = work / qname
            size = path.stat().st_size
            committed = size <= MAX_COMMITTED_GGUF
            entry["quantize"] = {"command": " ".join(["llama-quantize", *qargs]), "type": requant,
                                 "file": qname, "sha256": sha256(path), "bytes": size,
                                 "committed": committed}
            if committed:
                blobs[qname] = path.read_bytes()

        mp = C.llama_model_default_params()
        mp.n_gpu_layers = 0
        LOG.clear()
        model = C.llama_model_load_from_file(str(path).encode(), mp)
        assert model, f"llama.cpp cannot load {path}:\n" + "".join(LOG)
        vocab = C.llama_model_get_vocab(model)
        n_vocab = C.llama_vocab_n_tokens(vocab)
        desc = ctypes.create_string_buffer(256)
        C.llama_model_desc(model, desc, len(desc))
        prompt_ids = ref.tokenize(vocab, PROMPT, add_special=True, parse_special=True)
        settings, prefill, gen, steps = generate(model, n_vocab, prompt_ids)
        k = int(ref.meta_str(model, f"{arch}.expert_used_count"))
        route = routing(model, n_vocab, prompt_ids, k, (prefill.tobytes(), gen))
        eog = [i for i, t in enumerate(gen) if C.llama_vocab_is_eog(vocab, t)]
        until_eog = detokenize_bytes(vocab, gen[:eog[0]] if eog else gen)

        cli = completion(path)
        cli = cli.rstrip().removesuffix(b"[end of text]")
        eog_piece = detokenize_bytes(vocab, gen[eog[0]:eog[0] + 1]) if eog else b""
        assert cli.rstrip() in (until_eog.rstrip(), (until_eog + eog_piece).rstrip()), \
            f"llama-completion disagrees on {name}: {cli!r} vs {until_eog!r}"

        logits_file = f"{name}.prefill.f32"
        blobs[logits_file] = prefill.astype("<f4").tobytes()
        entry.update({
            "model_desc": desc.value.decode(),
            "n_params": C.llama_model_n_params(model),
            "n_vocab": n_vocab,
            "context": settings,
            "prompt_ids": prompt_ids,
            "prefill_logits": {"file": logits_file, "sha256": hashlib.sha256(blobs[logits_file]).hexdigest(),
                               "top": ref.topk(prefill, 10)},
            "generated_ids": gen,
            "generated_text": detokenize_bytes(vocab, gen).decode("utf-8", errors="backslashreplace"),
            "eog_positions": eog,
            "steps": steps,
            "min_top2_margin": min(s["logit"] - s["runner_up_logit"] for s in steps),
            "config_spread": config_spread(model, n_vocab, prompt_ids, prefill),
            "routing": route,
        })
        C.llama_model_free(model)
        fixture["models"][name] = entry
        print(f"{name}: {desc.value.decode()}, {len(prompt_ids)} prompt tokens, generated {gen} "
              f"{entry['generated_text']!r}; router margin >= {route['min_margin']['margin']:.4f}, "
              f"distinct expert sets per layer {route['distinct_expert_sets']}")

    text = json.dumps(fixture, indent=1, ensure_ascii=False) + "\n"
    if args.check:
        bad = [k for k, b in blobs.items() if not (out / k).exists() or (out / k).read_bytes() != b]
        if (out / "moe.json").read_text(encoding="utf-8") != text:
            bad.append("moe.json")
        print("fixtures up to date" if not bad else f"differ: {', '.join(bad)}")
        return 1 if bad else 0
    out.mkdir(parents=True, exist_ok=True)
    (out / "moe.json").write_text(text, encoding="utf-8")
    for k, b in blobs.items():
        (out / k).write_bytes(b)
    if not args.keep:
        shutil.rmtree(work)
    print("wrote", ", ".join(["moe.json", *sorted(blobs)]), "to", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
