"""What the CLI's product commands, `sync`, `reconcile` and `push`, do: wire the environment, the Dagster
instance and the definitions together. No business logic lives here. (`demo`, `dev` and `sandbox` are
development tools: they live in the `orderspace_devtools` and `orderspace_sandbox` packages, which the `dev`
extra installs.)"""

from __future__ import annotations

import glob
import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock, Timeout

from orderspace_pipelines.settings import OrderspaceSettings, data_dir

if TYPE_CHECKING:
    import dagster as dg

log = logging.getLogger(__name__)

# Dagster storages whose database is a server every process and host shares: syncs need no turn-taking there.
_SHARED_STORAGE_MODULES = ("dagster_postgres", "dagster_mysql")
SYNC_LOCK_NAME = ".orderspace-sync.lock"

# The project's Dagster settings (pools, no telemetry, no welcome dialog), shipped as package data; `demo` and
# `dev` copy it into their $DAGSTER_HOME, a deployment copies it into its own.
DEFAULT_DAGSTER_YAML = Path(__file__).resolve().parent / "dagster_home" / "dagster.yaml"


def dagster_instance() -> dg.DagsterInstance | None:
    """The persistent Dagster instance when $DAGSTER_HOME is set (runs are recorded there), else None."""
    if not os.environ.get("DAGSTER_HOME"):
        return None
    import dagster as dg

    return dg.DagsterInstance.get()


def _local_storage_home() -> Path | None:
    """$DAGSTER_HOME when its Dagster storage is files on this machine (SQLite), else None (Postgres, or no
    $DAGSTER_HOME: an ephemeral instance per process)."""
    home = os.environ.get("DAGSTER_HOME", "").strip()
    if not home:
        return None
    from dagster._core.instance.ref import InstanceRef

    ref = InstanceRef.from_dir(home)
    storage = ref.storage_data or ref.run_storage_data
    shared = storage is not None and storage.module_name.startswith(_SHARED_STORAGE_MODULES)
    return None if shared else Path(home)


@contextmanager
def one_sync_per_home() -> Iterator[None]:
    """Take this $DAGSTER_HOME's sync turn when its storage is SQLite: a second `sync` waits (saying so, and
    for whom) until the first ends, instead of racing it for the SQLite files. Postgres storage: no turn."""
    home = _local_storage_home()
    if home is None:
        yield
        return
    lock = FileLock(str(home / SYNC_LOCK_NAME))
    owner = home / (SYNC_LOCK_NAME + ".owner")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = owner.read_text().strip() if owner.exists() else "another process"
        log.warning(
            "waiting for the other `orderspace-pipelines sync` on DAGSTER_HOME=%s (%s) to finish: its "
            "Dagster storage is SQLite, which takes one sync at a time (with Postgres, syncs run together)",
            home,
            holder,
        )
        lock.acquire()
        log.info("the other sync finished; this one starts now")
    try:
        started = datetime.now(UTC).strftime("%H:%M:%S UTC")
        owner.write_text(f"pid {os.getpid()} on {socket.gethostname()}, since {started}\n")
        yield
    finally:
        lock.release()


def check_shared_database(settings: OrderspaceSettings) -> None:
    """With `ORDERSPACE_DATABASE_URL` set, connect once before any work, so an unreachable or refusing
    database is one line (`postgres.DatabaseError`, no password) rather than a run's step tracebacks."""
    if settings.database_url is not None and settings.database_url.get_secret_value():
        from orderspace_pipelines import postgres

        postgres.connect(settings.database_url, purpose="preflight").close()


def sync_command(*, since: date | None, select: list[str] | None) -> int:
    check_shared_database(OrderspaceSettings.from_env())  # fail early, naming the problem
    from orderspace_pipelines.definitions import build_resources
    from orderspace_pipelines.defs.sync import run_sync

    with one_sync_per_home():  # before the instance: two first-time syncs also race creating its tables
        instance, resources = dagster_instance(), build_resources()
        result = run_sync(since=since, select=select, instance=instance, resources=resources)
    print(result.describe() if hasattr(result, "describe") else result)
    return 0 if result.success else 1


def _claimed_in_work(path: Path, data_dir: Path) -> bool:
    """A copy of `path` is claimed in `warehouse/work/` (another process is pushing it, or one crashed)."""
    from orderspace_pipelines.warehouse import WarehouseFolders
    from orderspace_pipelines.warehouse.files import WORK_SEPARATOR

    work = WarehouseFolders.under(data_dir).work
    return work.is_dir() and any(work.glob(f"*{WORK_SEPARATOR}{glob.escape(path.name)}"))


def reconcile_command(*, sweep_days: int, full_cycle: bool) -> int:
    """`reconcile`: run `reconcile_job` in-process; prints what changed and the requests it spent."""
    check_shared_database(OrderspaceSettings.from_env())
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
    if not path.is_file() and not _claimed_in_work(path, data_dir()):
        print(f"orderspace-pipelines push: no such file: {path}", file=sys.stderr)
        return 2
    check_shared_database(OrderspaceSettings.from_env())  # unreachable: exit 1, nothing done (cli.main)
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
