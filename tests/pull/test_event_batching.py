"""The project's instance storage (`defs/event_log.py`): per-day materializations written in batches on real
SQLite files in a temporary $DAGSTER_HOME, readable by Dagster's stock storage, in the order they were logged.
"""

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef

from orderspace_pipelines.commands import DEFAULT_DAGSTER_YAML
from orderspace_pipelines.defs import event_log
from orderspace_pipelines.defs.event_log import BatchingSqliteEventLogStorage, batched_materializations
from orderspace_pipelines.defs.partitions import first_partition_day, last_partition_day
from orderspace_pipelines.defs.sync import run_sync
from orderspace_pipelines.lake.flatten import record_date

from .conftest import resources_for

DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_offset=1)


@pytest.fixture
def project_home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(DEFAULT_DAGSTER_YAML, home / "dagster.yaml")
    return home


@pytest.fixture
def project_instance(project_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    monkeypatch.setenv("DAGSTER_HOME", str(project_home))
    instance = dg.DagsterInstance.get()
    yield instance
    instance.dispose()


def _stock_instance(home: Path) -> dg.DagsterInstance:
    """The same home read by Dagster's stock SQLite storage (the project's dagster.yaml set aside)."""
    (home / "dagster.yaml").rename(home / "dagster.yaml.project")
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))


def test_batched_materializations_land_in_order_and_stock_dagster_reads_them(
    project_instance: dg.DagsterInstance, project_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(project_instance.event_log_storage, BatchingSqliteEventLogStorage)
    monkeypatch.setattr(event_log, "BATCH_SIZE", 7)  # several full batches and a partial one
    keys = DAYS.get_partition_keys()[:40]

    @dg.asset(partitions_def=DAYS)
    def days(context: dg.AssetExecutionContext) -> None:
        with batched_materializations(context.instance):
            for key in keys[:20]:
                context.log_event(dg.AssetMaterialization(asset_key="days", partition=key, metadata={"n": 1}))
            context.log.info("halfway")  # a log line is held with the materializations, in order
            # any other event (here an observation) writes what is held first
            context.log_event(dg.AssetObservation(asset_key="days", metadata={"seen": True}))
            for key in keys[20:]:
                context.log_event(dg.AssetMaterialization(asset_key="days", partition=key, metadata={"n": 2}))

    result = dg.materialize([days], instance=project_instance, partition_key=keys[0])
    assert result.success
    assert project_instance.get_materialized_partitions(dg.AssetKey("days")) == set(keys)

    kinds = {dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_OBSERVATION}
    logged = [
        (
            entry.dagster_event.partition or entry.dagster_event_type.value
            if entry.dagster_event is not None
            else entry.user_message
        )
        for entry in project_instance.all_logs(result.run_id)
        if (entry.dagster_event is not None and entry.dagster_event_type in kinds)
        or entry.user_message == "halfway"
    ]
    # Dagster's own materialization of the run's partition (keys[0]) comes last, after the body's.
    assert logged == [*keys[:20], "halfway", "ASSET_OBSERVATION", *keys[20:], keys[0]]

    project_instance.dispose()
    stock = _stock_instance(project_home)
    try:
        assert type(stock.event_log_storage).__name__ == "SqliteEventLogStorage"
        assert stock.get_materialized_partitions(dg.AssetKey("days")) == set(keys)
    finally:
        stock.dispose()


def test_held_materializations_are_written_when_the_body_fails(
    project_instance: dg.DagsterInstance,
) -> None:
    keys = DAYS.get_partition_keys()[:5]

    @dg.asset(partitions_def=DAYS)
    def failing(context: dg.AssetExecutionContext) -> None:
        with batched_materializations(context.instance):
            for key in keys:
                context.log_event(dg.AssetMaterialization(asset_key="failing", partition=key))
            raise RuntimeError("boom after five days")

    result = dg.materialize([failing], instance=project_instance, partition_key=keys[0], raise_on_error=False)
    assert not result.success
    assert project_instance.get_materialized_partitions(dg.AssetKey("failing")) == set(keys)


def test_full_sync_on_the_project_storage_shows_each_day_with_its_row_count(
    sandbox, orderspace_env, project_instance: dg.DagsterInstance
) -> None:
    result = run_sync(
        since=None, select=["orders"], instance=project_instance, resources=resources_for(orderspace_env)
    )
    assert result.success, result.describe()
    first, last = first_partition_day(), last_partition_day()
    orders = sandbox.store.all("orders")
    per_day = Counter(record_date(order["created"]) for order in orders)
    lines_per_day = Counter()
    for order in orders:
        lines_per_day[record_date(order["created"])] += len(order["order_lines"])
    expected = {day.isoformat() for day in per_day if first <= day <= last}  # type: ignore[operator]
    assert expected
    for asset, counts in (("orders", per_day), ("order_lines", lines_per_day)):
        key = dg.AssetKey(asset)
        assert project_instance.get_materialized_partitions(key) == expected, asset
        latest: dict[str, int] = {}  # newest first: the latest event of a partition is the one that counts
        for record in project_instance.fetch_materializations(key, limit=10_000).records:
            materialization = record.asset_materialization
            assert materialization is not None and materialization.partition is not None
            row_count = materialization.metadata["dagster/row_count"].value
            latest.setdefault(materialization.partition, int(row_count))  # type: ignore[arg-type]
        assert latest == {day: counts[record_date(day)] for day in expected}, asset
