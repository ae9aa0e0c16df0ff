"""Continue a session the journal kept after its controller died (`alsctl run --resume`).

The firmware went safe when the heartbeats stopped. Nothing moves until a person has seen the
firmware's state and confirmed; then the limits are uploaded and read back, the firmware is
armed explicitly, and the interrupted phase goes on from the journaled volumes plus what the
encoders counted while the controller was away.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from controller.control import checkpoint as cps
from controller.control.checkpoint import Checkpoint
from controller.control.events import Occurred
from controller.control.steps import VALVE_SETTLE_S, load_limits, protocol_mismatch
from controller.errors import AlsError
from controller.fsm.machine import TransitionRecord
from controller.rig import SafeReason

if TYPE_CHECKING:
    from controller.control.loop import Controller


class ResumeDeclined(AlsError):
    """The operator did not confirm a resume: nothing was armed, the rig stays safe."""

    exit_code = 1


class ResumeFailed(AlsError):
    """A resume refused before anything was restored: the session is left as it was."""

    exit_code = 1


async def resume(
    c: Controller,
    cp: Checkpoint,
    history: list[TransitionRecord],
    confirm: Callable[[str], Awaitable[bool]],
) -> None:
    mismatch = protocol_mismatch(c.hal)
    if mismatch is not None:
        raise ResumeFailed(mismatch)
    rig_id = c.hal.info.rig_id
    if rig_id != c.rig.rig_id:
        raise ResumeFailed(f"this is rig {rig_id!r}, the session ran on {c.rig.rig_id!r}")
    # the session's clock goes on from where it was (a restart is caught below)
    c.t0_ms = cp.t0_ms
    # read before any heartbeat: a firmware still running must not be kept running
    sample = c.rebased(await c.hal.next_sample())
    if not sample.safe:
        raise ResumeFailed(
            "the firmware is running, so a controller may still be driving it;"
            " nothing was commanded"
        )
    moved = cps.moved_since(cp, sample)
    if moved is None or sample.safe_reason is SafeReason.BOOT:
        raise ResumeFailed(
            "the firmware restarted since the checkpoint (its clock and encoder totals"
            " began again): what moved meanwhile is unknown; rinse back and end by hand"
        )
    await load_limits(c.hal, c.limits)
    seen = f"{sample.state} ({sample.safe_reason})"
    question = (
        f"firmware {seen}; resume {cp.phase} at exchanged {cp.exchanged_ml:.0f} mL,"
        f" processed {cp.pumped_ml['loop']:.0f} mL?"
    )
    if not await _while_asking(c, confirm(question)):
        raise ResumeDeclined(f"resume of {cp.phase} declined; the rig stays safe")
    if cp.phase != "alarm":
        # an explicit arm, after the confirmation; in `alarm` the rig stays safe and the
        # operator's acknowledge and resume arm it, as in an uninterrupted run
        await c.arm_for("resume")
        sample = await c.step()
        end = sample.t_ms + int(VALVE_SETTLE_S * 1000)
        while sample.safe and sample.t_ms < end:  # in flight before the arm
            sample = await c.step()
        if sample.safe:
            raise ResumeFailed(f"firmware stays safe after arming ({sample.safe_reason})")
    cps.restore(c, cp, history, moved)
    c.resuming = False
    c.publish_checkpoint()  # the session is this run's from here
    c.emit(
        Occurred(
            c.sample.t_ms if c.sample else 0,
            "resumed",
            {"phase": cp.phase, "firmware_was": seen, "moved_while_away_ml": moved},
        )
    )
    await c.treat()
    await c.actuator.stop_all()


async def _while_asking(c: Controller, answer: Awaitable[bool]) -> bool:
    """Keep reading samples (and the link alive) while a person thinks."""
    task = asyncio.ensure_future(answer)
    try:
        while not task.done():
            await c.step()
    finally:
        if not task.done():
            task.cancel()
    return task.result()
