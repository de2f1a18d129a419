"""The deployment's artifacts (deploy/, Dockerfile, docker-compose.yaml) checked without a Docker daemon.

The instance file is loaded into a real `DagsterInstance` against a real PostgreSQL server and a real run is
recorded through it; the compose file and the Helm values are parsed and their wiring checked; the commands
the Dockerfile and the compose file run are the real entry points (started here as processes).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
import yaml

from orderspace_pipelines.defs.sync import run_sync
from orderspace_pipelines.settings import OrderspaceSettings, env_name
from orderspace_sandbox import SandboxServer
from tests.deploy.deployment import deployment_home
from tests.ports import free_port
from tests.postgres_server import PASSWORD

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def test_instance_file_runs_on_postgres_and_records_a_run(
    orderspace_env: dict[str, str],
    sandbox: SandboxServer,
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = deployment_home(tmp_path)
    monkeypatch.setenv("ORDERSPACE_DATABASE_URL", postgres_url)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.get_ref().storage_data
        assert storage is not None and storage.class_name == "DagsterPostgresStorage"
        assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert not instance.telemetry_enabled and not instance.nux_enabled
        assert instance.run_monitoring_enabled
        result = run_sync(select=["customers"], instance=instance)
    assert result.success, result.describe()
    # A second instance loaded from the same file (another service) sees the run and its materialization.
    with dg.DagsterInstance.from_config(str(home)) as other:
        runs = other.get_runs()
        assert {run.run_id for run in runs} == set(result.run_ids)
        assert all(run.is_success for run in runs)
        event = other.get_latest_materialization_event(dg.AssetKey("customers"))
        assert event is not None and event.run_id in result.run_ids
        assert other.event_log_storage.get_concurrency_info("orderspace_api").slot_count == 2
    # The file holds no secret: the URL (and its password) came from the environment.
    assert PASSWORD not in (home / "dagster.yaml").read_text()
    assert "ORDERSPACE_DATABASE_URL" in (DEPLOY / "dagster.yaml").read_text()


# --- docker-compose.yaml, deploy/.env.example, Dockerfile, .dockerignore: parsed and checked ---------------

COMPOSE = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]
DAGSTER_SERVICES = ("code-server", "webserver", "daemon")
_REFERENCE = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


def example_env() -> dict[str, str]:
    """deploy/.env.example as `docker compose --env-file` reads it."""
    pairs = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?message}` (what this compose file uses)."""

    def value(match: re.Match[str]) -> str:
        name, kind, extra = match.group(1), match.group(2), match.group(3) or ""
        current = env.get(name, "")
        if kind == "?" and not current:
            raise ValueError(f"compose refuses to start: {extra}")
        return current or (extra if kind == "-" else "")

    return _REFERENCE.sub(value, text)


def service_env(name: str, env: dict[str, str]) -> dict[str, str]:
    return {key: interpolate(str(value), env) for key, value in SERVICES[name]["environment"].items()}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def dockerfile_exec(instruction: str) -> list[str]:
    """The exec-form (JSON) command of the last `instruction` (CMD, or HEALTHCHECK's CMD)."""
    (arguments,) = [args for name, args in dockerfile_instructions() if name == instruction][-1:]
    return json.loads(arguments[arguments.index("[") :])


def test_compose_services_are_wired_with_health_checks_and_graceful_stops() -> None:
    assert set(SERVICES) == {"postgres", *DAGSTER_SERVICES, "webhooks"}
    for name, service in SERVICES.items():
        assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
        assert service["stop_grace_period"] and service["stop_signal"], name
        if name != "postgres":
            assert service["depends_on"]["postgres"]["condition"] == "service_healthy", name
            assert service["init"] is True, name  # run subprocesses reaped, signals forwarded
            assert service["build"] == {"context": ".", "dockerfile": "Dockerfile"}, name  # one image
    for name in ("webserver", "daemon"):
        assert SERVICES[name]["depends_on"]["code-server"]["condition"] == "service_healthy"
    # The lake: one volume, at ORDERSPACE_DATA_DIR, wherever code runs (runs and sensors, the receiver).
    for name in ("code-server", "webhooks"):
        assert "lake:/data" in SERVICES[name]["volumes"]
        assert SERVICES[name]["environment"]["ORDERSPACE_DATA_DIR"] == "/data"
    assert "lake" in COMPOSE["volumes"] and "pgdata" in COMPOSE["volumes"]
    # The code server runs exactly the image's default command.
    assert SERVICES["code-server"]["command"] == dockerfile_exec("CMD")
    assert SERVICES["code-server"]["healthcheck"]["test"][1:] == dockerfile_exec("HEALTHCHECK")


def test_compose_secrets_come_from_the_env_file_and_reach_only_who_needs_them() -> None:
    referenced = set(_REFERENCE.findall((REPO / "docker-compose.yaml").read_text()))
    listed = example_env()
    assert {name for name, _, _ in referenced} <= set(listed)  # every variable the compose file reads
    # ... and every setting of the model is there too (ORDERSPACE_DATA_DIR is the volume's path).
    settings_vars = {env_name(field) for field in OrderspaceSettings.model_fields}
    example_text = (DEPLOY / ".env.example").read_text()
    assert all(name in example_text for name in settings_vars)
    # No real value in the example: every secret is blank.
    for secret in ("POSTGRES_PASSWORD", "ORDERSPACE_CLIENT_SECRET", "ORDERSPACE_CLIENT_ID"):
        assert listed[secret] == ""
    # A filled-in env file gives each service what it needs, and the client secret only to code.
    filled = listed | {
        "POSTGRES_PASSWORD": "0123abcd",
        "ORDERSPACE_CLIENT_ID": "client-1",
        "ORDERSPACE_CLIENT_SECRET": "s3cret",
    }
    for name in DAGSTER_SERVICES:
        env = service_env(name, filled)
        assert env["DAGSTER_HOME"] == "/opt/dagster/dagster_home"
        assert env["ORDERSPACE_DATABASE_URL"] == "postgresql://orderspace:0123abcd@postgres:5432/orderspace"
    for name in ("code-server", "webhooks"):
        env = service_env(name, filled)
        settings = OrderspaceSettings.from_env(env)  # blank values mean the defaults
        assert settings.client_secret is not None and settings.client_secret.get_secret_value() == "s3cret"
        assert str(settings.data_dir) == "/data" and settings.requests_per_minute == 60
    for name in ("webserver", "daemon"):
        assert "ORDERSPACE_CLIENT_SECRET" not in SERVICES[name]["environment"]
    with pytest.raises(ValueError, match=re.escape("set POSTGRES_PASSWORD in deploy/.env")):
        service_env("code-server", listed)  # compose refuses to start without it


