"""Where journal records go while the journal cannot be written (a full disk, a file size
limit, a lock another process holds): a JSON-lines file beside the journal, or in the user's
state folder when that folder is the problem, or, when no file can be written at all, memory.

Every line is flushed and fsync'd before the record counts as kept, so a treatment that ends
with its journal still unavailable loses nothing it showed; the next alsctl that opens the
journal merges what is left here back into it (`Journal.__init__`).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import IO, Any

SUFFIX = ".unjournaled.jsonl"


def state_folder() -> Path:
    """The user's state folder (XDG), for when the journal's own folder cannot be written."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "alsctl"


def candidates(journal: Path) -> list[Path]:
    """Fallback files a journal may have left, beside it first."""
    beside = journal.with_name(journal.name + SUFFIX)
    elsewhere = sorted(state_folder().glob(f"{journal.name}.*{SUFFIX}"))
    return [beside, *elsewhere]


class FallbackFile:
    def __init__(self, journal: Path) -> None:
        self.journal = journal
        self._places = [
            journal.with_name(journal.name + SUFFIX),
            state_folder() / f"{journal.name}.{os.getpid()}{SUFFIX}",
        ]
        self._file: IO[str] | None = None
        #: where records went (None: nowhere yet, or memory only)
        self.path: Path | None = None
        self.failed: str | None = None
        self.written: list[Path] = []

    def append(self, record: dict[str, Any]) -> bool:
        """Keep one record on disk; False when no file could take it (memory only)."""
        line = json.dumps(record, separators=(",", ":")) + "\n"
        while True:
            if self._file is None and not self._open():
                return False
            assert self._file is not None
            try:
                self._file.write(line)
                self._file.flush()
                os.fsync(self._file.fileno())
                return True
            except OSError as exc:  # full here too: the next place
                self.failed = f"{self.path}: {exc}"
                self._close()
                self._places = self._places[1:]

    def _open(self) -> bool:
        while self._places:
            place = self._places[0]
            try:
                place.parent.mkdir(parents=True, exist_ok=True)
                self._file = place.open("a", encoding="utf-8")
                self.path = place
                if place not in self.written:
                    self.written.append(place)
                return True
            except OSError as exc:
                self.failed = f"{place}: {exc}"
                self._places = self._places[1:]
        self.path = None
        return False

    def close(self) -> None:
        """Let go of the file (the journal closes); what it holds stays for the next run."""
        self._close()

    def _close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def remove(self) -> None:
        """Everything written here is in the journal now."""
        self._close()
        for place in self.written:
            with contextlib.suppress(OSError):
                place.unlink(missing_ok=True)
        self.written = []
        self.path = None


def read(path: Path) -> list[dict[str, Any]]:
    """The records of a fallback file; a torn last line (the process died writing it) is
    dropped: it was never counted as kept."""
    records: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
