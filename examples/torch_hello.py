"""A plain torch.distributed program (Gloo through env://), unchanged under
`tutti run`:

    tutti run --nproc-per-node 2 -- python3 examples/torch_hello.py

tutti's launcher sets the torchrun environment and serves c10d's TCPStore protocol.
"""
import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
t = torch.arange(4, dtype=torch.float32) + rank
dist.all_reduce(t)
expected = torch.arange(4, dtype=torch.float32) * world + world * (world - 1) / 2
assert torch.equal(t, expected), (t, expected)
dist.barrier()
print(f"rank {rank}/{world}: all_reduce {t.tolist()} ok")
dist.destroy_process_group()
