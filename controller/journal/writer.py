"""Writing the journal without ever blocking the control loop, and without ever ending a
treatment because a disk failed.

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

When a commit fails (a full disk, a file size limit, a lock held by another process longer
than the busy timeout, a damaged file) the journal becomes *unavailable*, not dead: what was
taken stays in memory in order (trends capped), every event, snapshot and outcome also goes
to a fallback file (`fallback.py`), subscribers still see each event (with the number it will
have), the run is told (`unavailable`, which raises the `journal_unavailable` alarm), and the
backlog is tried again every `RETRY_S`. When a commit succeeds, the backlog is merged back in
order and the fallback file removed; `health` keeps when it was unavailable, for the summary.

How far a publisher's receiver has acknowledged a session's events (`delivered`, one row per
session and stream) is coalesced like a checkpoint: a publisher may say so after every
message, and the next transaction writes one row per session, never one write per message.
"""

from __future__ import annotations

import json
import os
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.journal import fallback
from controller.journal.reading import HOST, Committed, undelivered
from controller.journal.schema import BUSY_TIMEOUT_S, JournalError, check_writable, connect

#: Rows taken into one transaction at most (a backlog is worked off in chunks).
BATCH = 2000
#: Trends and checkpoints wait this long for company: a handful of commits per second,
#: whatever the pace of the run. Events do not wait: they are committed at once, because
#: nobody sees them (console, MQTT) before they are on disk.
BATCH_WAIT_S = 0.1
URGENT = frozenset({"event", "session", "flush", "end", "claim"})
#: The writer stamps the sessions it writes this often (reading.STALE_S tells the dead).
HEARTBEAT_S = 2.0
#: An unavailable journal is tried again this often, each try waiting this long for a lock.
RETRY_S = 1.0
RETRY_BUSY_MS = 100
#: Trend rows kept in memory while the journal is unavailable (the oldest go first): about
#: an hour of 1 Hz rows with their full-rate windows.
TREND_BACKLOG = 6000
#: What may go to the fallback file: everything but trends and checkpoints, which are many,
#: and of which only the newest matter (they stay in memory).
TO_FALLBACK = frozenset({"kept", "snapshot", "end", "claim"})

Item = tuple[str, Any]


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(slots=True)
class JournalHealth:
    """For the summary and the report: whether, since when and why the journal was not
    written, and where its records went meanwhile."""

    #: first time in this run the journal could not be written (None: never)
    degraded_since_utc: str | None = None
    #: the journal is unavailable now: since when, and why
    unavailable_since_utc: str | None = None
    reason: str | None = None
    #: the last time it came back and the backlog was merged
    recovered_utc: str | None = None
    #: events kept outside the journal (fallback file or memory), in this run
    kept_events: int = 0
    trends_dropped: int = 0
    fallback_file: str | None = None


