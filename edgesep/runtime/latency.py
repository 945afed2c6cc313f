"""Per-hop timing with O(1) memory: running count/min/max/mean/std (as TFLite's
``benchmark_model`` prints) plus a log-spaced histogram (1 % wide bins) for percentiles.

:func:`cpu_clock` picks the clock of a hop's own CPU time: the wall clock counts the time other
processes hold the CPU, this one does not (the latency gates judge it, :mod:`edgesep.validate`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

import numpy as np

_FIRST_US = 0.1  # lower edge of the first histogram bin, µs
_GROWTH = 1.01
_NB_BINS = 2400  # 0.1 µs .. ~2.3e9 µs
_PER_LOG_GROWTH = 1.0 / math.log(_GROWTH)


def cpu_clock(backend) -> tuple[Callable[[], int], str]:
    """The CPU-time clock (ns) for hops that run ``backend``, and what it counts.

    An exported model on one interpreter thread runs on the hop's own thread:
    ``time.thread_time_ns``. A model on more threads (``threads > 1``, or the Keras reference on
    TensorFlow's thread pools): ``time.process_time_ns``, every thread of the process (so other
    work in the process counts too).
    """
    threads = getattr(backend, "threads", 1)
    if threads == 1 and getattr(backend, "format", None) is not None:
        return time.thread_time_ns, ("thread CPU time (the hop's thread also runs the model, "
                                     "one interpreter thread)")
    why = (f"{threads} interpreter threads" if threads != 1
           else f"the {getattr(backend, 'name', 'model')} backend runs its own thread pools")
    return time.process_time_ns, f"process CPU time ({why}: every thread of the process counts)"


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (``None`` where the platform has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


class LatencyStats:
    """Collect durations (ns); percentiles are accurate to the 1 % bin width.

    ``deadline_ns`` (the hop duration) counts deadline misses; ``audio_ns`` per sample gives the
    real-time factor (compute time / audio time).
    """

    def __init__(self, deadline_ns: int | None = None, audio_ns_per_call: int | None = None):
        self.deadline_ns = deadline_ns
        self.audio_ns_per_call = audio_ns_per_call
        self._hist = [0] * _NB_BINS  # a list: add() runs every hop, a numpy item costs more
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.total_ns = 0
        self._sumsq = 0.0
        self.min_ns = 0
        self.max_ns = 0
        self.deadline_misses = 0
        self._hist[:] = [0] * _NB_BINS

    def add(self, ns: int) -> None:
        """Record one duration in nanoseconds."""
        if self.count == 0 or ns < self.min_ns:
            self.min_ns = ns
        if ns > self.max_ns:
            self.max_ns = ns
        self.count += 1
        self.total_ns += ns
        self._sumsq += float(ns) * ns
        if self.deadline_ns is not None and ns > self.deadline_ns:
            self.deadline_misses += 1
        us = ns / 1000.0
        idx = 0 if us <= _FIRST_US else int(math.log(us / _FIRST_US) * _PER_LOG_GROWTH) + 1
        self._hist[min(idx, _NB_BINS - 1)] += 1

    @property
    def avg_us(self) -> float:
        return self.total_ns / self.count / 1000.0 if self.count else 0.0

    @property
    def std_us(self) -> float:
        if not self.count:
            return 0.0
        mean = self.total_ns / self.count
        return math.sqrt(max(self._sumsq / self.count - mean * mean, 0.0)) / 1000.0

    def percentile_us(self, q: float) -> float:
        """Upper edge of the bin holding the ``q``-th percentile (clamped to min/max)."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(q / 100.0 * self.count))
        idx = int(np.searchsorted(np.cumsum(self._hist), rank))  # list -> array here
        edge = _FIRST_US * _GROWTH**idx
        return float(min(max(edge, self.min_ns / 1000.0), self.max_ns / 1000.0))

    def histogram(self) -> dict:
        """The non-empty bins, JSON-ready: ``{"lower_us": [...], "counts": [...],
        "growth": 1.01}``; bin ``i`` holds durations in ``(lower_us[i], lower_us[i] * growth]``
        (the first bin of all also everything below 0.1 µs)."""
        nonzero = np.flatnonzero(self._hist)
        lower = [0.0 if i == 0 else _FIRST_US * _GROWTH ** (i - 1) for i in nonzero]
        return {"lower_us": [round(v, 4) for v in lower],
                "counts": [int(self._hist[i]) for i in nonzero], "growth": _GROWTH}

    @property
    def real_time_factor(self) -> float:
        """Total compute time / audio time, i.e. from the mean (< 1: faster than real time)."""
        if not self.count or not self.audio_ns_per_call:
            return 0.0
        return self.total_ns / (self.count * self.audio_ns_per_call)

    @property
    def real_time_factor_p50(self) -> float:
        """The median call's time / its audio time (a few slow calls do not move it)."""
        if not self.count or not self.audio_ns_per_call:
            return 0.0
        return self.percentile_us(50) * 1000.0 / self.audio_ns_per_call

    def summary(self) -> dict:
        """Numbers in µs, as a JSON-ready dict; ``real_time_factor`` is the mean-based one
        (also ``real_time_factor_mean``), ``real_time_factor_p50`` the median-based one."""
        return {
            "count": self.count, "min_us": self.min_ns / 1000.0, "max_us": self.max_ns / 1000.0,
            "avg_us": self.avg_us, "std_us": self.std_us,
            "p50_us": self.percentile_us(50), "p95_us": self.percentile_us(95),
            "p99_us": self.percentile_us(99), "deadline_misses": self.deadline_misses,
            "deadline_us": None if self.deadline_ns is None else self.deadline_ns / 1000.0,
            "real_time_factor": self.real_time_factor,
            "real_time_factor_mean": self.real_time_factor,
            "real_time_factor_p50": self.real_time_factor_p50,
        }

    def line(self) -> str:
        """One human line: ``hops 1000: p50 52 µs, p95 ..., misses 0, RTF 0.006``."""
        s = self.summary()
        return (f"{s['count']} hops: p50 {s['p50_us']:.0f} µs, p95 {s['p95_us']:.0f} µs, "
                f"p99 {s['p99_us']:.0f} µs, max {s['max_us']:.0f} µs, "
                f"deadline misses {s['deadline_misses']}, real-time factor "
                f"{s['real_time_factor']:.4f}")
