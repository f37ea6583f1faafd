"""Clients for a notebook that serves: after a cell tagged `serve-clients`
runs `:serve`, the notebook runner plays what another terminal would, N
chat completions at once (N from the tag `clients-N`, default 8) against
the URL the cell printed, and waits for their answers before the next cell
runs, so a later `:stats` cell shows that traffic."""
import json
import re
import threading
import urllib.request

PROMPTS = ["Name a colour.", "What is 2 + 2?", "Say hello in French.", "Name a planet.",
           "What do bees make?", "Name a fruit.", "What animal barks?", "Name a month."]


def chat(base, prompt):
    body = json.dumps({"model": "smollm2", "temperature": 0, "max_tokens": 16,
                       "messages": [{"role": "user", "content": prompt}]}).encode()
    request = urllib.request.Request(base + "/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.load(response)


def serve_clients(cell, **_):
    """nbclient's on_cell_executed hook."""
    tags = cell.metadata.get("tags", [])
    if "serve-clients" not in tags:
        return
    count = next((int(t[len("clients-"):]) for t in tags if t.startswith("clients-")), 8)
    text = "".join(o.get("data", {}).get("text/plain", "") for o in cell.outputs)
    found = re.search(r"serving \S+ on (http://[0-9.]+:[0-9]+)", text)
    if not found:
        raise AssertionError("a serve-clients cell printed no URL: " + text)
    answers, errors = [None] * count, []

    def one(i):
        try:
            answers[i] = chat(found.group(1), PROMPTS[i % len(PROMPTS)])
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise AssertionError("clients failed: %s" % errors)
