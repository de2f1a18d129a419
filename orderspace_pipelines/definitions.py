"""The Dagster code location: `dagster dev` (via workspace.yaml) and the CLI load `defs` from here."""

from __future__ import annotations

import dagster as dg

from orderspace_pipelines.defs.pull_assets import PULL_ASSETS
from orderspace_pipelines.defs.push_jobs import PUSH_JOBS
from orderspace_pipelines.defs.resources import LakeResource, OrderspaceResource
from orderspace_pipelines.defs.schedules import PULL_JOBS, PULL_SCHEDULES
from orderspace_pipelines.defs.sensors import PUSH_SENSORS


def build_resources() -> dict[str, dg.ConfigurableResource]:
    """The resources every asset, check and job uses, read from the contract's environment variables."""
    return {"orderspace": OrderspaceResource.from_env(), "lake": LakeResource.from_env()}


defs = dg.Definitions(
    assets=PULL_ASSETS,
    jobs=[*PULL_JOBS, *PUSH_JOBS],
    schedules=PULL_SCHEDULES,
    sensors=PUSH_SENSORS,
    resources=build_resources(),
)
