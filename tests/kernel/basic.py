"""kernel_info, :help as an HTML table, a failing command as an error,
inspect and is_complete, through jupyter_client."""
from common import start, stop, execute, outputs, check

km, kc = start()
try:
    info = kc.kernel_info(reply=True, timeout=30)["content"]
    check(info["protocol_version"] == "5.3", info)
    check(info["language_info"]["name"] == "shardlab", info)

    reply, msgs = execute(kc, ":help")
    check(reply["status"] == "ok", reply)
    shown = outputs(msgs, "display_data")
    check(len(shown) == 1, msgs)
    html = shown[0]["data"]["text/html"]
    check("<table>" in html and ":connect" in html, html)
    check(":shard" in shown[0]["data"]["text/plain"], shown)
    check(outputs(msgs, "execute_input")[0]["code"] == ":help", msgs)
    states = [c["execution_state"] for c in outputs(msgs, "status")]
    check(states[0] == "busy" and states[-1] == "idle", states)

    reply, msgs = execute(kc, ":set temperature 0\n:bogus\n:help")
    check(reply["status"] == "error", reply)
    check(reply["ename"] == "CommandError" and "unknown command" in reply["evalue"], reply)
    err = outputs(msgs, "error")[0]
    check(err["traceback"][0] == "line 2: :bogus", err)
    check(len(outputs(msgs, "display_data")) == 1, "the cell stops at the error: %r" % msgs)

    r = kc.inspect(":shard tensor", 3, reply=True, timeout=30)["content"]
    check(r["found"] and "usage: :shard" in r["data"]["text/plain"], r)
    def is_complete(code):
        msg_id = kc.is_complete(code)
        reply = kc.get_shell_msg(timeout=30)
        check(reply["parent_header"]["msg_id"] == msg_id, reply)
        return reply["content"]

    r = is_complete('"""\nan open block')
    check(r["status"] == "incomplete", r)
    r = is_complete('"""\nclosed\n"""')
    check(r["status"] == "complete", r)
    r = kc.comm_info(reply=True, timeout=30)["content"]
    check(r["status"] == "ok", r)
finally:
    stop(km, kc)
print("ok")
