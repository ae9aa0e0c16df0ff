"""The one exception tree of alsctl.

Every error a bench operator can meet is one of these, so the CLI can turn it into a
one-line message and an exit code instead of a traceback. Like python-can's errors, each
subclass is also the builtin it resembles, so generic handlers still work.
"""

from __future__ import annotations

from dataclasses import dataclass

#: An error line is cut here: a 10 MB value must not become a 10-million-character line.
MAX_LINE_CHARS = 500
#: At most this many lines per file; the rest are counted, not printed (700,000 unknown
#: keys are one problem repeated, not 700,000 things to read).
MAX_LINES = 40


def printable(text: str, limit: int = MAX_LINE_CHARS) -> str:
    """`text` safe to print on a terminal, at most about `limit` characters.

    Control and format characters are escaped as Python writes them (`\\x1b`, `\\n`,
    `\\u202e`): printed raw, an ANSI escape in a file could redraw the screen or fake a
    line such as `final state: done`.
    """
    head = text[: limit + 1]
    shown = "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in head
    )
    if len(text) <= limit and len(shown) <= limit:
        return shown
    return f"{shown[:limit]}... ({len(text)} characters)"


class AlsError(Exception):
    """Root of every alsctl error."""

    exit_code = 1


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One thing wrong with one field of one file, in the words the operator needs."""

    field: str
    value: str
    why: str
    allowed: str = ""

    def __str__(self) -> str:
        tail = f" ({self.allowed})" if self.allowed else ""
        return printable(f"{self.field}: {self.value} -> {self.why}{tail}")


class ConfigError(AlsError, ValueError):
    """A config, prescription or scenario file cannot be used; nothing was started."""

    exit_code = 2

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        super().__init__(self.lines()[0] if issues else source)

    def lines(self) -> list[str]:
        """One line per issue, each bounded and escaped; past MAX_LINES, a count."""
        source = printable(self.source, 200)
        shown = [f"{source}: {issue}" for issue in self.issues[:MAX_LINES]]
        more = len(self.issues) - MAX_LINES
        if more > 0:
            shown.append(f"{source}: ... and {more} more problems like these")
        return shown


class HalError(AlsError):
    """The rig could not do what was asked."""


class CommandRefused(HalError, ValueError):
    """The firmware refused a command (out of range, in safe state, cause present ...)."""

    def __init__(self, command: str, code: str) -> None:
        self.command = command
        self.code = code
        super().__init__(f"{command} refused by the firmware: {code}")


class LinkError(HalError, ConnectionError):
    """The link to the rig is down or misbehaving."""


class LinkTimeout(LinkError, TimeoutError):
    """A command was not answered in time, even after its retries."""


class SafetyError(AlsError):
    """A safety rule refuses to go on (pre-start gate, limit read-back mismatch ...)."""

    exit_code = 3
