"""The session journal: one SQLite file (WAL) that outlives any crash of the controller, and
a failing disk that does not end a treatment.

- `schema.py`: the migrations, opening a file, the pre-start check (one line, never a
  traceback, for a file that cannot be written);
- `writer.py`: `Journal`, the writer thread the control loop hands rows to, which keeps
  records in a fallback file and in memory while the file cannot be written;
- `fallback.py`: that fallback file;
- `reading.py`: the session list (with who runs what now), one session whole, and what a
  publisher (MQTT) left unacknowledged for the next start of the rig.
"""

from controller.journal.reading import (
    HOST,
    STALE_S,
    Committed,
    SessionRecord,
    SessionRow,
    latest_session,
    load,
    pid_alive,
    sessions,
    thinned_trends,
    undelivered,
)
from controller.journal.schema import (
    BUSY_TIMEOUT_S,
    MIGRATIONS,
    SCHEMA_VERSION,
    JournalError,
    check_writable,
    connect,
    migrate,
)
from controller.journal.writer import HEARTBEAT_S, RETRY_S, Journal, JournalHealth

__all__ = [
    "BUSY_TIMEOUT_S",
    "HEARTBEAT_S",
    "HOST",
    "MIGRATIONS",
    "RETRY_S",
    "SCHEMA_VERSION",
    "STALE_S",
    "Committed",
    "Journal",
    "JournalError",
    "JournalHealth",
    "SessionRecord",
    "SessionRow",
    "check_writable",
    "connect",
    "latest_session",
    "load",
    "migrate",
    "pid_alive",
    "sessions",
    "thinned_trends",
    "undelivered",
]
