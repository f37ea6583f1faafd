"""What reusing a conversation's KV cache saves: the time a continued
chat's turn takes when its prefix is cached, beside a turn of the same
length whose prefix nothing shares.

    python bench/serve_reuse.py BASE_URL MODEL [--words N] [--runs R]

Per run: turn 1 is a long user message (N words) with max_tokens 1; turn 2
continues it (turn 1, its answer, a short question) with max_tokens 1, so
its time is almost all prefill; then the same turn 2 with the first word
changed, so no cached prefix matches. Prints the medians, the speed-up,
and the `cached_tokens` the server reported. Standard library only.
"""

import argparse
import http.client
import json
import statistics
import time
import urllib.parse

WORDS = "the river runs past old stone walls and quiet fields where birds rest".split()


def chat(base, model, messages):
    url = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
    body = json.dumps({"model": model, "messages": messages, "temperature": 0, "max_tokens": 1})
    started = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    reply = json.loads(conn.getresponse().read())
    seconds = time.perf_counter() - started
    conn.close()
    return seconds, reply


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("base")
    parser.add_argument("model")
    parser.add_argument("--words", type=int, default=600)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    reused, fresh, cached, prompt_tokens = [], [], [], 0
    for run in range(args.runs):
        text = " ".join(WORDS[(i * 7 + run) % len(WORDS)] for i in range(args.words))
        first = [{"role": "user", "content": f"Run {run}. {text}"}]
        _, answer = chat(args.base, args.model, first)
        turn = first + [
            {"role": "assistant", "content": answer["choices"][0]["message"]["content"]},
            {"role": "user", "content": "Say that again in one word."},
        ]
        seconds, reply = chat(args.base, args.model, turn)
        reused.append(seconds)
        cached.append(reply["usage"]["prompt_tokens_details"]["cached_tokens"])
        prompt_tokens = reply["usage"]["prompt_tokens"]
        other = [dict(m) for m in turn]
        other[0]["content"] = "Walk " + other[0]["content"]
        seconds, _ = chat(args.base, args.model, other)
        fresh.append(seconds)
    r, f = statistics.median(reused), statistics.median(fresh)
    print(f"turn 2 of {prompt_tokens} prompt tokens, median of {args.runs}: "
          f"cached prefix {r * 1000:.0f} ms (cached_tokens {statistics.median(cached):.0f}), "
          f"first message changed (only the template prefix matches) {f * 1000:.0f} ms, {f / r:.1f}x")


if __name__ == "__main__":
    main()
