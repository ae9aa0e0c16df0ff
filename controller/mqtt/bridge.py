"""The MQTT bridge: a running treatment published to a broker, remote commands brought back.

Why it is built this way:

- **The control loop never waits for it.** It is an edge of the loop's event bus: the
  view after every cycle is only kept (the newest) and, at the telemetry rate, appended to
  a bounded deque; an event is set and one task of its own publishes. When that
  deque is full the oldest telemetry is dropped and counted (`Telemetry.dropped`).
- **Alarms and events come from the journal, after commit.** The bridge subscribes to the
  journal's commits and keeps an outbox in journal order; an event leaves the outbox only
  once the broker has acknowledged it (QoS 1). A broker outage therefore loses nothing that
  was journaled: after reconnecting (with backoff) the bridge resubscribes, republishes the
  retained status, state and active alarms, and replays the outbox in order.
- **Nor does a controller that ends or dies during an outage.** How far the broker has
  acknowledged each session's events is kept in the journal (`delivered`, coalesced into
  the writer's next commit, never a write per message). The next start of the same rig puts
  what earlier runs left unacknowledged at the head of its outbox, in journal order, with
  their own `id` and `session` and `replayed: true`; a run without MQTT, or a journal from
  before that table, replays nothing.
- **Retained state is a value, not a stream:** only the newest is ever published.
- **Commands are requests to the controller, never actions of their own.** An allow-listed
  command goes through the loop's request port, queued like an operator's and answered
  with what the controller did; a command the loop has not applied within
  `command_timeout_s` expires unapplied.
- **A command is a live, deliberate message.** A retained one (still on the broker, or
  published with the retain flag), the empty publish that clears one, and a topic deeper
  than `cmd/<name>` are refused and journaled, never obeyed and never dropped unseen.
- **A flood costs the rig a bounded amount.** Commands beyond `commands_per_s` are refused
  and journaled as one count per second; a payload over `MAX_COMMAND_BYTES` is refused
  unread; what answers and the journal repeat of a request is clipped. So no dashboard can
  fill the journal, the operator's screen or the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import ValidationError

from controller.config.mqtt import COMMANDS, MqttSettings
from controller.config.prescription import Prescription
from controller.control.events import EXPIRED, Attachment, Edge, JournalPort, RequestPort, View
from controller.journal import Committed, JournalError
from controller.mqtt.broker import Broker
from controller.mqtt.models import (
    MAX_COMMAND_BYTES,
    MAX_CORRELATION_BYTES,
    ActiveAlarm,
    ActiveAlarms,
    AlarmMessage,
    CommandRequest,
    CommandResult,
    EventMessage,
    OtherEvent,
    PhaseProgress,
    PrescriptionBrief,
    State,
    Telemetry,
    VolumesNow,
    topic,
)
from controller.recorder import trend_row
from controller.rig import Sample

log = logging.getLogger("alsctl.mqtt")

BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 5.0
#: Waiting for the broker's acknowledgement of one publish (aiomqtt's default is 10 s).
PUBLISH_TIMEOUT_S = 5.0
OFFLINE = b"offline"
ONLINE = b"online"
#: What an answer or the journal repeats of a request: a name, a value, the whole result.
CLIP_NAME = 64
CLIP_VALUE = 40
CLIP_RESULT = 400
#: Validation errors listed in an answer; the rest are counted.
MAX_ERRORS = 3
#: Distinct command names counted in one rate-limit event; the rest go under "...".
MAX_COUNTED_NAMES = 8
RATE_WINDOW_S = 1.0
#: The journal's name for what this bridge delivers (`delivered.stream`): alarms and events
#: leave one outbox in journal order, so one acknowledged id covers both topics.
STREAM = "mqtt"
#: Events of earlier runs replayed at one start, at most (the oldest; the rest next start).
REPLAY_MAX = 10_000


class PublishRefused(aiomqtt.MqttError):
    """The broker acknowledged a publish with a failure (MQTT 5 reason code >= 0x80)."""


class _Client(aiomqtt.Client):
    """aiomqtt's client, keeping the reason code of a refused publish, which aiomqtt drops:
    an ACL that denies the rig's topics must not look like a delivered event."""

    refused: str | None = None

    def _on_publish(
        self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        if reason_code is not None and getattr(reason_code, "is_failure", False):
            self.refused = str(reason_code)
        super()._on_publish(client, userdata, mid, reason_code, properties)


@dataclass(slots=True)
class BridgeStats:
    events: int = 0  # alarms and events acknowledged by the broker
    telemetry: int = 0
    dropped: int = 0  # telemetry never published
    connections: int = 0
    refused: int = 0  # commands refused before reaching the controller
    replayed: int = 0  # events of earlier runs, never acknowledged then, put in the outbox


def clip(text: str, limit: int) -> str:
    """At most `limit` characters: a request can be long, what is repeated of it is not."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(exc: ValidationError) -> str:
    """A pydantic error as a dashboard shows it: field, what is wrong, the value given
    (clipped), for the first few errors; a body with hundreds of bad fields is counted."""
    errors = exc.errors()
    shown = [
        f"{clip('.'.join(str(p) for p in e['loc']), CLIP_NAME) or 'body'}: {e['msg']}"
        + (
            f" (got {clip(repr(e['input']), CLIP_VALUE)})"
            if e["type"] != "missing" and e["loc"]
            else ""
        )
        for e in errors[:MAX_ERRORS]
    ]
    if len(errors) > MAX_ERRORS:
        shown.append(f"and {len(errors) - MAX_ERRORS} more")
    return "; ".join(shown)


def brief(rx: Prescription) -> PrescriptionBrief:
    end = rx.purification_end if rx.has_loop else None
    return PrescriptionBrief(
        name=rx.name,
        mode=rx.mode,
        blood_flow_ml_min=rx.blood_flow_ml_min,
        plasma_flow_ml_min=round(rx.plasma_flow, 2),
        exchange_ml=round(rx.exchange_ml, 1) if rx.has_exchange else 0.0,
        loop_flow_ml_min=round(rx.loop_flow, 2),
        purification_min=end.duration_min if end else None,
        processed_plasma_ml=end.processed_plasma_ml if end else None,
    )


class MqttBridge(Edge):
    def __init__(
        self,
        broker: Broker,
        settings: MqttSettings,
        rig_id: str,
        *,
        wall: Callable[[], float] = time.time,
        drain_s: float = 5.0,
    ) -> None:
        self.broker = broker
        #: at the end, how long an absent broker is waited for
        self.drain_s = drain_s
        self.settings = settings
        self.rig_id = rig_id
        self._wall = wall
        self.stats = BridgeStats()
        self.connected = False
        #: the last reason the broker could not be reached, for a console
        self.error: str | None = None
        #: committed events not yet acknowledged by the broker, with the wall time each
        #: was committed (its `stamp`, kept through an outage)
        self.outbox: deque[tuple[Committed, float]] = deque()
        #: ids in the outbox that an earlier run left unacknowledged (`replayed: true`)
        self._replayed: set[int] = set()
        self._telemetry: deque[tuple[float, Sample, str, tuple[float, float, float], Any]] = deque()
        self._period_ms = max(1, round(1000 / settings.telemetry_hz))
        self._next_telemetry_ms = 0
        #: the retained state (and with it the active alarms) should be published again
        self._state_due = True
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()  # cuts a reconnect backoff short at the end
        self._stopping = False
        self._alarms_sent: ActiveAlarms | None = None  # the active list last published
        self._task: asyncio.Task[None] | None = None
        self._commands: set[asyncio.Task[None]] = set()
        self._port: RequestPort | None = None
        #: the loop's newest view (None before its first cycle)
        self._view: View | None = None
        self._journal: JournalPort | None = None
        self._session: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: the patient's solute levels (simulated rig), sampled with the telemetry
        self.solutes: Callable[[], dict[str, float]] | None = None
        #: the command rate limit: a token bucket (`commands_per_s`, bursts of as many)
        self._tokens = max(1.0, settings.commands_per_s)
        self._refilled = time.monotonic()
        #: commands refused over the limit and not yet journaled, by name
        self._excess: Counter[str] = Counter()
        self._excess_timer: asyncio.TimerHandle | None = None

    # -- wiring -----------------------------------------------------------------------
    def attach(self, run: Attachment) -> None:
        """Follow this run's session; called from the running loop, before the run."""
        journal, session = run.journal, run.session
        if journal is None or session is None:
            raise JournalError("MQTT publishes what the journal has committed: give a journal")
        self._port = run.port
        self._journal = journal
        self._session = session
        self.solutes = run.solutes
        self._loop = asyncio.get_running_loop()
        if self.broker.username != self.rig_id:
            log.warning(
                "MQTT user %r is not the rig id %r: the shipped ACL lets a rig publish only"
                " under als/<its user>/, and the broker drops what it denies without a word",
                self.broker.username,
                self.rig_id,
            )
        journal.subscribe(self._committed_elsewhere)
        self._replay(journal, session)  # after subscribing: a commit meanwhile is in one
        # this session is published: what the broker never acknowledged is replayed next start
        journal.delivered(session, STREAM, 0)
        self._task = asyncio.create_task(self.run(), name=f"mqtt {self.rig_id}")

    def _replay(self, journal: JournalPort, session: int) -> None:
        """What earlier runs of this rig published and the broker never acknowledged (they
        ended or died while it was away) goes first, in journal order. `session` is read
        too: a resumed session's events from before the crash."""
        try:
            pending: list[Committed] = journal.undelivered(
                self.rig_id, STREAM, include=session, limit=REPLAY_MAX
            )
        except (JournalError, sqlite3.Error, OSError) as exc:
            log.warning("unacknowledged events of earlier runs not read: %s", exc)
            return
        if not pending:
            return
        now = self._wall()
        self.outbox.extend((e, now) for e in pending)
        self._replayed.update(e.id for e in pending)
        self.stats.replayed = len(pending)
        log.warning(
            "%d events of session(s) %s never acknowledged by a broker: published first%s",
            len(pending),
            ", ".join(str(s) for s in sorted({e.session for e in pending})),
            " (the oldest; more at the next start)" if len(pending) >= REPLAY_MAX else "",
        )

    async def close(self) -> None:
        """Publish what is left (every committed event, the final state), then go offline.

        Waits at most `drain_s` for a broker that is away; whatever is then unpublished is
        still in the journal, and the count is logged."""
        self._journal_excess()  # the last second of a flood is counted too
        if self._journal is not None:
            with contextlib.suppress(Exception):  # a dead journal has nothing more to give
                await asyncio.to_thread(self._journal.flush)
            self._journal.unsubscribe(self._committed_elsewhere)
        await self._cancel_commands()
        self._stopping = True
        self._state_due = True
        self._wake.set()
        self._closing.set()
        if self._task is None:
            return
        try:
            async with asyncio.timeout(self.drain_s):
                await asyncio.shield(self._task)
        except TimeoutError:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            log.warning(
                "broker unreachable at the end: %d events not published (they are journaled,"
                " and the next start of %s publishes them)",
                len(self.outbox),
                self.rig_id,
            )
        # commands that came while the last messages went out: none is left pending
        await self._cancel_commands()
        self._journal_excess()

    async def _cancel_commands(self) -> None:
        for task in list(self._commands):
            task.cancel()
        await asyncio.gather(*self._commands, return_exceptions=True)

    # -- the control loop's side: cheap, never waits ------------------------------------
    def view(self, view: View) -> None:
        self._view = view
        t = view.t_ms
        if t < self._next_telemetry_ms:
            if view.outcome is not None:  # the end: its final state goes out at once
                self._state_due = True
                self._wake.set()
            return
        self._next_telemetry_ms = t - t % self._period_ms + self._period_ms
        if len(self._telemetry) >= self.settings.queue_size:
            self._telemetry.popleft()  # the freshest reading matters most to a dashboard
            self.stats.dropped += 1
        v = view.volumes
        extra = self.solutes() if self.solutes is not None else None
        self._telemetry.append(
            (
                self._wall(),
                view.sample,
                view.phase,
                (v.exchanged_ml, v.processed_ml, v.fluid_balance_ml),
                extra,
            )
        )
        self._state_due = True
        self._wake.set()

    def _committed_elsewhere(self, events: list[Committed]) -> None:
        """The journal's writer thread: hand the events to the loop, in order."""
        if self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: the run is over
            self._loop.call_soon_threadsafe(self._committed, events)

    def _committed(self, events: list[Committed]) -> None:
        # a resumed session's commits made while its backlog was read are in the outbox
        mine = [e for e in events if e.session == self._session and e.id not in self._replayed]
        if not mine:
            return
        now = self._wall()
        self.outbox.extend((e, now) for e in mine)
        self._state_due = True
        self._wake.set()

    # -- the connection -----------------------------------------------------------------
    def _client(self) -> _Client:
        b = self.broker
        return _Client(
            b.host,
            b.port,
            username=b.username,
            password=b.password,
            # one per process: a second controller never takes over this one's session
            identifier=f"alsctl-{self.rig_id}-{os.getpid()}",
            protocol=aiomqtt.ProtocolVersion.V5,
            will=aiomqtt.Will(topic(self.rig_id, "status"), OFFLINE, qos=1, retain=True),
            keepalive=self.settings.keepalive_s,
            timeout=PUBLISH_TIMEOUT_S,
            tls_context=b.tls,
            # telemetry is many small messages: Nagle would hold each behind the last ACK
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )

    async def run(self) -> None:
        """Connect, publish, obey; on any loss reconnect with backoff until closed."""
        backoff = BACKOFF_MIN_S
        while True:
            try:
                async with self._client() as client:
                    self.connected = True
                    self.stats.connections += 1
                    backoff = BACKOFF_MIN_S
                    if self.error is not None:
                        log.warning("connected again to %s", self.broker.where)
                        self.error = None
                    await self._online(client)
                    async with asyncio.TaskGroup() as group:
                        listener = group.create_task(self._listen(client))
                        await self._publish_loop(client)
                        listener.cancel()
                    await client.publish(topic(self.rig_id, "status"), OFFLINE, 1, True)
                return
            except* aiomqtt.MqttError as lost:
                self._lost(str(lost.exceptions[0]))
            except* Exception as bug:  # a bug here must not end publishing for the run
                log.error("MQTT bridge failed, reconnecting", exc_info=bug.exceptions[0])
                self._lost(repr(bug.exceptions[0]))
            finally:
                self.connected = False
            # closing cuts a long backoff short; from then on a try every 0.2 s. Never
            # `wait_for` here: in Python 3.11 it can swallow the cancellation that ends us
            if self._stopping:
                await asyncio.sleep(BACKOFF_MIN_S)
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff):
                        await self._closing.wait()
                backoff = min(2 * backoff, BACKOFF_MAX_S)

    def _lost(self, why: str) -> None:
        if self.error is None:
            log.warning("broker %s: %s; retrying (events are kept)", self.broker.where, why)
        self.error = why

    async def _online(self, client: aiomqtt.Client) -> None:
        await client.publish(topic(self.rig_id, "status"), ONLINE, qos=1, retain=True)
        # retain handling 2: a retained command (a mistake of some dashboard) is never
        # delivered on subscribing, so no reconnect can apply a stale command again.
        # Retain-as-published: MQTT 5 clears the flag on live delivery otherwise, and a
        # command published retained while the rig is connected would look like any other.
        # `#`, not `+`: a deeper topic is answered and journaled, not silently unseen.
        options = SubscribeOptions(
            qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND, retainAsPublished=True
        )
        await client.subscribe(topic(self.rig_id, "cmd", "#"), options=options)
        self._state_due = True  # the retained values, afresh
        self._alarms_sent = None

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        while True:
            self._wake.clear()
            await self._publish_pending(client)
            if self._pending():
                continue  # arrived while publishing
            if self._stopping:
                return
            await self._wake.wait()

    def _pending(self) -> bool:
        return bool(self.outbox or self._telemetry or self._state_due)

    async def _publish_pending(self, client: aiomqtt.Client) -> None:
        """Events first, in journal order; then the retained values; then telemetry."""
        acknowledged: dict[int, int] = {}  # session: its newest event the broker has
        try:
            while self.outbox:
                event, stamp = self.outbox[0]
                name, payload = self._event_payload(event, stamp)
                await client.publish(topic(self.rig_id, name), payload, qos=1)
                if isinstance(client, _Client) and client.refused is not None:
                    # kept, and tried again after a backoff: the ACL or the user must change
                    raise PublishRefused(
                        f"the broker refused {topic(self.rig_id, name)} ({client.refused}):"
                        f" check the ACL and the MQTT user ({self.broker.username})"
                    )
                self.outbox.popleft()  # acknowledged by the broker: only now
                self.stats.events += 1
                acknowledged[event.session] = event.id
        finally:
            self._delivered(acknowledged)
        if self._state_due:
            self._state_due = False
            # the active list is built with the state, which carries it too, and published
            # when it changed: also without an event (an audio pause running out)
            active = self._active_alarms()
            sent = self._alarms_sent
            if sent is None or (sent.audio_paused, sent.alarms) != (
                active.audio_paused,
                active.alarms,
            ):
                await client.publish(
                    topic(self.rig_id, "alarms", "active"), active.model_dump_json(), 1, True
                )
                self._alarms_sent = active
            state = self._state(active.alarms)
            if state is not None:
                await client.publish(topic(self.rig_id, "state"), state.model_dump_json(), 1, True)
        while self._telemetry and not self.outbox:
            item = self._telemetry.popleft()
            try:
                await client.publish(topic(self.rig_id, "telemetry"), self._telemetry_payload(item))
            except BaseException:
                self.stats.dropped += 1
                raise
            self.stats.telemetry += 1

    def _delivered(self, acknowledged: dict[int, int]) -> None:
        """Into the journal, once per batch: the outbox is in journal order, so each id says
        that every earlier event of its session was acknowledged too."""
        if self._journal is None:
            return
        for session, last_id in acknowledged.items():
            try:
                self._journal.delivered(session, STREAM, last_id)
            except JournalError as exc:  # closed: the next start publishes them again
                log.warning("acknowledgement of session %d up to %d not journaled: %s",
                            session, last_id, exc)  # fmt: skip

    # -- payloads -----------------------------------------------------------------------
    def _event_payload(self, e: Committed, stamp: float) -> tuple[str, str]:
        """The message of one journaled event. One that does not fit its schema is logged
        and published all the same, as it was journaled: it must never block the outbox."""
        replayed = e.id in self._replayed
        if e.kind == "alarm":
            try:
                body = {k: v for k, v in e.body.items() if k != "t_ms"}  # the event's own
                msg = AlarmMessage(
                    id=e.id, session=e.session, t_ms=e.t_ms, stamp=stamp, replayed=replayed, **body
                )
                return "alarms", msg.model_dump_json()
            except (ValidationError, TypeError) as exc:
                log.error("alarm event %d does not fit AlarmMessage: %s", e.id, exc)
        head = {
            "id": e.id,
            "session": e.session,
            "t_ms": e.t_ms,
            "stamp": stamp,
            "replayed": replayed,
        }
        try:
            event = EventMessage.model_validate({**head, "kind": e.kind, "body": e.body})
            return "events", event.model_dump_json()
        except ValidationError as exc:
            log.error("%s event %d does not fit its schema (published as it is): %s",
                      e.kind, e.id, one_line(exc))  # fmt: skip
        other = OtherEvent.model_construct(
            id=e.id,
            session=e.session,
            t_ms=e.t_ms,
            stamp=stamp,
            replayed=replayed,
            kind=e.kind,
            body=e.body,
        )
        return "events", other.model_dump_json()

    def _telemetry_payload(
        self, item: tuple[float, Sample, str, tuple[float, float, float], Any]
    ) -> str:
        stamp, sample, phase, vols, extra = item
        row = trend_row(sample, phase, vols, extra or {})
        return Telemetry(
            rig_id=self.rig_id,
            session=self._session,
            t_ms=sample.t_ms,
            dropped=self.stats.dropped,
            stamp=stamp,
            **row,
        ).model_dump_json()

    def _active_alarms(self) -> ActiveAlarms:
        view = self._view
        alarms = [
            ActiveAlarm(
                alarm=a.id,
                priority=a.priority,  # type: ignore[arg-type]  # the Priority values
                raised_ms=a.raised_ms,
                latched=a.latched,
                acknowledged=a.acknowledged,
                present=a.present,
                detail=a.detail,
            )
            for a in (view.alarms if view is not None else ())
        ]
        t = self._t_ms()
        paused = view is not None and view.audio_paused_until_ms > t
        return ActiveAlarms(
            rig_id=self.rig_id,
            session=self._session,
            t_ms=t,
            audio_paused=paused,
            alarms=alarms,
            stamp=self._wall(),
        )

    def _t_ms(self) -> int:
        return self._view.t_ms if self._view is not None else 0

    def _state(self, alarms: list[ActiveAlarm]) -> State | None:
        """The retained state, from the loop's newest view (None before its first cycle)."""
        view = self._view
        if view is None:
            return None
        s, v = view.sample, view.volumes
        return State(
            rig_id=self.rig_id,
            session=self._session,
            t_ms=view.t_ms,
            phase=view.phase,
            interrupted=view.interrupted,
            firmware="safe" if s.safe else "running",
            safe_reason=str(s.safe_reason),
            prescription=brief(view.prescription),
            volumes=VolumesNow(
                exchanged_ml=round(v.exchanged_ml, 1),
                collected_ml=round(v.collected_ml, 1),
                processed_ml=round(v.processed_ml, 1),
                filtrate_ml=round(v.pumped_ml["filtrate"], 1),
                substitution_ml=round(v.pumped_ml["substitution"], 1),
                heparin_ml=round(v.pumped_ml["heparin"], 2),
                fluid_balance_ml=round(v.fluid_balance_ml, 1),
            ),
            progress=PhaseProgress(
                what=view.target.what,
                done=round(view.target.done, 1),
                target=round(view.target.target, 1),
                unit=view.target.unit,
            ),
            alarms=alarms,
            allowed=self._allowed(view),
            commands=list(self.settings.commands),
            outcome=view.outcome.value if view.outcome is not None else None,
            outcome_detail=view.outcome_detail,
            stamp=self._wall(),
        )

    def _allowed(self, view: View) -> list[str]:
        """The commands of the allow-list that the rig would carry out now, by their API
        names: a dashboard greys out the rest (the loop says which requests it would)."""
        return [n for n in self.settings.commands if COMMANDS[n] in view.allowed]

    # -- commands -----------------------------------------------------------------------
    async def _listen(self, client: aiomqtt.Client) -> None:
        """Also how a lost connection is noticed: the iterator raises MqttError.

        The rate limit is judged here, before any work: the excess is answered (QoS 0, so
        a flood cannot hold up the events behind its answers) and counted, not journaled
        one by one."""
        async for message in client.messages:
            if self._take_token():
                work = self._command(client, message)
            else:
                work = self._over_rate(client, message)
            task = asyncio.create_task(work)
            self._commands.add(task)
            task.add_done_callback(self._commands.discard)

    def _take_token(self) -> bool:
        rate = self.settings.commands_per_s
        now = time.monotonic()
        self._tokens = min(max(1.0, rate), self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def _command_name(self, message: aiomqtt.Message) -> str:
        """What follows `als/<rig>/cmd/`: a name, or a deeper path (refused)."""
        prefix = topic(self.rig_id, "cmd")
        return message.topic.value[len(prefix) + 1 :]

    async def _over_rate(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        name = self._command_name(message)
        self.stats.refused += 1
        self._excess[clip(name, CLIP_NAME)] += 1
        if self._excess_timer is None and self._loop is not None:
            self._excess_timer = self._loop.call_later(RATE_WINDOW_S, self._journal_excess)
        why = f"refused: over the rate limit of {self.settings.commands_per_s:g} commands per s"
        correlation = _correlation(message)
        if correlation is not None and len(correlation) > MAX_CORRELATION_BYTES:
            correlation = None
        await self._answer(client, message, name, None, why, correlation, qos=0)

    def _journal_excess(self) -> None:
        """One event for a second of excess: how many, and of which names (a few)."""
        if self._excess_timer is not None:
            self._excess_timer.cancel()
            self._excess_timer = None
        if not self._excess:
            return
        count = sum(self._excess.values())
        names = dict(self._excess.most_common(MAX_COUNTED_NAMES))
        if len(self._excess) > MAX_COUNTED_NAMES:
            names["..."] = count - sum(names.values())
        self._excess.clear()
        rate = self.settings.commands_per_s
        body = {
            "command": "*",
            "result": f"refused: over the rate limit of {rate:g} commands per s",
            "count": count,
            "commands": names,
        }
        if self._journal is None or self._session is None:
            return
        try:
            self._journal.event(self._session, self._t_ms(), "command", body)
        except JournalError as exc:  # the run has ended: say so where someone may look
            log.warning("%d commands refused over the rate limit not journaled: %s", count, exc)

    async def _command(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        """Judge one command, in this order: its topic, its size, empty, retained, its body,
        then the allow-list and the controller. Every refusal is journaled and answered."""
        name = self._command_name(message)
        raw = message.payload if isinstance(message.payload, bytes | str) else b""
        size = len(raw.encode() if isinstance(raw, str) else raw)
        request: CommandRequest | None = None
        invalid: str | None = None
        if 0 < size <= MAX_COMMAND_BYTES:
            try:
                request = CommandRequest.model_validate_json(raw)
            except ValidationError as exc:
                invalid = f"invalid request: {one_line(exc)}"
        correlation = _correlation(message)
        if "/" in name or not name:
            why = f"a command is published on {topic(self.rig_id, 'cmd', '<name>')}, one level"
            result = self._refuse(name, request, why)
        elif size > MAX_COMMAND_BYTES:
            why = f"the payload is {size} bytes, over the limit of {MAX_COMMAND_BYTES}"
            result = self._refuse(name, None, why)
        elif size == 0:
            why = "an empty payload clears a retained message and is never a command ({} is)"
            result = self._refuse(name, None, why)
        elif message.retain:  # as published: our subscription asks for the flag as sent
            result = self._refuse(name, request, "a retained command is never obeyed")
        elif request is None:
            result = self._refuse(name, None, invalid or "invalid request")
        elif correlation is not None and len(correlation) > MAX_CORRELATION_BYTES:
            why = f"correlation data over {MAX_CORRELATION_BYTES} bytes"
            result = self._refuse(name, request, why)
            correlation = None
        else:
            result = await self._decide(name, request)
        await self._answer(client, message, name, request, result, correlation)

    async def _answer(
        self,
        client: aiomqtt.Client,
        message: aiomqtt.Message,
        name: str,
        request: CommandRequest | None,
        result: str,
        correlation: bytes | None,
        *,
        qos: int = 1,
    ) -> None:
        """On the request's response topic if it lies in this rig's reply tree, else on
        `reply/<name>`; with its correlation data (MQTT 5) or `correlation` (3.1.1)."""
        props = message.properties
        response = getattr(props, "ResponseTopic", None) if props is not None else None
        reply = response or (request.reply_to if request else None)
        mine = topic(self.rig_id, "reply", "")
        if not reply or not reply.startswith(mine) or "+" in reply or "#" in reply:
            reply = topic(self.rig_id, "reply", name)  # the only place this rig may write
        answer = CommandResult(
            rig_id=self.rig_id,
            session=self._session,
            command=clip(name, CLIP_NAME),
            accepted=result == "done",
            result=clip(result, CLIP_RESULT),
            correlation=request.correlation if request else None,
            t_ms=self._t_ms(),
            stamp=self._wall(),
        )
        properties = None
        if correlation is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho-mqtt leaves it unannotated
            properties.CorrelationData = correlation
        try:
            await client.publish(reply, answer.model_dump_json(), qos, False, properties)
        except (aiomqtt.MqttError, ValueError) as exc:  # the result is journaled all the same
            log.warning("answer to %s lost: %s", clip(name, CLIP_NAME), exc)

    async def _decide(self, name: str, request: CommandRequest) -> str:
        """The controller's answer, or why the bridge refused before asking it."""
        port = self._port
        assert port is not None  # attached before anything is listened to
        allowed = self.settings.commands
        if name not in COMMANDS:
            return self._refuse(name, request, f"unknown command; known: {', '.join(COMMANDS)}")
        if name not in allowed:
            return self._refuse(
                name,
                request,
                f"{name} is not in this rig's allow-list (mqtt.commands: {', '.join(allowed)})",
            )
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        cause = f"mqtt {request.by}" + (f": {request.reason}" if request.reason else "")
        queued = port.request(COMMANDS[name], cause, answer, value=request.blood_flow_ml_min)
        timeout = self.settings.command_timeout_s
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(answer)
        except TimeoutError:
            if queued.taken:  # being applied (an arm over a slow line): its real result
                return await answer
            answer.cancel()  # the loop will skip it, and journal that it expired
            return f"{EXPIRED} (not applied within {timeout:g} s)"
        except asyncio.CancelledError:
            if not queued.taken:
                answer.cancel()  # closing: the run is over, it will never be applied
            raise

    def _refuse(self, name: str, request: CommandRequest | None, why: str) -> str:
        """Journaled like any operator action: every command and its result is an event,
        with what it repeats of the request clipped."""
        self.stats.refused += 1
        result = clip(f"refused: {why}", CLIP_RESULT)
        if self._journal is not None and self._session is not None:
            body: dict[str, Any] = {"command": clip(name, CLIP_NAME), "result": result}
            if request is not None:
                body |= {"by": request.by, "reason": request.reason}
            self._journal.event(self._session, self._t_ms(), "command", body)
        return result


def _correlation(message: aiomqtt.Message) -> bytes | None:
    """The request's MQTT 5 Correlation Data: bytes on the wire, echoed as they came."""
    props = message.properties
    data = getattr(props, "CorrelationData", None) if props is not None else None
    return bytes(data) if data is not None else None
