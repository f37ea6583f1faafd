#!/usr/bin/env python3
"""Regenerate the llama.cpp reference fixtures in tests/reference/.

llama.cpp is driven through the ctypes bindings (`llama_cpp/` package) of the
very llama-cpp-python sdist whose vendored llama.cpp `bench/llamacpp.sh` built,
with LLAMA_CPP_LIB_PATH pointing at that build's libllama.so. Tokenization is
additionally cross-checked against the `llama-tokenize` binary of the same build.

Usage (see README.md):
    bench/llamacpp.sh build
    $CACHE/venv-ref/bin/python tests/reference/make_fixtures.py [--model GGUF] [--check]

--check regenerates everything in memory and compares with the committed
fixtures instead of writing them (exit 1 on any difference).
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
HELPER = REPO / "bench" / "llamacpp.sh"


def helper(cmd: str) -> str:
    return subprocess.run(["bash", str(HELPER), cmd], check=True, capture_output=True, text=True).stdout.strip()


# ---------------------------------------------------------------------------
# Locate the build + bindings *before* importing llama_cpp: llama_cpp/llama_cpp.py
# loads the library at import time from $LLAMA_CPP_LIB_PATH/libllama.so (falling
# back to llama_cpp/lib/ inside the package, which does not exist in an sdist).
BIN_DIR = Path(helper("path"))
PYSRC = Path(helper("pysrc"))
os.environ["LLAMA_CPP_LIB_PATH"] = str(BIN_DIR)
sys.path.insert(0, str(PYSRC))
import numpy as np  # noqa: E402
import jinja2  # noqa: E402
import jinja2.sandbox  # noqa: E402
import llama_cpp  # noqa: E402
import llama_cpp.llama_cpp as C  # noqa: E402

assert Path(C._lib._name).resolve() == (BIN_DIR / "libllama.so").resolve(), C._lib._name

# Capture llama.cpp's log (instead of spamming stderr) so we can record e.g. how
# flash-attention "auto" was resolved.
LOG: list[str] = []


@C.llama_log_callback
def _log_cb(level, text, user_data):  # noqa: ARG001
    LOG.append(text.decode("utf-8", errors="replace"))


C.llama_log_set(_log_cb, ctypes.c_void_p(0))
C.llama_backend_init()

# ---------------------------------------------------------------------------
# Fixed inputs. Changing any of these changes the fixtures.
TOKENIZE_CASES: list[tuple[str, str]] = [
    ("plain", "Hello world"),
    ("sentence", "The quick brown fox jumps over the lazy dog."),
    ("leading_space", " leading space"),
    ("trailing_space", "trailing space "),
    ("multi_space", "multiple   spaces    here  "),
    ("only_spaces", "    "),
    ("newlines", "line one\nline two\n\nline four\n"),
    ("tabs_crlf", "\tindented\r\nwindows line\t end"),
    ("digits", "12345 678"),
    ("long_number", "3.14159265358979 and 1,000,000"),
    ("punctuation", "Hello, world! How's it going? (fine) -- yes; ok: 100%... [x] {y} <z> @#$^&*~`|\\/"),
    ("contractions", "I'm sure they'll say we've done it, don't you think? It's HE'S"),
    ("accents", "café résumé naïve Ångström"),
    ("cjk", "中文测试：你好，世界。"),
    ("emoji", "emoji 🦀🚀 ok 👍🏽"),
    ("code", 'fn main() { println!("hi"); }'),
    ("special_chatml", "<|im_start|>user\nhi<|im_end|>"),
    ("special_inline", "a<|endoftext|>b"),
    ("empty", ""),
]
TOKENIZE_FLAGS = {"add_special": False, "parse_special": True}

GREEDY_PROMPTS = [
    ("once_upon", "Once upon a time"),
    ("capital", "The capital of France is"),
    ("chat", None),  # rendered from the GGUF's tokenizer.chat_template below
    # Prompts whose 32 greedy steps have no near-tie in either configuration
    # (top-2 logit gap >= 0.6 at every step, screened among ~30 candidates):
    # the three above are free text, where this 135M model meets gaps of
    # 0.002-0.06 within 32 tokens and llama.cpp's own two configurations
    # already disagree.
    ("count_commas", "1, 2, 3, 4, 5,"),
    ("hundreds", "100, 200, 300,"),
    ("teens", "11, 12, 13, 14,"),
]
CHAT_MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
N_GEN = 32
N_THREADS = 1
N_CTX = 512
N_BATCH = 512
TOPK_LOGITS = 20

# Context variants. "default": llama_context_default_params() with only
# n_ctx/n_batch/n_ubatch/threads changed (so KV cache F16, flash_attn AUTO).
# "f32kv_nofa": additionally type_k = type_v = F32 and flash attention DISABLED.
VARIANTS = {
    "default": {},
    "f32kv_nofa": {"type_k": C.GGML_TYPE_F32, "type_v": C.GGML_TYPE_F32,
                   "flash_attn_type": C.LLAMA_FLASH_ATTN_TYPE_DISABLED},
}
GGML_TYPE_NAMES = {C.GGML_TYPE_F32: "f32", C.GGML_TYPE_F16: "f16"}
FA_NAMES = {-1: "auto", 0: "disabled", 1: "enabled"}


# ---------------------------------------------------------------------------
def tokenize(vocab, text: str, add_special: bool, parse_special: bool) -> list[int]:
    b = text.encode("utf-8")
    n_max = len(b) + 16
    arr = (C.llama_token * n_max)()
    n = C.llama_tokenize(vocab, b, len(b), arr, n_max, add_special, parse_special)
    if n < 0:
        n_max = -n
        arr = (C.llama_token * n_max)()
        n = C.llama_tokenize(vocab, b, len(b), arr, n_max, add_special, parse_special)
    assert n >= 0
    return list(arr[:n])


def piece_bytes(vocab, tok: int, special: bool = True) -> bytes:
    buf = ctypes.create_string_buffer(256)
    n = C.llama_token_to_piece(vocab, tok, buf, len(buf), 0, special)
    assert 0 <= n <= len(buf), n
    return buf.raw[:n]


def detokenize(vocab, toks: list[int], remove_special=False, unparse_special=True) -> str:
    arr = (C.llama_token * max(1, len(toks)))(*toks)
    cap = 64 + 64 * len(toks)
    buf = ctypes.create_string_buffer(cap)
    n = C.llama_detokenize(vocab, arr, len(toks), buf, cap, remove_special, unparse_special)
    assert n >= 0, n
    return buf.raw[:n].decode("utf-8", errors="replace")


def show_piece(b: bytes) -> str:
    # Byte-level BPE pieces may be partial UTF-8 (e.g. half an emoji).
    return b.decode("utf-8", errors="backslashreplace")


def meta_str(model, key: str) -> str | None:
    buf = ctypes.create_string_buffer(1 << 16)
    n = C.llama_model_meta_val_str(model, key.encode(), buf, len(buf))
    if n < 0:
        return None
    assert n < len(buf)
    return buf.value.decode("utf-8")


def render_chat_template(template: str, messages, bos: str, eos: str) -> str:
    """Render like transformers' apply_chat_template(tokenize=False)."""

    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda x, indent=None, ensure_ascii=False: json.dumps(x, indent=indent, ensure_ascii=ensure_ascii)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(
        messages=messages, add_generation_prompt=True, bos_token=bos, eos_token=eos)


