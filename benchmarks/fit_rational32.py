"""Fit, and check exhaustively, the rational float32 tanh and erf of ``ebprop.kernels._vecmath``.

    tanh a ≈ a · P(a²) / Q(a²),  0 ≤ a ≤ 9,     P of degree 6, Q of degree 3, Q(0) = 1
    erf a  ≈ a · P(a²) / Q(a²),  0 ≤ a ≤ 3.92,  P of degree 6, Q of degree 4, Q(0) = 1

(beyond the clamp both round to 1 in float32). P(0) is the slope at 0 (1 for tanh, 2/√π for
erf). The coefficients are fitted in float64 to the least maximum *relative* error on the range:
linear least squares on P − (f(a)/a)·Q, re-divided by the last Q (Sanathanan–Koerner) and
re-weighted towards the worst points (Lawson). ``--check`` then evaluates the kernels' compiled
function (the coefficients rounded to float32, the arithmetic in float32) at every positive
float32 below 20 and reports the largest error in units of the last place of the float32 result,
against the float64 function (1.1·10⁹ values: minutes, not seconds).

    python benchmarks/fit_rational32.py tanh            # print the coefficients
    python benchmarks/fit_rational32.py erf --check     # exhaustive error of the kernels' erf32
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.special import erf

#: function: (float64 function, slope at 0, clamp, degree of P, degree of Q)
FUNCTIONS = {
    "tanh": (np.tanh, 1.0, 9.0, 6, 3),
    "erf": (erf, 2.0 / np.sqrt(np.pi), 3.92, 6, 4),
}


def fit(name: str, iterations: int = 60):
    """Coefficients (p, q) in powers of a², constant term first, and the max relative error."""
    function, slope, clamp, deg_p, deg_q = FUNCTIONS[name]
    a = np.sort(np.concatenate([np.linspace(1e-4, clamp, 20_000), np.geomspace(1e-4, 1, 2_000)]))
    target = function(a)
    # P(u)/Q(u) must approximate f(a)/(slope·a), u = a²/clamp² (well scaled), so P(0) = Q(0) = 1
    ratio = target / (slope * a)
    u = a * a / clamp**2
    weight = np.ones_like(a)
    q_prev = np.ones_like(a)
    for it in range(iterations):
        columns = [u**k for k in range(1, deg_p + 1)] + [-ratio * u**k for k in range(1, deg_q + 1)]
        scale = np.sqrt(weight) / (q_prev * ratio)
        coef, *_ = np.linalg.lstsq(np.stack(columns, 1) * scale[:, None], (ratio - 1) * scale,
                                   rcond=None)  # fmt: skip
        p = np.concatenate([[1.0], coef[:deg_p]])
        q = np.concatenate([[1.0], coef[deg_p:]])
        q_prev = np.polynomial.polynomial.polyval(u, q)
        rel = slope * a * np.polynomial.polynomial.polyval(u, p) / q_prev / target - 1
        if it >= 5:
            weight = weight * np.abs(rel) / np.abs(rel).max() + 1e-30
            weight /= weight.sum()
    powers = clamp ** (-2.0 * np.arange(max(deg_p, deg_q) + 1))
    return slope * p * powers[: deg_p + 1], q * powers[: deg_q + 1], float(np.abs(rel).max())


def check(name: str) -> tuple[float, float]:
    """Largest error of the compiled function over all positive float32 < 20, in ulp, and where."""
    import numba as nb

    from ebprop.kernels import _vecmath

    kernel = getattr(_vecmath, name + "32")
    function = FUNCTIONS[name][0]

    @nb.njit(error_model="numpy")
    def apply(x, out):  # pragma: no cover - compiled
        for i in range(x.shape[0]):
            out[i] = kernel(x[i])

    top = int(np.array([20.0], np.float32).view(np.int32)[0])
    chunk = 1 << 24
    out = np.empty(chunk, np.float32)
    worst = (0.0, 0.0)
    for lo in range(1, top, chunk):
        x = np.arange(lo, min(lo + chunk, top), dtype=np.int32).view(np.float32)
        y = out[: len(x)]
        apply(x, y)
        exact = function(x.astype(np.float64))
        ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
        err = np.abs(y - exact) / ulp
        k = int(np.argmax(err))
        if err[k] > worst[0]:
            worst = (float(err[k]), float(x[k]))
        neg = np.empty_like(y)
        apply(-x, neg)
        if not np.array_equal(neg, -y):
            raise AssertionError(f"{name}32 is not odd")
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("function", choices=sorted(FUNCTIONS))
    parser.add_argument("--check", action="store_true", help="exhaustive check of the kernel")
    args = parser.parse_args()
    name = args.function
    if args.check:
        err, where = check(name)
        print(f"{name}32: largest error {err:.2f} ulp (at a = {where!r}), all float32 in (0, 20)")
        return
    p, q, rel = fit(name)
    print(f"max relative error of the float64 fit on [0, {FUNCTIONS[name][2]}]: {rel:.3g} "
          f"({rel / 2**-24:.3f} units of 2^-24)")  # fmt: skip
    print("P =", tuple(float(np.float32(c)) for c in p))
    print("Q =", tuple(float(np.float32(c)) for c in q))


if __name__ == "__main__":
    main()
