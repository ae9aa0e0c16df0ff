"""The return (venous) line: what its pressure should be at the present flow, how far below
that it is, and the blood a lost line spills.

Why a model and not a window that re-centres: a needle slipping out of the vein lowers the
return pressure by only 15-25 mmHg (docs/reference.md), so a fixed low limit misses it, and a window
re-centred a few seconds after each flow change re-centres onto the dislodged level itself (a
resumed run with the needle still out then lost ~105 mL with no further alarm). Here:

- the pressure's dependence on flow is learned where the flow sweeps a range by design, the
  connection ramp: `p = baseline + slope x (q - q_ref)`, q the flow into the return line
  (blood - plasma + replacement + return, by encoders);
- the baseline is refined slowly (30 s) and only by readings close to it (within half the
  window): a sudden drop is a deviation to judge, never a new normal, and after a flow change
  the expected level comes from the slope, not from whatever the line reads then;
- a drop of `return_window_mmhg` below the expected level, averaged over 1 s and held for
  2 s while blood flows, is a disconnection. At 150 mL/min a 15 mmHg drop is seen in about
  3 s (bench/safety_latency.py sweeps the smallest drop it sees: docs/safety.md).

Blood loss: from the last reading inside the band (the last trustworthy sample) until the
blood pump stopped, what the encoders moved into the line is counted as lost.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from itertools import islice

from controller.config.rig import AlarmLimits
from controller.rig import Sample

#: Readings averaged before judging (noise of one reading: ~1 mmHg)
SMOOTH_MS = 1000
#: How long the averaged pressure must stay below the band before it counts
HOLD_MS = 2000
#: ... while a resume is checked at low flow: the tight limit of a short test
CHECK_HOLD_MS = 500
#: A drop of twice the window is judged at once, on the reading itself (noise ~1 mmHg
#: against a 20 mmHg margin): as fast as a fixed limit for a line that is plainly lost;
#: the averaged, held tier is for one that barely is
FAST_READINGS = 1
#: The baseline follows readings inside the band with this time constant
TAU_S = 30.0
#: Flows (mL/min) the ramp must span before its slope is trusted
RAMP_SPAN = 40.0
#: Samples of flow history kept to count a loss back to its start (30 s at 10 Hz)
HISTORY = 300
#: A slope when none was learned (a resumed run without one in its checkpoint): the
#: membrane separator's venous side, mmHg per mL/min, as the simulated rig and bench rigs show
DEFAULT_SLOPE = 0.5


def return_flow(sample: Sample) -> float:
    """What flows into the return line (mL/min, encoders)."""
    p = sample.pumps
    if p["blood"].measured <= 0:
        return 0.0
    return (
        p["blood"].measured
        - p["plasma"].measured
        + p["replacement"].measured
        + p["return"].measured
    )


@dataclass(slots=True)
class Model:
    """`expected(q) = baseline + slope x (q - q_ref)`; plain data for the checkpoint."""

    q_ref: float
    baseline: float
    slope: float

    def expected(self, q: float) -> float:
        return self.baseline + self.slope * (q - self.q_ref)


class ReturnLine:
    def __init__(self, lim: AlarmLimits) -> None:
        self.lim = lim
        self.model: Model | None = None
        # the connection ramp's least squares: n, sum q, sum p, sum qq, sum qp, q range
        self._ramp = [0.0, 0.0, 0.0, 0.0, 0.0]
        self._q_lo = float("inf")
        self._q_hi = float("-inf")
        #: the readings averaged (one window, one flow): times, pressures, and that flow
        self._recent_t: deque[int] = deque()
        self._recent_p: deque[float] = deque()
        self._recent_q = 0.0
        #: (t, flow into the line) of the last samples: what a loss began with
        self._history: deque[tuple[int, float]] = deque(maxlen=HISTORY)
        self._below_since: int | None = None
        #: the last sample whose pressure was inside the band: where a loss would start
        self.trusted_ms: int | None = None
        #: the blood a lost line is spilling now, counted since `trusted_ms` (mL)
        self._spilling: float | None = None
        self._last_t: int | None = None
        #: episodes of loss: (from ms, to ms, mL), for the summary, journal and report
        self.losses: list[tuple[int, int, float]] = []
        #: a resume is being checked at low flow (the controller says so): judge faster
        self.checking = False

    # -- learning -------------------------------------------------------------------------
    def learn_ramp(self, sample: Sample) -> None:
        """A reading during the connection ramp: the slope from a sweep of flows."""
        if not sample.sensors["return"].valid:
            return
        q, p = return_flow(sample), sample.sensors["return"].value
        if q <= 0:
            return
        r = self._ramp
        r[0] += 1
        r[1] += q
        r[2] += p
        r[3] += q * q
        r[4] += q * p
        self._q_lo, self._q_hi = min(self._q_lo, q), max(self._q_hi, q)
        if self._q_hi - self._q_lo >= RAMP_SPAN:
            n, sq, sp, sqq, sqp = r
            slope = (n * sqp - sq * sp) / (n * sqq - sq * sq)
            self.model = Model(q_ref=q, baseline=p, slope=slope)

    def restore(self, state: dict[str, float] | None) -> None:
        if state:
            self.model = Model(**state)

    def state(self) -> dict[str, float] | None:
        m = self.model
        return None if m is None else {"q_ref": m.q_ref, "baseline": m.baseline, "slope": m.slope}

    # -- judging --------------------------------------------------------------------------
    def judge(self, sample: Sample, flowing: bool) -> tuple[bool, float, float]:
        """(disconnected, averaged pressure, expected pressure) for this sample."""
        t = sample.t_ms
        reading = sample.sensors["return"]
        value = reading.value
        q = return_flow(sample)
        dt_s = (t - self._last_t) / 1000.0 if self._last_t is not None else 0.0
        self._count_loss(sample, q)
        self._history.append((t, q))
        times, pressures = self._recent_t, self._recent_p
        if not flowing or not reading.valid or q <= 0:
            times.clear()
            pressures.clear()
            self._below_since = None
            return False, value, value
        if self.model is None:  # no ramp yet (a resumed run, a test): the first steady level
            self.model = Model(q_ref=q, baseline=value, slope=DEFAULT_SLOPE)
        if times and abs(q - self._recent_q) > max(2.0, 0.03 * q):
            # a new flow: readings at the old one say nothing of this one's level
            times.clear()
            pressures.clear()
            self._below_since = None
        times.append(t)
        pressures.append(value)
        self._recent_q = q
        while times and times[0] <= t - SMOOTH_MS:
            times.popleft()
            pressures.popleft()
        # plain deques of floats, summed in C in the same order as ever: the same figures
        n = len(pressures)
        p = sum(pressures) / n
        n_fast = min(FAST_READINGS, n)
        fast = sum(islice(pressures, n - n_fast, None)) / n_fast
        expected = self.model.expected(q)
        window = self.lim.return_window_mmhg
        if abs(value - expected) < window / 2:
            self.trusted_ms = t
            self._refine(value, q, dt_s)
        if p < expected - window:
            if self._below_since is None:
                self._below_since = t
        else:
            self._below_since = None
        hold = CHECK_HOLD_MS if self.checking else HOLD_MS
        held = self._below_since is not None and t - self._below_since >= hold
        plain = n_fast == FAST_READINGS and fast < expected - 2 * window
        return held or plain, (fast if plain else p), expected

    def _refine(self, p: float, q: float, dt_s: float) -> None:
        """Follow slow, real changes of the line (inside the band only): move the model's
        reference to this flow and nudge its level toward this reading."""
        m = self.model
        assert m is not None
        expected = m.expected(q)
        alpha = min(1.0, max(dt_s, 0.0) / TAU_S)
        m.baseline = expected + alpha * (p - expected)
        m.q_ref = q

    # -- blood lost -------------------------------------------------------------------------
    def lost_line(self, t_ms: int) -> None:
        """A lost line was detected (a disconnection alarm, the firmware's return_low): what
        flowed into it since the last trustworthy sample is lost already (the loss began
        before anyone could know), and what flows until the blood pump stops will be."""
        if self._spilling is not None:
            return
        start = self.trusted_ms if self.trusted_ms is not None else t_ms
        if self.losses:  # never count again what an earlier episode counted
            start = max(start, self.losses[-1][1])
        self._loss_from = start
        spilled = 0.0
        previous: int | None = None
        for t, q in self._history:
            if previous is not None and t > start:
                spilled += q * (t - previous) / 60000.0
            previous = t
        self._spilling = spilled

    def _count_loss(self, sample: Sample, q: float) -> None:
        last, self._last_t = self._last_t, sample.t_ms
        if self._spilling is None or last is None:
            return
        self._spilling += q * (sample.t_ms - last) / 60000.0
        if q <= 0 or sample.safe:
            self.losses.append((self._loss_from, sample.t_ms, round(self._spilling, 1)))
            self._spilling = None

    @property
    def blood_lost_ml(self) -> float:
        done = sum(ml for _a, _b, ml in self.losses)
        return done + (self._spilling or 0.0)
