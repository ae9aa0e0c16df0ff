"""A treatment and its console in one asyncio loop, the treatment never depending on the console.

The treatment is a task of its own; the app runs beside it and only reads the `Feed`. When
the app ends before the treatment (the operator pressed Q, or a widget raised), the feed
hands the run to plain lines (`fallback`) and the treatment goes on to its summary, journaled
as ever. Nothing the console does can stop or slow the loop beyond its quick callbacks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from controller.console.app import ConsoleApp
from controller.console.feed import Feed
from controller.control.events import Edge

T = TypeVar("T")


async def with_console(
    feed: Feed,
    treatment: Callable[[], Coroutine[Any, Any, T]],
    fallback: Callable[[], Edge],
    *,
    app: ConsoleApp | None = None,
    say: Callable[[str], Any] = print,
    headless: bool = False,
) -> tuple[T, str | None]:
    """Run `treatment` with a console over `feed`; returns its result and, when the console
    ended first, why (the operator left it, or the error that ended it)."""
    task = asyncio.create_task(treatment())
    app = app if app is not None else ConsoleApp(feed)

    def failed(t: asyncio.Task[T]) -> None:
        if not t.cancelled() and t.exception() is not None:
            app.exit()  # nothing left to show: the error is the caller's to report

    task.add_done_callback(failed)
    why: str | None = None
    try:
        await app.run_async(headless=headless)
    except Exception as exc:  # the console's failure is never the treatment's
        why = f"console failed: {type(exc).__name__}: {exc}"
    if why is None and app.return_code not in (0, None):
        error = getattr(app, "_exception", None)
        why = f"console failed: {type(error).__name__}: {error}" if error else "console failed"
    if why is None and app.left is not None:
        why = app.left
    if not task.done():
        feed.fallback = fallback()
        say(f"alsctl run: {why or 'console closed'}; the treatment goes on, in plain lines")
    return await task, why
