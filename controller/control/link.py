"""A lost link is an alarm, not the end of the treatment (docs/spec.md 5.2, `link_lost`).

A sample that did not come or a command that got no answer: the firmware stops the pumps by
itself when the heartbeats stop (its watchdog), the backend reconnects with backoff, and the
run waits in `alarm` with `link_lost` raised; once frames come again, the firmware's state is
read from them and the operator (or `--auto-resume`) resumes as after any alarm. Only after
the rig's `link_give_up_s` does the run end, `interrupted` and, on a serial rig, resumable
with `--resume`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from controller.errors import LinkError
from controller.rig import Sample

if TYPE_CHECKING:
    from controller.control.loop import Controller

#: states the loss of the link does not move the machine out of
HELD = frozenset({"alarm", "fault", "done"})


class LinkWatch:
    """Counts the silences in a row; each one is `rig.link_lost_ms` of rig time."""

    def __init__(self, c: Controller) -> None:
        self.c = c
        self.timeouts = 0

    def reset(self) -> None:
        self.timeouts = 0

    def restored(self, sample: Sample) -> None:
        """A sample came: a loss in progress is over, and what the firmware holds after it
        is unknown, so every command is sent again."""
        if self.timeouts:
            self.timeouts = 0
            self.c.safety.link_lost(sample.t_ms, False)
            self.c.actuator.forget()

    async def lost(self, exc: LinkError) -> None:
        c = self.c
        self.timeouts += 1
        c.actuator.forget()  # what the firmware holds is unknown: everything is sent again
        last = c.sample.t_ms if c.sample is not None else 0
        # stamped when it was noticed: the last sample plus the silence that told
        c.safety.link_lost(last + self.timeouts * c.rig.link_lost_ms, True)
        c.log_alarms()
        if c.machine.phase not in HELD:
            await c.machine.alarm(cause=f"link lost: {exc}")
        lost_s = self.timeouts * c.rig.link_lost_ms / 1000
        if lost_s >= c.rig.link_give_up_s:
            c.guard.interrupt(
                f"link lost for {lost_s:g} s (the firmware is safe by its watchdog): {exc}",
                cancel=False,
            )
            c.guard.check()
