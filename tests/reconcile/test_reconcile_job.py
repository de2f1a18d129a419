"""`reconcile_job` in Dagster: the rolling sweep's cycle, measured (a deletion only the sweep can see is
found by the run whose slice covers its day, within one cycle), updates within one run, the run metadata,
and the schedule in the code location."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg

from orderspace_devtools.lake_diff import diff_lake, truth_from_sandbox
from orderspace_pipelines.endpoints import ENDPOINTS
from orderspace_pipelines.lake.reconcile import stored_keys
from tests.pull.conftest import resources_for
from tests.reconcile.conftest import SandboxHttp

SWEEP_DAYS = 30


def run_job(env: dict[str, str], instance: dg.DagsterInstance) -> dict[str, Any]:
    """One run of the code location's `reconcile_job`; its op's output metadata as plain values."""
    from orderspace_pipelines.definitions import defs

    job = defs.get_job_def("reconcile_job")
    result = job.execute_in_process(
        run_config={"ops": {"reconcile_lake": {"config": {"sweep_days": SWEEP_DAYS}}}},
        resources=resources_for(env),
        instance=instance,
    )
    assert result.success
    [output] = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = output.event_specific_data.metadata  # type: ignore[union-attr]
    return {name: value.value for name, value in metadata.items()}


def covering(slices: list[str], day: date) -> int:
    """The index of the slice (`start..end`, `oldest`/`newest` for open ends) that holds `day`."""
    for index, text in enumerate(slices):
        start, end = text.split("..")
        if (start == "oldest" or date.fromisoformat(start) <= day) and (
            end == "newest" or day <= date.fromisoformat(end)
        ):
            return index
    raise AssertionError(f"no slice holds {day}: {slices}")


def test_the_sweep_finds_a_deleted_closed_order_within_one_cycle(
    lake: Path, api: SandboxHttp, orderspace_env: dict[str, str]
) -> None:
    spec = ENDPOINTS["orders"]
    orders = api.records("orders")
    oldest = min(date.fromisoformat(o["created"][:10]) for o in orders)
    # A fulfilled order in the second slice or later: only the sweep notices its deletion.
    victim = next(
        o
        for o in orders
        if o["status"] == "fulfilled" and (date.fromisoformat(o["created"][:10]) - oldest).days >= SWEEP_DAYS
    )
    api.delete("orders", victim["id"])
    with dg.DagsterInstance.ephemeral() as instance:
        api.reset_stats()
        first = run_job(orderspace_env, instance)
        assert first["api_requests"] == api.requests()  # the metadata counts what the account served
        assert first["cycle_start"] is True
        cycle = first["sweep_cycle_runs"]
        assert cycle >= 2
        assert f"{cycle} runs x 1 h" in first["staleness_bound"]
        slices, found_in = [first["sweep_slice"]], None
        for run in range(1, cycle):
            if found_in is None and victim["id"] not in stored_keys(lake, spec):
                found_in = run - 1
            api.reset_stats()
            metadata = run_job(orderspace_env, instance)
            assert metadata["api_requests"] == api.requests()
            assert metadata["cycle_start"] is False
            slices.append(metadata["sweep_slice"])
        if found_in is None and victim["id"] not in stored_keys(lake, spec):
            found_in = cycle - 1
        wrapped = run_job(orderspace_env, instance)
    # Removed by the run whose slice holds its creation day, not before; every run's slice differs.
    assert found_in == covering(slices, date.fromisoformat(victim["created"][:10])), slices
    assert found_in >= 1  # not the first run: the bound is the cycle, and this measured it
    assert len(set(slices)) == cycle
    assert slices[0].startswith("oldest..") and slices[-1].endswith("..newest")
    assert wrapped["cycle_start"] is True and wrapped["sweep_slice"] == slices[0]  # the next cycle
    diff = diff_lake(lake, truth_from_sandbox(api.server.base_url))
    assert diff.equal, diff.summary()


def test_updates_reach_the_lake_in_one_run_deletions_of_closed_records_wait_for_the_sweep(
    lake: Path, api: SandboxHttp, orderspace_env: dict[str, str]
) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        run_job(orderspace_env, instance)  # a cycle's first run
        api.activity(60)
        metadata = run_job(orderspace_env, instance)  # not a cycle start: only the cheap filters
    assert metadata["cycle_start"] is False
    assert metadata["changed_per_table"]["orders"] > 0
    diff = diff_lake(lake, truth_from_sandbox(api.server.base_url))
    for name in diff.unequal():  # what is left: rows of deleted closed orders / products, not yet swept
        table = diff.tables[name]
        assert not table.missing and not table.differing and not table.duplicates, table.summary()
        assert name in {"orders", "order_lines", "products", "product_variants", "inventory_levels"}


def test_the_job_and_its_schedule_are_in_the_code_location(orderspace_env: dict[str, str]) -> None:
    from orderspace_pipelines.definitions import defs

    schedule = defs.get_schedule_def("reconcile_schedule")
    assert schedule.job_name == "reconcile_job"
    assert schedule.cron_schedule == "40 * * * *"
    assert "ceil((H + 1) / sweep_days)" in (schedule.description or "")
    assert defs.get_job_def("reconcile_job").description


def test_a_first_run_after_changes_leaves_only_deletions_for_the_sweep(
    lake: Path, api: SandboxHttp, orderspace_env: dict[str, str]
) -> None:
    api.activity(60)  # before any reconcile: no W yet, the pull's watermarks stand in
    # A new invoice paid in full at once: in no `paid=false` listing, only `created_since` can find it (the
    # newest stored invoice day is weeks ahead, forward-dated, so it cannot stand in for the pull's time).
    store = api.server.store
    invoiced = {ref["id"] for invoice in store.all("invoices") for ref in invoice["orders"]}
    order = next(
        o for o in store.all("orders") if o["id"] not in invoiced and o["status"] in ("new", "fulfilled")
    )
    paid = store.create_invoice(order["id"])
    store.create_payment(paid["id"])
    with dg.DagsterInstance.ephemeral() as instance:
        metadata = run_job(orderspace_env, instance)
    assert metadata["cycle_start"] is True
    assert paid["id"] in stored_keys(lake, ENDPOINTS["invoices"])
    diff = diff_lake(lake, truth_from_sandbox(api.server.base_url))
    for name in diff.unequal():  # only rows of deleted closed orders outside the first slice
        table = diff.tables[name]
        assert not table.missing and not table.differing and not table.duplicates, table.summary()
        assert name in {"orders", "order_lines"}
