"""BLAS threads while training: OpenBLAS default vs one thread, alternating, ratio per pair.

Run without OPENBLAS_NUM_THREADS/OMP_NUM_THREADS set: `python benchmarks/blas_threads.py 3000`.
It calls threadpool_limits itself, so it measures the default by clearing the environment.
"""
import sys, time
import numpy as np
from threadpoolctl import threadpool_limits, threadpool_info
from ebprop import EBPClassifier
from ebprop.datasets import load_dataset, Preprocessor
ds = load_dataset("mnist", "/work/shared/data/mnist")
pre = Preprocessor().fit(ds.X_train, ds.max_value)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
X = pre.transform(ds.X_train[:n]); y = ds.y_train[:n]
print([ (i["internal_api"], i["num_threads"]) for i in threadpool_info()])
def one(limit, hidden):
    clf = EBPClassifier(hidden_layer_sizes=hidden, max_iter=1, random_state=0)
    t = time.perf_counter()
    if limit is None:
        clf.fit(X, y)
    else:
        with threadpool_limits(limit, user_api="blas"):
            clf.fit(X, y)
    return time.perf_counter() - t
for hidden in ([200], [800, 800]):
    for bs in (10,):
        ratios = []
        for rep in range(3):
            a = one(None, hidden); b = one(1, hidden)
            ratios.append(a / b)
        print(hidden, "default/1-thread time ratios", [f"{r:.2f}" for r in ratios])
