"""Named checkpoints where a test may pause or stop the process: one small facility, used by `warehouse.hooks`
and `webhooks.hooks` (each with its own points and its own installed hook).

Production code calls `checkpoint(point)`, which does nothing until a test installs a hook with
`install(...)`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

Hook = Callable[[str], None]


class Checkpoints:
    """One set of named points and the (at most one) hook a test installed for them."""

    def __init__(self) -> None:
        self._hook: Hook | None = None

    def checkpoint(self, point: str) -> None:
        """Reached `point`: run the installed hook, if any."""
        if self._hook is not None:
            self._hook(point)

    def install(self, hook: Hook | None) -> None:
        """Install (or with None remove) the hook called at every checkpoint."""
        self._hook = hook


def at_nth(point: str, nth: int, action: Hook) -> Hook:
    """A hook that calls `action(point)` the `nth` time `point` is reached, and ignores every other point."""
    seen = 0

    def hook(reached: str) -> None:
        nonlocal seen
        if reached == point:
            seen += 1
            if seen == nth:
                action(reached)

    return hook


def crash_at(point: str, nth: int = 1, exit_code: int = 70) -> Hook:
    """A hook that ends the process abruptly (`os._exit`) the `nth` time `point` is reached."""

    def crash(_: str) -> None:
        os._exit(exit_code)

    return at_nth(point, nth, crash)
