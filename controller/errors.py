"""The one exception tree of alsctl.

Every error a bench operator can meet is one of these, so the CLI can turn it into a
one-line message and an exit code instead of a traceback. Like python-can's errors, each
subclass is also the builtin it resembles, so generic handlers still work.
"""

from __future__ import annotations

from dataclasses import dataclass


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
        return f"{self.field}: {self.value} -> {self.why}{tail}"


class ConfigError(AlsError, ValueError):
    """A config, prescription or scenario file cannot be used; nothing was started."""

    exit_code = 2

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        super().__init__(self.lines()[0] if issues else source)

    def lines(self) -> list[str]:
        return [f"{self.source}: {issue}" for issue in self.issues]


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
