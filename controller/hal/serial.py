"""SerialHal: a rig behind a serial port (a real MCU, or `alsctl firmware-sim`), on
pyserial-asyncio-fast.

- Commands are serialised (one outstanding), each awaits its answer with a timeout and is
  retried with the same sequence number, so the firmware answers a retry without executing
  it twice (docs/protocol.md). No answer after the retries -> `LinkTimeout`: the command is
  reported failed, never assumed done.
- Link supervision: no frame for `link_lost_ms` -> a LINK_LOST event and `next_sample`
  raises `LinkTimeout`; frames again -> LINK_RESTORED.
- The port closing is survived: it is reopened, HELLO sent again, the firmware's limits
  re-read; it is never re-armed without an explicit `arm()`.
- A firmware on a lockstep clock (INFO says so: `alsctl firmware-sim --clock lockstep`) runs
  only as far as this HAL grants: `next_sample` grants the next sample period when it needs
  a sample, so a controller that stalls stops the rig's clock with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import deque

import serial_asyncio_fast

from controller.config.rig import RigConfig
from controller.errors import CommandRefused, HalError, LinkError, LinkTimeout
from controller.hal.base import FirmwareInfo, FirmwareLimits, Hal, HalEvent, HalEventKind
from controller.protocol import codec as p
from controller.rig import (
    PUMP_NAMES,
    SENSOR_NAMES,
    VALVE_POSITIONS,
    FirmwareState,
    PumpReading,
    Reading,
    SafeReason,
    Sample,
)

ACK_TIMEOUT_S = 0.05
RETRIES = 3
#: Lockstep: a grant whose sample has not come after this long is granted again, one
#: period further (the sample, or the grant, was lost on the line)
GRANT_RETRY_S = 0.1
#: HELLO refused because another session has the firmware armed: asked again this long,
#: in case that controller is dead and its watchdog about to stop the rig (a resume right
#: after a crash); a live one keeps the rig and this HAL gives up with a clear error
SESSION_BUSY_WAIT_S = 5.0
RECONNECT_EVERY_S = 0.1
RECONNECT_MAX_S = 2.0
SAMPLE_QUEUE = 1000
SAFE_REASONS = tuple(SafeReason(r) for r in p.REASONS)
VALVE_NAMES = tuple(VALVE_POSITIONS)


class SessionBusy(LinkError):
    """Another controller's session has the firmware armed (protocol v3 ownership)."""


def sample_from_message(m: p.SampleMsg) -> Sample:
    return Sample(
        t_ms=m.t_ms,
        seq=m.counter,
        pumps={
            n: PumpReading(c, v)
            for n, c, v in zip(PUMP_NAMES, m.commanded, m.measured, strict=True)
        },
        sensors={
            n: Reading(v, ok) for n, v, ok in zip(SENSOR_NAMES, m.sensors, m.valid, strict=True)
        },
        detectors={"air_return": m.air, "blood_leak": m.leak},
        valves={
            "plasma_route": "collect" if m.collect else "waste",
            "venous_clamp": "open" if m.clamp_open else "closed",
        },
        state=FirmwareState.SAFE if m.safe else FirmwareState.RUNNING,
        safe_reason=SAFE_REASONS[m.reason],
        totals_ml=dict(zip(PUMP_NAMES, m.totals, strict=True)),
    )


class _Protocol(asyncio.Protocol):
    def __init__(self, hal: SerialHal) -> None:
        self.hal = hal
        #: done once the transport has really let go of the port
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.hal._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self.hal._lost(self)


