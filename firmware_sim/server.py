"""`alsctl firmware-sim`: the simulated firmware in real time, behind a serial-like port.

On a new pseudo-terminal (prints the path to give `alsctl run --port`), on an existing device,
or on a TCP port (`socket://host:port` for the controller). A scenario schedules faults in
rig time. One controller at a time: a new TCP client replaces the old one, as a re-plugged
cable would. Given a `log`, it says what happens, one line each
(firmware_sim/console_log.py).

Two clocks:
- `wall` (the default, a real rig): rig time follows the wall clock x `speed`.
- `lockstep` (tests and benches): rig time advances only as far as the owning controller's
  TIME_GRANT allows (docs/protocol.md), so a controller starved of CPU freezes both clocks
  and nothing trips on scheduling noise. When nothing has come from the owning controller
  for `LOCKSTEP_IDLE_S` of wall time (no controller yet, or a dead one) the clock runs on the
  wall clock x `speed` until it speaks again: a dead controller is still caught by the
  heartbeat watchdog.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import termios
import tty
from collections.abc import Callable
from typing import cast

from controller.config.prescription import Prescription
from controller.config.rig import RigConfig
from controller.config.scenario import Scenario
from controller.protocol import codec as p
from firmware_sim.console_log import ConsoleLog
from firmware_sim.faults import Faults
from firmware_sim.firmware import Firmware
from firmware_sim.link import FirmwareLink
from firmware_sim.physics import physics_for

#: The most rig time the clock advances at once (a quarter of the longest watchdog).
MAX_CATCH_UP_MS = 250
#: Lockstep: nothing from the owning controller for this long (wall time) and the clock runs
#: on the wall clock again. Far beyond any scheduling stall of a live controller (tens of ms
#: on a busy machine).
LOCKSTEP_IDLE_S = 2.0
#: Lockstep: the most rig time one grant lets run (docs/protocol.md, TIME_GRANT).
MAX_GRANT_MS = 1000
CLOCKS = ("wall", "lockstep")


class FirmwareServer:
    def __init__(
        self,
        rig: RigConfig,
        prescription: Prescription | None = None,
        scenario: Scenario | None = None,
        speed: float = 1.0,
        clock: str = "wall",
        log: Callable[[str], None] | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        if clock not in CLOCKS:
            raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
        #: rig time runs this many times faster than the wall clock (1 = a real rig), in
        #: wall-clock mode and while a lockstep clock has no controller granting time
        self.speed = speed
        self.clock = clock
        self.firmware = Firmware(physics_for(rig, prescription), rig)
        self.faults = Faults(self.firmware, scenario)
        self.link = FirmwareLink(self.firmware, self.faults)
        self._heard_at = -math.inf  # loop time of the owner's last frame (lockstep)
        if clock == "lockstep":
            self.link.clock = p.CLOCK_LOCKSTEP
            self.link.on_grant = self._grant
            self.link.on_owner = self._heard
        #: the lines for the bench engineer (`log`), or None: silent
        self.console = ConsoleLog(self.firmware, log) if log is not None else None
        if self.console is not None:
            self.link.observer = self.console.observe
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closers: list[Callable[[], None]] = []

    # -- the clock ----------------------------------------------------------------------
    def _heard(self) -> None:
        self._heard_at = asyncio.get_running_loop().time()

    def _grant(self, until_ms: int) -> None:
        """Lockstep: run to the granted time (on the firmware's clock) at once."""
        fw = self.firmware
        # a grant from a clock that has since restarted (a power-on reset) must not run
        # the rig for minutes in one leap
        fw.run_until(min(until_ms, fw.clock_ms + MAX_GRANT_MS) + fw.boot_ms)

    def _driven(self, now: float) -> bool:
        return self.clock == "lockstep" and now - self._heard_at < LOCKSTEP_IDLE_S

    async def _clock(self) -> None:
        """Rig time = wall time since start (x speed); the firmware catches up every tick.
        In lockstep, only while no controller grants time."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        fw = self.firmware
        # commands are handled as they arrive; the clock only needs to catch up often
        # enough for samples to leave on time, without spinning a core at high speed
        pause = max(fw.tick_ms / 1000.0 / self.speed / 2.0, 0.001)
        while not self._stop.is_set():
            now = loop.time()
            if self._driven(now):
                # a controller drives the clock; the wall clock takes over from here
                start = now - fw.t_ms / 1000.0 / self.speed
                await asyncio.sleep(0.05)
                continue
            due = (now - start) * 1000 * self.speed
            if due - fw.t_ms > MAX_CATCH_UP_MS:
                # this process was not scheduled for a while: a real MCU would not have
                # stopped, and catching up in one leap would run the watchdog past heartbeats
                # already waiting in the input buffer. The lost wall time is not rig time.
                start += (due - fw.t_ms - MAX_CATCH_UP_MS) / 1000 / self.speed
                due = fw.t_ms + MAX_CATCH_UP_MS
            fw.run_until(int(due))
            await asyncio.sleep(pause)

    def start_clock(self) -> None:
        self._tasks.append(asyncio.create_task(self._clock(), name="firmware-clock"))

    async def close(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for close in self._closers:
            close()

    # -- a pseudo-terminal ----------------------------------------------------------------
    def serve_pty(self) -> str:
        """Open a pty, serve on its master side, return the slave path for the controller."""
        master, slave = os.openpty()
        tty.setraw(slave, termios.TCSANOW)  # no echo, no line discipline: bytes are bytes
        os.set_blocking(master, False)
        path = os.ttyname(slave)
        loop = asyncio.get_running_loop()

        def readable() -> None:
            try:
                data = os.read(master, 4096)
            except (BlockingIOError, OSError):
                return
            if self.console is not None:
                self.console.bytes_in(path)
            self.link.receive(data)

        def write(frame: bytes) -> None:
            # a UART with nobody listening loses bytes; it never blocks the firmware
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(master, frame)

        loop.add_reader(master, readable)
        self.link.send = write

        # the slave stays open here too, so the path survives the controller closing it
        def close() -> None:
            loop.remove_reader(master)
            os.close(master)
            os.close(slave)

        self._closers.append(close)
        return path

    # -- TCP ------------------------------------------------------------------------------
    async def serve_tcp(self, host: str, port: int) -> int:
        """Serve on TCP; returns the port (useful with port 0)."""

        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            def write(frame: bytes) -> None:
                if not writer.is_closing():
                    writer.write(frame)

            peer = writer.get_extra_info("peername")
            where = f"TCP {peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "TCP"
            if self.console is not None:
                replaces = self.link.send is not None
                self.console.connected(where + (", replaces the previous one" if replaces else ""))
            self.link.send = write
            try:
                while data := await reader.read(4096):
                    self.link.receive(data)
            except ConnectionError:
                pass
            finally:
                if self.link.send is write:
                    self.link.send = None
                writer.close()
                if self.console is not None:
                    self.console.disconnected(where)

        server = await asyncio.start_server(client, host, port)
        self._closers.append(server.close)
        return int(server.sockets[0].getsockname()[1])

    # -- a serial device ------------------------------------------------------------------
    async def serve_device(self, url: str, baudrate: int) -> None:
        import serial_asyncio_fast

        link = self.link
        console = self.console

        class Proto(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                # a serial connection's transport writes (serial_asyncio_fast.SerialTransport)
                link.send = cast(asyncio.Transport, transport).write

            def data_received(self, data: bytes) -> None:
                if console is not None:
                    console.bytes_in(url)
                link.receive(data)

        transport, _ = await serial_asyncio_fast.create_serial_connection(
            asyncio.get_running_loop(), Proto, url, baudrate=baudrate
        )
        self._closers.append(transport.close)


async def serve(
    rig: RigConfig,
    *,
    prescription: Prescription | None = None,
    scenario: Scenario | None = None,
    pty: bool = True,
    device: str | None = None,
    tcp: str | None = None,
    speed: float = 1.0,
    clock: str = "wall",
    out: Callable[[str], None] = print,
    log: Callable[[str], None] | None = None,
) -> None:
    """Serve until cancelled. `out` gets the port to connect to (first: scripts read it);
    `log` gets a line per thing the firmware sees or does (none without it)."""
    server = FirmwareServer(rig, prescription, scenario, speed, clock, log)
    if tcp is not None:
        host, _, port = tcp.rpartition(":")
        bound = await server.serve_tcp(host or "127.0.0.1", int(port))
        out(f"socket://{host or '127.0.0.1'}:{bound}")
    elif device is not None:
        await server.serve_device(device, rig.serial.baudrate)
        out(device)
    elif pty:
        out(server.serve_pty())
    sys.stdout.flush()
    server.start_clock()
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()
