"""What the bench scripts share (run as `python bench/<name>.py`, so they import this as `_common`)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import httpx

from orderspace_sandbox import SandboxServer


def connection_for(server: SandboxServer) -> dict[str, Any]:
    """The connection fields (for `OrderspaceSettings` or `OrderspaceResource`) that point at `server`."""
    return {
        "client_id": server.config.client_id,
        "client_secret": server.config.client_secret,
        "api_url": server.api_url,
        "token_url": server.token_url,
        "requests_per_minute": server.config.rate_limit,
        "rate_window_seconds": server.config.rate_window,
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_receiver(
    command: Sequence[str],
    env: Mapping[str, str],
    *,
    output: IO[bytes] | int = subprocess.DEVNULL,
    cwd: Path | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start `command webhooks serve` on a free port and wait (up to 2 min) for /healthz; returns the process
    and the delivery URL. Exits the bench, naming the problem, when it does not come up."""
    port = free_port()
    process = subprocess.Popen(
        [*command, "webhooks", "serve", "--port", str(port)],
        env=dict(env), cwd=cwd, stdout=output, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(f"{base}/healthz", timeout=2)
            return process, f"{base}/webhooks/orderspace"
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the receiver did not start: {' '.join(command)} webhooks serve") from None
            time.sleep(0.05)
