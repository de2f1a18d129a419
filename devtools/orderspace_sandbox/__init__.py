"""The sandbox Orderspace API: a faithful local emulation of the API for the demo, the tests and anyone
without an account. Standard library only; shares nothing with `orderspace_pipelines.client`.

    from orderspace_sandbox import SandboxConfig, SandboxServer
    with SandboxServer(SandboxConfig(scale="tiny")) as server:
        server.api_url, server.token_url, server.store.all("orders"), server.stats()
"""

from orderspace_sandbox.cli import main
from orderspace_sandbox.config import FAULT_KINDS, SCALES, SandboxConfig
from orderspace_sandbox.server import SandboxServer
from orderspace_sandbox.store import SANDBOX_RESOURCES, Store

__all__ = ["FAULT_KINDS", "SANDBOX_RESOURCES", "SCALES", "SandboxConfig", "SandboxServer", "Store", "main"]
