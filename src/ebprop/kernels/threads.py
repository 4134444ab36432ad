"""``n_jobs="auto"``: use the second core only while it pays, decided by measuring.

Two threads help only when both cores are free: a parallel region ends when its slowest thread
does, so a thread the OS has descheduled (another process on its core, a browser, a second run)
holds the whole minibatch up; with numba's spinning OpenMP threads two threads ran at 0.01–0.34×
of one on a busy machine (docs/performance.md). The engine therefore runs its parallel regions on
numba's ``workqueue`` layer, whose waiting threads sleep instead of spinning, and
:class:`ThreadChooser` picks one or two threads span by span (a span is a few minibatches, one
compiled call) from the seconds per minibatch it measures:

1. **Measure** on the first minibatches: short spans (:data:`PROBE_BATCHES`) of one and of two
   threads alternate
   (:data:`PROBE_PAIRS` pairs, after a warm-up span that may include compiling; cut short when
   two threads are :data:`ABANDON_SLOWDOWN` times slower), and two threads are kept only when
   they are at least :data:`MIN_GAIN` times faster (medians).
2. **Watch**: while two threads run, a span slower than the one-thread rate measured last counts
   as a stall (a thread kept the barrier waiting); :data:`STALLS_TO_FALL_BACK` stalls in a row
   fall back to one thread at once (and the next re-check waits twice as long).
3. **Re-check** every :data:`RECHECK_SECONDS` seconds of training (doubling, up to
   :data:`RECHECK_MAX_SECONDS`, while the answer stays the same), with two pairs of spans (one,
   cut short as at the start): the other processes on the machine come and go.

The thread count never changes the result: with ``n_jobs="auto"`` each layer is split into the
row tiles of two threads whether one thread or two runs them (the serial pass runs the same tiles
in order, :func:`._fused.layer_pass_serial`), so a run is bit-identical to ``n_jobs=2`` whichever
thread counts were chosen. This module imports neither numba nor NumPy.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field

__all__ = [
    "ABANDON_SLOWDOWN", "MIN_GAIN", "PROBE_BATCHES", "PROBE_PAIRS", "RECHECK_MAX_SECONDS",
    "RECHECK_SECONDS", "SPAN_SECONDS", "STALLS_TO_FALL_BACK", "ThreadChooser", "max_threads",
]  # fmt: skip

#: Two threads are used only when they are this many times faster than one (the second core is
#: worth more to the rest of the machine than a few per cent).
MIN_GAIN = 1.1
#: Pairs of spans (one thread, two threads) measured at the start.
PROBE_PAIRS = 3
#: A two-thread probe this many times slower than every one-thread probe ends the measuring (the
#: answer is clear, and each such span costs the run time).
ABANDON_SLOWDOWN = 1.5
#: Minibatches of a probing span at most: on an overloaded machine each parallel region of a
#: two-thread span can wait a scheduler time slice for its second thread, so a probe's cost grows
#: with its length (a 20 ms span of 784-500-500-10 cost up to ~0.8 s at a load average of 13).
PROBE_BATCHES = 4
#: A span lasts about this long (seconds): long enough to time, short enough to react.
SPAN_SECONDS = 0.02
#: Two-thread spans in a row slower than one thread that make the chooser fall back at once.
STALLS_TO_FALL_BACK = 2
#: Seconds of training between re-checks (doubling while the choice holds, up to the maximum).
RECHECK_SECONDS = 5.0
RECHECK_MAX_SECONDS = 60.0


@dataclass
class ThreadChooser:
    """Chooses one or two threads for each span of minibatches from their measured speed.

    Use: ``threads, batches = chooser.next_span()``, run up to ``batches`` minibatches with
    ``threads`` threads, then ``chooser.record(threads, minibatches_run, seconds)``. One chooser
    may serve many calls (e.g. every epoch of a run), so that it measures once and re-checks.

    Parameters
    ----------
    max_threads : int
        1 (e.g. a single-CPU machine or ``NUMBA_NUM_THREADS=1``): never two threads, no probing.

    Attributes
    ----------
    log : list of (event, one-thread s/minibatch, two-thread s/minibatch, threads chosen), the
        decisions in order (``"measured"``, ``"stalled"``, ``"rechecked"``).
    """

    max_threads: int = 2
    log: list = field(default_factory=list)
    _threads: int = 1
    _plan: list = field(default_factory=list)  # spans still to probe: thread counts
    _samples: dict = field(default_factory=lambda: {1: [], 2: []})  # s/minibatch while probing
    _rate: dict = field(default_factory=dict)  # threads → s/minibatch measured last
    _warm: bool = False
    _stalls: int = 0
    _since_check: float = 0.0
    _interval: float = RECHECK_SECONDS

    def __post_init__(self) -> None:
        if self.max_threads >= 2:
            self._plan = [1, 2] * PROBE_PAIRS

    @property
    def threads(self) -> int:
        """The thread count chosen for training (between probes)."""
        return self._threads

    def next_span(self) -> tuple[int, int]:
        """(threads, at most this many minibatches) for the next span."""
        probing = bool(self._plan) and self._warm
        threads = self._plan[0] if probing else self._threads
        per_batch = self._rate.get(threads) or self._rate.get(1)
        batches = max(1, round(SPAN_SECONDS / per_batch)) if per_batch else PROBE_BATCHES
        return threads, min(batches, PROBE_BATCHES) if probing else batches

    def record(self, threads: int, batches: int, seconds: float) -> None:
        """The span just run: ``batches`` minibatches on ``threads`` threads took ``seconds``."""
        if batches < 1 or self.max_threads < 2:
            return
        per_batch = seconds / batches
        if not self._warm:  # the first span may have compiled the kernels or loaded caches
            self._warm = True
            return
        self._since_check += seconds
        if self._plan and self._plan[0] == threads:
            self._plan.pop(0)
            self._samples[threads].append(per_batch)
            one = self._samples[1]
            if threads == 2 and one and per_batch > ABANDON_SLOWDOWN * max(one):
                self._plan = []  # far slower: no need to measure it again
            if not self._plan:
                self._decide("measured" if not self.log else "rechecked")
            return
        self._rate[threads] = per_batch
        if threads == 2 and 1 in self._rate:
            self._stalls = self._stalls + 1 if per_batch > self._rate[1] else 0
            if self._stalls >= STALLS_TO_FALL_BACK:
                self._threads, self._stalls = 1, 0
                # the next re-check waits longer: a machine that flips between busy and idle
                # must not make the chooser pay a fall back every few seconds
                self._interval = min(2 * self._interval, RECHECK_MAX_SECONDS)
                self._since_check = 0.0
                self.log.append(("stalled", self._rate[1], per_batch, 1))
                return
        if self._since_check >= self._interval:  # two pairs: one is noisy on a busy machine
            self._plan = [1, 2, 1, 2] if self._threads == 1 else [2, 1, 2, 1]
            self._since_check = 0.0

    def _decide(self, event: str) -> None:
        one = statistics.median(self._samples[1])
        two = statistics.median(self._samples[2])
        self._samples = {1: [], 2: []}
        self._rate.update({1: one, 2: two})
        threads = 2 if one >= MIN_GAIN * two else 1
        if event == "rechecked" and threads == self._threads:
            self._interval = min(2 * self._interval, RECHECK_MAX_SECONDS)
        elif event == "measured":
            self._interval = RECHECK_SECONDS
        self._threads, self._stalls = threads, 0
        self.log.append((event, one, two, threads))


def max_threads() -> int:
    """Threads ``n_jobs="auto"`` may use: 2, or 1 where this process may run on one CPU only or
    ``NUMBA_NUM_THREADS`` is 1. Imports numba (its configuration)."""
    import numba

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(2, cpus or 1, numba.config.NUMBA_NUM_THREADS))
