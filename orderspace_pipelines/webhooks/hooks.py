"""Named points in the receiver where a test may pause or stop the process, and nothing else.

Production code calls `checkpoint("delivery.parsed")`; by default that does nothing. A test (in the child
process it will kill) installs a callable with `install(...)`. Points:

* `delivery.parsed`: the body is verified and parsed, nothing is stored yet;
* `delivery.committed`: the delivery is committed, the 200 has not been sent.
"""

from __future__ import annotations

from orderspace_pipelines.testing_hooks import Checkpoints

__all__ = ["checkpoint", "install"]

_checkpoints = Checkpoints()
checkpoint = _checkpoints.checkpoint
install = _checkpoints.install