def llama_builtin_chat(template: str, messages) -> str | None:
    keep = [(m["role"].encode(), m["content"].encode()) for m in messages]
    arr = (C.llama_chat_message * len(keep))(*[C.llama_chat_message(r, c) for r, c in keep])
    buf = ctypes.create_string_buffer(1 << 14)
    n = C.llama_chat_apply_template(template.encode(), arr, len(keep), True, buf, len(buf))
    if n < 0:
        return None
    return buf.raw[:n].decode("utf-8")


def make_ctx(model, variant: dict):
    p = C.llama_context_default_params()
    p.n_ctx = N_CTX
    p.n_batch = N_BATCH
    p.n_ubatch = N_BATCH
    p.n_threads = N_THREADS
    p.n_threads_batch = N_THREADS
    for k, v in variant.items():
        setattr(p, k, v)
    LOG.clear()
    ctx = C.llama_init_from_model(model, p)
    assert ctx, "llama_init_from_model failed:\n" + "".join(LOG)
    # "auto" is resolved inside llama_init_from_model; its log says which way.
    fa_lines = [ln.strip() for ln in LOG
                if ("flash_attn " in ln or "Flash Attention" in ln) and "FLASH_ATTN_EXT" not in ln]
    if p.flash_attn_type == C.LLAMA_FLASH_ATTN_TYPE_AUTO:
        fa_resolved = ("enabled" if any("Flash Attention enabled" in ln for ln in fa_lines)
                       else "disabled" if any("Flash Attention not supported" in ln for ln in fa_lines)
                       else "unknown")
    else:
        fa_resolved = FA_NAMES[p.flash_attn_type]
    settings = {
        "n_ctx": p.n_ctx, "n_batch": p.n_batch, "n_ubatch": p.n_ubatch,
        "n_threads": p.n_threads, "n_threads_batch": p.n_threads_batch,
        "type_k": GGML_TYPE_NAMES.get(p.type_k, p.type_k),
        "type_v": GGML_TYPE_NAMES.get(p.type_v, p.type_v),
        "flash_attn_type": FA_NAMES.get(p.flash_attn_type, p.flash_attn_type),
        "flash_attn_resolved": fa_resolved,
        "flash_attn_log": fa_lines,
        "n_ctx_actual": C.llama_n_ctx(ctx),
    }
    return ctx, settings


