"""The change feed with `ORDERSPACE_DATABASE_URL` set: a real-HTTP receiver stores into Postgres, the Dagster
apply job reads and marks there, and the tombstones live there too; nothing of it is a file on the volume."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import psycopg
import pytest
from pydantic import SecretStr

from orderspace_pipelines.defs.change_feed import apply_stored_events, backlog, events_applied
from orderspace_pipelines.defs.resources import LakeResource
from orderspace_pipelines.lake.tombstones import tombstone_path
from orderspace_pipelines.webhooks.signing import key_file_path
from orderspace_pipelines.webhooks.store import store_path
from tests.changefeed.helpers import customer, ev, order, table_rows
from tests.webhooks.helpers import body_of, signed_headers, start_receiver


def test_received_applied_and_tombstoned_in_postgres(
    hook_dir: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORDERSPACE_DATA_DIR", str(hook_dir))
    monkeypatch.setenv("ORDERSPACE_DATABASE_URL", postgres_url)
    receiver = start_receiver(hook_dir, key_file_path(hook_dir), postgres_url)
    try:
        for events in (
            [ev("order.created", order("or_1")), ev("customer.created", customer("cu_1"))],
            [ev("order.deleted", {"id": "or_1", "deleted": True})],
            [ev("order.updated", order("or_1", status="released"))],  # late: must not resurrect it
        ):
            body = body_of(events)
            assert receiver.post(body, signed_headers(body)).status_code == 200
    finally:
        receiver.stop()
    waiting = backlog(hook_dir, SecretStr(postgres_url))  # what the sensor reads
    assert waiting.highest_seq == 4 and waiting.pending_per_table == {"orders": 3, "customers": 1}

    with dg.DagsterInstance.ephemeral() as instance:
        result = apply_stored_events(instance, LakeResource(data_dir=str(hook_dir)))
    assert result is not None and result.success and events_applied(result) == 4

    assert table_rows(hook_dir, "orders") == []
    assert [row["id"] for row in table_rows(hook_dir, "customers")] == ["cu_1"]
    assert backlog(hook_dir, SecretStr(postgres_url)).highest_seq is None
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT resource, id FROM lake_tombstones").fetchall() == [("order", "or_1")]
        assert conn.execute("SELECT count(*) FROM webhook_events WHERE applied_at IS NULL").fetchone() == (0,)
    assert not store_path(hook_dir).exists() and not tombstone_path(hook_dir).exists()
