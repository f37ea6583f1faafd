"""`:serve` from a notebook cell: the kernel serves HTTP requests between
cells (here while no cell runs), `:stats` in the next cell counts them,
and `:serve off` closes the port."""
import json
import re
import urllib.error
import urllib.request

from common import start, stop, execute, outputs, check, TIMEOUT


def text_of(msgs):
    return "".join(d["data"]["text/plain"] for d in outputs(msgs, "display_data"))


def chat(base, content):
    body = json.dumps({
        "model": "smollm2",
        "messages": [{"role": "user", "content": content}],
        "temperature": 0,
        "max_tokens": 8,
    }).encode()
    request = urllib.request.Request(
        base + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return json.load(response)


km, kc = start()
try:
    reply, msgs = execute(kc, ":load smollm2\n:serve 127.0.0.1:0 --parallel 2", timeout=120)
    check(reply["status"] == "ok", (reply, msgs))
    shown = text_of(msgs)
    found = re.search(r"serving smollm2 on (http://[0-9.]+:[0-9]+)", shown)
    check(found, "the cell says where it serves: " + shown)
    base = found.group(1)

    # No cell runs now: the kernel serves between cells.
    answers = [chat(base, q) for q in ["Hi", "Name a colour."]]
    for a in answers:
        check(a["usage"]["completion_tokens"] == 8, a)
        check(a["choices"][0]["message"]["content"], a)

    reply, msgs = execute(kc, ":stats")
    check(reply["status"] == "ok", (reply, msgs))
    stats = text_of(msgs)
    check(re.search(r"server http://\S+ \(2 at once\): requests 0 in flight · 0 queued · 2 done", stats),
          "the requests show in :stats: " + stats)

    reply, msgs = execute(kc, ":load smollm2")
    check(reply["status"] == "error" and "`:serve off` first" in reply["evalue"], reply)

    reply, msgs = execute(kc, ":serve off")
    check(reply["status"] == "ok", (reply, msgs))
    check("stopped serving on" in text_of(msgs) and "2 requests done" in text_of(msgs), text_of(msgs))
    try:
        urllib.request.urlopen(base + "/health", timeout=10)
        check(False, "the port still answers after :serve off")
    except (urllib.error.URLError, ConnectionError):
        pass
finally:
    stop(km, kc)
print("ok")
