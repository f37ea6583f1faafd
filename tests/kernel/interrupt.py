"""interrupt_request on control stops a long generation; the session
(with its loaded model) is kept and the next execute works."""
import time

from common import start, stop, execute, outputs, check, TIMEOUT

km, kc = start()
try:
    reply, msgs = execute(kc, ":load smollm2\n:set max_tokens 100000\n:set ignore_eos true\n:set temperature 0", timeout=120)
    check(reply["status"] == "ok", (reply, msgs))
    msg_id = kc.execute("Tell me a very long story about a dragon.")
    streamed = []
    deadline = time.time() + TIMEOUT
    while len(streamed) < 5:
        check(time.time() < deadline, "no streamed tokens")
        m = kc.get_iopub_msg(timeout=TIMEOUT)
        if m["parent_header"].get("msg_id") == msg_id and m["header"]["msg_type"] == "stream":
            streamed.append(m["content"]["text"])
    start_t = time.time()
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=30)
    check(reply["parent_header"]["msg_id"] == msg_id, reply)
    check(reply["content"]["status"] == "error" and reply["content"]["ename"] == "Interrupted", reply)
    check(time.time() - start_t < 20, "interrupt took too long")
    reply, msgs = execute(kc, ":model")
    check(reply["status"] == "ok", reply)
    text = "".join(d["data"]["text/plain"] for d in outputs(msgs, "display_data"))
    check("smollm2" in text.lower(), "the model is still open: " + text)
finally:
    stop(km, kc)
print("ok")
