"""Post-hoc EBP-D thresholds for networks with conv layers (:mod:`.refit` for dense ones).

The same repair as :func:`.refit.refit_deterministic_biases`: W = sign(H) is kept and each
hidden unit's bias b_k (its integer threshold once deployed) is replaced, bottom-up, by the one
under which the deterministic unit agrees most often with the sign of its EBP-P mean. A conv
channel shares one bias over its output positions, so its agreement is counted over every
position of every image (positions pooled):

    b_k = −argmax_θ Σ_{n,p} [ (a_{n,p,k} ≥ θ) = (μ_{n,p,k} ≥ 0) ],   a = A W  (no bias),

where A are the deterministic layer's input rows (im2col patches of the refitted layers below,
with max-pools as an OR of bits) and μ the EBP-P pre-activation mean of the same unit at the
same position. Dense layers above the convs are refitted as in :mod:`.refit`; the output layer
keeps its biases.
"""

from __future__ import annotations

import numpy as np

from .architecture import ConvSpec, PoolSpec
from .conv import im2col
from .convnet import ConvNetwork, conv_forward
from .numerics import sign_units_inplace
from .pool import maxpool_deterministic
from .refit import best_thresholds

__all__ = ["refit_conv_biases"]

#: Values (rows × units) handed to one :func:`best_thresholds` call: it holds about ten arrays
#: of this many elements, so this bounds its memory to a few hundred MB.
_BLOCK = 1 << 22


def refit_conv_biases(
    net: ConvNetwork, X: np.ndarray, max_rows: int = 1_000_000, chunk: int = 256
) -> list[np.ndarray]:
    """EBP-D biases of a conv network refitted on ``X`` (see the module docstring).

    Parameters
    ----------
    net : ConvNetwork
    X : ndarray (n, H·W·C)
        Training inputs (already preprocessed), in ``net.dtype``, flattened (y, x, c).
    max_rows : int
        At most this many rows (images × output positions) enter one layer's fit: the first
        ⌊max_rows / P⌋ images of ``X`` (at least one) are used, P the largest number of output
        positions of a parameterised layer. Bounds the memory of the sort.
    chunk : int
        Images per EBP-P forward pass.

    Returns
    -------
    list of ndarray, one (C_out,) per parameterised layer, in ``net.dtype``
        Hidden layers' biases refitted; the output layer's copied unchanged. ``net`` is not
        modified.
    """
    positions = max(
        int(np.prod(shape[:2])) if isinstance(spec, ConvSpec) else 1
        for spec, shape in zip(net.specs, net.shapes, strict=True)
    )
    X = X[: max(1, max_rows // positions)]
    n = X.shape[0]
    n_hidden = len(net.H) - 1
    # EBP-P targets: the sign of each hidden unit's mean at each position (z = μ/σ has μ's sign).
    targets: list[list[np.ndarray]] = [[] for _ in range(n_hidden)]
    for s in range(0, n, chunk):
        layers = [x for x in conv_forward(net, X[s : s + chunk]) if x.stats is not None]
        for t, layer in zip(targets, layers, strict=False):
            t.append(layer.stats.z >= 0)
    weights = [net.family.most_probable(h) for h in net.H]
    biases: list[np.ndarray] = []
    h = X.reshape((n,) + tuple(net.input_shape))
    for spec, shape in zip(net.specs, net.shapes, strict=True):
        if isinstance(spec, PoolSpec):
            h = maxpool_deterministic(h, spec.size)
            continue
        index = len(biases)
        if index == n_hidden:
            break
        rows = im2col(h, spec.kernel, spec.stride, spec.pad) if isinstance(spec, ConvSpec) else h
        a = rows.reshape(rows.shape[0], -1) @ weights[index]  # (n·P, C_out)
        target = np.concatenate(targets[index])
        theta = np.empty(a.shape[1])
        step = max(1, _BLOCK // a.shape[0])
        for c in range(0, a.shape[1], step):
            cols = slice(c, c + step)
            theta[cols] = best_thresholds(a[:, cols], target[:, cols], -net.b[index][cols])
        b = (-theta).astype(net.dtype)
        biases.append(b)
        h = sign_units_inplace(a + b)
        h = h.reshape((n,) + shape) if isinstance(spec, ConvSpec) else h
    biases.append(net.b[-1].copy())
    return biases
