"""A torch.distributed TCPStore server that tutti's c10d client talks to
(tests/store_c10d.rs).

Usage: store_server.py. Prints "PORT <n>", waits until the Rust client set "rust-done",
checks what Rust left in the store with torch's own client, and prints one JSON
object with what it saw.
"""
import json
from datetime import timedelta

import torch.distributed as dist

store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False,
                      timeout=timedelta(seconds=120))
print(f"PORT {store.port}", flush=True)
store.set("from-torch", "torch value")
store.wait(["rust-done"])
out = {
    "from_rust": store.get("from-rust").decode(),
    "counter": store.get("counter").decode(),
    "cas": store.get("cas").decode(),
    "multi": [v.decode() for v in store.multi_get(["m1", "m2"])],
    "append": store.get("ap").decode(),
    "deleted": store.check(["gone"]),
    "num_keys": store.num_keys(),
}
print(json.dumps(out), flush=True)
