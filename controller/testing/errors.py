"""How a test's wait fails: assertion errors, so pytest reports them as failures (not
errors) with the message that says what the rig was doing instead."""

from __future__ import annotations


class UntilTimeout(AssertionError):
    """What a test waited for did not happen within its rig time."""


class RunEnded(AssertionError):
    """The treatment ended before what the test waited for happened."""
