"""`orderspace-pipelines dev` claims its data dir: sandbox data only, a fresh ledger per sandbox account."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from orderspace_devtools.local_stack import DEMO_MARKER, PREVIOUS_LEDGER_NAME, _prepare_dev_data_dir
from orderspace_pipelines.warehouse import WarehouseFolders


def test_an_empty_folder_is_claimed_and_marked(tmp_path: Path):
    root = tmp_path / "data"
    assert _prepare_dev_data_dir(root) is None
    assert (root / DEMO_MARKER).is_file()
    assert _prepare_dev_data_dir(root) is None  # a second session on the same folder is welcome


def test_the_repository_data_folder_with_only_readme_and_samples_is_accepted(tmp_path: Path):
    (tmp_path / "samples").mkdir()
    (tmp_path / "README.md").write_text("docs\n")
    assert _prepare_dev_data_dir(tmp_path) is None
    assert (tmp_path / DEMO_MARKER).is_file()


def test_a_folder_holding_someone_elses_data_is_refused_untouched(tmp_path: Path):
    lake = tmp_path / "parquet" / "orders"
    lake.mkdir(parents=True)
    ledger = WarehouseFolders.under(tmp_path).ensure().ledger_path
    ledger.write_bytes(b"real ledger")
    with pytest.raises(SystemExit, match="holds data the demo did not write"):
        _prepare_dev_data_dir(tmp_path)
    assert ledger.read_bytes() == b"real ledger"
    assert not (tmp_path / DEMO_MARKER).exists()


def test_the_previous_sessions_ledger_is_kept_aside_with_its_wal(tmp_path: Path):
    (tmp_path / DEMO_MARKER).write_text("demo\n")
    ledger = WarehouseFolders.under(tmp_path).ensure().ledger_path
    writer = sqlite3.connect(ledger)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # keep the row in the -wal file only
    writer.execute("CREATE TABLE files (sha256 TEXT)")
    writer.execute("INSERT INTO files VALUES ('abc')")
    writer.commit()
    assert Path(f"{ledger}-wal").stat().st_size > 0
    # Copy the database and its WAL as a crashed session would leave them (the connection stays open).
    snapshot = {suffix: Path(f"{ledger}{suffix}").read_bytes() for suffix in ("", "-wal")}
    writer.close()
    for suffix, content in snapshot.items():
        Path(f"{ledger}{suffix}").write_bytes(content)
    Path(f"{ledger}-shm").unlink(missing_ok=True)
    stale = ledger.with_name(PREVIOUS_LEDGER_NAME)
    stale.write_bytes(b"an older session")

    kept = _prepare_dev_data_dir(tmp_path)

    assert kept == stale and not ledger.exists() and not Path(f"{ledger}-wal").exists()
    with sqlite3.connect(kept) as reader:
        assert reader.execute("SELECT sha256 FROM files").fetchall() == [("abc",)]