def test_the_image_runs_as_a_user_with_no_secret_baked_in() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [args for name, args in instructions if name == "USER"]
    assert users and users[-1] not in ("root", "0")
    baked = " ".join(args for name, args in instructions if name in ("ENV", "ARG"))
    assert not re.search(r"SECRET|PASSWORD|TOKEN|DATABASE_URL", baked)
    assert dockerfile_exec("HEALTHCHECK")[:3] == ["dagster", "api", "grpc-health-check"]
    # What the image copies is what .dockerignore lets through, and never a .env file.
    copied = [
        source
        for name, args in instructions
        if name == "COPY"
        for source in args.split()[:-1]
        if not source.startswith("--")
    ]
    assert copied and all(docker_includes(source) for source in copied)
    assert not docker_includes("deploy/.env") and not docker_includes("data/orderspace.duckdb")


def docker_includes(path: str) -> bool:
    """Whether .dockerignore lets `path` into the build context (last matching pattern wins)."""
    included = True
    for line in (REPO / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern.replace("**/", "")):
            included = negated
    return included


# --- the compose services started from their own commands, as processes (no Docker daemon here) ----------


def localized(args: list[str], home: Path, ports: dict[str, int]) -> list[str]:
    """A container command run here: this machine's Dagster home, free ports, 127.0.0.1 for 0.0.0.0."""
    out = []
    for arg in args:
        if arg in ports:
            out.append(str(ports[arg]))
            continue
        arg = arg.replace("/opt/dagster/dagster_home", str(home)).replace("0.0.0.0", "127.0.0.1")
        for old, new in ports.items():
            arg = arg.replace(f":{old}/", f":{new}/")
        out.append(arg)
    return out


def healthy(check: list[str], env: dict[str, str], limit: float = 240.0) -> None:
    """Run a health check command until it passes (a deadline against hanging, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while True:
        done = subprocess.run(check, env=env, capture_output=True, text=True, timeout=60)
        if done.returncode == 0:
            return
        assert time.monotonic() < deadline, (
            f"{check} never passed: {done.stdout[-500:]} {done.stderr[-1500:]}"
        )
        time.sleep(1)


def test_the_compose_services_run_from_their_commands_and_launch_a_run(
    orderspace_env: dict[str, str],
    sandbox: SandboxServer,
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDERSPACE_DATABASE_URL", postgres_url)  # for this test's own look at the instance
    home = deployment_home(tmp_path)
    shutil.copy(DEPLOY / "workspace.yaml", home / "workspace.yaml")
    ports = {"4000": free_port(), "3000": free_port(), "8787": free_port()}
    env = orderspace_env | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DAGSTER_HOME": str(home),
        "ORDERSPACE_DATABASE_URL": postgres_url,
        "DAGSTER_CODE_SERVER_HOST": "127.0.0.1",
        "DAGSTER_CODE_SERVER_PORT": str(ports["4000"]),
    }
    # A deployment's one-off step: the receiver is ready (`/readyz`) once the signing key is stored.
    register = subprocess.run(
        ["orderspace-pipelines", "webhooks", "register", "https://hooks.example.test/webhooks/orderspace"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert register.returncode == 0, register.stderr[-2000:]
    started: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in ("code-server", "webserver", "daemon", "webhooks"):
            log = (tmp_path / f"{name}.log").open("wb")
            command = localized(SERVICES[name]["command"], home, ports)
            started[name] = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=log)
            healthy(localized(SERVICES[name]["healthcheck"]["test"][1:], home, ports), env)
        launch = subprocess.run(
            ["dagster", "job", "launch", "-w", str(home / "workspace.yaml"), "-j", "inventory_snapshot_job"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert launch.returncode == 0, launch.stderr[-2000:]
        with dg.DagsterInstance.from_config(str(home)) as instance:
            deadline = time.monotonic() + 300
            while not (runs := instance.get_runs()) or not runs[0].is_finished:
                assert time.monotonic() < deadline, "the daemon never ran the queued run"
                time.sleep(1)
            assert [run.job_name for run in runs] == ["inventory_snapshot_job"]
            assert runs[0].is_success, (tmp_path / "code-server.log").read_text()[-3000:]
        lake = Path(env["ORDERSPACE_DATA_DIR"]) / "parquet" / "inventory_levels"
        skus = sorted(pq.read_table(lake).column("sku").to_pylist())
        assert skus == sorted(level["sku"] for level in sandbox.store.all("inventory_levels"))
    finally:
        for process in started.values():
            process.send_signal(signal.SIGTERM)
        codes = {name: process.wait(timeout=120) for name, process in started.items()}
    assert codes["webhooks"] == 0  # the receiver's graceful stop
