"""skorch's first-talk grid search: GridSearchCV(cv=3) over module__dropout 0.2, 0.5, 0.8 of its
MNIST SimpleFeedforward (784-98-10, ReLU, dropout), cross-entropy, SGD lr 0.3, 10 epochs, skorch's
defaults otherwise (batch 128, 20 % stratified validation split inside each fit), on the 60k
training images scaled to [0, 1]; the refitted best is scored on the 10k test images. Prints one
JSON line: the search's time, best parameters and score, every candidate's mean and std, and the
test accuracy."""
import argparse, json, time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import GridSearchCV
from skorch import NeuralNetClassifier
from torch import nn

from common import _idx

p = argparse.ArgumentParser()
p.add_argument("--data", default="../shared/data/mnist")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--n-jobs", type=int, default=1)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)


class SimpleFeedforward(nn.Module):
    def __init__(self, dropout=0.5):
        super().__init__()
        self.hidden = nn.Linear(784, 98)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(98, 10)

    def forward(self, X):
        return self.output(self.dropout(F.relu(self.hidden(X))))


def load(kind):
    x = _idx(f"{a.data}/{kind}-images.idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255.0
    return x, _idx(f"{a.data}/{kind}-labels.idx1-ubyte.gz").astype(np.int64)


start = time.perf_counter()
x, y = load("train")
x_test, y_test = load("t10k")
net = NeuralNetClassifier(SimpleFeedforward, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.SGD, lr=0.3,
                          max_epochs=10, batch_size=128, iterator_train__shuffle=True, verbose=0)
# With several jobs, each worker process takes the intra-op threads it is given.
search = GridSearchCV(net, {"module__dropout": [0.2, 0.5, 0.8]}, cv=3, scoring="accuracy", refit=True,
                      n_jobs=a.n_jobs, pre_dispatch="n_jobs")
search.fit(x, y)
seconds = time.perf_counter() - start
r = search.cv_results_
print(json.dumps({
    "seconds": seconds,
    "best_params": {k: float(v) for k, v in search.best_params_.items()},
    "best_score": float(search.best_score_),
    "means": [float(m) for m in r["mean_test_score"]],
    "stds": [float(s) for s in r["std_test_score"]],
    "test_accuracy": float(search.score(x_test, y_test)),
}), flush=True)
