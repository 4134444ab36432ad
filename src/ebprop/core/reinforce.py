"""Reinforcement: the schedule of the factors ρ_l that :func:`.update.update_inplace` applies.

Plain EBP carries the posterior over unchanged as the next minibatch's prior. Reinforcement
(Lucibello, Pittorino, Perugini & Zecchina, Mach. Learn.: Sci. Technol. 3, 035005, 2022; not in
Soudry et al.) raises it to a power ρ slightly above 1 after every minibatch, which for a binary
weight scales its field: H ← ρ H + ΔH. Hidden-layer posteriors then polarise onto one
configuration, and the most probable network (EBP-D, sign(H)) approaches the posterior mean.

The factors are *per minibatch*: ρ = 1 + 5·10⁻⁵ at batch 10 grows an unchanged field by
e^{0.3} ≈ 1.35 per 60,000-image epoch.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from dataclasses import dataclass

__all__ = [
    "AUTO",
    "Reinforcement",
    "ReinforcementWarning",
    "never_starts",
    "parse_reinforcement",
    "resolve_auto",
    "same_request",
    "start_schedule",
    "stored_form",
]


class ReinforcementWarning(UserWarning):
    """A reinforcement schedule that will not start within the run (:func:`never_starts`)."""


#: The keys of a ``"key=value,…"`` schedule, in the order :meth:`Reinforcement.to_spec` writes.
_KEYS = ("hidden", "output", "start", "ramp", "stop")


@dataclass(frozen=True)
class Reinforcement:
    """A reinforcement schedule.

    Attributes
    ----------
    hidden : float
        ρ of every hidden layer, per minibatch (1 = off).
    output : float
        ρ of the output layer, per minibatch (1 = off; < 1 relaxes it).
    start : float
        Epochs of plain EBP before reinforcement begins.
    ramp : float
        Epochs over which ρ − 1 grows linearly from 0 to its full value, after ``start``.
    stop : float
        Epoch at which reinforcement ends (plain EBP again from there; ``inf``: never). The
        polarised fields are kept, and keep learning by plain EBP updates.
    auto : bool
        True only for :data:`AUTO`, ``"auto"`` not yet fitted to a budget
        (:func:`resolve_auto`); written as ``"auto"``.
    from_auto : bool
        What :func:`resolve_auto` made of ``"auto"``; written ``"auto:hidden=…,start=…"``, so
        that a run asked for with ``"auto"`` again (a sweep, a resume) is recognised as the same.
    """

    hidden: float = 1.0
    output: float = 1.0
    start: float = 0.0
    ramp: float = 0.0
    stop: float = math.inf
    auto: bool = False
    from_auto: bool = False

    def __post_init__(self) -> None:
        for name in ("hidden", "output"):
            value = getattr(self, name)
            if not (isinstance(value, numbers.Real) and math.isfinite(value) and 0.5 <= value <= 2):
                raise ValueError(
                    f"reinforcement {name} factor must be a number in [0.5, 2] (ρ per minibatch, "
                    f"e.g. 1.00005), got {value!r}"
                )
        for name in ("start", "ramp"):
            value = getattr(self, name)
            if not (isinstance(value, numbers.Real) and math.isfinite(value) and value >= 0):
                raise ValueError(f"reinforcement {name} must be ≥ 0 epochs, got {value!r}")
        if not (isinstance(self.stop, numbers.Real) and self.stop > self.start):
            raise ValueError(
                f"reinforcement stop must be an epoch after start ({self.start:g}), "
                f"got {self.stop!r}"
            )

    @property
    def is_plain(self) -> bool:
        """True when every factor is 1 (plain EBP)."""
        return self.hidden == 1.0 and self.output == 1.0

    def factors(self, n_layers: int, progress: float) -> tuple[float, ...] | None:
        """ρ_l for each of ``n_layers`` layers at ``progress`` epochs into training.

        Returns None (plain EBP, no multiplication at all) before ``start``, from ``stop`` on,
        and when off.
        """
        if self.is_plain or progress < self.start or progress >= self.stop:
            return None
        weight = 1.0 if self.ramp == 0 else min(1.0, (progress - self.start) / self.ramp)
        return _per_layer(
            1.0 + weight * (self.hidden - 1.0), 1.0 + weight * (self.output - 1.0), n_layers
        )

    def peak_factors(self, n_layers: int, progress: float) -> tuple[float, ...] | None:
        """The full factors once reinforcement has begun by ``progress`` (even after ``stop``:
        a field that was grown to the parameter bound stays there), else None. For the
        divergence check, which tolerates reinforced binary fields at the bound."""
        if self.is_plain or progress < self.start:
            return None
        return _per_layer(self.hidden, self.output, n_layers)

    def to_spec(self) -> str:
        """The string form accepted by :func:`parse_reinforcement` (``"auto"`` for :data:`AUTO`)."""
        if self.auto:
            return "auto"
        if self.from_auto:
            return "auto:" + dataclasses.replace(self, from_auto=False).to_spec()
        keys = _KEYS if math.isfinite(self.stop) else _KEYS[:-1]  # stop=inf is the default
        return ",".join(f"{k}={getattr(self, k)!r}" for k in keys)


def _per_layer(hidden: float, output: float, n_layers: int) -> tuple[float, ...]:
    # one factor per layer: the hidden layers', then the output layer's
    return (hidden,) * (n_layers - 1) + (output,)


#: ``reinforcement="auto"`` before it is fitted to a budget (:func:`resolve_auto`, which training
#: calls at its start). Its factors are the fixed schedule ``auto`` stood for before, 20 epochs of
#: plain EBP and then ρ = 1.0001 per minibatch on the hidden layers, so a run folder whose
#: options.json says ``"auto"`` (written before the schedule was resolved at start) resumes as it
#: was trained. That schedule had the lowest EBP-D validation error on MNIST 784-500-500-10 at
#: 46 epochs (docs/results.md), but with 20 or fewer epochs it never started.
AUTO = Reinforcement(hidden=1.0001, start=20.0, auto=True)

#: :func:`resolve_auto`'s plain phase, as a fraction of the epochs: half the budget learns with
#: plain EBP (EBP-P's error falls fastest there), the other half polarises.
AUTO_PLAIN_FRACTION = 0.5
#: :func:`resolve_auto`'s total polarisation G = Σ log ρ over the reinforced minibatches: fields
#: grow by e^G ≈ 55 from reinforcement alone, enough to fix most signs (tanh H beyond ±0.99 for
#: |H| ≥ 2.7 from |H| ≈ 0.05) without freezing them within the first reinforced epoch.
AUTO_POLARISATION = 4.0
#: The largest ρ − 1 :func:`resolve_auto` gives (budgets of a few minibatches).
_AUTO_MAX_STEP = 0.05


def resolve_auto(
    schedule: Reinforcement | None, epochs: int, n_samples: int, batch_size: int
) -> Reinforcement | None:
    """``schedule``, with :data:`AUTO` replaced by the schedule that fits the budget.

    ``auto`` becomes ``start = AUTO_PLAIN_FRACTION · epochs`` and the hidden layers'
    ρ = exp(G / minibatches after ``start``), G = :data:`AUTO_POLARISATION`: the same total
    polarisation ρ^minibatches = e^G for every number of epochs, training-set size and batch
    size (MNIST's 50,000 images, batch 10, 8 epochs: start 4, ρ ≈ 1.0002; 46 epochs: start 23,
    ρ ≈ 1.000035), ρ at most 1.05 (budgets of under 80 reinforced minibatches).
    Any other schedule (or None) is returned unchanged.
    """
    if schedule is None or not schedule.auto:
        return schedule
    start = AUTO_PLAIN_FRACTION * epochs
    minibatches = math.ceil(n_samples / batch_size) * (epochs - start)
    rho = min(math.exp(AUTO_POLARISATION / max(minibatches, 1.0)), 1.0 + _AUTO_MAX_STEP)
    return Reinforcement(hidden=float(f"{rho:.12g}"), start=start, from_auto=True)


def never_starts(schedule: Reinforcement | None, epochs: int) -> str | None:
    """A one-line warning when ``schedule`` would not begin within ``epochs``, else None."""
    if schedule is None or schedule.is_plain or schedule.start < epochs:
        return None
    name = "auto (unresolved: 20 plain epochs)" if schedule.auto else schedule.to_spec()
    return (
        f"reinforcement {name} starts at epoch {schedule.start:g}, but training runs "
        f"{epochs} epochs: it will never start (use a start below {epochs} or 'auto')"
    )


def start_schedule(
    schedule: Reinforcement | None,
    epochs: int,
    n_samples: int,
    batch_size: int,
    resolve: bool = True,
) -> Reinforcement | None:
    """The reinforcement schedule a training of ``epochs`` epochs over ``n_samples`` samples
    runs: ``"auto"`` fitted to that budget (:func:`resolve_auto`; not when ``resolve`` is False:
    a resumed run keeps what it stored), any other unchanged. Warns
    (:class:`ReinforcementWarning`, one line, pointing at the caller's caller) when it would not
    start within ``epochs``."""
    if resolve:
        schedule = resolve_auto(schedule, epochs, n_samples, batch_size)
    message = never_starts(schedule, epochs)
    if message:
        warnings.warn(message, ReinforcementWarning, stacklevel=3)
    return schedule


def stored_form(value: object) -> object:
    """A schedule as ``options.json`` and a model's parameters store it: None, a number (hidden
    ρ only, from the start, as written before schedules had keys) or its spec; any other value
    (not a :class:`Reinforcement`) as it is."""
    if value is None or not isinstance(value, Reinforcement):
        return value
    if (value.output, value.start, value.ramp, value.stop) == (1.0, 0.0, 0.0, math.inf):
        return value.hidden
    return value.to_spec()


def parse_reinforcement(value: object) -> Reinforcement | None:
    """A schedule from a user's value, or None for plain EBP.

    Accepts None, a number ρ (hidden layers only, from the start), ``"auto"``, ``"none"``, or
    ``"key=value,…"`` with keys ``hidden``, ``output``, ``start``, ``ramp``, ``stop``
    (e.g. ``"hidden=1.0001,output=0.9999,start=1"``), or a :class:`Reinforcement`.
    """
    if value is None or isinstance(value, Reinforcement):
        return None if value is None or value.is_plain else value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        sched = Reinforcement(hidden=float(value))
        return None if sched.is_plain else sched
    if not isinstance(value, str):
        raise ValueError(f"reinforcement must be a number, 'auto' or 'key=value,…'; got {value!r}")
    text = value.strip().lower()
    if text in ("", "none", "off"):
        return None
    if text == "auto":
        return AUTO
    if text.startswith("auto:"):  # a resolved 'auto' (Reinforcement.from_auto)
        sched = parse_reinforcement(text.removeprefix("auto:"))
        return None if sched is None else dataclasses.replace(sched, from_auto=True)
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        return parse_reinforcement(number)
    fields: dict[str, float] = {}
    for part in text.split(","):
        key, sep, raw = part.partition("=")
        key = key.strip()
        if not sep or key not in _KEYS:
            raise ValueError(
                f"reinforcement {value!r}: expected a number, 'auto' or key=value pairs with keys "
                f"{', '.join(_KEYS)} (e.g. 'hidden=1.0001,start=1')"
            )
        if key in fields:  # "last one wins" would hide a typo
            raise ValueError(f"reinforcement {value!r}: {key} is given twice; give each key once")
        try:
            fields[key] = float(raw)
        except ValueError:
            raise ValueError(
                f"reinforcement {value!r}: {key}={raw!r} is not a number; give a number there"
            ) from None
    sched = Reinforcement(**fields)
    return None if sched.is_plain else sched


def same_request(given: object, stored: object) -> bool:
    """Whether two stored schedule values ask for the same thing: equal, or ``"auto"`` and a
    schedule ``"auto"`` was resolved to (``"auto:…"``, :attr:`Reinforcement.from_auto`)."""
    if given == stored:
        return True
    pair = sorted(v for v in (given, stored) if isinstance(v, str))
    return len(pair) == 2 and pair[0] == "auto" and pair[1].startswith("auto:")
