"""Named points in the push where a test may stop the process (kill -9 semantics), and nothing else.

Production code calls `checkpoint("dispatch.posted")` and the like; by default that does nothing. A test
(in the child process it will kill) installs a callable with `install(...)`, usually `crash_at(point, nth)`,
which ends the process with `os._exit(70)` at the n-th time the point is reached: no `finally`, no flush,
exactly what a `kill -9` leaves behind.

Points:

* `file.locked`: the push holds the ledger's claim on the file's bytes, the file is not yet moved to `work/`;
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

from orderspace_pipelines.testing_hooks import Checkpoints, crash_at

__all__ = ["checkpoint", "crash_at", "install"]

_checkpoints = Checkpoints()
checkpoint = _checkpoints.checkpoint
install = _checkpoints.install
