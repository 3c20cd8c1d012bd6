"""PyTorch Lightning: a LightningModule logging loss and accuracy, Trainer(max_epochs=--epochs) with the
progress bar, logger, checkpointing and sanity check off (its leanest set-up)."""
import logging
import time

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from common import Timer, args, mnist, network, report

logging.getLogger("lightning").setLevel(logging.ERROR)
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


class Module(L.LightningModule):
    def __init__(self, workload):
        super().__init__()
        self.net = network(workload)
        self.loss = torch.nn.CrossEntropyLoss()

    def training_step(self, batch, _):
        x, y = batch
        loss = self.loss(self.net(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        out = self.net(x)
        self.log("val_acc", (out.argmax(-1) == y).float().mean(), on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class EpochTimer(L.Callback):
    """Each epoch's seconds, training and validation (Lightning validates inside the epoch)."""

    def __init__(self):
        self.seconds = []

    def on_train_epoch_start(self, trainer, module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        self.seconds.append(time.perf_counter() - self.start)


a = args()
xt, yt, xv, yv = (torch.from_numpy(v) for v in mnist(a))
module = Module(a.workload)
timer = EpochTimer()
trainer = L.Trainer(max_epochs=a.epochs, callbacks=[timer], accelerator="gpu" if a.device.startswith("cuda") else "cpu", devices=1,
                    enable_progress_bar=False, logger=False, enable_checkpointing=False,
                    enable_model_summary=False, num_sanity_val_steps=0)
train = DataLoader(TensorDataset(xt, yt), batch_size=a.batch, shuffle=True)
valid = DataLoader(TensorDataset(xv, yv), batch_size=a.batch)
with Timer() as t:
    trainer.fit(module, train, valid)
m = trainer.callback_metrics
report(t.seconds, timer.seconds, m["val_acc"], m["train_loss"])
