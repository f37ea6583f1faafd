"""Load on an OpenAI-compatible server: aggregate tokens/s and time to
first token at several numbers of concurrent clients.

    python bench/serve_load.py BASE_URL MODEL [CLIENTS ...]

Each client streams one chat completion of --tokens tokens (temperature 0,
a distinct prompt each) at the same moment; per level it prints clients,
aggregate generated tokens/s over the wall time, and p50/p99 time to first
token. Uses only the standard library (http.client), so it runs against
shardlab serve and llama-server alike.
"""

import argparse
import http.client
import json
import statistics
import threading
import time
import urllib.parse


def stream_one(base, model, prompt, tokens, out, i):
    url = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
    body = json.dumps({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    })
    start = time.perf_counter()
    conn.request("POST", url.path.rstrip("/") + "/chat/completions", body,
                 {"Content-Type": "application/json", "Authorization": "Bearer x"})
    resp = conn.getresponse()
    first, generated = None, 0
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        for c in chunk.get("choices", []):
            if c.get("delta", {}).get("content") and first is None:
                first = time.perf_counter() - start
        if chunk.get("usage"):
            generated = chunk["usage"]["completion_tokens"]
    out[i] = (first if first is not None else float("nan"), generated)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("base")
    p.add_argument("model")
    p.add_argument("clients", nargs="*", type=int, default=[1, 4, 16])
    p.add_argument("--tokens", type=int, default=64)
    a = p.parse_args()
    print("clients  aggregate_tok_s  ttft_p50_ms  ttft_p99_ms")
    for n in a.clients:
        out = [None] * n
        threads = [threading.Thread(target=stream_one,
                                    args=(a.base, a.model, f"Tell me fact number {i} about the sea.", a.tokens, out, i))
                   for i in range(n)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        ttft = sorted(o[0] for o in out)
        total = sum(o[1] for o in out)
        p99 = ttft[min(len(ttft) - 1, int(round(0.99 * (len(ttft) - 1))))]
        print(f"{n:7d}  {total / wall:15.1f}  {statistics.median(ttft) * 1e3:11.0f}  {p99 * 1e3:11.0f}")


if __name__ == "__main__":
    main()
