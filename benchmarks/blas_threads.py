"""BLAS threads while training: OpenBLAS's default vs one thread, alternating, ratio per pair.

Run with no thread variables set, so that BLAS starts with its default thread count::

    env -u OPENBLAS_NUM_THREADS -u OMP_NUM_THREADS python benchmarks/blas_threads.py 3000

The default arm sets ``OPENBLAS_NUM_THREADS`` after BLAS is loaded (no effect on BLAS itself),
which makes ``ebprop.estimator.training_threads`` leave the thread count alone.
"""

import os
import sys
import time

from threadpoolctl import threadpool_info

from ebprop import EBPClassifier
from ebprop.datasets import Preprocessor, load_dataset

ds = load_dataset("mnist", os.environ.get("EBPROP_DATA"))  # None: the data cache
pre = Preprocessor().fit(ds.X_train, ds.max_value)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
X, y = pre.transform(ds.X_train[:n]), ds.y_train[:n]
print([(i["internal_api"], i["num_threads"]) for i in threadpool_info()])


def one_epoch(default: bool, hidden: list[int]) -> float:
    if default:
        os.environ["OPENBLAS_NUM_THREADS"] = "default"  # training_threads() then stays out
    else:
        os.environ.pop("OPENBLAS_NUM_THREADS", None)
    clf = EBPClassifier(hidden_layer_sizes=hidden, max_iter=1, random_state=0)
    t = time.perf_counter()
    clf.fit(X, y)
    return time.perf_counter() - t


for hidden in ([200], [800, 800]):
    ratios = [one_epoch(True, hidden) / one_epoch(False, hidden) for _ in range(3)]
    print(hidden, "default/1-thread time ratios", [f"{r:.2f}" for r in ratios])
