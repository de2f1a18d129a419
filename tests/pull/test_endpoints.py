"""The endpoint registry (`endpoints.py`), what derives from it, and the atomic-write helper."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from orderspace_pipelines import atomic
from orderspace_pipelines.client import OrderspaceClient
from orderspace_pipelines.client.client import UNPAGINATED_RESOURCES, cursor_field
from orderspace_pipelines.endpoints import ENDPOINTS, LAKE_TABLES, PULL_ORDER, PULLED, endpoint
from orderspace_pipelines.lake.catalog import CATALOG_TABLES
from orderspace_pipelines.lake.schemas import RESOURCES, TABLES


def test_every_endpoint_has_its_list_method_and_every_pulled_one_its_tables() -> None:
    for name in ENDPOINTS:
        assert callable(getattr(OrderspaceClient, f"list_{name}")), name
    assert set(TABLES) == set(LAKE_TABLES) == set(CATALOG_TABLES)
    assert set(RESOURCES) == {declared.resource for declared in PULLED} == set(ENDPOINTS) - {"webhooks"}


def test_child_tables_carry_their_parent_key_and_partitioning() -> None:
    for declared in PULLED:
        parent = TABLES[declared.table]
        assert parent.partitioned is declared.partitioned
        assert declared.key in parent.column_names
        for child in declared.children:
            spec = TABLES[child.table]
            assert (spec.parent, spec.parent_key) == (declared.table, declared.parent_key)
            assert declared.parent_key in spec.column_names
            assert spec.partitioned is declared.partitioned
    assert TABLES["order_lines"].parent_key == "order_id"
    assert TABLES["inventory_level_snapshots"].partitioned


def test_paging_facts_come_from_the_registry() -> None:
    assert {
        "customer_groups",
        "price_lists",
        "payment_terms",
        "tax_rates",
        "preorder_windows",
        "webhooks",
    } == UNPAGINATED_RESOURCES
    assert cursor_field("inventory_levels") == "sku"
    assert cursor_field("orders") == "id"
    assert cursor_field("not_an_endpoint") == "id"
    assert PULL_ORDER[:3] == ("orders", "invoices", "dispatches")
    assert ENDPOINTS["products"].filter_kinds.keys() >= {"updated_since", "created_since"}
    with pytest.raises(KeyError, match="unknown API resource 'ordres'"):
        endpoint("ordres")


def test_atomic_write_replaces_whole_and_sets_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "state.json"
    atomic.write_text(target, "one", file_mode=0o600)
    assert target.read_text() == "one"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    atomic.write_text(target, "two")
    assert target.read_text() == "two"

    def broken(handle: object) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic.write_bytes(target, broken)
    assert target.read_text() == "two"  # the old content stays whole
    assert sorted(path.name for path in target.parent.iterdir()) == ["state.json"]  # no temporary left
