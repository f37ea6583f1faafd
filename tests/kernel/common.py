"""Shared by the kernel test scripts: installs the kernelspec into a
temporary prefix (JUPYTER_PATH points there) and starts the kernel with
jupyter_client's KernelManager, as a front end would."""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile

from jupyter_client.manager import KernelManager

EXE = os.environ["SHARDLAB_EXE"]
TIMEOUT = 60


def install_spec():
    prefix = tempfile.mkdtemp(prefix="shardlab-kernelspec-")
    atexit.register(shutil.rmtree, prefix, ignore_errors=True)
    subprocess.run([EXE, "kernel", "install", "--prefix", prefix], check=True, timeout=30)
    os.environ["JUPYTER_PATH"] = os.path.join(prefix, "share", "jupyter")
    return prefix


def start():
    install_spec()
    km = KernelManager(kernel_name="shardlab")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=TIMEOUT)
    return km, kc


def stop(km, kc):
    kc.stop_channels()
    km.shutdown_kernel(now=False)


def execute(kc, code, timeout=TIMEOUT):
    """Runs code; returns (reply content, list of iopub messages)."""
    msgs = []
    reply = kc.execute_interactive(code, timeout=timeout, output_hook=msgs.append)
    return reply["content"], msgs


def outputs(msgs, msg_type):
    return [m["content"] for m in msgs if m["header"]["msg_type"] == msg_type]


def check(cond, what):
    if not cond:
        print("FAILED:", what, file=sys.stderr)
        sys.exit(1)
