"""Two blood-side pressure sensors that must agree: `pre_separator` and `return`.

Their difference is the separator's blood-side pressure drop, set by the blood flow and the
membrane's fibres (membrane fouling shows on the plasma side, as TMP, not here). It is
learned during the connection ramp as `drop = a + b x blood flow`; a drop that moves away
from it by `PAIR_MMHG` for `HOLD_MS` at a steady flow means one of the two reads wrong (a
drifting sensor), and which one cannot be told: both are then the worst reading of their
hazard, which puts the rig in its safe state (sensor fault, docs/spec.md 5.2).
"""

from __future__ import annotations

from collections import deque

from controller.rig import Sample

PAIR_MMHG = 15.0
HOLD_MS = 5000
SMOOTH_MS = 1000
RAMP_SPAN = 40.0


class PressurePair:
    def __init__(self) -> None:
        self._sums = [0.0] * 5  # n, sum q, sum d, sum qq, sum qd
        self._q_lo = float("inf")
        self._q_hi = float("-inf")
        self.model: tuple[float, float] | None = None  # a, b
        #: the drops averaged (one window, one flow): times, drops, and that flow
        self._recent_t: deque[int] = deque()
        self._recent_d: deque[float] = deque()
        self._recent_q = 0.0
        self._off_since: int | None = None

    @staticmethod
    def _drop(sample: Sample) -> float | None:
        s = sample.sensors
        if not (s["pre_separator"].valid and s["return"].valid):
            return None
        return s["pre_separator"].value - s["return"].value

    def learn_ramp(self, sample: Sample) -> None:
        d = self._drop(sample)
        q = sample.pumps["blood"].measured
        if d is None or q <= 0:
            return
        n = self._sums
        n[0] += 1
        n[1] += q
        n[2] += d
        n[3] += q * q
        n[4] += q * d
        self._q_lo, self._q_hi = min(self._q_lo, q), max(self._q_hi, q)
        if self._q_hi - self._q_lo >= RAMP_SPAN:
            k, sq, sd, sqq, sqd = n
            b = (k * sqd - sq * sd) / (k * sqq - sq * sq)
            self.model = ((sd - b * sq) / k, b)

    def state(self) -> list[float] | None:
        return list(self.model) if self.model is not None else None

    def restore(self, state: list[float] | None) -> None:
        if state:
            self.model = (state[0], state[1])

    def judge(self, sample: Sample) -> tuple[bool, float]:
        """(disagree, how far off in mmHg) for this sample."""
        d = self._drop(sample)
        q = sample.pumps["blood"].measured
        times, drops = self._recent_t, self._recent_d
        if self.model is None or d is None or q <= 0:
            times.clear()
            drops.clear()
            self._off_since = None
            return False, 0.0
        if times and abs(q - self._recent_q) > max(2.0, 0.03 * q):
            times.clear()
            drops.clear()
            self._off_since = None
        t = sample.t_ms
        times.append(t)
        drops.append(d)
        self._recent_q = q
        while times[0] <= t - SMOOTH_MS:
            times.popleft()
            drops.popleft()
        a, b = self.model
        # a plain deque of floats, summed in C in the same order as ever: the same figure
        off = sum(drops) / len(drops) - (a + b * q)
        if abs(off) > PAIR_MMHG:
            if self._off_since is None:
                self._off_since = t
        else:
            self._off_since = None
        return self._off_since is not None and t - self._off_since >= HOLD_MS, off
