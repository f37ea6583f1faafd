"""complete_request reads the shell's command table."""
from common import start, stop, check

km, kc = start()
try:
    r = kc.complete(":sh", 3, reply=True, timeout=30)["content"]
    check(r["status"] == "ok" and ":shard" in r["matches"], r)
    check(r["cursor_start"] == 0 and r["cursor_end"] == 3, r)
    r = kc.complete(":help\n:set tem", 14, reply=True, timeout=30)["content"]
    check(r["matches"] == ["temperature"] and r["cursor_start"] == 11, r)
finally:
    stop(km, kc)
print("ok")
