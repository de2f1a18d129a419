"""What the bench scripts share (run as `python bench/<name>.py`, so they import this as `_common`)."""

from __future__ import annotations

from typing import Any

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
