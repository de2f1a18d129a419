"""The deployment of the compose file, as plain processes on this machine: one "host" runs the Dagster
services (gRPC code server, webserver, daemon), another runs the CLI; they share only Postgres and the
lake folder.

`Host` is one machine's view: its own temp dir (throttle file, token cache, `$TMPDIR`), its own
`$DAGSTER_HOME` holding the deployment's Postgres `dagster.yaml`, and the environment every process of that
host gets. `start_dagster(...)` starts the three services the way `docker-compose.yaml` does and waits until
the webserver serves the code location and the daemon reports healthy.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from orderspace_sandbox import SandboxServer
from tests.deploy.services import BIN, REPO, ServiceStack, graphql, wait_for
from tests.ports import free_port

DEPLOY = REPO / "deploy"  # dagster.yaml and workspace.yaml, as the image ships them
START_SECONDS = 240.0  # a ceiling for start-up on a loaded 2-core machine, not a speed assertion
CODE_LOCATION = "tests.deploy.paused_location"
REQUIRED_DAEMONS = frozenset({"SENSOR", "BACKFILL", "QUEUED_RUN_COORDINATOR"})


def deployment_home(parent: Path) -> Path:
    """A fresh $DAGSTER_HOME, `parent/dagster_home`, holding the deployment's dagster.yaml."""
    home = parent / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    return home


WORKSPACE_STATUS = """
query Workspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
}
"""

DAEMON_HEALTH = """
query DaemonHealth {
  instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } }
}
"""


@dataclass
class Host:
    """One machine: its folders and the environment its processes get."""

    name: str
    root: Path
    base_env: dict[str, str]  # the machine: PATH, HOME, TMPDIR, its own $DAGSTER_HOME
    orderspace_env: dict[str, str]  # the account, the database, the lake volume, per-machine files

    @property
    def env(self) -> dict[str, str]:
        """What the code gets (the code server and its runs, the CLI)."""
        return {**self.base_env, **self.orderspace_env}

    @classmethod
    def create(cls, name: str, root: Path, shared: dict[str, str]) -> Host:
        """A host under `root` whose only shared state is what `shared` names (Postgres, the lake)."""
        tmp, home = root / "tmp", root / "dagster_home"
        for folder in (home, tmp):
            folder.mkdir(parents=True)
        shutil.copyfile(DEPLOY / "dagster.yaml", home / "dagster.yaml")  # as the image's DAGSTER_HOME holds
        shutil.copyfile(DEPLOY / "workspace.yaml", home / "workspace.yaml")
        base = {
            "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(root),
            "LANG": "C.UTF-8",
            "TMPDIR": str(tmp),
            "DAGSTER_HOME": str(home),
        }
        orderspace = {
            # Per-machine files: without Postgres each host would keep its own budget and token here.
            "ORDERSPACE_THROTTLE_DB": str(tmp / "throttle.sqlite"),
            "ORDERSPACE_TOKEN_CACHE": str(tmp / "tokens.json"),
            **shared,
        }
        return cls(name, root, base, orderspace)


def shared_env(
    sandbox: SandboxServer, database_url: str, lake: Path, requests_per_window: int
) -> dict[str, str]:
    """What every host is configured with: the account, its budget, the database and the lake volume."""
    return {
        "ORDERSPACE_CLIENT_ID": sandbox.config.client_id,
        "ORDERSPACE_CLIENT_SECRET": sandbox.config.client_secret,
        "ORDERSPACE_API_URL": sandbox.api_url,
        "ORDERSPACE_TOKEN_URL": sandbox.token_url,
        "ORDERSPACE_REQUESTS_PER_MINUTE": str(requests_per_window),
        "ORDERSPACE_RATE_WINDOW_SECONDS": str(sandbox.config.rate_window),
        "ORDERSPACE_DATABASE_URL": database_url,
        "ORDERSPACE_DATA_DIR": str(lake),
        "ORDERSPACE_WAREHOUSE_STABLE_SECONDS": "1",
    }


def start_dagster(stack: ServiceStack, host: Host, extra_env: dict[str, str]) -> str:
    """docker-compose.yaml's code-server, then its webserver and daemon, on `host`; returns the webserver's
    URL once the code location is loaded and the daemon's heartbeats are healthy."""
    grpc_port, web_port = free_port(), free_port()
    dagster_env = {  # compose's x-dagster-env: all the webserver and the daemon get
        **host.base_env,
        "DAGSTER_CODE_SERVER_HOST": "127.0.0.1",
        "DAGSTER_CODE_SERVER_PORT": str(grpc_port),
        "ORDERSPACE_DATABASE_URL": host.orderspace_env["ORDERSPACE_DATABASE_URL"],
    }
    code_env = {**dagster_env, **host.orderspace_env, **extra_env}
    code = stack.start(
        "code-server",
        [str(BIN / "dagster"), "api", "grpc", "--host", "127.0.0.1", "--port", str(grpc_port),
         "--module-name", CODE_LOCATION, "--location-name", "orderspace_pipelines"],
        code_env,
    )  # fmt: skip
    wait_for("the gRPC code server", lambda: _grpc_healthy(grpc_port, code_env) or None,
             timeout=START_SECONDS, diagnose=stack.logs)  # fmt: skip
    assert code.process.poll() is None, code.tail()
    workspace = host.base_env["DAGSTER_HOME"] + "/workspace.yaml"
    webserver = [str(BIN / "dagster-webserver"), "--host", "127.0.0.1", "--port", str(web_port)]
    stack.start("webserver", [*webserver, "--workspace", workspace], dagster_env)
    stack.start("daemon", [str(BIN / "dagster-daemon"), "run", "--workspace", workspace], dagster_env)
    url = f"http://127.0.0.1:{web_port}"
    wait_for("the webserver to load the code location", lambda: _location_loaded(url),
             timeout=START_SECONDS, diagnose=stack.logs)  # fmt: skip
    wait_for("the daemon's heartbeats", lambda: _daemons_healthy(url), timeout=START_SECONDS,
             diagnose=stack.logs)  # fmt: skip
    return url


def _grpc_healthy(port: int, env: dict[str, str]) -> bool:
    check = [str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(port), "-h", "127.0.0.1"]
    return subprocess.run(check, env=env, capture_output=True, timeout=60).returncode == 0


def _location_loaded(url: str) -> bool | None:
    try:
        data = graphql(url, WORKSPACE_STATUS)
    except httpx.HTTPError:
        return None
    entries: list[dict[str, Any]] = data["workspaceOrError"].get("locationEntries", [])
    if not entries or entries[0]["loadStatus"] != "LOADED":
        return None
    loaded = entries[0]["locationOrLoadError"]
    assert loaded["__typename"] == "RepositoryLocation", loaded
    return True


def _daemons_healthy(url: str) -> bool | None:
    statuses = graphql(url, DAEMON_HEALTH)["instance"]["daemonHealth"]["allDaemonStatuses"]
    healthy = {status["daemonType"] for status in statuses if status["healthy"]}
    return True if healthy >= REQUIRED_DAEMONS else None
