"""The same dispatch file pushed from two hosts at once: two real `orderspace-pipelines push` processes, each
with its own temp dir, Dagster home and throttle file, sharing only the warehouse folder (the lake volume).

Exactly one dispatch is created; the push that loses says in one line that the other host has the file and
exits 6 (before, it died with a `FileMissingError` traceback). On both ledgers: SQLite beside the warehouse
folder (its claim a lock file there) and Postgres (`ORDERSPACE_DATABASE_URL`, its claim an advisory lock).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from orderspace_pipelines.warehouse import WarehouseFolders
from orderspace_pipelines.warehouse.report import EXIT_FILE_TAKEN
from orderspace_sandbox import SandboxServer
from tests.cli.processes import finish, start, wait_for
from tests.push.test_dispatch_push import dispatches_for, find_order, goods

CLI = [sys.executable, "-m", "orderspace_pipelines.cli"]
OTHER_HOST = "by another process or host sharing this warehouse folder"
BOTH_LEDGERS = pytest.mark.parametrize("ledger", ["sqlite", "postgres"])

# Host A's push, held at a named point of the push (`warehouse.hooks`) until the test lets it go.
HELD_PUSH = """
import sys, time
from pathlib import Path
from orderspace_pipelines import cli
from orderspace_pipelines.testing_hooks import at_nth
from orderspace_pipelines.warehouse import hooks

point, reached, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])

def hold(_: str) -> None:
    reached.touch()
    while not go.exists():
        time.sleep(0.05)

hooks.install(at_nth(point, 1, hold))
raise SystemExit(cli.main(sys.argv[4:]))
"""


def host_env(orderspace_env: dict[str, str], tmp_path: Path, name: str) -> dict[str, str]:
    """One host: its own temp dir and throttle file, no Dagster home; the data dir (lake volume) is shared."""
    own = tmp_path / name
    own.mkdir()
    env = {key: value for key, value in orderspace_env.items() if key != "DAGSTER_HOME"}
    return env | {"TMPDIR": str(own), "ORDERSPACE_THROTTLE_DB": str(own / "throttle.sqlite")}


def dispatch_file(sandbox: SandboxServer, inbox: Path) -> tuple[Path, dict]:
    order = find_order(sandbox, "new", untouched=True)
    body = "order_number,sku,quantity,comments\n" + "".join(
        f"{order['number']},{line['sku']},{line['quantity']},DPD next day\n" for line in goods(order)
    )
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / "dispatches-0930.csv"
    path.write_text(body)
    return path, order


def push_from_two_hosts(
    orderspace_env: dict[str, str], sandbox: SandboxServer, tmp_path: Path, hold_at: str, wait_for_b: str
) -> tuple[tuple[int, str], tuple[int, str], dict, WarehouseFolders]:
    """Host A pushes the file and is held at `hold_at`; host B pushes the same file once B's log shows
    `wait_for_b` (empty: at once); then A is let go. Returns both (exit code, output), the order, folders."""
    folders = WarehouseFolders.under(Path(orderspace_env["ORDERSPACE_DATA_DIR"]))
    path, order = dispatch_file(sandbox, folders.inbox)
    reached, go = tmp_path / "a.reached", tmp_path / "a.go"
    a_log, b_log = tmp_path / "a.log", tmp_path / "b.log"
    host_a, host_b = host_env(orderspace_env, tmp_path, "a"), host_env(orderspace_env, tmp_path, "b")

    held = [sys.executable, "-c", HELD_PUSH, hold_at, str(reached), str(go)]
    a = start([*held, "push", str(path)], host_a, a_log)
    wait_for(reached.exists, f"host A to reach {hold_at}")
    b = start([*CLI, "push", str(path)], host_b, b_log)
    if wait_for_b:
        wait_for(lambda: wait_for_b in b_log.read_text(), f"host B to log {wait_for_b!r}")
    else:
        b_result = finish(*b, b_log)
    go.touch()
    a_result = finish(*a, a_log)
    if wait_for_b:
        b_result = finish(*b, b_log)
    return a_result, b_result, order, folders


def assert_pushed_once(a_result: tuple[int, str], sandbox: SandboxServer, order: dict, folders) -> None:
    code, out = a_result
    assert code == 0, out[-3000:]
    assert len(dispatches_for(sandbox, order["id"])) == 1
    assert (folders.processed / "dispatches-0930.csv").is_file()
    assert not list(folders.work.iterdir()) and not list(folders.inbox.iterdir())


def shared_state(
    orderspace_env: dict[str, str], ledger: str, request: pytest.FixtureRequest
) -> dict[str, str]:
    """The hosts' common environment: with the Postgres ledger, both reach the same database."""
    if ledger == "sqlite":
        return orderspace_env
    return orderspace_env | {"ORDERSPACE_DATABASE_URL": request.getfixturevalue("postgres_url")}


@BOTH_LEDGERS
def test_the_second_host_says_the_first_is_pushing_it(
    orderspace_env: dict[str, str],
    sandbox: SandboxServer,
    tmp_path: Path,
    ledger: str,
    request: pytest.FixtureRequest,
) -> None:
    # A has claimed the file (moved it into work/) and is about to send the dispatch.
    env = shared_state(orderspace_env, ledger, request)
    a_result, (code, out), order, folders = push_from_two_hosts(
        env, sandbox, tmp_path, hold_at="dispatch.pending", wait_for_b=""
    )

    assert code == EXIT_FILE_TAKEN, out[-3000:]
    last = out.splitlines()[-1]  # what the CLI prints last: one line, no traceback
    assert last.startswith(
        "dispatches-0930.csv is being pushed by another process or host sharing this warehouse folder "
        "(claimed as work/"
    )
    assert last.endswith("__dispatches-0930.csv); nothing was done here")
    assert "Traceback" not in out and "Stack Trace" not in out and "FileMissingError" not in out
    assert_pushed_once(a_result, sandbox, order, folders)


@BOTH_LEDGERS
def test_a_host_that_waited_for_the_file_says_the_other_pushed_it(
    orderspace_env: dict[str, str],
    sandbox: SandboxServer,
    tmp_path: Path,
    ledger: str,
    request: pytest.FixtureRequest,
) -> None:
    # A holds the file's lock with the file still in the inbox: B finds the file, hashes it and waits for the
    # lock, saying so; once A is done, B finds the file gone, pushed by A.
    a_result, (code, out), order, folders = push_from_two_hosts(
        shared_state(orderspace_env, ledger, request),
        sandbox,
        tmp_path,
        hold_at="file.locked",
        wait_for_b="dispatches-0930.csv: waiting for another push of the same content to finish",
    )

    assert code == EXIT_FILE_TAKEN, out[-3000:]
    last = out.splitlines()[-1]
    assert last == (
        "dispatches-0930.csv was pushed by another process or host sharing this warehouse folder: it is in "
        "processed/dispatches-0930.csv; nothing was done here"
    ), out[-3000:]
    assert "Traceback" not in out and "Stack Trace" not in out and "FileMissingError" not in out
    assert_pushed_once(a_result, sandbox, order, folders)
