"""The change-feed sensor (evaluated directly) and job (run in-process in a Dagster instance)."""

from __future__ import annotations

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
