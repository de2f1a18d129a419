"""The change-feed sensor (evaluated directly) and job (run in-process in a Dagster instance)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from orderspace_pipelines.defs.change_feed import change_feed_job, change_feed_sensor
from orderspace_pipelines.defs.resources import LakeResource
from tests.changefeed.helpers import Feed, customer, ev, order, table_rows


def _tick(instance: dg.DagsterInstance, data_dir: Path) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance, resources={"lake": LakeResource(data_dir=str(data_dir))}
    )
    return change_feed_sensor(context)


def test_sensor_launches_with_highest_seq_and_job_applies(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with dg.DagsterInstance.ephemeral() as instance:
        assert _tick(instance, data_dir).skip_reason is not None  # no store yet
        feed = Feed(data_dir)
        feed.deliver(ev("order.created", order("or_1")), ev("customer.created", customer("cu_1")))
        feed.deliver(ev("order.deleted", {"id": "or_0", "deleted": True}))
        result = _tick(instance, data_dir)
        [request] = result.run_requests
        assert request.run_key == "change-feed:3"
        assert request.tags["orderspace/pending_events"] == "3"
        assert request.tags["orderspace/pending_per_table"] == "customers=1, orders=2"
        assert request.tags["orderspace/last_delivery_at"].startswith("2026-11-30T09:00:02")

        run = change_feed_job.execute_in_process(
            instance=instance, resources={"lake": LakeResource(data_dir=str(data_dir))}
        )
        assert run.success
        [materialization] = [
            event for event in run.all_node_events if event.event_type_value == "STEP_OUTPUT"
        ]
        metadata = materialization.event_specific_data.metadata  # type: ignore[union-attr]
        assert metadata["events_applied"].value == 3
        assert metadata["rows_per_table"].value == {"customers": 1, "order_lines": 2, "orders": 1}
        assert metadata["tables_touched"].value == "customers, order_lines, orders"
        assert metadata["last_event_received_at"].value == "2026-11-30T09:00:02+00:00"
        assert metadata["pending_before_per_table"].value == {"customers": 1, "orders": 2}
        assert [row["id"] for row in table_rows(data_dir, "orders")] == ["or_1"]
        assert feed.store.stats().pending_total == 0
        # Nothing waits now: the sensor skips.
        skipped = str(_tick(instance, data_dir).skip_reason.skip_message)  # type: ignore[union-attr]
        assert skipped.startswith(
            "no webhook events waiting (pending: none; last delivery: 2026-11-30T09:00:02"
        )
        feed.deliver(ev("customer.updated", customer("cu_1", "Green")))
        assert [r.run_key for r in _tick(instance, data_dir).run_requests] == ["change-feed:4"]
        feed.store.close()


def test_definitions_register_the_change_feed() -> None:
    from orderspace_pipelines.definitions import defs

    assert defs.get_job_def("change_feed_job") is not None
    sensor = defs.get_sensor_def("change_feed_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 10
    health = defs.get_sensor_def("webhook_subscription_sensor")
    assert health.default_status == dg.DefaultSensorStatus.RUNNING


def _latest_observation(instance: dg.DagsterInstance, table: str) -> dg.AssetObservation:
    records = instance.fetch_observations(dg.AssetKey(table), limit=1).records
    assert records, f"no observation of {table}"
    observation = records[0].asset_observation
    assert observation is not None
    return observation


def test_apply_run_records_each_tables_feed_on_its_asset(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    lake = LakeResource(data_dir=str(data_dir))
    feed = Feed(data_dir)
    feed.deliver(ev("order.created", order("or_1")), ev("order.created", order("or_2")))
    with dg.DagsterInstance.ephemeral() as instance:
        assert change_feed_job.execute_in_process(instance=instance, resources={"lake": lake}).success
        # Two more orders arrive after the run: they wait.
        feed.deliver(ev("order.updated", order("or_1", status="fulfilled")))
        feed.deliver(ev("customer.created", customer("cu_9")))
        orders = _latest_observation(instance, "orders")
        assert orders.metadata["change_feed_pending_events"].value == 0
        received = orders.metadata["change_feed_last_event_received_at"].value
        assert received == datetime(2026, 11, 30, 9, 0, 1, tzinfo=UTC).timestamp()
        assert isinstance(orders.metadata["change_feed_last_landed_at"].value, float)  # a real time
        assert (orders.description or "").startswith("0 webhook event(s) waiting; last event received")
        customers = _latest_observation(instance, "customers")
        assert customers.metadata["change_feed_pending_events"].value == 0
        assert customers.metadata["change_feed_last_landed_at"].value == "never"

        # The sensor records the new backlog (once: an unchanged feed adds no observation).
        first = _tick(instance, data_dir)
        by_table = {str(o.asset_key.path[0]): o for o in first.asset_events}
        assert set(by_table) >= {"orders", "customers", "invoices", "invoice_payments", "inventory_levels"}
        assert by_table["orders"].metadata["change_feed_pending_events"].value == 1
        assert by_table["customers"].metadata["change_feed_pending_events"].value == 1
        assert by_table["customers"].metadata["change_feed_last_landed_at"].value == "never"
        again = dg.build_sensor_context(instance=instance, resources={"lake": lake}, cursor=first.cursor)
        assert change_feed_sensor(again).asset_events == []
    feed.store.close()
