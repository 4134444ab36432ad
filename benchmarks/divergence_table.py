"""Which (hidden, batch size) combinations diverge on the bundled digits (issue 11, item 3).

    OPENBLAS_NUM_THREADS=1 python benchmarks/divergence_table.py

Trains binary-weight networks with ``EBPClassifier`` for 5 epochs on the digits' train split
(scikit-learn's 8x8 digits, the CLI's preprocessing: pixels / 16) and prints, per combination,
whether an epoch drove parameters to the bound (a DivergenceWarning) and the test error.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from ebprop import EBPClassifier
from ebprop.exceptions import DivergenceWarning

HIDDEN = [(), (8,), (16,), (32,), (100,)]
BATCHES = [1, 2, 5, 10, 16, 32, 100]


def main() -> None:
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.33, random_state=0, stratify=y)
    print("| hidden | " + " | ".join(f"batch {b}" for b in BATCHES) + " |")
    print("|---|" + "---|" * len(BATCHES))
    for hidden in HIDDEN:
        cells = []
        for batch in BATCHES:
            est = EBPClassifier(hidden, batch_size=batch, max_iter=5, random_state=0)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", DivergenceWarning)
                est.fit(Xtr, ytr)
            bad = any(issubclass(w.category, DivergenceWarning) for w in caught)
            err = float(np.mean(est.predict(Xte) != yte))
            cells.append(f"{'**diverged** ' if bad else ''}{100 * err:.1f} %")
        name = "none" if not hidden else " ".join(map(str, hidden))
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
