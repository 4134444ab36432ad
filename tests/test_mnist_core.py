"""Learning on the real MNIST (runs only when EBPROP_DATA holds it)."""

from __future__ import annotations

import gzip

import numpy as np
from conftest import mnist_dir, requires_mnist

from ebprop import EBPClassifier


def _read(name: str, offset: int) -> np.ndarray:
    # Deliberately independent of ebprop.datasets: this test is about the estimator.
    with gzip.open(mnist_dir() / name) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


@requires_mnist
def test_one_epoch_of_784_200_10_binary_reaches_six_percent():
    X = _read("train-images-idx3-ubyte.gz", 16).reshape(-1, 784) / np.float32(255)
    y = _read("train-labels-idx1-ubyte.gz", 8)
    Xt = _read("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784) / np.float32(255)
    yt = _read("t10k-labels-idx1-ubyte.gz", 8)
    clf = EBPClassifier(hidden_layer_sizes=(200,), batch_size=10, max_iter=1, random_state=0)
    clf.fit(X, y)
    err_p = np.mean(clf.predict(Xt, readout="probabilistic") != yt)
    assert err_p <= 0.06, err_p
