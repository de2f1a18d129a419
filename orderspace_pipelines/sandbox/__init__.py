"""The sandbox Orderspace API: a faithful local emulation of the API for the demo, the tests and anyone
without an account. Standard library only; shares nothing with `orderspace_pipelines.client`.

    from orderspace_pipelines.sandbox import SandboxConfig, SandboxServer
    with SandboxServer(SandboxConfig(scale="tiny")) as server:
        server.api_url, server.token_url, server.store.all("orders"), server.stats()
"""

from orderspace_pipelines.sandbox.cli import main
from orderspace_pipelines.sandbox.config import FAULT_KINDS, SCALES, SandboxConfig
from orderspace_pipelines.sandbox.server import SandboxServer
from orderspace_pipelines.sandbox.store import RESOURCES, Store

__all__ = ["FAULT_KINDS", "RESOURCES", "SCALES", "SandboxConfig", "SandboxServer", "Store", "main"]
