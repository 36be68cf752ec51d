#!/usr/bin/env python3
"""torch.distributed.rpc's figures for rpc/examples/rpc_bench.rs: the same calls
between two processes on this host (TensorPipe backend, loopback):
rpc_sync(torch.add, (torch.ones(1), torch.ones(1))) latency, a user function on
two ints, and rpc_async throughput with a window in flight.

    python3 rpc/benches/torch_rpc_bench.py [--calls N] [--window W] [--repeats R]
"""
import argparse
import os
import socket
import time
from collections import deque

import torch
import torch.distributed.rpc as rpc
import torch.multiprocessing as mp


def add_int(a, b):
    return a + b


def latency(name, calls, call):
    times = []
    start = time.perf_counter()
    for _ in range(calls):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - start
    times.sort()
    p = lambda q: times[round((len(times) - 1) * q)] * 1e6
    print(f"{name:<24} sync      calls {calls:>7}  {calls / total:>9.0f} round trips/s  "
          f"mean {total * 1e6 / calls:>6.1f} us  p50 {p(0.5):>6.1f} us  p99 {p(0.99):>6.1f} us",
          flush=True)


def run(rank, port, args):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    opts = rpc.TensorPipeRpcBackendOptions(init_method=f"tcp://127.0.0.1:{port}")
    rpc.init_rpc(f"worker{rank}", rank=rank, world_size=2, rpc_backend_options=opts)
    if rank == 0:
        a, b = torch.ones(1), torch.ones(1)
        for _ in range(2000):
            rpc.rpc_sync("worker1", torch.add, args=(a, b))
        print(f"torch {torch.__version__} rpc (TensorPipe): 2 processes, loopback, "
              f"{args.calls} calls per run, window {args.window}", flush=True)
        for _ in range(args.repeats):
            latency("torch.add f32[1]", args.calls,
                    lambda: rpc.rpc_sync("worker1", torch.add, args=(a, b)))
            latency("add_int", args.calls,
                    lambda: rpc.rpc_sync("worker1", add_int, args=(20, 22)))
            start = time.perf_counter()
            window = deque()
            for _ in range(args.calls):
                if len(window) == args.window:
                    assert window.popleft().wait().item() == 2.0
                window.append(rpc.rpc_async("worker1", torch.add, args=(a, b)))
            for f in window:
                assert f.wait().item() == 2.0
            total = time.perf_counter() - start
            print(f"{'torch.add f32[1]':<24} async     calls {args.calls:>7}  "
                  f"{args.calls / total:>9.0f} calls/s (window {args.window})", flush=True)
    rpc.shutdown()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=20000)
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(run, args=(port, args), nprocs=2, join=True)


if __name__ == "__main__":
    main()
