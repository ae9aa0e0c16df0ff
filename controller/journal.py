"""The session journal: one SQLite file (WAL) that outlives any crash of the controller.

Why a writer thread: the control loop must never wait for a disk. It only puts rows on a
queue; one thread owns the connection, takes everything queued in one transaction, commits
(`synchronous=FULL`: committed means on disk) and only then tells subscribers. So an event is
shown on a console or published (MQTT) only once it can no longer be lost, and a `kill -9` at
any instant leaves a consistent file: SQLite's WAL either has a transaction or does not.

Checkpoints (phase, volumes, alarms: all a resumed run needs) are coalesced: each
transaction writes only the newest. Trend rows are stored as one JSON chunk per transaction:
SQLite gives up the GIL on every row it steps, and each time the writer must win it back from
a busy control loop (up to the 5 ms switch interval), so a row per sample crawls at full
simulation speed while a chunk per commit costs the same whatever the pace.

Schema changes are forward migrations numbered by `PRAGMA user_version`; a file from a newer
alsctl is refused, never rewritten.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.errors import AlsError

#: MIGRATIONS[n] upgrades a file from user_version n to n + 1.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE session (
        id INTEGER PRIMARY KEY,
        started_utc TEXT NOT NULL,
        rig_id TEXT NOT NULL,
        backend TEXT NOT NULL,
        prescription TEXT NOT NULL,
        mode TEXT NOT NULL,
        state TEXT NOT NULL,
        rig_time_ms INTEGER NOT NULL DEFAULT 0,
        completed INTEGER NOT NULL DEFAULT 0,
        ended_utc TEXT
    );
    CREATE TABLE snapshot (
        session INTEGER NOT NULL REFERENCES session(id),
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (session, kind)
    );
    CREATE TABLE event (
        id INTEGER PRIMARY KEY,
        session INTEGER NOT NULL REFERENCES session(id),
        t_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX event_session ON event(session, id);
    CREATE TABLE checkpoint (
        session INTEGER PRIMARY KEY REFERENCES session(id),
        t_ms INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE trend (
        session INTEGER NOT NULL REFERENCES session(id),
        first_ms INTEGER NOT NULL,
        last_ms INTEGER NOT NULL,
        full_rate INTEGER NOT NULL,
        rows TEXT NOT NULL
    );
    CREATE INDEX trend_session ON trend(session, first_ms);
    """,
    # 2: how a session ended (controller/outcome.py), and who is writing it now
    """
    ALTER TABLE session ADD COLUMN outcome TEXT;
    ALTER TABLE session ADD COLUMN detail TEXT;
    ALTER TABLE session ADD COLUMN pid INTEGER;
    ALTER TABLE session ADD COLUMN host TEXT;
    ALTER TABLE session ADD COLUMN heartbeat_utc TEXT;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
#: Rows taken into one transaction at most (a backlog is worked off in chunks).
BATCH = 2000
#: Trends and checkpoints wait this long for company: a handful of commits per second,
#: whatever the pace of the run. Events do not wait: they are committed at once, because
#: nobody sees them (console, MQTT) before they are on disk.
BATCH_WAIT_S = 0.1
URGENT = frozenset({"event", "session", "flush", "end", "claim"})
#: The writer stamps the sessions it writes this often: a session whose stamp is older than
#: STALE_S (or whose process is gone) has nobody running it.
HEARTBEAT_S = 2.0
STALE_S = 10.0
HOST = socket.gethostname()


class JournalError(AlsError):
    exit_code = 2


def migrate(conn: sqlite3.Connection, migrations: Sequence[str] = MIGRATIONS) -> int:
    """Bring the file up to the newest schema; returns the version it had."""
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > len(migrations):
        raise JournalError(
            f"journal schema {found} is newer than this alsctl knows ({len(migrations)}):"
            " upgrade alsctl, the file is left as it is"
        )
    for version in range(found, len(migrations)):
        # one transaction per step: a crash mid-migration leaves the file at the old version
        try:
            conn.executescript(
                f"BEGIN;{migrations[version]};PRAGMA user_version={version + 1};COMMIT;"
            )
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return found


def connect(path: Path | str, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        if not Path(path).exists():
            raise JournalError(f"no journal at {path}")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # somebody else's process, alive
    return True


@dataclass(frozen=True, slots=True)
class Committed:
    """An event as subscribers see it: already on disk."""

    id: int
    session: int
    t_ms: int
    kind: str
    body: dict[str, Any]


class Journal:
    """Appends to the journal from the control loop without ever blocking it."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        conn = connect(self.path)
        try:
            migrate(conn)
        finally:
            conn.close()
        self._queue: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._subscribers: list[Callable[[list[Committed]], None]] = []
        self._error: BaseException | None = None
        self._closed = False
        #: sessions this process is writing: their heartbeat is kept fresh (writer thread)
        self._owned: frozenset[int] = frozenset()
        self._beat_at = 0.0
        self._thread = threading.Thread(target=self._writer, name="journal", daemon=True)
        self._thread.start()

    # -- the control loop's side: never blocks --------------------------------------------
    def subscribe(self, callback: Callable[[list[Committed]], None]) -> None:
        """`callback` gets every committed event, in order, on the writer thread."""
        self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[list[Committed]], None]) -> None:
        if callback in self._subscribers:
            self._subscribers.remove(callback)

    def start_session(
        self, *, rig_id: str, backend: str, prescription: str, mode: str, snapshots: dict[str, Any]
    ) -> int:
        """A new session row and its snapshots, committed before the run starts."""
        future: Future[int] = Future()
        self._put("session", (rig_id, backend, prescription, mode, snapshots, future))
        return future.result(timeout=30)

    def snapshot(self, session: int, kind: str, body: Any) -> None:
        self._put("snapshot", (session, kind, body))

    def event(self, session: int, t_ms: int, kind: str, body: dict[str, Any]) -> None:
        self._put("event", (session, t_ms, kind, body))

    def checkpoint(self, session: int, t_ms: int, state: str, body: dict[str, Any]) -> None:
        self._put("checkpoint", (session, t_ms, state, body))

    def trend(self, session: int, t_ms: int, full_rate: bool, body: dict[str, Any]) -> None:
        self._put("trend", (session, t_ms, int(full_rate), body))

    def end_session(
        self,
        session: int,
        state: str,
        rig_time_ms: int,
        outcome: str,
        detail: str = "",
        *,
        ended: bool = True,
    ) -> None:
        """The session's outcome. `ended=False` keeps it open for `--resume` (a serial rig
        interrupted mid-treatment): nobody runs it any more, but it can go on."""
        self._put("end", (session, state, rig_time_ms, outcome, detail, ended))

    def claim(self, session: int) -> None:
        """This process now runs `session` (a resume): its pid and heartbeat, no outcome."""
        self._put("claim", session)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything queued so far is committed (at the end of a run)."""
        future: Future[None] = Future()
        self._put("flush", future)
        future.result(timeout=timeout)

    def close(self) -> None:
        self._closed = True
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=30)

    def _put(self, kind: str, item: Any) -> None:
        if self._closed:
            raise JournalError(f"journal {self.path} is closed")
        if self._error is not None:
            raise JournalError(f"journal {self.path}: writer stopped: {self._error}")
        self._queue.put((kind, item))

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- the writer thread ------------------------------------------------------------------
    def _writer(self) -> None:
        conn = connect(self.path)
        try:
            stop = False
            while not stop:
                try:
                    first = self._queue.get(timeout=HEARTBEAT_S)
                except queue.Empty:
                    self._beat(conn)
                    continue
                items = [first]
                deadline = time.monotonic() + BATCH_WAIT_S
                urgent = items[0] is not None and items[0][0] in URGENT
                while len(items) < BATCH and items[-1] is not None:
                    urgent = urgent or items[-1][0] in URGENT
                    # once an event is in, take what is already queued, then commit at once
                    wait = 0.0 if urgent else deadline - time.monotonic()
                    try:
                        items.append(
                            self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                        )
                    except queue.Empty:
                        break
                if items[-1] is None:
                    stop = True
                    items.pop()
                self._commit(conn, items)
                if time.monotonic() - self._beat_at >= HEARTBEAT_S:
                    self._beat(conn)
        except BaseException as exc:  # the run goes on; the next call reports it
            self._error = exc
            raise
        finally:
            conn.close()

    def _beat(self, conn: sqlite3.Connection) -> None:
        """Stamp the sessions this process runs: `alsctl sessions` tells them from the dead."""
        self._beat_at = time.monotonic()
        owned = self._owned
        if owned:
            conn.execute(
                f"UPDATE session SET heartbeat_utc = ? WHERE id IN ({','.join('?' * len(owned))})",
                (_now(), *owned),
            )

    def _commit(self, conn: sqlite3.Connection, items: list[tuple[str, Any]]) -> None:
        """One transaction for everything taken. Rows are prepared first and written with
        one `executemany` per table: each call into SQLite gives up the GIL and must win it
        back from a busy control loop, so a statement per row would crawl at full speed."""
        done: list[tuple[Future[Any], Any]] = [
            (item, None) for kind, item in items if kind == "flush"
        ] + [(item[-1], None) for kind, item in items if kind == "session"]
        try:
            committed = self._write(conn, items, done)
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for future, _ in done:
                if not future.done():
                    future.set_exception(exc)
            raise
        for callback in list(self._subscribers):  # before flush() returns: all shown by then
            try:
                callback(committed)
            except Exception as exc:  # a broken console must not stop the journal
                print(f"journal subscriber failed: {exc!r}", file=sys.stderr)
        for future, value in done:
            future.set_result(value)

    def _write(
        self,
        conn: sqlite3.Connection,
        items: list[tuple[str, Any]],
        done: list[tuple[Future[Any], Any]],
    ) -> list[Committed]:
        events: list[tuple[int, int, str, dict[str, Any]]] = []
        trends: dict[tuple[int, int], list[tuple[int, dict[str, Any]]]] = {}
        snapshots: list[tuple[int, str, str]] = []
        ends: list[tuple[str, int, int, str, str, str | None, int]] = []
        claims: list[int] = []
        sessions: list[tuple[Any, ...]] = []
        checkpoints: dict[int, tuple[int, str, dict[str, Any]]] = {}
        for kind, item in items:
            if kind == "event":
                events.append(item)
            elif kind == "checkpoint":
                session, t_ms, state, body = item
                checkpoints[session] = (t_ms, state, body)
            elif kind == "trend":
                session, t_ms, full, body = item
                trends.setdefault((session, full), []).append((t_ms, body))
            elif kind == "snapshot":
                session, what, body = item
                snapshots.append((session, what, json.dumps(body)))
            elif kind == "session":
                sessions.append(item)
            elif kind == "end":
                session, state, rig_ms, outcome, detail, ended = item
                completed = int(outcome == "completed")
                ends.append(
                    (state, rig_ms, completed, outcome, detail, _now() if ended else None, session)
                )
            elif kind == "claim":
                claims.append(item)
        bodies = [json.dumps(body) for _s, _t, _k, body in events]
        # IMMEDIATE: the write lock from the start, so the numbers taken below are ours even
        # when another alsctl writes to the same file
        conn.execute("BEGIN IMMEDIATE")
        for rig_id, backend, prescription, mode, snaps, future in sessions:
            cur = conn.execute(
                "INSERT INTO session (started_utc, rig_id, backend, prescription, mode,"
                " state, pid, host, heartbeat_utc) VALUES (?, ?, ?, ?, ?, 'idle', ?, ?, ?)",
                (_now(), rig_id, backend, prescription, mode, os.getpid(), HOST, _now()),
            )
            sid = cur.lastrowid
            assert sid is not None
            self._owned |= {sid}
            snapshots += [(sid, what, json.dumps(body)) for what, body in snaps.items()]
            done[:] = [(f, sid if f is future else v) for f, v in done]
        committed: list[Committed] = []
        if events:
            first = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM event").fetchone()[0]
            committed = [
                Committed(first + n, session, t_ms, what, body)
                for n, (session, t_ms, what, body) in enumerate(events)
            ]
            conn.executemany(
                "INSERT INTO event VALUES (?, ?, ?, ?, ?)",
                [
                    (c.id, c.session, c.t_ms, c.kind, text)
                    for c, text in zip(committed, bodies, strict=True)
                ],
            )
        if trends:
            conn.executemany(
                "INSERT INTO trend VALUES (?, ?, ?, ?, ?)",
                [
                    (sid, rows[0][0], rows[-1][0], full, json.dumps(rows))
                    for (sid, full), rows in trends.items()
                ],
            )
        if snapshots:
            conn.executemany("INSERT OR REPLACE INTO snapshot VALUES (?, ?, ?)", snapshots)
        if checkpoints:
            conn.executemany(
                "INSERT OR REPLACE INTO checkpoint VALUES (?, ?, ?)",
                [(sid, t, json.dumps(body)) for sid, (t, _s, body) in checkpoints.items()],
            )
            conn.executemany(
                "UPDATE session SET state = ?, rig_time_ms = ? WHERE id = ?",
                [(state, t, sid) for sid, (t, state, _b) in checkpoints.items()],
            )
        if claims:
            conn.executemany(
                "UPDATE session SET pid = ?, host = ?, heartbeat_utc = ?, outcome = NULL,"
                " detail = NULL WHERE id = ?",
                [(os.getpid(), HOST, _now(), sid) for sid in claims],
            )
            self._owned |= set(claims)
        if ends:
            conn.executemany(
                "UPDATE session SET state = ?, rig_time_ms = ?, completed = ?, outcome = ?,"
                " detail = ?, ended_utc = ? WHERE id = ?",
                ends,
            )
            self._owned -= {row[-1] for row in ends}
        conn.execute("COMMIT")
        return committed


# -- reading -----------------------------------------------------------------------------
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
        return self.host != HOST or self.pid is None or _pid_alive(self.pid)

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
    return SessionRow(*r[:8], bool(r[8]), *r[9:])


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
    alsctl is migrated first (forward only, as any writer would)."""
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


def latest_session(path: Path | str) -> int:
    rows = sessions(path)
    if not rows:
        raise JournalError(f"no session in {path}")
    return rows[-1].id
