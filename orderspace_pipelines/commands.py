"""What the CLI's product commands, `sync`, `reconcile` and `push`, do: wire the environment, the Dagster
instance and the definitions together. No business logic lives here. (`demo`, `dev` and `sandbox` are
development tools: they live in the `orderspace_devtools` and `orderspace_sandbox` packages, which the `dev`
extra installs.)"""

from __future__ import annotations

import os
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from orderspace_pipelines.settings import OrderspaceSettings

if TYPE_CHECKING:
    import dagster as dg

# The project's Dagster settings (pools, no telemetry, no welcome dialog), shipped as package data; `demo` and
# `dev` copy it into their $DAGSTER_HOME, a deployment copies it into its own.
DEFAULT_DAGSTER_YAML = Path(__file__).resolve().parent / "dagster_home" / "dagster.yaml"


def dagster_instance() -> dg.DagsterInstance | None:
    """The persistent Dagster instance when $DAGSTER_HOME is set (runs are recorded there), else None."""
    if not os.environ.get("DAGSTER_HOME"):
        return None
    import dagster as dg

    return dg.DagsterInstance.get()


def sync_command(*, since: date | None, select: list[str] | None) -> int:
    OrderspaceSettings.from_env()  # fail early, naming the missing variable
    from orderspace_pipelines.definitions import build_resources
    from orderspace_pipelines.defs.sync import run_sync

    result = run_sync(since=since, select=select, instance=dagster_instance(), resources=build_resources())
    print(result.describe() if hasattr(result, "describe") else result)
    return 0 if result.success else 1


def reconcile_command(*, sweep_days: int, full_cycle: bool) -> int:
    """`reconcile`: run `reconcile_job` in-process; prints what changed and the requests it spent."""
    OrderspaceSettings.from_env()
    import dagster as dg

    from orderspace_pipelines.definitions import build_resources
    from orderspace_pipelines.defs.reconcile import run_reconcile

    instance = dagster_instance()
    ephemeral = instance is None
    instance = instance or dg.DagsterInstance.ephemeral()
    try:
        result = run_reconcile(
            instance=instance, resources=build_resources(), sweep_days=sweep_days, full_cycle=full_cycle
        )
    finally:
        if ephemeral:
            instance.dispose()
    if not result.success:
        print(f"orderspace-pipelines reconcile: run {result.run_id} failed: {result.error}", file=sys.stderr)
        return 1
    print(result.summary)
    print(f"API requests: {result.requests}")
    return 0


def push_command(path: Path) -> int:
    if not path.is_file():
        print(f"orderspace-pipelines push: no such file: {path}", file=sys.stderr)
        return 2
    OrderspaceSettings.from_env()
    from orderspace_pipelines.definitions import build_resources
    from orderspace_pipelines.defs.push_jobs import run_push

    instance, resources = dagster_instance(), build_resources()  # configuration errors exit 2 (cli.main)
    try:
        result = run_push(path, instance=instance, resources=resources)
    except Exception as error:  # API down, outcome unknown: the file stays claimed, a re-run resumes it
        cause = error.__cause__ or error
        print(
            f"orderspace-pipelines push: the push did not finish ({type(cause).__name__}: {cause}); the file "
            "stays in warehouse/work/ and running the same command again resumes it",
            file=sys.stderr,
        )
        return 1
    print(result.describe())
    return result.exit_code
