"""Reading the journal: the session list (with who runs what now), one session whole, and
the events a publisher's receiver never acknowledged (`undelivered`).

Readers never write, except to bring a file written by an older alsctl to the newest schema
first (forward only, as any writer would).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.journal.schema import SCHEMA_VERSION, JournalError, connect, migrate

#: A session whose writer stamped it longer ago than this (or whose process is gone) has
#: nobody running it (the writer stamps every HEARTBEAT_S).
STALE_S = 10.0
HOST = socket.gethostname()


@dataclass(frozen=True, slots=True)
class Committed:
    """An event as subscribers see it: on disk (or, while the journal is unavailable, in the
    fallback file), with the number it has or will have in the journal."""

    id: int
    session: int
    t_ms: int
    kind: str
    body: dict[str, Any]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # somebody else's process, alive
    return True


@dataclass(frozen=True, slots=True)
class SessionRow:
    id: int
    started_utc: str
    rig_id: str
    backend: str
    prescription: str
    mode: str
    state: str
    rig_time_ms: int
    completed: bool
    ended_utc: str | None
    outcome: str | None = None
    detail: str | None = None
    pid: int | None = None
    host: str | None = None
    heartbeat_utc: str | None = None

    def running(self, now: datetime | None = None) -> bool:
        """A process is writing this session now: its heartbeat is fresh and, on this
        host, its process is alive (a killed controller stops both)."""
        if self.ended_utc is not None or self.outcome is not None or not self.heartbeat_utc:
            return False
        age = (
            (now or datetime.now(UTC)) - datetime.fromisoformat(self.heartbeat_utc)
        ).total_seconds()
        if age > STALE_S:
            return False
        return self.host != HOST or self.pid is None or pid_alive(self.pid)

    def status(self, now: datetime | None = None) -> str:
        """The outcome once ended; `running` while a process writes it; else `interrupted`."""
        if self.ended_utc is not None:
            return self.outcome or ("completed" if self.completed else self.state)
        return "running" if self.running(now) else "interrupted"


_ROW_COLUMNS = (
    "id, started_utc, rig_id, backend, prescription, mode, state, rig_time_ms, completed,"
    " ended_utc, outcome, detail, pid, host, heartbeat_utc"
)


def _row(r: Sequence[Any]) -> SessionRow:
    values = list(r)
    values[8] = bool(values[8])  # `completed`: SQLite keeps 0 or 1
    return SessionRow(*values)


@dataclass(slots=True)
class SessionRecord:
    """Everything the journal holds about one session, for a report or a resume."""

    row: SessionRow
    snapshots: dict[str, Any]
    events: list[Committed]
    checkpoint: dict[str, Any] | None
    trends: list[tuple[int, bool, dict[str, Any]]]


def _readable(path: Path | str) -> sqlite3.Connection:
    """A read-only connection to a journal at the newest schema: a file written by an older
    alsctl is migrated first (forward only, as any writer would), and records a run kept
    aside while the file could not be written are merged in first (`fallback.py`)."""
    from controller.journal import fallback
    from controller.journal.writer import Journal

    if any(p.is_file() for p in fallback.candidates(Path(path))):
        Journal(path).close()  # opening a writer merges them
    conn = connect(path, readonly=True)
    if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
        conn.close()
        writer = connect(path)
        try:
            migrate(writer)
        finally:
            writer.close()
        conn = connect(path, readonly=True)
    return conn


def sessions(path: Path | str) -> list[SessionRow]:
    conn = _readable(path)
    try:
        rows = conn.execute(f"SELECT {_ROW_COLUMNS} FROM session ORDER BY id").fetchall()
    finally:
        conn.close()
    return [_row(r) for r in rows]


def load(path: Path | str, session: int, *, trends: bool = True) -> SessionRecord:
    conn = _readable(path)
    try:
        row = conn.execute(
            f"SELECT {_ROW_COLUMNS} FROM session WHERE id = ?", (session,)
        ).fetchone()
        if row is None:
            known = [r[0] for r in conn.execute("SELECT id FROM session ORDER BY id")]
            raise JournalError(f"no session {session} in {path} (sessions: {known or 'none'})")
        snaps = {
            kind: json.loads(body)
            for kind, body in conn.execute(
                "SELECT kind, body FROM snapshot WHERE session = ?", (session,)
            )
        }
        events = [
            Committed(i, session, t, k, json.loads(b))
            for i, t, k, b in conn.execute(
                "SELECT id, t_ms, kind, body FROM event WHERE session = ? ORDER BY id", (session,)
            )
        ]
        cp = conn.execute("SELECT body FROM checkpoint WHERE session = ?", (session,)).fetchone()
        chunks = (
            conn.execute(
                "SELECT full_rate, rows FROM trend WHERE session = ? ORDER BY first_ms",
                (session,),
            ).fetchall()
            if trends
            else []
        )
    finally:
        conn.close()
    return SessionRecord(
        row=_row(row),
        snapshots=snaps,
        events=events,
        checkpoint=json.loads(cp[0]) if cp else None,
        trends=sorted(
            ((t, bool(full), body) for full, rows in chunks for t, body in json.loads(rows)),
            key=lambda r: (r[0], r[1]),
        ),
    )


def undelivered(
    path: Path | str, rig_id: str, stream: str, *, include: int | None = None, limit: int = 10_000
) -> list[Committed]:
    """The events that runs of `rig_id` published to `stream` and whose receiver never
    acknowledged them (the controller ended, or died, while the broker was away): of every
    session with a `delivered` row for `stream`, its events after that row's `last_id`;
    all of them in journal order, at most `limit` (the oldest; the rest come next time).

    Only sessions that were published to `stream` count: a run without it, or a file
    written before schema 3, has no row, so a first start never replays a whole history.
    A session another live process is writing is its publisher's, and left to it;
    `include` (the session this process resumes) is taken whatever its heartbeat says."""
    columns = ", ".join(f"s.{c.strip()}" for c in _ROW_COLUMNS.split(","))
    conn = connect(path, readonly=True)
    try:
        found = conn.execute(
            f"SELECT {columns}, d.last_id FROM session s JOIN delivered d ON d.session = s.id"
            " WHERE s.rig_id = ? AND d.stream = ? AND EXISTS"
            " (SELECT 1 FROM event e WHERE e.session = s.id AND e.id > d.last_id)"
            " ORDER BY s.id",
            (rig_id, stream),
        ).fetchall()
        events: list[Committed] = []
        for r in found:
            row, last_id = _row(r[:-1]), r[-1]
            if row.id != include and row.running():
                continue
            events += [
                Committed(i, row.id, t, k, json.loads(b))
                for i, t, k, b in conn.execute(
                    "SELECT id, t_ms, kind, body FROM event WHERE session = ? AND id > ?"
                    " ORDER BY id LIMIT ?",
                    (row.id, last_id, limit),
                )
            ]
    finally:
        conn.close()
    events.sort(key=lambda e: e.id)
    return events[:limit]


def latest_session(path: Path | str) -> int:
    rows = sessions(path)
    if not rows:
        raise JournalError(f"no session in {path}")
    return rows[-1].id


def thinned_trends(
    path: Path | str, session: int, points: int
) -> list[tuple[int, bool, dict[str, Any]]]:
    """The session's 1 Hz trend rows, at most about `points` of them, evenly spread in rig
    time: what a plot can show, read chunk by chunk, so a 24 h session never sits in
    memory whole (the report: tens of MB instead of hundreds)."""
    conn = _readable(path)
    try:
        (span,) = conn.execute(
            "SELECT rig_time_ms FROM session WHERE id = ?", (session,)
        ).fetchone() or (0,)
        every = max(1, int(span) // max(1, points))
        kept: list[tuple[int, bool, dict[str, Any]]] = []
        due = -1
        for (text,) in conn.execute(
            "SELECT rows FROM trend WHERE session = ? AND full_rate = 0 ORDER BY first_ms",
            (session,),
        ):
            for t, row in json.loads(text):
                if t >= due:
                    kept.append((t, False, row))
                    due = t - t % every + every
    finally:
        conn.close()
    return kept