class SerialHal(Hal):
    backend = "serial"

    def __init__(
        self,
        rig: RigConfig | None = None,
        *,
        port: str | None = None,
        ack_timeout_s: float = ACK_TIMEOUT_S,
        retries: int = RETRIES,
        reconnect: bool = True,
    ) -> None:
        super().__init__()
        self.rig = rig or RigConfig(backend="serial")
        url = port or self.rig.serial.url
        if not url:
            raise HalError("serial backend needs a port: --port URL or serial.url in the rig file")
        self.url: str = url
        self.ack_timeout_s = ack_timeout_s
        self.retries = retries
        self.reconnect = reconnect
        self.link_lost_s = self.rig.link_lost_ms / 1000.0
        self.decoder = p.Decoder()
        self._session = secrets.randbits(32)
        self._seq = secrets.randbits(16)
        self._lock = asyncio.Lock()
        self._pending: tuple[int, asyncio.Future[p.Frame]] | None = None
        self._samples: deque[Sample] = deque(maxlen=SAMPLE_QUEUE)
        self._sample_ready = asyncio.Event()
        self._transport: asyncio.Transport | None = None
        self._proto: _Protocol | None = None
        self._up = asyncio.Event()
        self._reconnector: asyncio.Task[None] | None = None
        self._link_lost = False
        self._last_rx = 0.0
        self._last_t_ms = 0  # firmware time of the last frame: the time stamp of link events
        #: lockstep (INFO's clock): samples come only as far as granted
        self._lockstep = False
        self._period_ms = self.rig.sample_period_ms
        self._granted_ms = 0
        self._closing = False
        #: the firmware's limits as last read back (after connect, upload and reconnect)
        self.limits_readback: FirmwareLimits | None = None
        #: answers that came too late or to nobody: for the link statistics
        self.unmatched = 0

    # -- transport ----------------------------------------------------------------------
    async def _open_port(self) -> None:
        loop = asyncio.get_running_loop()
        proto = _Protocol(self)
        transport, _ = await serial_asyncio_fast.create_serial_connection(
            loop, lambda: proto, self.url, baudrate=self.rig.serial.baudrate
        )
        serial = getattr(transport, "serial", None)
        if serial is not None and hasattr(serial, "reset_input_buffer"):
            with contextlib.suppress(Exception):
                serial.reset_input_buffer()  # stale bytes from before are not news
        self._transport, self._proto = transport, proto
        self.decoder = p.Decoder()
        self._last_rx = loop.time()
        self._up.set()

    def _lost(self, proto: _Protocol) -> None:
        if proto is not self._proto:
            return
        self._transport = None
        self._proto = None
        self._up.clear()
        if self._pending is not None and not self._pending[1].done():
            self._pending[1].set_exception(LinkError(f"port {self.url} closed"))
        if self.reconnect and not self._closing and self._reconnector is None:
            self._reconnector = asyncio.create_task(self._reconnect(), name="serial-reconnect")

    async def _reconnect(self) -> None:
        """Reopen the port with backoff until it answers HELLO again (a cable put back, a
        firmware process restarted); each new reason is one event, not one per try."""
        delay = RECONNECT_EVERY_S
        told: str | None = None
        try:
            while not self._closing:
                try:
                    await self._open_port()
                    await self._hello()
                    self.limits_readback = await self._get_limits()
                except (OSError, LinkError, ValueError) as exc:
                    self._drop_transport()
                    why = f"reconnecting: {exc}"
                    if why != told:
                        told = why
                        self._events.append(HalEvent(HalEventKind.LINK_LOST, self._last_t_ms, why))
                    await asyncio.sleep(delay)
                    delay = min(2 * delay, RECONNECT_MAX_S)
                    continue
                self._events.append(
                    HalEvent(HalEventKind.LINK_RESTORED, self._last_t_ms, "port reopened")
                )
                return
        finally:
            self._reconnector = None

    def _drop_transport(self) -> None:
        transport, self._transport, self._proto = self._transport, None, None
        self._up.clear()
        if transport is not None:
            transport.close()

    def drop_link(self) -> None:
        """Close the port as an unplugged cable would (tests); the HAL reopens it."""
        if self._transport is not None:
            self._transport.abort()

    # -- receiving ----------------------------------------------------------------------
    def _received(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        self._last_rx = loop.time()
        if self._link_lost:
            self._link_lost = False
            self._events.append(
                HalEvent(HalEventKind.LINK_RESTORED, self._last_t_ms, "frames again")
            )
        for frame in self.decoder.feed(data):
            kind, m = frame.type, frame.message
            # the codec decodes a SAMPLE frame, and only it, to a SampleMsg; EVENT to EventMsg
            if isinstance(m, p.SampleMsg):
                sample = sample_from_message(m)
                self._last_t_ms = sample.t_ms
                self._samples.append(sample)
                self._sample_ready.set()
            elif isinstance(m, p.EventMsg):
                self._last_t_ms = m.t_ms  # after a power-on reset: the clock began again
                code = p.EVENTS[m.code]
                if code == "reset":
                    self._granted_ms = m.t_ms  # grants count on the new clock
                if code != "none":
                    self._events.append(HalEvent(HalEventKind(code), m.t_ms, m.detail))
            elif kind in (p.MsgType.ACK, p.MsgType.NAK, p.MsgType.INFO, p.MsgType.LIMITS):
                pending = self._pending
                if (
                    pending is not None
                    and pending[0] == frame.ack
                    and frame.session == self._session
                    and not pending[1].done()
                ):
                    pending[1].set_result(frame)
                else:
                    self.unmatched += 1

    # -- commands -----------------------------------------------------------------------
    async def _request(self, msg: p.Message, what: str, *, hello_done: bool = True) -> p.Frame:
        """Send `msg`, await its answer, retry with the same seq; NAK -> CommandRefused."""
        async with self._lock:
            for renewed in (False, True):
                frame = await self._exchange(msg, what)
                if isinstance(frame.message, p.Nak):  # a NAK frame
                    code = p.NAKS[frame.message.code]
                    if code == "no_session" and hello_done and not renewed:
                        # after an MCU reset
                        await self._exchange(p.Empty(p.MsgType.HELLO), "hello")
                        continue
                    raise CommandRefused(what, code)
                return frame
        raise LinkError(f"{what}: firmware keeps losing the session")  # pragma: no cover

    async def _exchange(self, msg: p.Message, what: str) -> p.Frame:
        loop = asyncio.get_running_loop()
        self._seq = (self._seq + 1) & 0xFFFF
        seq = self._seq
        frame = p.encode(msg, seq, 0, self._session)
        for _attempt in range(1 + self.retries):
            if self._transport is None:
                raise LinkError(f"{what}: port {self.url} is closed")
            future: asyncio.Future[p.Frame] = loop.create_future()
            self._pending = (seq, future)
            self._transport.write(frame)
            try:
                return await asyncio.wait_for(future, self.ack_timeout_s)
            except TimeoutError:
                continue
            finally:
                self._pending = None
        raise LinkTimeout(f"{what}: no answer after {1 + self.retries} tries")

    async def _hello(self) -> FirmwareInfo:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + SESSION_BUSY_WAIT_S
        while True:
            try:
                return await self._hello_once()
            except SessionBusy:
                if loop.time() >= give_up:
                    raise
            await asyncio.sleep(RECONNECT_EVERY_S)

    async def _hello_once(self) -> FirmwareInfo:
        try:
            frame = await self._request(p.Empty(p.MsgType.HELLO), "hello", hello_done=False)
        except LinkTimeout:
            theirs = self.decoder.foreign_version
            if theirs is None:
                raise
            raise LinkError(
                f"the firmware speaks protocol version {theirs}, this controller speaks"
                f" {p.PROTOCOL_VERSION} (docs/protocol.md): update one of them"
            ) from None
        except CommandRefused as exc:
            if exc.code == "session_busy":
                raise SessionBusy(
                    "the firmware is armed for another controller's session (session_busy):"
                    " stop that controller first; this one waited"
                    f" {SESSION_BUSY_WAIT_S:g} s for its watchdog to stop the rig"
                ) from exc
            raise
        info = frame.message
        if not isinstance(info, p.Info):
            raise LinkError(f"hello answered with {frame.type.name}, not INFO")
        self._lockstep = info.clock == p.CLOCK_LOCKSTEP
        self._period_ms = info.sample_period_ms
        self._last_t_ms = self._granted_ms = info.t_ms
        return FirmwareInfo(
            protocol_version=info.protocol_version,
            firmware_version=info.firmware_version,
            rig_id=info.rig_id,
            tick_ms=info.tick_ms,
            sample_period_ms=info.sample_period_ms,
        )

    # -- Hal hooks ----------------------------------------------------------------------
    async def _connect(self) -> FirmwareInfo:
        self._closing = False
        try:
            await self._open_port()
        except (OSError, ValueError) as exc:
            raise LinkError(f"cannot open {self.url}: {exc}") from exc
        try:
            info = await self._hello()
            # a pty keeps what the firmware wrote before anyone listened, and the line is
            # FIFO: every sample received before the answer to HELLO predates this session
            self._samples.clear()
            self.limits_readback = await self._get_limits()
        except BaseException:
            await self._let_go()
            raise
        return info

    async def _close(self) -> None:
        self._closing = True
        if self._reconnector is not None:
            self._reconnector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnector
        await self._let_go()

    async def _let_go(self) -> None:
        """Close the port and wait until it is closed: pyserial-asyncio closes it in a
        task of its own, which must not outlive this HAL (a failed connect included)."""
        proto = self._proto
        self._drop_transport()
        if proto is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(proto.closed), 1.0)

    def _grant(self, until_ms: int) -> None:
        """Lockstep: let the firmware's clock run to `until_ms` (unanswered, idempotent)."""
        self._granted_ms = until_ms
        if self._transport is not None:
            grant = p.TimeGrant(until_ms & 0xFFFFFFFF)
            self._transport.write(p.encode(grant, self._seq, 0, self._session))

    async def _next_sample(self) -> Sample:
        loop = asyncio.get_running_loop()
        # once the link is lost, each call waits a whole period for a frame: the caller
        # counts these silences, and they must be as long as they say
        since = loop.time() if self._link_lost else self._last_rx
        granted_at = 0.0
        if self._lockstep and not self._samples:
            # the firmware waits for us: the silence is timed from the grant, not from a
            # last frame that came before this controller stalled
            self._grant(self._last_t_ms + self._period_ms)
            since = granted_at = max(since, loop.time())
        while not self._samples:
            self._sample_ready.clear()
            remaining = since + self.link_lost_s - loop.time()
            if self._lockstep:
                remaining = min(remaining, granted_at + GRANT_RETRY_S - loop.time())
            try:
                await asyncio.wait_for(self._sample_ready.wait(), max(remaining, 0.001))
            except TimeoutError:
                if self._lockstep and loop.time() - since < self.link_lost_s:
                    # a grant or its sample lost on the line: one period further
                    self._grant(max(self._granted_ms, self._last_t_ms) + self._period_ms)
                    granted_at = loop.time()
                    continue
                if loop.time() - since >= self.link_lost_s:
                    if not self._link_lost:
                        self._link_lost = True
                        self._events.append(
                            HalEvent(
                                HalEventKind.LINK_LOST,
                                self._last_t_ms,
                                f"no frame for {self.link_lost_s:g} s",
                            )
                        )
                    raise LinkTimeout(
                        f"link lost: no frame for {self.link_lost_s * 1000:.0f} ms"
                    ) from None
        return self._samples.popleft()

    async def _set_pump(self, name: str, rate: float) -> None:
        await self._request(p.SetPump(PUMP_NAMES.index(name), rate), f"set_pump {name}={rate:g}")

    async def _set_valve(self, name: str, position: str) -> None:
        msg = p.SetValve(VALVE_NAMES.index(name), VALVE_POSITIONS[name].index(position))
        await self._request(msg, f"set_valve {name}={position}")

    async def _set_limits(self, limits: FirmwareLimits) -> None:
        msg = p.LimitsMsg(
            limits.return_low_mmhg,
            limits.return_high_mmhg,
            limits.access_low_mmhg,
            int(limits.heartbeat_timeout_ms),
            tuple(limits.pump_max[n] for n in PUMP_NAMES),
        )
        await self._request(msg, "set_limits")

    async def _get_limits(self) -> FirmwareLimits:
        frame = await self._request(p.Empty(p.MsgType.GET_LIMITS), "get_limits")
        m = frame.message
        if not isinstance(m, p.LimitsMsg):
            raise LinkError(f"get_limits answered with {frame.type.name}")
        self.limits_readback = FirmwareLimits(
            return_low_mmhg=m.return_low_mmhg,
            return_high_mmhg=m.return_high_mmhg,
            access_low_mmhg=m.access_low_mmhg,
            heartbeat_timeout_ms=m.heartbeat_timeout_ms,
            pump_max=dict(zip(PUMP_NAMES, m.pump_max, strict=True)),
        )
        return self.limits_readback

    async def _enter_safe(self) -> None:
        await self._request(p.Empty(p.MsgType.ENTER_SAFE), "enter_safe")

    async def _arm(self) -> None:
        await self._request(p.Empty(p.MsgType.ARM), "arm")

    async def _heartbeat(self) -> None:
        """Unacknowledged: a lost heartbeat is covered by the next one (every cycle)."""
        if self._transport is not None:
            self._transport.write(
                p.encode(p.Empty(p.MsgType.HEARTBEAT), self._seq, 0, self._session)
            )

    # -- simulator extension --------------------------------------------------------------
    async def sim_fault(
        self, name: str, params: dict[str, object] | None = None, *, clear: bool = False
    ) -> None:
        """Inject or clear a fault in `alsctl firmware-sim` (a real MCU refuses it)."""
        op = 0 if clear else 1
        await self._request(p.SimFault(op, name, params or {}), f"sim_fault {name}")
