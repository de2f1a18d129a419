"""The Dagster code location: `dagster dev` (via workspace.yaml) and the CLI load `defs` from here.

The configuration model is validated before anything else is imported (the daily partitions read their
start date from it while loading), so a bad variable fails the load with the model's one-line message,
the one the CLI prints, instead of a stack trace through the settings code.
"""

from __future__ import annotations

import dagster as dg

from orderspace_pipelines.settings import ConfigurationError, load_settings

try:
    load_settings()
except ConfigurationError as error:
    raise ConfigurationError(str(error)) from None  # the message alone: no frames of the settings code

from orderspace_pipelines.defs.change_feed import CHANGE_FEED_JOBS, CHANGE_FEED_SENSORS
from orderspace_pipelines.defs.pull_assets import PULL_ASSETS
from orderspace_pipelines.defs.push_jobs import PUSH_JOBS
from orderspace_pipelines.defs.reconcile import RECONCILE_JOBS, RECONCILE_SCHEDULES
from orderspace_pipelines.defs.resources import LakeResource, OrderspaceResource
from orderspace_pipelines.defs.schedules import PULL_JOBS, PULL_SCHEDULES
from orderspace_pipelines.defs.sensors import PUSH_SENSORS


def build_resources() -> dict[str, dg.ConfigurableResource]:
    """The resources every asset, check and job uses: credentials through `EnvVar`, the rest from the model
    when a step runs."""
    return {"orderspace": OrderspaceResource.from_env(), "lake": LakeResource.from_env()}


defs = dg.Definitions(
    assets=PULL_ASSETS,
    jobs=[*PULL_JOBS, *PUSH_JOBS, *CHANGE_FEED_JOBS, *RECONCILE_JOBS],
    schedules=[*PULL_SCHEDULES, *RECONCILE_SCHEDULES],
    sensors=[*PUSH_SENSORS, *CHANGE_FEED_SENSORS],
    resources=build_resources(),
)
