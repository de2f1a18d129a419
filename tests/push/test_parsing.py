"""Reading warehouse files: header matching, kinds, malformed CSV (no network)."""

from __future__ import annotations

from orderspace_pipelines.warehouse import FileKind, parse_bytes
from orderspace_pipelines.warehouse.parsing import canonical_column


def test_headers_match_whatever_their_case_and_spacing():
    assert canonical_column(" On Hand ") == "on_hand"
    assert canonical_column("Order-Number") == "order_number"
    parsed = parse_bytes(b"\xef\xbb\xbfSKU,AVAILABLE\r\nA-1,3\r\n")
    assert (parsed.kind, parsed.value_column) == (FileKind.INVENTORY, "available")
    assert [(row.line, row.values) for row in parsed.rows] == [(2, {"sku": "A-1", "available": "3"})]


def test_dispatch_files_are_told_by_their_header():
    parsed = parse_bytes(b'order_id,sku,quantity,comments,extra\nor_1,A,2,"Sent, tracked",x\n')
    assert parsed.kind is FileKind.DISPATCHES and parsed.file_error is None
    assert parsed.rows[0].values["comments"] == "Sent, tracked"
    assert parse_bytes(b"order_number,sku\n1,A\n").file_error.startswith("the header [order_number, sku]")
    assert "repeats column(s) sku" in parse_bytes(b"sku,sku,on_hand\nA,B,1\n").file_error


def test_malformed_rows_are_bad_rows_and_the_rest_is_kept():
    parsed = parse_bytes(b'sku,on_hand\nA,1,\nB,2,3\n\nC,3\n,\n"D,4\n')
    assert [row.values["sku"] for row in parsed.rows] == ["A", "C"]  # a trailing empty cell is tolerated
    reasons = {bad.line: bad.reason for bad in parsed.bad_rows}
    assert "has 3 fields but the header has 2" in reasons[3]
    assert "blank" in reasons[6]
    assert "cannot be read as CSV" in reasons[7]
