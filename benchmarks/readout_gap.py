"""Where EBP-D loses to EBP-P: the validation error of a binary model read four ways.

EBP-D is the most probable network (sign weights, sign units); EBP-P the posterior-mean output.
Between them, this reads the model with the output layer's weights, or the first layer's, as
their means M = tanh H instead of their signs, units still signs. When those close little of the
gap, it is the units, not unpolarised weights, that EBP-P averages over and EBP-D cannot.
``--refit N`` adds EBP-D with its hidden thresholds refitted to EBP-P's unit signs on the first N
training images (``EBPClassifier.refit_deterministic``, what ``--refit-thresholds`` does).

    EBPROP_DATA=... python benchmarks/readout_gap.py RUN/last.npz --dataset fashion-mnist

Prints a Markdown table. The validation split is the run's (the last 10,000 training images of
the MNIST family by default); the test set is not touched.
"""

from __future__ import annotations

import argparse

import numpy as np

from ebprop.core.predict import predict_deterministic, predict_probabilistic
from ebprop.datasets import load_dataset
from ebprop.persist import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a binary model file (model.npz, model_d.npz, last.npz)")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--validation", type=int, default=10000)
    parser.add_argument("--refit", type=int, default=0, metavar="N", help="refit on N images")
    args = parser.parse_args()
    loaded = load_model(args.model)
    est, pre = loaded.estimator, loaded.preprocessor
    if est.weights != "binary":
        parser.error(f"{args.model}: weights are {est.weights!r}; this reads binary models")
    ds = load_dataset(args.dataset, args.data_dir, validation=args.validation, download=False)
    X = pre.transform(ds.X_val, np.dtype(est.dtype))
    target = np.searchsorted(est.classes_, ds.y_val)
    net = est.network()
    signs = [net.family.most_probable(h) for h in net.H]
    means = [np.tanh(h) for h in net.H]

    def error(out: np.ndarray) -> float:
        return 100.0 * float(np.mean(out.argmax(axis=1) != target))

    def with_means(*layers: int) -> list[np.ndarray]:
        return [means[i] if i in layers else signs[i] for i in range(len(signs))]

    last = len(signs) - 1
    rows = [
        ("EBP-D (sign weights, sign units)", error(predict_deterministic(net, X))),
        ("output layer's weights as means", error(predict_deterministic(net, X, with_means(last)))),
        ("first layer's weights as means", error(predict_deterministic(net, X, with_means(0)))),
        ("both", error(predict_deterministic(net, X, with_means(0, last)))),
        ("EBP-P (posterior means throughout)", error(predict_probabilistic(net, X))),
    ]
    if args.refit > 0:
        est.refit_deterministic(pre.transform(ds.X_train[: args.refit], np.dtype(est.dtype)))
        refitted = error(est.decision_function(X, readout="deterministic"))
        rows.insert(1, (f"EBP-D, thresholds refitted on {args.refit:,} images", refitted))
    polarised = [float(np.mean(np.abs(m) > 0.99)) for m in means]
    print(
        f"{args.model}: weights with |M| > 0.99 by layer: "
        + ", ".join(f"{p:.3f}" for p in polarised)
    )
    print("| readout | validation error % |")
    print("|---|---:|")
    for name, value in rows:
        print(f"| {name} | {value:.2f} |")


if __name__ == "__main__":
    main()
