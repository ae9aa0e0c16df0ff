"""The journal file itself: its schema (forward migrations), and opening it.

Schema changes are forward migrations numbered by `PRAGMA user_version`; a file from a newer
alsctl is refused, never rewritten. Every connection waits `BUSY_TIMEOUT_S` for another
alsctl's transaction on the same file, so runs sharing one journal take turns instead of
failing with `database is locked`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

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
    # 3: how far each session's events reached a receiver (the MQTT broker): what a
    # controller left unacknowledged when it ended or died is published by the next one
    """
    CREATE TABLE delivered (
        session INTEGER NOT NULL REFERENCES session(id),
        stream TEXT NOT NULL,
        last_id INTEGER NOT NULL,
        updated_utc TEXT NOT NULL,
        PRIMARY KEY (session, stream)
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
#: How long a write waits for another alsctl's transaction on the same file (SQLite's busy
#: handler) before the journal counts as unavailable.
BUSY_TIMEOUT_S = 5.0


class JournalError(AlsError):
    exit_code = 2


def migrate(conn: sqlite3.Connection, migrations: Sequence[str] = MIGRATIONS) -> int:
    """Bring the file up to the newest schema; returns the version it had.

    Each step runs under an exclusive lock and reads the version again inside it: several
    alsctl starting on one new file at once migrate it once, the others wait (busy timeout)
    and find it done, instead of failing on `table session already exists`.
    """
    found: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > len(migrations):
        raise JournalError(
            f"journal schema {found} is newer than this alsctl knows ({len(migrations)}):"
            " upgrade alsctl, the file is left as it is"
        )
    while True:
        conn.execute("BEGIN EXCLUSIVE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version >= len(migrations):
                conn.execute("COMMIT")
                return found
            # one transaction per step: a crash mid-migration leaves the file at the old one
            for statement in _statements(migrations[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _statements(script: str) -> list[str]:
    """A migration script as single statements (`executescript` would commit on its own)."""
    out: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n\t;"):
                out.append(pending.strip())
            pending = ""
    if pending.strip(" \n\t;"):
        out.append(pending.strip())
    return out


def connect(path: Path | str, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        if not Path(path).exists():
            raise JournalError(f"no journal at {path}")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def check_writable(path: Path) -> None:
    """Open, migrate and probe the file for a write, before anything runs: a journal that
    cannot be written is refused here in one line, never met as a traceback mid-treatment."""
    try:
        if path.exists() and not path.is_file():
            raise JournalError(f"journal {path} is not a file (a folder or a device): give a file")
        if path.parent.exists() and not path.parent.is_dir():
            raise JournalError(f"journal {path}: {path.parent} is not a folder")
        conn = connect(path)
    except (sqlite3.Error, OSError) as exc:
        raise JournalError(f"journal {path} cannot be opened: {_why(exc)}") from None
    try:
        migrate(conn)
        conn.execute("BEGIN IMMEDIATE")  # the write lock: the file and its folder are writable
        conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        raise JournalError(f"journal {path} cannot be written: {_why(exc)}") from None
    finally:
        conn.close()


def _why(exc: BaseException) -> str:
    why = str(exc)
    if "not a database" in why or "malformed" in why:
        why += " (not an alsctl journal, or a damaged one: give another --journal)"
    return why
