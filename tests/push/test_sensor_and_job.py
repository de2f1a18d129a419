"""The inbox sensor (evaluated directly) and the Dagster job (run in-process, recorded in an instance)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg

from orderspace_pipelines.defs.push_jobs import PUSH_OP_NAME, run_push, warehouse_push_job
from orderspace_pipelines.defs.resources import LakeResource, OrderspaceResource
from orderspace_pipelines.defs.sensors import build_warehouse_inbox_sensor
from orderspace_pipelines.warehouse import WarehouseFolders

from .conftest import BOTH_LEDGERS


def tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str | None, data_dir: Path):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"lake": LakeResource(data_dir=str(data_dir))}
    )
    result = sensor(context)
    return list(result.run_requests or []), result.cursor


def test_the_sensor_launches_one_run_per_complete_file(tmp_path: Path):
    data_dir = tmp_path / "data"
    inbox = WarehouseFolders.under(data_dir).ensure().inbox
    sensor = build_warehouse_inbox_sensor(stable_seconds=0)
    (inbox / "stock.csv").write_text("sku,on_hand\nA,1\n")
    (inbox / "growing.csv").write_text("sku,on_hand\n")
    (inbox / "upload.csv.part").write_text("sku,on_hand\n")  # still uploading under a temporary name
    (inbox / ".hidden.csv").write_text("sku,on_hand\n")

    with dg.DagsterInstance.ephemeral() as instance:
        first, cursor = tick(sensor, instance, None, data_dir)
        assert first == []  # seen once: not yet known to be complete

        with (inbox / "growing.csv").open("a") as handle:
            handle.write("B,2\n")  # still being written between the ticks
        second, cursor = tick(sensor, instance, cursor, data_dir)
        assert [r.tags["warehouse/file"] for r in second] == ["stock.csv"]
        config = second[0].run_config["ops"][PUSH_OP_NAME]["config"]
        assert config["path"] == str(inbox / "stock.csv") and len(config["sha256"]) == 64
        assert second[0].run_key.startswith("stock.csv:" + config["sha256"][:16])

        third, cursor = tick(sensor, instance, cursor, data_dir)
        assert [r.tags["warehouse/file"] for r in third] == ["growing.csv"]  # settled now

        fourth, cursor = tick(sensor, instance, cursor, data_dir)
        assert fourth == []  # the same file is never launched twice

        # The same content dropped again later is a new drop (a new run that will report a duplicate).
        (inbox / "stock.csv").unlink()
        tick(sensor, instance, cursor, data_dir)
        (inbox / "stock.csv").write_text("sku,on_hand\nA,1\n")
        os.utime(inbox / "stock.csv", ns=(1_000_000_000, 1_000_000_000))
        _, cursor = tick(sensor, instance, cursor, data_dir)
        again, cursor = tick(sensor, instance, cursor, data_dir)
        assert len(again) == 1 and again[0].run_key != second[0].run_key
        assert set(json.loads(cursor)["seen"]) == {"stock.csv", "growing.csv"}


def test_the_sensor_waits_for_a_file_to_be_stable(tmp_path: Path):
    data_dir = tmp_path / "data"
    inbox = WarehouseFolders.under(data_dir).ensure().inbox
    sensor = build_warehouse_inbox_sensor(stable_seconds=3600)
    (inbox / "stock.csv").write_text("sku,on_hand\nA,1\n")
    with dg.DagsterInstance.ephemeral() as instance:
        _, cursor = tick(sensor, instance, None, data_dir)
        requests, _ = tick(sensor, instance, cursor, data_dir)
    assert requests == []  # unchanged, but not yet for an hour


@BOTH_LEDGERS
def test_the_job_runs_in_dagster_with_metadata(sandbox, orderspace_env, data_dir, state_url, tmp_path: Path):
    skus = sorted(level["sku"] for level in sandbox.store.all("inventory_levels"))[:3]
    sample = tmp_path / "stock_levels.csv"
    sample.write_text(
        "sku,on_hand\n" + "".join(f"{sku},{50 + i}\n" for i, sku in enumerate(skus)) + "BAD,1\n"
    )
    resources = {"orderspace": OrderspaceResource.from_env(), "lake": LakeResource.from_env()}

    with dg.DagsterInstance.ephemeral() as instance:
        result = run_push(sample, instance=instance, resources=resources)
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].job_name == warehouse_push_job.name
        assert runs[0].status == dg.DagsterRunStatus.SUCCESS
        outputs = [
            record.event_log_entry.dagster_event
            for record in instance.get_records_for_run(runs[0].run_id).records
            if record.event_log_entry.dagster_event
            and record.event_log_entry.dagster_event.is_successful_output
        ]
        metadata = outputs[0].step_output_data.metadata
    assert metadata["rows_read"].value == 4
    assert metadata["levels_updated"].value == 3
    assert metadata["rows_rejected"].value == 1
    assert metadata["requests_spent"].value == result.requests >= 2  # the SKU listing + one update
    assert "dispatches_created" in metadata and "throttle_wait_seconds" in metadata
    assert sample.exists()  # a file outside the warehouse folders is copied, never moved
    assert Path(result.final_path) == WarehouseFolders.under(data_dir).processed / "stock_levels.csv"
    # The op took the ledger from the environment: Postgres when ORDERSPACE_DATABASE_URL is set.
    assert WarehouseFolders.under(data_dir).ledger_path.exists() == (state_url is None)
    live = {level["sku"]: level for level in sandbox.store.all("inventory_levels")}
    assert [live[sku]["on_hand"] for sku in skus] == [50, 51, 52]
