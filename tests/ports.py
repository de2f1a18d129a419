"""A TCP port on 127.0.0.1 for the tests' servers (and, since nothing keeps it, a port nothing listens on)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port free on 127.0.0.1 right now: bound once, then released, so nothing listens there until a test's
    server binds it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
