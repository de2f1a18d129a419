"""After N random sandbox changes the lake equals the account record for record, through webhooks alone.

Everything real, over HTTP on 127.0.0.1: a sandbox (plain-http loopback webhooks allowed, fast retries), the
receiver as a process (`orderspace-pipelines webhooks serve`), the subscription registered with `webhooks
register`, a first pull into the lake through Dagster (`run_sync`). Then 60 changes, some through the API
(new orders, dispatches, customer and product edits, stock levels, deletions of orders, invoices, customers
and products) and some by the sandbox's activity mode (status changes, invoices, payments and the rest of its
mix), with the receiver killed (SIGKILL) and restarted on the same port partway, so deliveries fail and are
retried by the sandbox. Once every change is delivered, `change_feed_sensor` is ticked and the run it asks
for is executed as a Dagster job run (`change_feed_job`). No reconcile and no pull follow: the lake must equal
the sandbox (`orderspace_devtools.lake_diff`), and applying must have cost no API request.
"""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from orderspace_devtools.lake_diff import diff_lake, truth_from_store
from orderspace_pipelines.client import OrderspaceClient
from orderspace_pipelines.defs.change_feed import change_feed_job, change_feed_sensor, events_applied
from orderspace_pipelines.defs.resources import LakeResource
from orderspace_pipelines.defs.sync import run_sync
from orderspace_pipelines.settings import OrderspaceSettings
from orderspace_pipelines.webhooks.commands import register_command
from orderspace_pipelines.webhooks.store import SqliteEventStore, store_path
from orderspace_sandbox import SandboxServer
from orderspace_sandbox.store import DISPATCHABLE
from tests.pull.conftest import resources_for

ROOT = Path(__file__).resolve().parents[2]
CHANGES = 60
KILL_AT, RESTART_AT = 25, 35  # the receiver is down for the changes in between
WAIT_SECONDS = 120  # a guard against hanging, not a timed assertion


@pytest.fixture
def sandbox(sandbox_factory: Callable[..., SandboxServer]) -> SandboxServer:
    """The tiny account, sending webhooks to a plain-http receiver here, retrying fast and never giving up."""
    return sandbox_factory(webhook_allow_http=True, webhook_retry_base=0.1, webhook_max_failures=1000)


