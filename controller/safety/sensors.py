"""Sensor plausibility: the readings the interlocks must not compare with any limit.

A reading is bad when the firmware does not vouch for it (missing, out of range), when it is
not a finite number, or, for a sensor that noise alone moves on every sample
(`STUCK_WATCHED`), when it has stayed exactly the same for `stuck_after_s` while blood flows
(a stuck sensor). A bad reading is then the worst reading of its hazard (interlocks.py).

This runs on every sample, thousands of times a second of wall time in simulation, and
almost always every reading is plausible and every watched one has moved. That case is
recognised with a few passes in C over the sample (`_all_plausible`, `map(ne, ...)`) instead
of a Python loop over fifteen sensors; every other case takes `_judge`, the plain loop,
which is the definition. Both keep the same state: the fast path only answers sooner.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from operator import itemgetter, ne

from controller.rig import PRESSURE_NAMES, Reading

#: Sensors that must move while blood flows: noise alone changes them every sample.
STUCK_WATCHED: tuple[str, ...] = (*PRESSURE_NAMES, "map", "plasma_temp")
_WATCHED_INDEX = {name: i for i, name in enumerate(STUCK_WATCHED)}
#: a `Reading`'s value and validity (it is a named tuple: (value, valid))
_value = itemgetter(0)
_valid = itemgetter(1)
_watched = itemgetter(*STUCK_WATCHED)


def _all_plausible(sensors: Mapping[str, Reading]) -> bool:
    """Every reading vouched for and finite: a sum of floats is finite only if every term
    is (a NaN or an infinity makes it NaN or infinite). A finite sum that overflows says
    False, which only sends the sample to the plain loop."""
    readings = sensors.values()
    return all(map(_valid, readings)) and math.isfinite(sum(map(_value, readings)))


class SensorCheck:
    """Which readings of each sample are bad, and why; keeps what the stuck check needs."""

    def __init__(self, stuck_after_s: float) -> None:
        self.stuck_ms = int(stuck_after_s * 1000)
        #: per watched sensor (STUCK_WATCHED order): its last plausible value (None before
        #: the first), and the time since which it has not changed
        self._last: list[float | None] = [None] * len(STUCK_WATCHED)
        self._since: list[int] = [0] * len(STUCK_WATCHED)

    def judge(self, sensors: Mapping[str, Reading], t: int, flowing: bool) -> dict[str, str]:
        """{sensor: why} for each bad reading of this sample (empty: all plausible)."""
        if self.stuck_ms > 0 and _all_plausible(sensors):
            try:
                values = list(map(_value, _watched(sensors)))
            except KeyError:  # a sample without one of them: the plain loop says what
                return self._judge(sensors, t, flowing)
            if not flowing or all(map(ne, values, self._last)):
                # each watched value moved (or nothing flows): each is unchanged since now,
                # so none is stuck (t - t < stuck_ms)
                self._last = values
                self._since = [t] * len(values)
                return {}
        return self._judge(sensors, t, flowing)

    def _judge(self, sensors: Mapping[str, Reading], t: int, flowing: bool) -> dict[str, str]:
        """The definition, sensor by sensor (an implausible reading leaves the stuck check's
        state of its sensor as it was)."""
        bad: dict[str, str] = {}
        last, since, stuck_ms = self._last, self._since, self.stuck_ms
        for name, reading in sensors.items():
            value = reading.value
            if not reading.valid or not math.isfinite(value):
                bad[name] = f"{name}: reading {value:g} not plausible"
                continue
            i = _WATCHED_INDEX.get(name)
            if i is None:
                continue
            if not flowing or last[i] != value:
                since[i] = t
            last[i] = value
            if t - since[i] >= stuck_ms:
                bad[name] = f"{name}: stuck at {value:g}"
        return bad
