"""PyTorch DistributedDataParallel on Gloo, launched by torchrun: Poutyne's MNIST CNN, one epoch
(the rank's DistributedSampler shard of the 48,000 training images, then its shard of the 12,000
validation images, the correct counts summed over the ranks), per-process batch --batch, one
intra-op thread per process by default. Rank 0 prints the one-line JSON report, with DDP's own
runtime statistics (compute/communication overlap of backward) from its Logger."""
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from common import Timer, args, mnist, network, report

a = args()
dist.init_process_group("gloo")
rank = dist.get_rank()
xt, yt, xv, yv = (torch.from_numpy(v) for v in mnist(a))
torch.manual_seed(0)
ddp = DistributedDataParallel(network(a.workload))
opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
loss_fn = torch.nn.CrossEntropyLoss()
sampler = DistributedSampler(TensorDataset(xt, yt), shuffle=True, seed=0)
train = DataLoader(TensorDataset(xt, yt), batch_size=a.batch, sampler=sampler)
valid = DataLoader(TensorDataset(xv, yv), batch_size=128, sampler=DistributedSampler(TensorDataset(xv, yv), shuffle=False))
with Timer() as t:
    sampler.set_epoch(0)
    ddp.train()
    total, batches = torch.zeros(()), 0
    for x, y in train:
        opt.zero_grad()
        loss = loss_fn(ddp(x), y)
        loss.backward()
        opt.step()
        total += loss.detach()
        batches += 1
    ddp.eval()
    correct = torch.zeros((), dtype=torch.long)
    with torch.no_grad():
        for x, y in valid:
            correct += (ddp.module(x).argmax(-1) == y).sum()
    dist.all_reduce(total)
    dist.all_reduce(correct)
    train_loss, acc = total.item() / batches / dist.get_world_size(), correct.item() / len(yv)
stats = ddp._get_ddp_logging_data()
if rank == 0:
    keys = ["avg_forward_compute_time", "avg_backward_compute_time", "avg_backward_comm_time",
            "avg_backward_compute_comm_overlap_time"]
    overlap = {k: stats.get(k) for k in keys}
    print("# ddp " + " ".join(f"{k}={v}" for k, v in overlap.items()), flush=True)
    report(t.seconds, [t.seconds], acc, train_loss)
dist.destroy_process_group()
