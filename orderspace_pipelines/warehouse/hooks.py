"""Named points in the push where a test may stop the process (kill -9 semantics), and nothing else.

Production code calls `checkpoint("dispatch.posted")` and the like; by default that does nothing. A test
(in the child process it will kill) installs a callable with `install(...)`, usually `crash_at(point, nth)`,
which ends the process with `os._exit(70)` at the n-th time the point is reached: no `finally`, no flush,
exactly what a `kill -9` leaves behind.

Points:

* `dispatch.planned`: an order's dispatch is planned (existing dispatches known), nothing recorded yet;
* `dispatch.pending`: the ledger holds the pending entry, the POST has not left;
* `dispatch.posted`: Orderspace answered the POST, the ledger has not heard of it;
* `dispatch.confirmed`: the ledger holds the dispatch id;
* `dispatch.reconciled`: a pending entry's order dispatches were listed, nothing decided yet;
* `inventory.posted`: an inventory batch was accepted, the ledger has not heard of it;
* `file.reported`: the report is written, the ledger's file outcome is not;
* `file.finished`: the ledger holds the outcome, the file is still in `work/`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

_hook: Callable[[str], None] | None = None


def checkpoint(point: str) -> None:
    """Reached `point`: run the installed hook, if any."""
    if _hook is not None:
        _hook(point)


def install(hook: Callable[[str], None] | None) -> None:
    """Install (or with None remove) the hook called at every checkpoint."""
    global _hook
    _hook = hook


def crash_at(point: str, nth: int = 1, exit_code: int = 70) -> Callable[[str], None]:
    """A hook that ends the process abruptly the `nth` time `point` is reached."""
    seen = 0

    def hook(reached: str) -> None:
        nonlocal seen
        if reached == point:
            seen += 1
            if seen == nth:
                os._exit(exit_code)

    return hook