def logits_last(ctx, n_vocab: int) -> np.ndarray:
    ptr = C.llama_get_logits_ith(ctx, -1)
    assert ptr
    return np.ctypeslib.as_array(ptr, shape=(n_vocab,)).astype(np.float32, copy=True)


def decode(ctx, toks: list[int]) -> None:
    arr = (C.llama_token * len(toks))(*toks)
    rc = C.llama_decode(ctx, C.llama_batch_get_one(arr, len(toks)))
    assert rc == 0, f"llama_decode rc={rc}"


def topk(logits: np.ndarray, k: int):
    # stable: ties broken by lower token id
    idx = np.lexsort((np.arange(len(logits)), -logits))[:k]
    return [[int(i), float(logits[i])] for i in idx]


def run_prompt(model, vocab, n_vocab, prompt_ids, variant):
    """Prefill the prompt in one batch, then greedily generate N_GEN tokens,
    continuing past end-of-generation tokens."""
    ctx, settings = make_ctx(model, variant)
    sampler = C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
    C.llama_sampler_chain_add(sampler, C.llama_sampler_init_greedy())
    try:
        decode(ctx, prompt_ids)
        prefill = logits_last(ctx, n_vocab)
        logits = prefill
        gen, steps = [], []
        for i in range(N_GEN):
            tok = C.llama_sampler_sample(sampler, ctx, -1)
            top2 = topk(logits, 2)
            assert tok == top2[0][0], (tok, top2)  # llama.cpp greedy == argmax
            gen.append(tok)
            steps.append({"id": tok, "logit": top2[0][1],
                          "runner_up_id": top2[1][0], "runner_up_logit": top2[1][1]})
            if i + 1 < N_GEN:
                decode(ctx, [tok])
                logits = logits_last(ctx, n_vocab)
    finally:
        C.llama_sampler_free(sampler)
        C.llama_free(ctx)
    eog = [i for i, t in enumerate(gen) if C.llama_vocab_is_eog(vocab, t)]
    return settings, prefill, gen, steps, eog


