"""Fixtures of the reconcile tests: a tiny sandbox account pulled once, copied into each test's data dir.

The sandbox is deterministic per seed, so the lake pulled from one tiny sandbox is the lake of every fresh
tiny sandbox with the same seed: each test gets its own sandbox (the `sandbox` fixture) and a copy of that
lake, without paying for a full sync each time.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orderspace_pipelines.defs.sync import run_sync
from orderspace_sandbox import SandboxConfig, SandboxServer
from tests.conftest import FAST_RATE_LIMIT, FAST_RATE_WINDOW
from tests.pull.conftest import resources_for


def env_for(server: SandboxServer, root: Path) -> dict[str, str]:
    return {
        "ORDERSPACE_CLIENT_ID": server.config.client_id,
        "ORDERSPACE_CLIENT_SECRET": server.config.client_secret,
        "ORDERSPACE_API_URL": server.api_url,
        "ORDERSPACE_TOKEN_URL": server.token_url,
        "ORDERSPACE_REQUESTS_PER_MINUTE": str(server.config.rate_limit),
        "ORDERSPACE_RATE_WINDOW_SECONDS": str(server.config.rate_window),
        "ORDERSPACE_DATA_DIR": str(root / "data"),
        "ORDERSPACE_THROTTLE_DB": str(root / "throttle.sqlite"),
    }


@pytest.fixture(scope="session")
def pristine_lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The tiny default-seed account pulled whole by `sync` (once per session)."""
    root = tmp_path_factory.mktemp("pristine")
    config = SandboxConfig(port=0, scale="tiny", rate_limit=FAST_RATE_LIMIT, rate_window=FAST_RATE_WINDOW)
    with SandboxServer(config) as server, pytest.MonkeyPatch.context() as patch:
        env = env_for(server, root)
        for name, value in env.items():
            patch.setenv(name, value)
        result = run_sync(resources=resources_for(env))
        assert result.success, result.error
    yield root / "data"


@pytest.fixture
def lake(orderspace_env: dict[str, str], pristine_lake: Path) -> Path:
    """This test's data dir: a copy of the pulled lake of this test's (identical) sandbox account."""
    data_dir = Path(orderspace_env["ORDERSPACE_DATA_DIR"])
    shutil.copytree(pristine_lake, data_dir)
    return data_dir


class SandboxHttp:
    """The sandbox's controls and API over real HTTP (what another process would use)."""

    def __init__(self, server: SandboxServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.base_url, timeout=30)

    def activity(self, changes: int) -> list[dict[str, Any]]:
        response = self.http.post("/_sandbox/activity", json={"changes": changes})
        response.raise_for_status()
        return list(response.json()["changes"])

    def requests(self) -> int:
        return int(self.http.get("/_sandbox/stats").json()["requests"])

    def reset_stats(self) -> None:
        self.http.post("/_sandbox/reset-stats").raise_for_status()

    def records(self, resource: str) -> list[dict[str, Any]]:
        return list(self.http.get(f"/_sandbox/records/{resource}").json()[resource])

    def _token(self) -> str:
        return str(
            self.http.post(
                "/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": self.server.config.client_id,
                    "client_secret": self.server.config.client_secret,
                },
            ).json()["access_token"]
        )

    def delete(self, resource: str, record_id: str) -> None:
        """DELETE through the API itself (a token first), as a user of the real API would."""
        response = self.http.delete(
            f"/v1/{resource}/{record_id}", headers={"Authorization": f"Bearer {self._token()}"}
        )
        assert response.status_code == 200, response.text

    def send(self, method: str, path: str, body: dict[str, Any]) -> Any:
        """POST or PUT `body` to the API's `path` (e.g. `customers/cu_1`); the response's JSON."""
        response = self.http.request(
            method, f"/v1/{path}", json=body, headers={"Authorization": f"Bearer {self._token()}"}
        )
        assert response.status_code == 200, response.text
        return response.json()

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def api(sandbox: SandboxServer) -> Iterator[SandboxHttp]:
    client = SandboxHttp(sandbox)
    yield client
    client.close()
