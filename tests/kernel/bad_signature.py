"""A message signed with the wrong key is dropped, never executed: the
seed it sets does not take; a correctly signed one does."""
import queue

from jupyter_client.session import Session

from common import start, stop, execute, outputs, check

km, kc = start()
try:
    wrong = Session(key=b"not-the-kernel-key", username="intruder")
    content = {"code": ":set seed 77", "silent": False, "store_history": True,
               "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}
    wrong.send(kc.shell_channel.socket, "execute_request", content)
    try:
        msg = kc.get_shell_msg(timeout=3)
        check(False, "a badly signed request was answered: %r" % msg)
    except queue.Empty:
        pass

    def seed():
        reply, msgs = execute(kc, ":set")
        check(reply["status"] == "ok", reply)
        text = "\n".join(d["data"]["text/plain"] for d in outputs(msgs, "display_data"))
        check("seed" in text, text)
        return text

    text = seed()
    check("77" not in text, "seed 77 was applied by a bad message:\n" + text)
    reply, _ = execute(kc, ":set seed 77")
    check(reply["status"] == "ok", reply)
    check("77" in seed(), "a good message sets the seed")
finally:
    stop(km, kc)
print("ok")
