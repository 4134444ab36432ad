"""Where EBP-D loses to EBP-P: the validation error of a binary model read four ways.

EBP-D is the most probable network (sign weights, sign units); EBP-P the posterior-mean output.
Between them, this reads the model with the output layer's weights, or the first layer's, as
their means M = tanh H instead of their signs, units still signs. When those close little of the
gap, it is the units, not unpolarised weights, that EBP-P averages over and EBP-D cannot.
``--refit N`` adds EBP-D with its hidden thresholds refitted to EBP-P's unit signs on the first N
training images (``EBPClassifier.refit_deterministic``, what ``--refit-thresholds`` does).
``--by-layer`` (conv models) adds, for each layer in turn, EBP-P with that hidden layer's units
read as signs, and EBP-P with that layer's weights read as signs: how much of the gap each
layer's units and weights carry. The layers after a hardened one see its ±1 units as any
layer sees surely-known inputs (EBP's forward with ⟨v⟩ = ±1).

    EBPROP_DATA=... python benchmarks/readout_gap.py RUN/last.npz --dataset fashion-mnist

Prints a Markdown table. The validation split is the run's (the last 10,000 training images of
the MNIST family by default); the test set is not touched.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from ebprop.core.convnet import ConvNetwork, conv_forward
from ebprop.core.forward import LayerStats, layer_forward
from ebprop.core.predict import predict_deterministic, predict_probabilistic
from ebprop.datasets import load_dataset
from ebprop.networks import CONV_CHUNK, float64_network
from ebprop.persist import load_model


def hard_units_at(layer: int):
    """A ``layer_stats`` for :func:`conv_forward` that turns parameterised layer ``layer``'s
    unit means ⟨v⟩ into the signs of μ (z's sign; sign 0 = +1, as EBP-D's units); -1: none."""
    count = [0]

    def stats(*args, **kwargs) -> LayerStats:
        out = layer_forward(*args, **kwargs)
        if count[0] == layer:
            out.v = np.where(out.z >= 0, 1.0, -1.0).astype(out.v.dtype)
        count[0] += 1
        return out

    return stats


def sign_weights_at(net: ConvNetwork, layer: int) -> ConvNetwork:
    """``net`` with parameterised layer ``layer``'s weights surely their signs (M = ±1)."""
    H = list(net.H)
    H[layer] = np.where(H[layer] >= 0, 1.0, -1.0).astype(H[layer].dtype) * 1e4  # tanh = ±1
    return dataclasses.replace(net, H=H, M=[], M2=[])


def by_layer(net: ConvNetwork, X: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """EBP-P z with one layer's units, or one layer's weights, hardened; one row per change.
    Float64 and in chunks, as EBP-P's readout (:func:`ebprop.networks.readout_outputs`)."""
    net, X = float64_network(net), X.astype(np.float64)

    def z_of(n: ConvNetwork, hard: int = -1) -> np.ndarray:
        return np.concatenate(
            [
                conv_forward(n, X[s : s + CONV_CHUNK], layer_stats=hard_units_at(hard))[-1].stats.z
                for s in range(0, len(X), CONV_CHUNK)
            ]
        )

    rows = []
    for layer in range(len(net.H) - 1):
        rows.append((f"EBP-P, layer {layer + 1}'s units as signs", z_of(net, hard=layer)))
    for layer in range(len(net.H)):
        rows.append(
            (f"EBP-P, layer {layer + 1}'s weights as signs", z_of(sign_weights_at(net, layer)))
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a binary model file (model.npz, model_d.npz, last.npz)")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--validation", type=int, default=10000)
    parser.add_argument("--refit", type=int, default=0, metavar="N", help="refit on N images")
    parser.add_argument("--by-layer", action="store_true", help="harden one layer at a time")
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
    if args.by_layer:
        if not isinstance(net, ConvNetwork):
            parser.error(f"{args.model}: --by-layer reads conv models (an architecture string)")
        rows += [(name, error(z)) for name, z in by_layer(net, X)]
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
