"""The warehouse push job: one run pushes one warehouse file (see `orderspace_pipelines.warehouse`).

The op runs in the `ORDERSPACE_API_POOL` concurrency pool and through the client's machine-wide throttle, so a
push shares the account's request budget with the pulls. It carries `dagster/priority` 10 (run queue and
pool slots) so a push is handed the next free slot instead of queueing behind every remaining step of a long
backfill: it waits for at most the step in flight, not the whole backfill.

`run_push(path)` runs the same job in-process for one file (the CLI's `push FILE`). A file outside the
warehouse folders (e.g. `data/samples/*.csv`) is copied, never moved, straight into `warehouse/work/`, so the
original stays where it is and the inbox sensor does not see it too.
"""

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

from orderspace_pipelines.defs.console import CONSOLE_INFO
from orderspace_pipelines.defs.pools import ensure_api_pool
from orderspace_pipelines.defs.resources import ORDERSPACE_API_POOL, LakeResource, OrderspaceResource
from orderspace_pipelines.warehouse import PushOptions, PushResult, WarehouseFolders, push_file, sha256_of
from orderspace_pipelines.warehouse.files import work_name
from orderspace_pipelines.warehouse.push import DEFAULT_SNAPSHOT_MAX_AGE_SECONDS

if TYPE_CHECKING:
    from orderspace_pipelines.client import OrderspaceClient
    from orderspace_pipelines.warehouse.protocols import PushClient

PUSH_OP_NAME = "push_warehouse_file"
PUSH_PRIORITY_TAGS = {"dagster/priority": "10"}


class PushFileConfig(dg.Config):
    """Which file to push (written by the sensor or `run_push`)."""

    path: str = Field(
        description="The warehouse file: in warehouse/inbox/, or already claimed in warehouse/work/."
    )
    sha256: str = Field(
        default="", description="Content hash seen by the sensor; finds the claimed copy on re-runs."
    )
    snapshot_max_age_seconds: float = Field(
        default=DEFAULT_SNAPSHOT_MAX_AGE_SECONDS,
        description="A pulled inventory snapshot younger than this is used to skip unchanged levels.",
    )


@dg.op(
    name=PUSH_OP_NAME,
    pool=ORDERSPACE_API_POOL,
    tags=PUSH_PRIORITY_TAGS,
    out=dg.Out(PushResult, description="What happened to every row of the file."),
)
def push_warehouse_file(
    context: dg.OpExecutionContext, config: PushFileConfig, orderspace: OrderspaceResource, lake: LakeResource
) -> dg.Output[PushResult]:
    """Claim, validate and push one warehouse file; report beside it in processed/ or rejected/."""
    options = PushOptions(snapshot_max_age_seconds=config.snapshot_max_age_seconds)
    database_url = lake.database_url  # the ledger: Postgres when set (shared by every host)
    with orderspace.get_client() as client:
        result = push_file(
            Path(config.path),
            client=client,
            data_dir=lake.root,
            sha256=config.sha256 or None,
            options=options,
            log=context.log,
            database_url=database_url,
        )
    metadata: dict[str, Any] = {
        "file": result.file,
        # Plain strings: Dagster's event log serializes only whitelisted enums.
        "kind": str(result.kind or "unknown"),
        "outcome": str(result.outcome),
        "rows_read": result.rows_read,
        "levels_updated": result.levels_updated,
        "levels_unchanged": result.levels_unchanged,
        "dispatches_created": result.dispatches_created,
        "rows_rejected": result.rows_rejected,
        "exit_code": result.exit_code,
        "requests_spent": result.requests,
        "throttle_wait_seconds": result.throttle_wait_seconds,
        "report": dg.MetadataValue.path(result.report_path),
        "final_path": dg.MetadataValue.path(result.final_path),
        "sha256": result.sha256,
    }
    if result.file_error:
        metadata["file_error"] = result.file_error
    if result.stopped_by:
        # Not a crash of the run: the file was reported and filed away in rejected/, and dropping it again
        # resumes it; but nobody should miss it.
        context.log.error(f"{result.file}: {result.summary()}")
        metadata["stopped_by"] = result.stopped_by
    if result.duplicate_of:
        metadata["duplicate_of"] = result.duplicate_of
    return dg.Output(result, metadata=metadata)


@dg.job(
    name="warehouse_push_job",
    tags=PUSH_PRIORITY_TAGS,
    # One op: a step subprocess would only add a Python start-up (seconds) between the drop and the push.
    # The op still claims its `orderspace_api` pool slot under the in-process executor.
    executor_def=dg.in_process_executor,
    description="Push one warehouse file (stock levels or dispatches) to Orderspace, exactly once.",
)
def warehouse_push_job() -> None:
    push_warehouse_file()


PUSH_JOBS = [warehouse_push_job]


def push_run_config(path: Path, sha256: str = "") -> dict[str, Any]:
    return {"ops": {PUSH_OP_NAME: {"config": {"path": str(path), "sha256": sha256}}}}


def stage_for_push(path: Path, data_dir: Path) -> tuple[Path, str]:
    """The path the job should push, and its hash: files outside warehouse/ are copied into work/."""
    path = Path(path).resolve()
    folders = WarehouseFolders.under(data_dir).ensure()
    if not path.is_file():
        return path, ""  # the job looks for a claimed copy, or fails naming the path
    digest = sha256_of(path)
    if folders.root.resolve() in path.parents:
        return path, digest
    target = folders.work / work_name(digest, path.name)
    if not target.exists():
        temporary = folders.work / f".{target.name}.tmp"
        shutil.copyfile(path, temporary)
        os.replace(temporary, target)
    return target, digest


def run_push(
    path: Path,
    *,
    instance: dg.DagsterInstance | None = None,
    resources: Mapping[str, Any] | None = None,
) -> PushResult:
    """Run `warehouse_push_job` in-process for one file and return its result.

    Recorded in `$DAGSTER_HOME` when it is set (else an ephemeral instance). `resources` defaults to the
    environment's (`orderspace`, `lake`). Errors (API down, unknown dispatch outcome) propagate; the file
    then stays claimed in warehouse/work/ and running the same push again resumes it.
    """
    resources = dict(
        resources or {"orderspace": OrderspaceResource.from_env(), "lake": LakeResource.from_env()}
    )
    lake = resources["lake"]
    data_dir = lake.root if isinstance(lake, LakeResource) else Path(str(lake))
    target, digest = stage_for_push(Path(path), data_dir)
    tags = {"warehouse/file": Path(path).name, "warehouse/source": "cli"}
    if digest:
        tags["warehouse/sha256"] = digest[:16]

    def execute(on: dg.DagsterInstance) -> PushResult:
        ensure_api_pool(on)
        result = warehouse_push_job.execute_in_process(
            run_config=push_run_config(target, digest) | CONSOLE_INFO,
            instance=on,
            resources=resources,
            tags=tags,
        )
        return result.output_for_node(PUSH_OP_NAME)

    if instance is not None:
        return execute(instance)
    if os.environ.get("DAGSTER_HOME", "").strip():
        with dg.DagsterInstance.get() as persistent:
            return execute(persistent)
    with dg.DagsterInstance.ephemeral() as ephemeral:
        return execute(ephemeral)


if TYPE_CHECKING:

    def _client_is_a_push_client(client: OrderspaceClient) -> PushClient:
        """Type-checked only: mypy fails here if `OrderspaceClient` stops satisfying `PushClient`."""
        return client