class Journal:
    """Appends to the journal from the control loop without ever blocking it."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        check_writable(self.path)
        self.health = JournalHealth()
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._subscribers: list[Callable[[list[Committed]], None]] = []
        self._error: BaseException | None = None
        self._closed = False
        #: sessions this process is writing: their heartbeat is kept fresh (writer thread)
        self._owned: frozenset[int] = frozenset()
        self._beat_at = 0.0
        self._retried_at = 0.0
        #: items taken while the journal was unavailable, in order
        self._backlog: list[Item] = []
        self._trends_kept = 0
        self._fallback = fallback.FallbackFile(self.path)
        self._last_id = self._max_event_id()
        self._merge_leftovers()
        self._thread = threading.Thread(target=self._writer, name="journal", daemon=True)
        self._thread.start()

    # -- the control loop's side: never blocks --------------------------------------------
    @property
    def unavailable(self) -> str | None:
        """Why the journal cannot be written now, or None: read every cycle by the run."""
        return self.health.reason if self.health.unavailable_since_utc else None

    def subscribe(self, callback: Callable[[list[Committed]], None]) -> None:
        """`callback` gets every committed (or kept) event, in order, on the writer thread."""
        self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[list[Committed]], None]) -> None:
        if callback in self._subscribers:
            self._subscribers.remove(callback)

    def start_session(
        self, *, rig_id: str, backend: str, prescription: str, mode: str, snapshots: dict[str, Any]
    ) -> int:
        """A new session row and its snapshots, committed before the run starts: a journal
        that cannot take it refuses the start (JournalError), before anything moves."""
        future: Future[int] = Future()
        self._put("session", (rig_id, backend, prescription, mode, snapshots, future))
        return future.result(timeout=60)

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
        when = now_utc() if ended else None  # stamped now, even if written later
        self._put("end", (session, state, rig_time_ms, outcome, detail, when))

    def claim(self, session: int) -> None:
        """This process now runs `session` (a resume): its pid and heartbeat, no outcome."""
        self._put("claim", (session, os.getpid(), HOST))

    def delivered(self, session: int, stream: str, last_id: int) -> None:
        """Every event of `session` up to `last_id` has reached `stream`'s receiver (an MQTT
        broker's PUBACK); 0 says the session is published to `stream`, nothing acknowledged
        yet. Only ever moves forward, and costs no transaction of its own: coalesced into
        the next one (the writer's trend and checkpoint commits, a few a second)."""
        self._put("delivered", (session, stream, last_id))

    def undelivered(
        self, rig_id: str, stream: str, *, include: int | None = None, limit: int = 10_000
    ) -> list[Committed]:
        """What earlier runs of `rig_id` published to `stream` and left unacknowledged, in
        journal order (`reading.undelivered`). Reads the file: call it before the run."""
        return undelivered(self.path, rig_id, stream, include=include, limit=limit)

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until everything queued so far is committed, or kept (journal unavailable)."""
        future: Future[None] = Future()
        self._put("flush", future)
        future.result(timeout=timeout)

    def close(self) -> None:
        self._closed = True
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=60)

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
        conn: sqlite3.Connection | None = None
        try:
            stop = False
            while not stop:
                try:
                    first = self._queue.get(timeout=RETRY_S if self._backlog else HEARTBEAT_S)
                except queue.Empty:
                    conn = self._idle(conn)
                    continue
                gathered = self._gather(first)
                if gathered and gathered[-1] is None:
                    stop = True
                # the close marker (None) can only end a batch
                items = [item for item in gathered if item is not None]
                conn = self._handle(conn, items)
                if self._backlog:
                    # a busy run never leaves the queue empty for RETRY_S: try between batches
                    if time.monotonic() - self._retried_at >= RETRY_S:
                        conn = self._retry(conn)
                elif time.monotonic() - self._beat_at >= HEARTBEAT_S:
                    conn = self._beat(conn)
            if self._backlog:
                conn = self._retry(conn)  # a last try: what stays is in the fallback file
        except BaseException as exc:  # a bug: the next call reports it
            self._error = exc
            raise
        finally:
            self._fallback.close()  # what it holds stays on disk for the next alsctl
            if conn is not None:
                conn.close()

    def _gather(self, first: Item | None) -> list[Item | None]:
        items: list[Item | None] = [first]
        deadline = time.monotonic() + BATCH_WAIT_S
        urgent = first is not None and first[0] in URGENT
        while len(items) < BATCH and items[-1] is not None:
            last = items[-1]
            urgent = urgent or (last is not None and last[0] in URGENT)
            # once an event is in, take what is already queued, then commit at once
            wait = 0.0 if urgent else deadline - time.monotonic()
            try:
                items.append(
                    self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                )
            except queue.Empty:
                break
        return items

    def _connection(self, conn: sqlite3.Connection | None) -> sqlite3.Connection:
        return conn if conn is not None else connect(self.path)

    def _idle(self, conn: sqlite3.Connection | None) -> sqlite3.Connection | None:
        return self._retry(conn) if self._backlog else self._beat(conn)

    def _beat(self, conn: sqlite3.Connection | None) -> sqlite3.Connection | None:
        """Stamp the sessions this process runs: `alsctl sessions` tells them from the dead.
        A failed stamp only makes a session look stale; the next commit tells the truth."""
        self._beat_at = time.monotonic()
        owned = self._owned
        if not owned:
            return conn
        try:
            conn = self._connection(conn)
            conn.execute(
                f"UPDATE session SET heartbeat_utc = ? WHERE id IN ({','.join('?' * len(owned))})",
                (now_utc(), *owned),
            )
        except (sqlite3.Error, OSError):
            pass
        return conn

    def _handle(
        self, conn: sqlite3.Connection | None, items: list[Item]
    ) -> sqlite3.Connection | None:
        """One transaction for everything taken; when the journal cannot take it, keep it."""
        flushes: list[Future[None]] = [item for kind, item in items if kind == "flush"]
        if not self._backlog:
            done: dict[int, Any] = {}
            try:
                conn = self._connection(conn)
                committed = self._write(conn, items, done)
            except (sqlite3.Error, OSError) as exc:
                conn = self._rollback(conn)
                self._unavailable(exc)
            else:
                self._notify(committed)
                for kind, item in items:
                    if kind == "session":
                        item[-1].set_result(done[id(item[-1])])
                for future in flushes:
                    future.set_result(None)
                return conn
        kept = self._keep(items)
        self._notify(kept)
        for future in flushes:
            future.set_result(None)  # kept counts: it is in the fallback file or in memory
        return conn

    def _rollback(self, conn: sqlite3.Connection | None) -> sqlite3.Connection | None:
        if conn is None:
            return None
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return conn
        except (sqlite3.Error, OSError):
            conn.close()
            return None  # a fresh connection at the next try

    def _unavailable(self, exc: BaseException) -> None:
        h = self.health
        stamp = now_utc()
        h.reason = f"{type(exc).__name__}: {exc}"
        if h.unavailable_since_utc is None:
            h.unavailable_since_utc = stamp
        if h.degraded_since_utc is None:
            h.degraded_since_utc = stamp
        print(f"journal {self.path} unavailable ({h.reason}): records kept", file=sys.stderr)

    def _keep(self, items: list[Item]) -> list[Committed]:
        """Items the journal could not take: events numbered as they will be, everything
        that matters on disk in the fallback file, all of it in order in memory."""
        kept: list[Committed] = []
        for kind, item in items:
            if kind == "flush":
                continue
            if kind == "session":  # a run cannot start on a journal that takes nothing
                item[-1].set_exception(
                    JournalError(f"journal {self.path} cannot be written: {self.health.reason}")
                )
                continue
            if kind == "event":
                self._last_id += 1
                session, t_ms, what, body = item
                kind, item = "kept", (self._last_id, session, t_ms, what, body)
                kept.append(Committed(self._last_id, session, t_ms, what, body))
                self.health.kept_events += 1
            elif kind == "trend":
                self._trends_kept += 1
                if self._trends_kept > TREND_BACKLOG:
                    self._drop_oldest_trend()
            elif kind == "checkpoint":  # only the newest of each session matters
                self._backlog = [
                    (k, i) for k, i in self._backlog if k != "checkpoint" or i[0] != item[0]
                ]
            elif kind == "delivered":  # likewise, per session and stream
                self._backlog = [
                    (k, i) for k, i in self._backlog if k != "delivered" or i[:2] != item[:2]
                ]
            if kind in TO_FALLBACK and self._fallback.append({"item": kind, "data": item}):
                self.health.fallback_file = str(self._fallback.path)
            self._backlog.append((kind, item))
        return kept

    def _drop_oldest_trend(self) -> None:
        for n, (kind, _item) in enumerate(self._backlog):
            if kind == "trend":
                del self._backlog[n]
                self._trends_kept -= 1
                self.health.trends_dropped += 1
                return

    def _retry(self, conn: sqlite3.Connection | None) -> sqlite3.Connection | None:
        """The backlog into the journal in one transaction, in order; then normal again."""
        self._retried_at = time.monotonic()
        try:
            conn = self._connection(conn)
            # a short wait while another process holds the file: new records are kept (and
            # shown) between tries instead of waiting the whole busy timeout each time
            conn.execute(f"PRAGMA busy_timeout={RETRY_BUSY_MS}")
            try:
                self._write(conn, self._backlog, {})
            finally:
                conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        except (sqlite3.Error, OSError) as exc:
            self.health.reason = f"{type(exc).__name__}: {exc}"
            return self._rollback(conn)
        self._backlog.clear()
        self._trends_kept = 0
        self._fallback.remove()
        h = self.health
        h.unavailable_since_utc = None
        h.reason = None
        h.recovered_utc = now_utc()
        print(f"journal {self.path} written again: the kept records are merged", file=sys.stderr)
        return conn

    def _notify(self, committed: list[Committed]) -> None:
        if not committed:
            return
        for callback in list(self._subscribers):  # before flush() returns: all shown by then
            try:
                callback(committed)
            except Exception as exc:  # a broken console must not stop the journal
                print(f"journal subscriber failed: {exc!r}", file=sys.stderr)

    def _max_event_id(self) -> int:
        conn = connect(self.path)
        try:
            return int(conn.execute("SELECT coalesce(max(id), 0) FROM event").fetchone()[0])
        finally:
            conn.close()

    def _merge_leftovers(self) -> None:
        """Records a process left in fallback files when it ended with the journal still
        unavailable: merged now, before anything new, then the files are removed."""
        for path in fallback.candidates(self.path):
            if not path.is_file():
                continue
            items = [(r["item"], _from_json(r["item"], r["data"])) for r in fallback.read(path)]
            conn = connect(self.path)
            try:
                self._write(conn, items, {})
            except sqlite3.Error as exc:
                conn.close()
                raise JournalError(
                    f"journal {self.path}: records left in {path} cannot be merged: {exc}"
                ) from None
            conn.close()
            path.unlink()
            print(
                f"journal {self.path}: merged {len(items)} records left in {path}", file=sys.stderr
            )

    def _write(
        self, conn: sqlite3.Connection, items: list[Item], done: dict[int, Any]
    ) -> list[Committed]:
        """One transaction. Rows are prepared first and written with one `executemany` per
        table: each call into SQLite gives up the GIL and must win it back from a busy
        control loop, so a statement per row would crawl at full speed."""
        events: list[tuple[int, int, str, dict[str, Any]]] = []
        kept: list[tuple[int, int, int, str, dict[str, Any]]] = []
        trends: dict[tuple[int, int], list[tuple[int, dict[str, Any]]]] = {}
        snapshots: list[tuple[int, str, str]] = []
        ends: list[tuple[str, int, int, str, str, str | None, int]] = []
        claims: list[tuple[int, str, str, int]] = []
        sessions: list[tuple[Any, ...]] = []
        checkpoints: dict[int, tuple[int, str, dict[str, Any]]] = {}
        delivered: dict[tuple[int, str], int] = {}
        for kind, item in items:
            if kind == "event":
                events.append(item)
            elif kind == "kept":
                kept.append(item)
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
                ends.append((state, rig_ms, completed, outcome, detail, ended, session))
            elif kind == "claim":
                session, pid, host = item
                claims.append((pid, host, now_utc(), session))
            elif kind == "delivered":
                session, stream, last_id = item
                delivered[session, stream] = max(last_id, delivered.get((session, stream), 0))
        # IMMEDIATE: the write lock from the start, so the numbers taken below are ours even
        # when another alsctl writes to the same file
        conn.execute("BEGIN IMMEDIATE")
        owned = set(self._owned)
        for rig_id, backend, prescription, mode, snaps, future in sessions:
            cur = conn.execute(
                "INSERT INTO session (started_utc, rig_id, backend, prescription, mode,"
                " state, pid, host, heartbeat_utc) VALUES (?, ?, ?, ?, ?, 'idle', ?, ?, ?)",
                (now_utc(), rig_id, backend, prescription, mode, os.getpid(), HOST, now_utc()),
            )
            sid = cur.lastrowid
            assert sid is not None
            owned.add(sid)
            snapshots += [(sid, what, json.dumps(body)) for what, body in snaps.items()]
            done[id(future)] = sid
        top = conn.execute("SELECT coalesce(max(id), 0) FROM event").fetchone()[0]
        if kept and kept[0][0] <= top:
            # another alsctl wrote to this file meanwhile and took these numbers: renumber
            # (the console showed the provisional ones; the order is what counts)
            kept = [(top + 1 + n, *k[1:]) for n, k in enumerate(kept)]
        first = max(top, kept[-1][0] if kept else 0) + 1
        committed = [
            Committed(first + n, session, t_ms, what, body)
            for n, (session, t_ms, what, body) in enumerate(events)
        ]
        rows = [(k[0], k[1], k[2], k[3], json.dumps(k[4])) for k in kept] + [
            (c.id, c.session, c.t_ms, c.kind, json.dumps(c.body)) for c in committed
        ]
        if rows:
            conn.executemany("INSERT INTO event VALUES (?, ?, ?, ?, ?)", rows)
            self._last_id = max(self._last_id, rows[-1][0])
        else:
            self._last_id = max(self._last_id, top)
        if trends:
            conn.executemany(
                "INSERT INTO trend VALUES (?, ?, ?, ?, ?)",
                [
                    (sid, chunk[0][0], chunk[-1][0], full, json.dumps(chunk))
                    for (sid, full), chunk in trends.items()
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
        if delivered:
            stamp = now_utc()
            conn.executemany(
                # a session this file does not have is skipped, never a failed commit
                "INSERT INTO delivered SELECT id, ?, ?, ? FROM session WHERE id = ?"
                " ON CONFLICT (session, stream) DO UPDATE SET"
                " last_id = max(last_id, excluded.last_id), updated_utc = excluded.updated_utc",
                [(stream, last, stamp, sid) for (sid, stream), last in delivered.items()],
            )
        if claims:
            conn.executemany(
                "UPDATE session SET pid = ?, host = ?, heartbeat_utc = ?, outcome = NULL,"
                " detail = NULL WHERE id = ?",
                claims,
            )
            owned |= {c[-1] for c in claims if c[0] == os.getpid()}
        if ends:
            conn.executemany(
                "UPDATE session SET state = ?, rig_time_ms = ?, completed = ?, outcome = ?,"
                " detail = ?, ended_utc = ? WHERE id = ?",
                ends,
            )
            owned -= {row[-1] for row in ends}
        conn.execute("COMMIT")
        self._owned = frozenset(owned)  # only once committed
        return committed


def _from_json(kind: str, data: Any) -> Any:
    """A fallback record back into the item it was (JSON made its tuples lists)."""
    return tuple(data) if isinstance(data, list) else data
