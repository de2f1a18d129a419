"""The project's code location (`orderspace_pipelines.definitions`) plus one test hook (multi-host test).

The gRPC code server loads this module instead of `orderspace_pipelines.definitions`; the definitions are the
very same object. What it adds: when `$ORDERSPACE_DEPLOYTEST_PAUSE_DIR` is set (on the code server, hence on
the run workers it spawns), the first time a push reaches `dispatch.posted` (Orderspace answered the dispatch
POST, the ledger has not heard of it: the worst moment to die) the process writes its pid to
`<dir>/dispatch.posted.pid` and stops there until the test kills it with SIGKILL.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from orderspace_pipelines.definitions import defs
from orderspace_pipelines.testing_hooks import at_nth
from orderspace_pipelines.warehouse import hooks

__all__ = ["defs"]

PAUSE_DIR_ENV = "ORDERSPACE_DEPLOYTEST_PAUSE_DIR"
PAUSE_POINT = "dispatch.posted"


def pause_file(folder: Path) -> Path:
    """Where a paused process writes its pid."""
    return folder / f"{PAUSE_POINT}.pid"


def _pause(point: str) -> None:
    folder = os.environ.get(PAUSE_DIR_ENV)  # read when reached, never at import
    if not folder:
        return
    marker = pause_file(Path(folder))
    temporary = marker.with_suffix(".tmp")
    temporary.write_text(str(os.getpid()))
    temporary.replace(marker)
    while True:  # until SIGKILL
        time.sleep(1)


hooks.install(at_nth(PAUSE_POINT, 1, _pause))
