"""Assertions a test of a controller makes most, with messages that say what was found.

Each raises `AssertionError` naming what is wrong and when (rig time), so a failing test
reads as a bench report rather than `assert False`.
"""

from __future__ import annotations

from controller.control.events import View
from controller.rig import SafeReason, Sample
from controller.testing.balance import BalanceWatch
from controller.testing.run import Run


def assert_safe(seen: Sample | View, reason: SafeReason | str | None = None) -> None:
    """The rig is in its safe state at this sample (or view): the firmware says so, every
    pump (heparin included) is commanded to zero and the venous clamp reports closed.
    `reason`: also why (`"air"`, `SafeReason.HEARTBEAT` ...)."""
    sample = seen.sample if isinstance(seen, View) else seen
    wrong = []
    if not sample.safe:
        wrong.append(f"the firmware is {sample.state}")
    running = {n: r.commanded for n, r in sample.pumps.items() if r.commanded != 0.0}
    if running:
        wrong.append("pumps commanded: " + ", ".join(f"{n} {v:g}" for n, v in running.items()))
    clamp = sample.valves.get("venous_clamp")
    if clamp != "closed":
        wrong.append(f"venous clamp {clamp}")
    if reason is not None and sample.safe_reason != SafeReason(reason):
        wrong.append(f"reason {sample.safe_reason}, not {SafeReason(reason)}")
    if wrong:
        raise AssertionError(f"not in the safe state at {sample.t_s:g} s: " + "; ".join(wrong))


def assert_balance_within(seen: Run | BalanceWatch, ml: float) -> None:
    """The patient's fluid balance never left what the prescription allows by then (heparin
    in, the net fluid removal out) by more than `ml`, over every cycle of the run so far.

    On the simulated rig this is the simulator's truth (what the patient really gained,
    blood spilled by a lost line aside: that is `summary.blood_lost_ml`); over a serial link,
    the controller's own account by the encoders."""
    watch = seen.balance if isinstance(seen, Run) else seen
    if watch.worst_t_ms is None:
        raise AssertionError("no cycle of the treatment seen yet: nothing to judge")
    if abs(watch.worst_ml) > ml:
        raise AssertionError(
            f"the patient's balance ({watch.basis}) was {watch.worst_ml:+.1f} mL off what the"
            f" prescription allows at {watch.worst_t_ms / 1000:g} s (limit {ml:g} mL)"
        )
