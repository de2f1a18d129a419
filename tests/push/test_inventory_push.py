"""Inventory files pushed over real HTTP to the sandbox: costs, bad rows, file rejections, duplicates."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from orderspace_pipelines.warehouse import WarehouseFolders
from orderspace_sandbox import SandboxServer

from .conftest import BOTH_LEDGERS, add_products, posts, write_pulled_snapshot, write_pulled_variants


def levels(server: SandboxServer) -> dict[str, dict]:
    return {level["sku"]: level for level in server.store.all("inventory_levels")}


def by_line(result) -> dict[int, object]:
    return {row.line: row for row in result.rows}


def test_a_stock_file_of_1000_rows_costs_5_requests(sandbox, push, data_dir, folders):
    new_skus = add_products(sandbox, 100)  # 1,000 new SKUs next to the tiny catalogue
    write_pulled_variants(data_dir, sorted(levels(sandbox)))  # SKUs known from the pull: no list call needed
    sandbox.reset_stats()
    body = "sku,on_hand\n" + "".join(f"{sku},{i % 97 + 1}\n" for i, sku in enumerate(new_skus))

    result = push("stock.csv", body)

    assert result.outcome == "processed"
    assert (result.rows_read, result.levels_updated, result.rows_rejected) == (1000, 1000, 0)
    assert result.requests == 5  # 5 x 200 levels; counted by the client...
    assert posts(sandbox, "inventory_levels") == 5  # ...and by the server
    assert sandbox.stats()["requests"] == 5
    live = levels(sandbox)
    assert all(live[sku]["on_hand"] == i % 97 + 1 for i, sku in enumerate(new_skus))
    assert Path(result.final_path) == folders.processed / "stock.csv"
    report = json.loads(Path(result.report_path).read_text())
    assert report["status_counts"] == {"updated": 1000}
    assert (folders.processed / "stock.csv.report.csv").read_text().count("\n") == 1001
    assert not any(folders.inbox.iterdir()) and not any(
        p for p in folders.work.iterdir() if p.suffix == ".csv"
    )


def test_bad_rows_are_reported_and_good_rows_still_land(sandbox, push, folders, data_dir):
    before = levels(sandbox)
    skus = sorted(before)
    write_pulled_variants(data_dir, skus)  # NO-SUCH-SKU is not in it: looked up by its sku, 1 request
    body = (
        "\ufeffSKU, On Hand \n"  # a BOM and a header in another case and spacing
        f"{skus[0]},11\n"
        "NO-SUCH-SKU,5\n"
        f"{skus[1]},abc\n"
        f"{skus[2]},-4\n"
        f"{skus[3]},2.5\n"
        f"{skus[4]},\n"
        f"{skus[5]},7\n"
        f"{skus[5]},8\n"  # a duplicate: the last row wins
        f"{skus[6]},9\n"
        f"{skus[6]},x\n"  # the last row of this SKU is bad: nothing is sent for it
        ",3\n"
        f"{skus[7]},12.0\n"
    )
    result = push("mixed.csv", body)

    rows = by_line(result)
    assert result.outcome == "processed"
    assert rows[2].status == "updated"
    assert rows[3].status == "rejected" and "unknown SKU 'NO-SUCH-SKU'" in rows[3].reason
    assert rows[4].status == "rejected" and rows[4].reason == "on_hand 'abc' is not a number"
    assert rows[5].status == "rejected" and "negative" in rows[5].reason
    assert rows[6].status == "updated" and rows[6].value == "2.5"  # levels are numbers in the API
    assert rows[7].status == "rejected" and rows[7].reason == "on_hand is empty"
    assert rows[8].status == "superseded" and "line 9" in rows[8].reason
    assert rows[9].status == "updated"
    assert rows[10].status == "rejected" and "line 11" in rows[10].reason
    assert rows[11].status == "rejected"
    assert rows[12].status == "rejected" and rows[12].reason == "sku is empty"
    assert rows[13].status == "updated"
    assert len(result.rows) == 12  # every data row is reported, once
    live = levels(sandbox)
    assert live[skus[0]]["on_hand"] == 11 and live[skus[5]]["on_hand"] == 8 and live[skus[7]]["on_hand"] == 12
    assert live[skus[3]]["on_hand"] == 2.5
    for untouched in (skus[1], skus[2], skus[4], skus[6]):
        assert live[untouched] == before[untouched]
    assert result.rows_rejected == 7 and result.levels_updated == 4
    # The one SKU the pulled variants lack was looked up by its sku (1 request), then one update.
    assert sandbox.stats()["by_path"].get("GET /v1/inventory_levels") == 1
    assert posts(sandbox, "inventory_levels") == 1


def test_a_request_the_api_refuses_is_split_to_isolate_the_bad_rows(sandbox, push, data_dir):
    skus = sorted(levels(sandbox))
    # The pulled data knows a SKU Orderspace no longer has: validation passes it, the API refuses it.
    write_pulled_variants(data_dir, [*skus, "GONE-SKU"])
    rows = [(sku, 40 + i) for i, sku in enumerate(skus[:20])]
    rows.insert(13, ("GONE-SKU", 3))
    body = "sku,available\n" + "".join(f"{sku},{value}\n" for sku, value in rows)

    result = push("available.csv", body)

    assert result.outcome == "processed"
    gone = [row for row in result.rows if row.sku == "GONE-SKU"]
    assert len(gone) == 1 and gone[0].status == "refused" and "does not exist" in gone[0].reason
    assert result.levels_updated == 20
    live = levels(sandbox)
    assert all(live[sku]["available"] == value for sku, value in rows if sku != "GONE-SKU")
    assert posts(sandbox, "inventory_levels") <= 1 + 2 * 5  # a bisection, not one request per row


def test_a_fresh_snapshot_means_only_changed_levels_are_sent(sandbox, push, data_dir):
    current = sorted(levels(sandbox).values(), key=lambda level: level["sku"])
    write_pulled_variants(data_dir, [level["sku"] for level in current])
    write_pulled_snapshot(data_dir, current)
    body = "sku,on_hand\n" + "".join(f"{level['sku']},{level['on_hand']}\n" for level in current[:9])
    body += f"{current[9]['sku']},{current[9]['on_hand'] + 5}\n"

    result = push("fresh.csv", body)

    assert result.levels_unchanged == 9 and result.levels_updated == 1
    assert posts(sandbox, "inventory_levels") == 1 and result.requests == 1
    assert levels(sandbox)[current[9]["sku"]]["on_hand"] == current[9]["on_hand"] + 5


def test_a_stale_snapshot_is_not_trusted(sandbox, push, data_dir):
    current = sorted(levels(sandbox).values(), key=lambda level: level["sku"])[:5]
    write_pulled_variants(data_dir, [level["sku"] for level in current])
    write_pulled_snapshot(data_dir, current, taken_at=datetime.now(UTC) - timedelta(hours=2))
    body = "sku,on_hand\n" + "".join(f"{level['sku']},{level['on_hand']}\n" for level in current)

    result = push("stale.csv", body, snapshot_max_age_seconds=900)

    assert result.levels_updated == 5 and result.levels_unchanged == 0


def test_file_level_problems_reject_the_whole_file_with_a_report(sandbox, push, folders):
    cases = {
        "empty.csv": (b"", "the file is empty"),
        "header-only.csv": (b"sku,on_hand\n", "header but no data rows"),
        "both.csv": (b"sku,on_hand,available\nCB01-BLK-OS,1,1\n", "both on_hand and available"),
        "unknown.csv": (
            b"item,qty\nA,1\n",
            "expected inventory: sku plus exactly one of on_hand or available",
        ),
        "latin1.csv": ("s\u00e9ku,on_hand\nCAFE,1\n".encode("latin-1"), "not UTF-8"),
    }
    sandbox.reset_stats()
    for name, (content, expected) in cases.items():
        result = push(name, content)
        assert result.outcome == "rejected", name
        assert expected in (result.file_error or ""), (name, result.file_error)
        assert (folders.rejected / name).exists()
        report = json.loads((folders.rejected / f"{name}.report.json").read_text())
        assert expected in report["file_error"]
        assert expected in (folders.rejected / f"{name}.report.csv").read_text()
    both = json.loads((folders.rejected / "both.csv.report.json").read_text())
    assert [row["line"] for row in both["rows"]] == [2]  # its rows are named too
    assert sandbox.stats()["requests"] == 0  # nothing was sent for any of them


def test_a_truncated_last_line_is_reported_and_the_rest_lands(sandbox, push):
    skus = sorted(levels(sandbox))
    body = f"sku,on_hand\n{skus[0]},21\n{skus[1]},22\n{skus[2]}"  # the writer stopped mid-row

    result = push("cut.csv", body)

    rows = by_line(result)
    assert rows[2].status == rows[3].status == "updated"
    assert rows[4].status == "rejected" and "truncated" in rows[4].reason
    assert levels(sandbox)[skus[1]]["on_hand"] == 22


@BOTH_LEDGERS
def test_dropping_the_same_file_twice_sends_nothing_new(sandbox, push, folders):
    skus = sorted(levels(sandbox))
    body = f"sku,on_hand\n{skus[0]},31\n{skus[1]},32\n"
    first = push("again.csv", body)
    assert first.levels_updated == 2
    sandbox.reset_stats()

    second = push("again.csv", body)

    assert second.duplicate_of == "again.csv" and second.levels_updated == 0
    assert {row.status for row in second.rows} == {"duplicate"}
    assert sandbox.stats()["requests"] == 0
    assert Path(second.final_path).parent == folders.processed and Path(second.final_path).name != "again.csv"
    assert "duplicate of again.csv" in Path(second.report_path).read_text()
    # New content under the same name is a new file and is pushed.
    third = push("again.csv", f"sku,on_hand\n{skus[0]},33\n")
    assert third.duplicate_of is None and third.levels_updated == 1


def test_folders_layout(data_dir):
    folders = WarehouseFolders.under(data_dir).ensure()
    assert {p.name for p in folders.root.iterdir()} >= {"inbox", "work", "processed", "rejected"}


@BOTH_LEDGERS
def test_a_resumed_file_does_not_resend_confirmed_rows(sandbox, client, data_dir, drop, folders, state_url):
    from orderspace_pipelines.warehouse import open_ledger, push_file, sha256_of

    skus = sorted(levels(sandbox))[:4]
    path = drop("resume.csv", "sku,on_hand\n" + "".join(f"{sku},{60 + i}\n" for i, sku in enumerate(skus)))
    digest = sha256_of(path)
    # An earlier attempt confirmed the first two rows, then died.
    with open_ledger(folders.ledger_path, state_url) as ledger:
        ledger.begin_file(digest, "resume.csv", "inventory")
        ledger.mark_inventory(digest, [(2, skus[0], 60), (3, skus[1], 61)], "confirmed")
    sandbox.reset_stats()

    result = push_file(path, client=client, data_dir=data_dir, database_url=state_url)

    rows = by_line(result)
    assert rows[2].reason == rows[3].reason == "sent by an earlier attempt"
    assert rows[4].status == rows[5].status == "updated" and rows[4].reason == ""
    assert [levels(sandbox)[sku]["on_hand"] for sku in skus[2:]] == [62, 63]
    assert posts(sandbox, "inventory_levels") == 1


def test_skus_are_checked_by_the_sku_filter_never_by_listing_every_level(sandbox, push, data_dir):
    added = add_products(sandbox, 80)  # 800 more SKUs
    skus = sorted(levels(sandbox))
    assert len(skus) > 800  # listing every level once takes 5 pages of 200: more than the 4 requests below
    new = added[:3]  # products created since the last pull
    write_pulled_variants(data_dir, [sku for sku in skus if sku not in new])
    body = "sku,on_hand\n" + "".join(f"{sku},{5 + i}\n" for i, sku in enumerate([skus[0], *new, "NOPE-1"]))
    sandbox.reset_stats()

    result = push("new-products.csv", body)

    rows = by_line(result)
    by_path = sandbox.stats()["by_path"]
    assert by_path.get("GET /v1/inventory_levels") == 4  # the 4 SKUs the pulled data lacks, 1 request each
    assert posts(sandbox, "inventory_levels") == 1
    assert [rows[n].status for n in (2, 3, 4, 5)] == ["updated"] * 4
    assert rows[6].status == "rejected" and "unknown SKU 'NOPE-1'" in rows[6].reason
    # Nothing pulled at all: no look-up; the levels are sent and Orderspace vets the SKUs.
    for pulled in (data_dir / "parquet").rglob("*.parquet"):
        pulled.unlink()
    sandbox.reset_stats()
    again = push("unpulled.csv", f"sku,on_hand\n{skus[1]},9\nNOPE-2,1\n{skus[2]},8\n")
    assert sandbox.stats()["by_path"].get("GET /v1/inventory_levels", 0) == 0
    assert [row.status for row in again.rows] == ["updated", "refused", "updated"]
    assert "NOPE-2" in again.rows[1].reason
