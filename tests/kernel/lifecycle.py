"""Restart and shutdown: a restarted kernel answers again; a shut-down
kernel exits promptly (no kill needed) and its local nodes stop."""
import subprocess
import time

from common import start, execute, check, EXE

km, kc = start()
reply, _ = execute(kc, ":set seed 5")
check(reply["status"] == "ok", reply)
km.restart_kernel(now=False)
kc.wait_for_ready(timeout=60)
reply, msgs = execute(kc, ":connect local 2")
check(reply["status"] == "ok", (reply, msgs))
pid = km.provisioner.pid
nodes = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
check(len(nodes) == 2, "two local node processes under the kernel: %r" % nodes)
t0 = time.time()
kc.stop_channels()
km.shutdown_kernel(now=False)
check(time.time() - t0 < 4, "shutdown took %.1f s" % (time.time() - t0))
time.sleep(0.5)
for n in nodes:
    alive = subprocess.run(["kill", "-0", n], capture_output=True).returncode == 0
    check(not alive, "node process %s outlived the kernel" % n)
print("ok")
