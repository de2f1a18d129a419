"""Named points in the receiver where a test may pause or stop the process, and nothing else.

Production code calls `checkpoint("delivery.parsed")`; by default that does nothing. A test (in the child
process it will kill) installs a callable with `install(...)`. Points:

* `delivery.parsed`: the body is verified and parsed, nothing is stored yet;
* `delivery.committed`: the delivery is committed, the 200 has not been sent.
"""

from __future__ import annotations

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
