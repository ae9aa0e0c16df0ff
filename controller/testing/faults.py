"""Faults into a simulated rig, as a scenario file schedules them, from inside a test.

The same model as `config/scenarios/*.yaml` (`FaultEvent`): a fault at a rig time (`at_s`)
or some time into a phase (`phase`, `after_s`), for `duration_s` or until cleared, with the
fault's parameters, validated against the catalogue (docs/schemas/scenario.schema.json).
A test may also inject one now and clear it. What would start in the past is refused rather
than started at once: a test that meant "two minutes into the exchange" and got "now" would
pass for the wrong reason.
"""

from __future__ import annotations

from typing import Any

from controller.config.scenario import FaultEvent, Scenario
from controller.testing import files
from firmware_sim.faults import Faults

#: A fault as a test may give it: the model, its fields (a scenario file's event), a whole
#: scenario, or a shipped scenario's name / a scenario file.
Schedulable = FaultEvent | dict[str, Any] | Scenario | str


class Injector:
    """The faults of one simulated firmware (in-process, or `alsctl firmware-sim`'s behind a
    serial pair). Times are the rig's clock, as its samples show it (`sample.t_s`)."""

    def __init__(self, faults: Faults, *, earlier: frozenset[str] = frozenset()) -> None:
        self._faults = faults
        #: phases a run from a checkpoint went through before it (their start is not here)
        self._earlier = earlier

    @property
    def now_s(self) -> float:
        """The firmware's clock, s."""
        return self._faults.firmware.t_ms / 1000.0

    def schedule(self, *events: Schedulable) -> None:
        """Each event as a scenario file has it: `{"at_s": 1200, "fault": "air_bubble",
        "duration_s": 2}`, `{"phase": "exchange", "after_s": 120, "fault": ...}`, a
        `FaultEvent`, a `Scenario`, or a scenario's name or file (`"air_bubble"`)."""
        for given in events:
            if isinstance(given, str | Scenario):
                self.schedule(*files.scenario(given).events)
                continue
            event = given if isinstance(given, FaultEvent) else FaultEvent.model_validate(given)
            self._refuse_past(event)
            self._faults.schedule(event)

    def inject(self, fault: str, *, duration_s: float | None = None, **params: Any) -> None:
        """Start `fault` now (it acts from the firmware's next tick), for `duration_s` of
        rig time or until `clear`."""
        if duration_s is None:
            self._faults.inject(fault, **params)
            return
        self.schedule(
            FaultEvent(at_s=self.now_s, fault=fault, duration_s=duration_s, params=params)
        )

    def clear(self, fault: str, target: str | None = None) -> None:
        """End `fault` now, on `target` (a pump, bag or sensor) or on every target."""
        self._faults.clear(fault, target)

    @property
    def running(self) -> list[tuple[str, str | None]]:
        """Every fault running now, with its target."""
        return self._faults.running()

    def _refuse_past(self, event: FaultEvent) -> None:
        now_ms = self._faults.firmware.t_ms
        if event.at_s is not None:
            start_ms = event.at_s * 1000
            when = f"at {event.at_s:g} s"
        else:
            assert event.phase is not None
            started = self._faults.phase_start_ms(event.phase)
            if started is None and event.phase in self._earlier:
                raise ValueError(
                    f"{event.fault} {event.after_s:g} s into {event.phase}: this run started"
                    f" from a checkpoint after {event.phase} began; time it from a later phase"
                    " or in rig time"
                )
            if started is None:
                return  # counted from the phase's start, whenever it comes
            start_ms = started + event.after_s * 1000
            when = f"{event.after_s:g} s into {event.phase} (started at {started / 1000:g} s)"
        # the tick the fault would start at is the firmware's next one at the earliest
        if start_ms < now_ms:
            raise ValueError(
                f"{event.fault} {when}: the rig's clock is already at {now_ms / 1000:g} s;"
                " give a later time, or inject it now"
            )
