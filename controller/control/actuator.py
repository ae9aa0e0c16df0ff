"""The only part of the loop that moves the rig: setpoints become commands, in a safe order,
and only what changed since the firmware last acknowledged it.

What was sent is remembered; whenever the firmware may hold something else (it went safe, it
was armed again, the link came back) the memory is forgotten and everything is sent again.
"""

from __future__ import annotations

from controller.fsm.phases import Setpoints
from controller.hal.base import FirmwareLimits, Hal


class Actuator:
    def __init__(self, hal: Hal) -> None:
        self.hal = hal
        #: each pump's rate and valve's position as last acknowledged
        self.sent: dict[str, float | str] = {}
        #: the valves' part of `sent` (what the valve-position check compares with)
        self.valves: dict[str, str] = {}
        #: the pumps' part of `sent`: a cycle whose setpoints equal these (and `valves`)
        #: has nothing to send, told by two dict comparisons
        self.pumps: dict[str, float] = {}

    def forget(self) -> None:
        """The firmware's setpoints are unknown (or all zero): send everything again."""
        self.sent.clear()
        self.valves.clear()
        self.pumps.clear()

    async def set_valve(self, name: str, position: str) -> None:
        await self.hal.set_valve(name, position)
        self.sent[name] = position
        self.valves[name] = position

    async def set_pump(self, name: str, rate: float) -> None:
        await self.hal.set_pump(name, rate)
        self.sent[name] = rate
        self.pumps[name] = rate

    def holds(self, sp: Setpoints) -> bool:
        """The firmware holds `sp` already, as acknowledged: nothing to send (most cycles)."""
        return sp.pumps == self.pumps and sp.valves == self.valves

    async def command(self, sp: Setpoints) -> None:
        """Send what differs from what was last acknowledged, in a safe order.

        Commands reach the firmware one by one and it checks its limits between them, so
        the order matters: the clamp opens before any pump speeds up, pumps slow down
        before any speeds up, and the clamp closes only after the pumps have stopped
        (a blood pump against a closed clamp trips the return-pressure limit).
        """
        if self.holds(sp):
            return
        sent = self.sent
        closing = sp.valves.get("venous_clamp") == "closed" and sent.get("venous_clamp") != "closed"
        for name, position in sp.valves.items():
            if sent.get(name) != position and not (closing and name == "venous_clamp"):
                await self.set_valve(name, position)
        changes = [(n, r) for n, r in sp.pumps.items() if sent.get(n) != r]
        if changes:

            def order(change: tuple[str, float]) -> tuple[bool, bool]:
                name, rate = change
                rising = rate > float(sent.get(name, 0.0))
                # slowing: blood last, so plasma never exceeds its share; rising: blood first
                return (rising, (name == "blood") != rising)

            for name, rate in sorted(changes, key=order):
                await self.set_pump(name, rate)
        if closing:
            await self.set_valve("venous_clamp", "closed")

    async def stop_all(self, clamp: str = "closed") -> None:
        await self.command(Setpoints.stopped(clamp=clamp))

    async def arm(self, limits: FirmwareLimits, *, after_reset: bool) -> None:
        """Arm the firmware (leave its safe state); a reset forgot the limits, which are
        uploaded again first. Raises `CommandRefused` when the firmware will not."""
        if after_reset:
            await self.hal.upload_limits(limits)
        await self.hal.arm()
        self.forget()

    async def enter_safe(self) -> None:
        await self.hal.enter_safe()
        self.forget()
