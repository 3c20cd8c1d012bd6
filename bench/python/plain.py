"""A plain PyTorch loop as the tutorials write it: TensorDataset, DataLoader(shuffle=True), SGD,
batch losses summed on the device (no .item() per batch), then a validation pass."""
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from common import Timer, args, mnist, network, report

a = args()
xt, yt, xv, yv = (torch.from_numpy(v) for v in mnist(a))
net = network(a.workload).to(a.device)
opt = torch.optim.SGD(net.parameters(), lr=0.1)
loss_fn = torch.nn.CrossEntropyLoss()
train = DataLoader(TensorDataset(xt, yt), batch_size=a.batch, shuffle=True)
valid = DataLoader(TensorDataset(xv, yv), batch_size=a.batch)
epoch_seconds = []
with Timer() as t:
    for _ in range(a.epochs):
        start = time.perf_counter()
        net.train()
        total, batches = torch.zeros((), device=a.device), 0
        for x, y in train:
            x, y = x.to(a.device), y.to(a.device)
            opt.zero_grad()
            loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()
            total += loss.detach()
            batches += 1
        net.eval()
        correct = torch.zeros((), device=a.device, dtype=torch.long)
        with torch.no_grad():
            for x, y in valid:
                x, y = x.to(a.device), y.to(a.device)
                correct += (net(x).argmax(-1) == y).sum()
        train_loss, acc = total.item() / batches, correct.item() / len(yv)
        epoch_seconds.append(time.perf_counter() - start)
report(t.seconds, epoch_seconds, acc, train_loss)