def crosscheck_tokenize_binary(text: str) -> list[int]:
    """Same string through the llama-tokenize CLI (vocab-only load)."""
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write(text.encode("utf-8"))
        fname = f.name
    try:
        out = subprocess.run(
            [str(BIN_DIR / "llama-tokenize"), "-m", MODEL_PATH, "-f", fname, "--ids",
             "--no-bos", "--no-escape", "--log-disable"],
            check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(fname)
    return json.loads(out.strip().splitlines()[-1])


# Same settings expressed as llama-completion flags, per variant.
CLI_VARIANT_FLAGS = {
    "default": [],
    "f32kv_nofa": ["-fa", "off", "-ctk", "f32", "-ctv", "f32"],
}


def crosscheck_greedy_binary(prompt: str, vname: str) -> str:
    """Greedy text from the llama-completion CLI (--temp 0). It stops at EOS/EOT,
    so it is compared with our text up to the first end-of-generation token."""
    cmd = [str(BIN_DIR / "llama-completion"), "-m", MODEL_PATH, "-p", prompt, "--no-escape",
           "-n", str(N_GEN), "--temp", "0", "--repeat-penalty", "1.0",
           "-t", str(N_THREADS), "-tb", str(N_THREADS),
           "-c", str(N_CTX), "-b", str(N_BATCH), "-ub", str(N_BATCH),
           "-no-cnv", "--no-display-prompt", "-sp", "--simple-io",
           *CLI_VARIANT_FLAGS[vname]]
    return subprocess.run(cmd, check=True, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL).stdout


# ---------------------------------------------------------------------------
def main() -> int:
    global MODEL_PATH
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="GGUF (default: bench/llamacpp.sh model)")
    ap.add_argument("--check", action="store_true", help="compare with committed fixtures, write nothing")
    ap.add_argument("--out", default=str(HERE))
    args = ap.parse_args()
    MODEL_PATH = args.model or helper("model")
    out = Path(args.out)

    model_sha = hashlib.sha256(Path(MODEL_PATH).read_bytes()).hexdigest()
    build_info = dict(line.split("=", 1) for line in helper("info").splitlines() if "=" in line)

    mp = C.llama_model_default_params()
    mp.n_gpu_layers = 0
    LOG.clear()
    model = C.llama_model_load_from_file(MODEL_PATH.encode(), mp)
    assert model, "".join(LOG)
    vocab = C.llama_model_get_vocab(model)
    n_vocab = C.llama_vocab_n_tokens(vocab)
    desc = ctypes.create_string_buffer(256)
    C.llama_model_desc(model, desc, len(desc))

    source = {
        "generator": "tests/reference/make_fixtures.py",
        "llama_cpp_python_version": llama_cpp.__version__,
        "llama_cpp_commit": build_info.get("llama_cpp_commit"),
        "llama_cpp_build_flags": build_info.get("cmake_flags"),
        "llama_cpp_system_info": C.llama_print_system_info().decode().strip(),
        "model_file": Path(MODEL_PATH).name,
        "model_sha256": model_sha,
        "model_desc": desc.value.decode(),
        "model_params": {"n_gpu_layers": mp.n_gpu_layers, "use_extra_bufts": bool(mp.use_extra_bufts),
                         "check_tensors": bool(mp.check_tensors)},
        "n_vocab": n_vocab,
        "vocab_add_bos": bool(C.llama_vocab_get_add_bos(vocab)),
        "vocab_add_eos": bool(C.llama_vocab_get_add_eos(vocab)),
        "bos_id": C.llama_vocab_bos(vocab),
        "eos_id": C.llama_vocab_eos(vocab),
        "eot_id": C.llama_vocab_eot(vocab),
    }
    fixtures: dict[str, object] = {}
    blobs: dict[str, bytes] = {}

    # ---- a. tokenize.json ---------------------------------------------------
    cases = []
    for name, text in TOKENIZE_CASES:
        ids = tokenize(vocab, text, **TOKENIZE_FLAGS)
        cli = crosscheck_tokenize_binary(text)
        assert cli == ids, f"llama-tokenize disagrees on {name!r}: {cli} vs {ids}"
        case = {
            "name": name, "text": text, "ids": ids,
            "pieces": [show_piece(piece_bytes(vocab, t)) for t in ids],
            "detokenized": detokenize(vocab, ids),
        }
        nps = tokenize(vocab, text, add_special=False, parse_special=False)
        if nps != ids:
            case["ids_parse_special_false"] = nps
        cases.append(case)
    fixtures["tokenize.json"] = {
        "source": source,
        "flags": {**TOKENIZE_FLAGS,
                  "api": "llama_tokenize(vocab, text, len, buf, n_max, add_special=false, parse_special=true)",
                  "crosscheck": "identical to `llama-tokenize -m GGUF -f FILE --ids --no-bos --no-escape`",
                  "pieces": "llama_token_to_piece(special=true, lstrip=0); invalid UTF-8 shown as \\xNN",
                  "detokenized": "llama_detokenize(remove_special=false, unparse_special=true)",
                  "ids_parse_special_false": "present only where parse_special=false gives different ids"},
        "cases": cases,
    }

    # ---- chat template ------------------------------------------------------
    template = meta_str(model, "tokenizer.chat_template")
    assert template, "GGUF has no tokenizer.chat_template"
    bos_text = piece_bytes(vocab, C.llama_vocab_bos(vocab)).decode()
    eos_text = piece_bytes(vocab, C.llama_vocab_eos(vocab)).decode()
    chat_prompt = render_chat_template(template, CHAT_MESSAGES, bos_text, eos_text)
    builtin = llama_builtin_chat(template, CHAT_MESSAGES)

    # ---- b + c. greedy.json / logits.json -----------------------------------
    greedy = {"source": source,
              "settings": {
                  "n_gen": N_GEN,
                  "sampling": "llama_sampler_init_greedy (argmax; asserted equal to numpy argmax), "
                              "no repetition penalty, no other samplers",
                  "stop": f"never: always {N_GEN} tokens, generation continues past EOS/EOT; "
                          "'eog_positions' lists indices of end-of-generation tokens",
                  "prompt_tokenization": "llama_tokenize(add_special=false, parse_special=true); no BOS",
                  "prefill": "whole prompt in one llama_decode (llama_batch_get_one), then one token per llama_decode",
                  "crosscheck": "generated_text_until_eog identical to stdout of `llama-completion -m GGUF -p PROMPT "
                                "--no-escape -n 32 --temp 0 --repeat-penalty 1.0 -t 1 -tb 1 -c 512 -b 512 -ub 512 "
                                "-no-cnv --no-display-prompt -sp --simple-io` (+ `-fa off -ctk f32 -ctv f32` for "
                                "f32kv_nofa), modulo trailing whitespace / the EOS piece",
              },
              "chat": {"messages": CHAT_MESSAGES, "add_generation_prompt": True,
                       "template": template,
                       "rendered": chat_prompt,
                       "renderer": "jinja2 ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) "
                                   "as transformers.apply_chat_template; bos_token/eos_token from vocab",
                       "llama_chat_apply_template_builtin": builtin,
                       "builtin_matches_jinja": builtin == chat_prompt},
              "variants": {}}
    logits_fx = {"source": source,
                 "format": "full last-position logits after prefill: little-endian float32, n_vocab values, "
                           "file logits_<prompt>[_<variant>].f32 (variant 'default' has no suffix)",
                 "top_k": TOPK_LOGITS, "variants": {}}
    for vname, variant in VARIANTS.items():
        gv = {"prompts": {}}
        lv = {"prompts": {}}
        for pname, ptext in GREEDY_PROMPTS:
            if ptext is None:
                ptext = chat_prompt
            pids = tokenize(vocab, ptext, add_special=False, parse_special=True)
            settings, prefill, gen, steps, eog = run_prompt(model, vocab, n_vocab, pids, variant)
            gv["settings"] = settings
            lv["settings"] = settings
            until_eog = detokenize(vocab, gen[:eog[0]] if eog else gen)
            cli = crosscheck_greedy_binary(ptext, vname)
            cli = cli.rstrip().removesuffix("[end of text]")  # printed when it stops at EOS
            eog_piece = detokenize(vocab, gen[eog[0]:eog[0] + 1]) if eog else ""
            assert cli.rstrip() in (until_eog.rstrip(), (until_eog + eog_piece).rstrip()), \
                f"llama-completion disagrees on {vname}/{pname}: {cli!r} vs {until_eog!r}"
            gv["prompts"][pname] = {
                "prompt": ptext, "prompt_ids": pids, "generated_ids": gen,
                "generated_text": detokenize(vocab, gen),
                "generated_text_until_eog": until_eog,
                "eog_positions": eog,
                "steps": steps,
            }
            fname = f"logits_{pname}.f32" if vname == "default" else f"logits_{pname}_{vname}.f32"
            blob = prefill.astype("<f4").tobytes()
            blobs[fname] = blob
            assert int(np.argmax(prefill)) == gen[0]
            lv["prompts"][pname] = {
                "prompt": ptext, "prompt_ids": pids, "file": fname,
                "sha256": hashlib.sha256(blob).hexdigest(),
                "top": topk(prefill, TOPK_LOGITS),
                "stats": {"max": float(prefill.max()), "min": float(prefill.min()),
                          "mean": float(prefill.mean()), "std": float(prefill.std())},
            }
        greedy["variants"][vname] = gv
        logits_fx["variants"][vname] = lv
    fixtures["greedy.json"] = greedy
    fixtures["logits.json"] = logits_fx
    C.llama_model_free(model)

    # ---- write or check -----------------------------------------------------
    texts = {k: json.dumps(v, indent=1, ensure_ascii=False) + "\n" for k, v in fixtures.items()}
    if args.check:
        bad = 0
        for k, t in texts.items():
            old = (out / k).read_text(encoding="utf-8") if (out / k).exists() else None
            if old != t:
                print(f"DIFF {k}")
                bad += 1
        for k, b in blobs.items():
            if not (out / k).exists() or (out / k).read_bytes() != b:
                print(f"DIFF {k}")
                bad += 1
        print("fixtures up to date" if not bad else f"{bad} fixture file(s) differ")
        return 1 if bad else 0
    out.mkdir(parents=True, exist_ok=True)
    for k, t in texts.items():
        (out / k).write_text(t, encoding="utf-8")
    for k, b in blobs.items():
        (out / k).write_bytes(b)
    # human summary
    for vname, gv in greedy["variants"].items():
        for pname, p in gv["prompts"].items():
            print(f"[{vname}] {pname}: {p['generated_text']!r}  eog={p['eog_positions']}")
    print("chat rendered:", repr(chat_prompt), "| builtin matches:", builtin == chat_prompt)
    print("wrote", ", ".join(sorted(list(texts) + list(blobs))), "to", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
