"""A torch.distributed TCPStore client against tutti's store server (tests/store_c10d.rs).

Usage: store_client.py HOST PORT. Rust set "from-rust" = b"rust value" and the
counter "rust-counter" = 5 before; this script runs every TCPStore operation, sets
"from-torch" for Rust to read, and prints one JSON object with what it saw.
"""
import json
import sys
from datetime import timedelta

import torch.distributed as dist

host, port = sys.argv[1], int(sys.argv[2])
store = dist.TCPStore(host, port, is_master=False, wait_for_workers=False,
                      timeout=timedelta(seconds=60))
out = {}
out["from_rust"] = store.get("from-rust").decode()
out["rust_counter"] = store.add("rust-counter", 2)
store.set("k", "v1")
out["get"] = store.get("k").decode()
out["add_new"] = store.add("cnt", 3)
out["add_again"] = store.add("cnt", -10)
out["cnt_text"] = store.get("cnt").decode()
# compare_set: c10d's rules.
out["cas_missing_expected"] = store.compare_set("cas", "x", "y").decode()
out["cas_missing_empty"] = store.compare_set("cas", "", "first").decode()
out["cas_mismatch"] = store.compare_set("cas", "nope", "second").decode()
out["cas_match"] = store.compare_set("cas", "first", "second").decode()
out["check_yes"] = store.check(["k", "cnt"])
out["check_no"] = store.check(["k", "absent"])
store.wait(["k", "cnt"])
try:
    store.wait(["never"], timedelta(milliseconds=300))
    out["wait_timeout"] = "no error"
except Exception as e:  # DistStoreError
    out["wait_timeout"] = f"{type(e).__name__}: {e}"
# The connection still works after a cancelled wait.
out["after_timeout"] = store.get("k").decode()
store.multi_set(["m1", "m2"], ["a", "b"])
out["multi_get"] = [v.decode() for v in store.multi_get(["m1", "m2", "k"])]
store.append("ap", "x")
store.append("ap", "yz")
out["append"] = store.get("ap").decode()
out["delete_present"] = store.delete_key("m1")
out["delete_absent"] = store.delete_key("m1")
out["num_keys"] = store.num_keys()
store.queue_push("q", "first")
store.queue_push("q", "second")
out["queue_len"] = store.queue_len("q")
out["queue_pop"] = [store.queue_pop("q").decode(), store.queue_pop("q", block=False).decode()]
try:
    store.queue_pop("q", block=False)
    out["queue_empty"] = "no error"
except Exception as e:
    out["queue_empty"] = type(e).__name__
# A second client's get waits until this one sets the key.
clone = dist.TCPStore(host, port, is_master=False, wait_for_workers=False,
                      timeout=timedelta(seconds=60))
clone.set("from-torch", "torch value")
print(json.dumps(out), flush=True)
