"""The floor under a data-parallel step on this machine: how long one Gloo all-reduce takes
between processes that do nothing else, for torchfit's CNN gradient (0.8 MB) and for 4 KB.

    .venv/bin/python -m torch.distributed.run --standalone --nproc-per-node 2 bench/python/allreduce_latency.py

Rank 0 prints the mean of 300 all-reduces after 20 to warm up, for each size and for Gloo's
default of 2 threads as well as 1 and 4 (ProcessGroupGloo's `threads` option).
"""
import datetime, os, time
import torch
import torch.distributed as dist
from torch.distributed import ProcessGroupGloo

torch.set_num_threads(1)
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]) + 1, world, rank == 0)
for threads in (2, 1, 4):
    options = ProcessGroupGloo._Options()
    options._timeout = datetime.timedelta(seconds=60)
    options._devices = [ProcessGroupGloo.create_default_device()]
    options._threads = threads
    group = ProcessGroupGloo(dist.PrefixStore(f"threads{threads}", store), rank, world, options)
    for n in (200_000, 1_000):
        t = torch.randn(n)
        for _ in range(20):
            group.allreduce([t]).wait()
        start, k = time.perf_counter(), 300
        for _ in range(k):
            group.allreduce([t]).wait()
        if rank == 0:
            print(f"gloo threads {threads}: {n * 4 / 1e6:.3f} MB all-reduce {(time.perf_counter() - start) / k * 1e3:.3f} ms", flush=True)