class ReceiverProcess:
    """`orderspace-pipelines webhooks serve` as a child process on a fixed port (a restart keeps the URL)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/webhooks/orderspace"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "orderspace_pipelines.cli", "webhooks", "serve"]
        command += ["--port", str(self.port)]
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.env)
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                httpx.get(f"{self.base}/healthz", timeout=2)
                return
            except httpx.TransportError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the receiver did not start (exit {self.process.poll()})") from None
                time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)


@pytest.fixture
def receiver(orderspace_env: dict[str, str]) -> Iterator[ReceiverProcess]:
    running = ReceiverProcess(orderspace_env)
    running.start()
    yield running
    running.kill()


class Changes:
    """Random changes to the sandbox account: through its API (the product's client) or its activity mode."""

    API_KINDS = (
        "order.create", "dispatch.create", "customer.create", "customer.update", "product.update",
        "inventory.update", "order.delete", "invoice.delete", "customer.delete", "product.delete",
    )  # fmt: skip

    def __init__(self, server: SandboxServer, client: OrderspaceClient, seed: int) -> None:
        self.server, self.client = server, client
        self.rng = random.Random(seed)
        self.done: list[str] = []

    def plan(self, count: int) -> list[str]:
        """Every API kind at least once, about a third activity mode, the rest drawn at random; shuffled."""
        kinds = [*self.API_KINDS, *["activity"] * (count // 3)]
        kinds += self.rng.choices([*self.API_KINDS, "activity"], k=count - len(kinds))
        self.rng.shuffle(kinds)
        return kinds

    def make(self, kind: str) -> None:
        """One change of `kind` (an activity step when the account has no candidate for it)."""
        action = getattr(self, "_" + kind.replace(".", "_"), None) if kind != "activity" else None
        if action is None or not action():
            response = httpx.post(
                f"{self.server.base_url}/_sandbox/activity", json={"changes": 1}, timeout=30
            )
            response.raise_for_status()
            kind = "activity:" + response.json()["changes"][0]["kind"]
        self.done.append(kind)

    def _records(self, resource: str, keep: Callable[[dict[str, Any]], bool] = lambda r: True) -> list[Any]:
        return [record for record in self.server.store.all(resource) if keep(record)]

    def _pick(self, resource: str, keep: Callable[[dict[str, Any]], bool] = lambda r: True) -> Any:
        candidates = self._records(resource, keep)
        return self.rng.choice(candidates) if candidates else None

    def _order_create(self) -> bool:
        customer = self._pick("customers", lambda c: c["status"] == "active")
        skus = [
            v["sku"] for p in self._records("products", lambda p: p["active"]) for v in p["product_variants"]
        ]
        lines = [{"sku": sku, "quantity": self.rng.randint(1, 5)} for sku in self.rng.sample(skus, 2)]
        self.client.create_order({"customer_id": customer["id"], "order_lines": lines})
        return True

    def _dispatch_create(self) -> bool:
        def open_goods(order: dict[str, Any]) -> list[dict[str, Any]]:
            lines = order["order_lines"]
            return [line for line in lines if not line["shipping"] and line["quantity"] > line["dispatched"]]

        order = self._pick("orders", lambda o: o["status"] in DISPATCHABLE and bool(open_goods(o)))
        if order is None:
            return False
        lines = [
            {"order_line_id": ln["id"], "quantity": ln["quantity"] - ln["dispatched"]}
            for ln in open_goods(order)
        ]
        self.client.create_dispatch({"order_id": order["id"], "dispatch_lines": lines})
        return True

    def _customer_create(self) -> bool:
        self.client.create_customer({"company_name": f"Webhook Test {self.rng.randint(1000, 9999)}"})
        return True

    def _customer_update(self) -> bool:
        customer = self._pick("customers")
        self.client.update_customer(customer["id"], {"phone": f"0{self.rng.randint(10**9, 10**10 - 1)}"})
        return True

    def _product_update(self) -> bool:
        product = self._pick("products")
        self.client.update_product(product["id"], {"description": f"Edited {self.rng.randint(1, 9999)}"})
        return True

    def _inventory_update(self) -> bool:
        levels = self.rng.sample(self._records("inventory_levels"), 3)
        self.client.update_inventory_levels(
            [{"sku": lv["sku"], "on_hand": self.rng.randint(0, 90)} for lv in levels]
        )
        return True

    def _delete(self, resource: str, keep: Callable[[dict[str, Any]], bool] = lambda r: True) -> bool:
        record = self._pick(resource, keep)
        if record is None:
            return False
        self.client.request("DELETE", f"{resource}/{record['id']}")
        return True

    def _order_delete(self) -> bool:
        return self._delete("orders", lambda o: o["status"] in ("new", "cancelled"))

    def _invoice_delete(self) -> bool:
        return self._delete("invoices", lambda i: not i["paid"])

    def _customer_delete(self) -> bool:
        return self._delete("customers")

    def _product_delete(self) -> bool:
        return self._delete("products")


def sent_events(server: SandboxServer) -> int:
    """Events the sandbox handed to the subscription (its change log)."""
    changes = httpx.get(f"{server.base_url}/_sandbox/webhooks/changes", timeout=30).json()["changes"]
    return sum(len(change["events"]) for change in changes)


def wait_until_delivered(server: SandboxServer, webhook_id: str) -> dict[str, Any]:
    """The subscription's state once every sent event is delivered (a 200) and nothing is queued."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        state = httpx.get(f"{server.base_url}/_sandbox/webhooks", timeout=30).json()
        [hook] = [h for h in state["webhooks"] if h["id"] == webhook_id]
        if hook["queued"] == 0 and hook["delivered_events"] == sent_events(server):
            return state
        assert hook["enabled"], "the sandbox disabled the subscription"
        assert time.monotonic() < deadline, f"deliveries did not finish: {hook}"
        time.sleep(0.1)


def apply_through_dagster(data_dir: Path) -> dg.ExecuteInProcessResult:
    """Tick `change_feed_sensor`, then run `change_feed_job` as the run it requests (its tags)."""
    lake = LakeResource(data_dir=str(data_dir))
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_sensor_context(instance=instance, resources={"lake": lake})
        tick = change_feed_sensor(context)
        assert isinstance(tick, dg.SensorResult)
        [request] = tick.run_requests or []
        return change_feed_job.execute_in_process(
            instance=instance, resources={"lake": lake}, tags=dict(request.tags), raise_on_error=False
        )


def test_lake_equals_the_sandbox_after_random_changes_through_webhooks_alone(
    sandbox: SandboxServer, orderspace_env: dict[str, str], receiver: ReceiverProcess
) -> None:
    data_dir = Path(orderspace_env["ORDERSPACE_DATA_DIR"])
    assert register_command(receiver.url) == 0
    [webhook_id] = sandbox.store.live_webhooks
    pulled = run_sync(resources=resources_for(orderspace_env))
    assert pulled.success, pulled.error
    baseline = diff_lake(data_dir, truth_from_store(sandbox.store))
    assert baseline.equal, baseline.summary()  # the comparator agrees with the first pull

    with OrderspaceClient.from_settings(OrderspaceSettings.from_env()) as client:
        changes = Changes(sandbox, client, seed=9)
        for number, kind in enumerate(changes.plan(CHANGES)):
            if number == KILL_AT:
                receiver.kill()
            if number == RESTART_AT:
                receiver.start()
            changes.make(kind)
    assert len(changes.done) == CHANGES
    assert any(kind.startswith("activity:") for kind in changes.done)
    assert {kind for kind in changes.done if kind.endswith("delete")} >= {
        "order.delete", "invoice.delete", "customer.delete", "product.delete"
    }  # fmt: skip
    state = wait_until_delivered(sandbox, webhook_id)
    failed = [d for d in state["deliveries"] if d["outcome"] == "failed"]
    assert failed, "the receiver's restart should have made the sandbox retry"
    expected = sent_events(sandbox)
    with SqliteEventStore(store_path(data_dir)) as store:
        assert store.stats().pending_total == expected  # every event stored once, retries included
    before = diff_lake(data_dir, truth_from_store(sandbox.store))
    assert not before.equal  # the changes are real and the comparator sees them

    requests_before = sandbox.stats()["requests"]
    result = apply_through_dagster(data_dir)
    assert result.success
    assert events_applied(result) == expected
    assert sandbox.stats()["requests"] == requests_before  # applying cost no API request

    after = diff_lake(data_dir, truth_from_store(sandbox.store))
    assert after.equal, after.summary()
