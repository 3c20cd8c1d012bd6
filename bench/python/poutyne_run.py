"""Poutyne: Model.fit on the arrays with the accuracy batch metric, validated on the 12k split."""
import torch
from poutyne import Model

from common import Timer, args, mnist, network, report

a = args()
xt, yt, xv, yv = mnist(a)
net = network(a.workload)
model = Model(net, torch.optim.SGD(net.parameters(), lr=0.1), "cross_entropy", batch_metrics=["accuracy"], device=torch.device(a.device))
with Timer() as t:
    logs = model.fit(xt, yt, validation_data=(xv, yv), epochs=a.epochs, batch_size=a.batch, verbose=False)
report(t.seconds, [epoch["time"] for epoch in logs], logs[-1]["val_acc"] / 100.0, logs[-1]["loss"])
