"""A job's wall-clock phases, measured back to back so that they add up to the job's total (issue 15).

`PhaseClock.lap(name)` charges the time since the previous lap (or the start) to `name`; `split(name, parts)`
divides a phase just lapped into parts measured inside it (e.g. the test loop into `cam_s`, `eval_s` and the
remainder, its data loading and loop overhead). Every second between the start and the last lap lands in exactly
one phase, so `sum(phases) == total_s` up to rounding.
"""
from __future__ import annotations

import time
from collections.abc import Mapping


class PhaseClock:
    """Seconds per phase of one job, from `time.perf_counter()`; `started` is the job's start."""

    def __init__(self, started: float | None = None):
        self.started = time.perf_counter() if started is None else float(started)
        self._last = self.started
        self.phases: dict[str, float] = {}

    def lap(self, name: str) -> float:
        """Charge the seconds since the previous lap to phase `name` (added if it exists); returns them."""
        now = time.perf_counter()
        seconds, self._last = now - self._last, now
        self.phases[name] = self.phases.get(name, 0.0) + seconds
        return seconds

    def split(self, name: str, parts: Mapping[str, float], rest: str) -> None:
        """Replace phase `name` by `parts` (seconds measured inside it) and `rest` = what they leave over
        (clamped at 0: clocks read at slightly different moments can overshoot by microseconds)."""
        total = self.phases.pop(name)
        for part, seconds in parts.items():
            self.phases[part] = self.phases.get(part, 0.0) + float(seconds)
        self.phases[rest] = self.phases.get(rest, 0.0) + max(total - sum(parts.values()), 0.0)

    def summary(self) -> dict[str, float]:
        """Every phase and `total_s` (seconds from the start to the last lap), rounded to milliseconds."""
        total = self._last - self.started
        return {**{k: round(v, 3) for k, v in self.phases.items()}, "total_s": round(total, 3)}
