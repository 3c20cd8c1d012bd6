"""What the Python benchmark programs share with the Rust ones (bench/src/lib.rs): MNIST from
the gzip IDX files, the first 48,000 images for training and the last 12,000 for validation,
pixels / 255, the two networks, two intra-op threads, and the one-line JSON report."""
import argparse, gzip, json, time

import numpy as np
import torch
from torch import nn

TRAIN, VALID = 48_000, 12_000


def args():
    p = argparse.ArgumentParser()
    p.add_argument("--workload", choices=["mlp", "cnn"], default="mlp")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--data", default="../shared/data/mnist")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.device.startswith("cuda"):
        # The CUDA context is start-up, which no program's fit time counts (skorch, Poutyne and
        # Lightning would otherwise make it inside their fit).
        torch.zeros(1, device=a.device)
    return a


def _idx(path):
    b = gzip.open(path).read()
    n = b[3]
    dims = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(n)]
    return np.frombuffer(b, np.uint8, offset=4 + 4 * n).reshape(dims)


def mnist(a):
    """(x_train, y_train, x_valid, y_valid) as float32 [n, 784] / 255 and int64 numpy arrays."""
    x = _idx(f"{a.data}/train-images.idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255.0
    y = _idx(f"{a.data}/train-labels.idx1-ubyte.gz").astype(np.int64)
    return x[:TRAIN], y[:TRAIN], x[TRAIN:], y[TRAIN:]


class Cnn(nn.Module):
    """Poutyne's MNIST CNN, on flat 784 inputs like the other programs."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
            nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10))

    def forward(self, x):
        return self.features(x.view(-1, 1, 28, 28))


def network(workload):
    if workload == "cnn":
        return Cnn()
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                         nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def report(fit_seconds, epoch_seconds, valid_acc, train_loss):
    """The report line: the fit's seconds, each epoch's (training and validation), and the last
    epoch's validation accuracy and training loss."""
    print(json.dumps({"fit_seconds": fit_seconds, "epoch_seconds": [float(s) for s in epoch_seconds],
                      "valid_acc": float(valid_acc), "train_loss": float(train_loss)}), flush=True)
