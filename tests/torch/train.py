"""A plain torch.distributed Gloo program, run unchanged under `tutti run`
(tests/launch_torch.rs).

init_process_group("gloo") through env:// (MASTER_ADDR/MASTER_PORT, the launcher's
agent store), one all_reduce of arange(8) + rank checked element by element, a
barrier, and a line "world=W restart=R values=[...]" in $OUT/torch_rank<rank>.
Optional: --fail-rank R [--fail-attempt A] raises on rank R in attempt A (default:
every attempt), under torch.distributed.elastic's @record (error file).
"""
import argparse
import os

import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record


@record
def main():
    p = argparse.ArgumentParser()
    p.add_argument("--fail-rank", type=int, default=-1)
    p.add_argument("--fail-attempt", type=int, default=-1)
    args = p.parse_args()
    attempt = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    assert rank == int(os.environ["RANK"]) and world == int(os.environ["WORLD_SIZE"])
    if rank == args.fail_rank and args.fail_attempt in (-1, attempt):
        raise RuntimeError(f"rank {rank} fails on purpose in attempt {attempt}")
    t = torch.arange(8, dtype=torch.float64) + rank
    dist.all_reduce(t)
    want = [i * world + world * (world - 1) / 2 for i in range(8)]
    assert t.tolist() == want, (t.tolist(), want)
    dist.barrier()
    out = os.path.join(os.environ["OUT"], f"torch_rank{rank}")
    with open(out, "w") as f:
        f.write(f"world={world} restart={attempt} values={[int(v) for v in t.tolist()]}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
