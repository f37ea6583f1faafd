"""A node killed in the middle of a generation run from a notebook cell:
the cell finishes with the text an uninterrupted run gives, and its
streamed output carries the line that names the node and the new layout."""
from common import start, stop, execute, outputs, check

PROMPT = "The capital of France is"

km, kc = start()
try:
    setup = ":set temperature 0\n:set max_tokens 12\n:connect local 3\n:load smollm2\n:shard tensor"
    reply, msgs = execute(kc, setup, timeout=180)
    check(reply["status"] == "ok", (reply, msgs))

    def answer(code):
        reply, msgs = execute(kc, code, timeout=180)
        check(reply["status"] == "ok", (reply, msgs))
        return "".join(m["content"]["text"] for m in msgs if m["header"]["msg_type"] == "stream")

    whole = answer(":reset\n" + PROMPT)
    streamed = answer(":reset\n:kill node1 after 4\n" + PROMPT)
    recovered = [l for l in streamed.splitlines() if l.startswith("recovered: node1 (")]
    check(len(recovered) == 1, streamed)
    check("now tensor over 2 nodes (node0, node2)" in recovered[0], recovered)
    text = lambda s: "".join(l for l in s.splitlines() if not l.startswith(("recovered: ", "node1 will be", "forgot ")))
    check(len(text(whole)) > 10, whole)
    check(text(streamed) == text(whole), (whole, streamed))
finally:
    stop(km, kc)
print("ok")
