"""skorch: NeuralNetClassifier with its default callbacks, validated on the fixed 12k split."""
import torch
from skorch import NeuralNetClassifier
from skorch.dataset import Dataset
from skorch.helper import predefined_split

from common import Timer, args, mnist, network, report

a = args()
xt, yt, xv, yv = mnist(a)
net = NeuralNetClassifier(network(a.workload), criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.SGD,
                          lr=0.1, max_epochs=a.epochs, batch_size=a.batch, iterator_train__shuffle=True,
                          train_split=predefined_split(Dataset(xv, yv)), device=a.device, verbose=0)
with Timer() as t:
    net.fit(xt, yt)
h = net.history[-1]
report(t.seconds, net.history[:, "dur"], h["valid_acc"], h["train_loss"])
