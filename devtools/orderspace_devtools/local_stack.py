"""What the CLI's `demo` and `dev` commands do: start the sandbox as a child process, point the contract's
environment at it and run the product (its Dagster definitions, `run_sync`, `run_push`) against it.
No business logic lives here."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TextIO

import httpx

from orderspace_pipelines.commands import DEFAULT_DAGSTER_YAML, dagster_instance
from orderspace_pipelines.settings import data_dir
from orderspace_pipelines.warehouse import WarehouseFolders

DEMO_MARKER = ".orderspace-demo"
# The sample warehouse files the demo pushes: in the repository (this package is installed from a checkout).
SAMPLES_DIR = Path(__file__).resolve().parents[2] / "data" / "samples"


def ensure_dagster_home(default: Path) -> Path:
    """Use $DAGSTER_HOME, or `default`; give it our dagster.yaml (pools, no welcome dialog) if it has none."""
    home = Path(os.environ.get("DAGSTER_HOME") or default).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    # Ours (it starts with our header line) follows the project's copy; a user's own is left alone.
    ours = DEFAULT_DAGSTER_YAML.read_text()
    if not config.exists() or (
        config.read_text().splitlines()[:1] == ours.splitlines()[:1] and config.read_text() != ours
    ):
        shutil.copyfile(DEFAULT_DAGSTER_YAML, config)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


# --- the sandbox as a child process -------------------------------------------------------------------------


@dataclass(frozen=True)
class SandboxProcess:
    process: subprocess.Popen
    api_url: str
    token_url: str
    base_url: str

    def stats(self) -> dict:
        return httpx.get(f"{self.base_url}/_sandbox/stats", timeout=10).json()

    def record_counts(self) -> dict[str, int]:
        """Rows each lake table should hold for the sandbox account: its records per resource and the line
        records inside them (read through its control API, which the request budget does not count)."""
        from orderspace_pipelines.lake.schemas import RESOURCES

        counts = {}
        for resource, spec in RESOURCES.items():
            body = httpx.get(f"{self.base_url}/_sandbox/records/{resource}", timeout=60).json()
            records = body.get(resource, [])
            counts[resource] = len(records)
            for child in spec.children:
                counts[child.table] = sum(len(record.get(child.field) or []) for record in records)
        return counts

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


@contextmanager
def sandbox_process(*args: str, timeout: float = 120.0) -> Iterator[SandboxProcess]:
    """Start `orderspace-pipelines sandbox ARGS` and wait until it listens."""
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready.json"
        command = [sys.executable, "-m", "orderspace_sandbox", *args, "--ready-file", str(ready)]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        try:
            _wait_until_ready(process, ready, timeout)
        except BaseException:  # a RuntimeError, or a stop signal (KeyboardInterrupt) while it starts
            process.kill()
            process.wait()
            raise
        info = json.loads(ready.read_text())
        handle = SandboxProcess(
            process=process,
            api_url=info["api_url"],
            token_url=info["token_url"],
            base_url=info["api_url"].rsplit("/v1", 1)[0],
        )
        try:
            yield handle
        finally:
            handle.stop()


def _wait_until_ready(process: subprocess.Popen, ready: Path, timeout: float) -> None:
    """Wait for the sandbox's ready file; RuntimeError when it exits first or is not ready in `timeout`."""
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if process.poll() is not None:
            raise RuntimeError(f"the sandbox exited with code {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the sandbox was not ready after {timeout:.0f} s")
        time.sleep(0.05)
    time.sleep(0.05)  # the file is written in one go, but give the writer a moment to close it


def point_environment_at(sandbox: SandboxProcess, *, rate_limit: int, rate_window: float) -> None:
    """The contract's variables, set for the sandbox account (its default credentials)."""
    os.environ.update(
        {
            "ORDERSPACE_CLIENT_ID": "sandbox-client",
            "ORDERSPACE_CLIENT_SECRET": "sandbox-secret",
            "ORDERSPACE_API_URL": sandbox.api_url,
            "ORDERSPACE_TOKEN_URL": sandbox.token_url,
            "ORDERSPACE_REQUESTS_PER_MINUTE": str(rate_limit),
            "ORDERSPACE_RATE_WINDOW_SECONDS": str(rate_window),
        }
    )


# --- demo ------------------------------------------------------------------------------------------


def _refuse_foreign_data_dir(root: Path, command: str) -> None:
    """The sandbox stack (demo, dev) only writes into an empty folder or one it marked: never a real lake."""
    has_content = root.exists() and any(
        p.name not in {"README.md", "samples", DEMO_MARKER} for p in root.iterdir()
    )
    if has_content and not (root / DEMO_MARKER).exists():
        raise SystemExit(
            f"orderspace-pipelines {command}: {root} holds data the demo did not write (no {DEMO_MARKER} "
            "file). The sandbox stack pulls from and pushes to a sandbox account; point ORDERSPACE_DATA_DIR "
            "at an empty folder (or one `make demo` wrote)."
        )


def _prepare_demo_data_dir(root: Path) -> None:
    """The demo owns its data dir: it starts clean, but never wipes a folder holding someone's real data."""
    _refuse_foreign_data_dir(root, "demo")
    for name in ("parquet", "warehouse", "orderspace.duckdb", "orderspace.duckdb.wal"):
        target = root / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    root.mkdir(parents=True, exist_ok=True)
    (root / DEMO_MARKER).write_text(
        "This folder was written by `orderspace-pipelines demo`; the demo may clear it.\n"
    )


@dataclass
class _DemoRun:
    """What the demo's pull and push did, for the summary."""

    in_sandbox: dict[str, int]
    pull_requests: int
    stats: dict[str, Any]
    push_results: list[Any]


def demo_command(*, scale: str, rate_limit: int, rate_window: float) -> int:
    """Sandbox, full pull, push of the samples, summary; 0 when every table matches the sandbox."""
    root = data_dir()
    _prepare_demo_data_dir(root)
    ensure_dagster_home(root / "dagster_home")
    started = time.monotonic()
    print(
        f"Starting the sandbox Orderspace API (scale {scale}, {rate_limit} requests per {rate_window:g} s)..."
    )
    with sandbox_process(
        *("--port", "0", "--scale", scale, "--seed", "42"),
        *("--rate-limit", str(rate_limit), "--rate-window", str(rate_window)),
    ) as sandbox:
        point_environment_at(sandbox, rate_limit=rate_limit, rate_window=rate_window)
        # A fresh throttle bucket: the demo's budget is the demo sandbox's, not a real account's.
        os.environ["ORDERSPACE_THROTTLE_DB"] = str(root / "dagster_home" / "demo-throttle.sqlite")
        run = _demo_pull_and_push(sandbox)
    if run is None:
        return 1
    mismatched = _print_demo_summary(root, run, seconds=time.monotonic() - started)
    if mismatched:
        print(f"Tables whose counts differ from the sandbox: {', '.join(mismatched)}", file=sys.stderr)
        return 1
    return 0 if all(getattr(r, "success", True) for r in run.push_results) else 1


def _demo_pull_and_push(sandbox: Any) -> _DemoRun | None:
    """The full pull, then the sample files pushed; None when the pull failed."""
    from orderspace_pipelines.definitions import build_resources
    from orderspace_pipelines.defs.push_jobs import run_push
    from orderspace_pipelines.defs.sync import run_sync

    print("Pulling every resource through Dagster (the full history, one sweep per resource)...")
    sync_result = run_sync(since=None, select=None, instance=dagster_instance(), resources=build_resources())
    pull_requests = sandbox.stats().get("requests", 0)
    in_sandbox = sandbox.record_counts()  # before the push adds dispatches
    if not sync_result.success:
        print("The pull failed; see the run's logs in the Dagster UI (make dev).", file=sys.stderr)
        return None
    print("Pushing the sample warehouse files...")
    # run_push copies a file from outside the warehouse folders into warehouse/work/: the samples stay put.
    push_results = [
        run_push(sample, instance=dagster_instance(), resources=build_resources())
        for sample in sorted(SAMPLES_DIR.glob("*.csv"))
    ]
    return _DemoRun(in_sandbox, pull_requests, sandbox.stats(), push_results)


def _print_demo_summary(root: Path, run: _DemoRun, *, seconds: float) -> list[str]:
    """Print tables, row counts against the sandbox, push results and where things are; the mismatches."""
    from orderspace_pipelines.lake import summary

    print()
    print("=" * 72)
    print("Orderspace demo: summary")
    print("=" * 72)
    print(f"{'table':<28}{'rows':>12}{'in the sandbox':>18}")
    mismatched = []
    for table, rows in summary(root):
        expected = run.in_sandbox.get(table)
        if expected is None:
            print(f"{table:<28}{rows:>12,}")
            continue
        verdict = "matches" if rows == expected else "MISMATCH"
        print(f"{table:<28}{rows:>12,}{expected:>10,}  {verdict}")
        if rows != expected:
            mismatched.append(table)
    print("-" * 72)
    for result in run.push_results:
        print(result.describe() if hasattr(result, "describe") else result)
    print("-" * 72)
    print(
        f"API requests used: {run.stats.get('requests', 0)} ({run.pull_requests} for the pull), "
        f"429 responses: {run.stats.get('rate_limited', 0)}"
    )
    print(f"Parquet (source of truth): {root / 'parquet'}")
    print(f"DuckDB catalog:            {root / 'orderspace.duckdb'}")
    print(f"Warehouse folders:         {root / 'warehouse'}")
    print(f"Dagster run history:       {os.environ['DAGSTER_HOME']}  (see it with `make dev`)")
    print(f"Done in {seconds:.0f} s.")
    return mismatched


# --- dev ------------------------------------------------------------------------------------------

PREVIOUS_LEDGER_NAME = "ledger.previous-session.sqlite"


def _prepare_dev_data_dir(root: Path) -> Path | None:
    """Claim `root` for the dev stack; return where the previous session's warehouse ledger was set aside.

    The dev stack talks to a sandbox that starts as a fresh account every time, so its data dir must hold
    sandbox data only (empty, or marked by the demo or an earlier dev session): never a real account's lake,
    which it would otherwise mix sandbox records into, nor a real ledger, whose files it would "push" to the
    sandbox and then consider done. The previous sandbox's ledger describes an account that no longer exists;
    it is kept under `PREVIOUS_LEDGER_NAME` (with its WAL) so that this session pushes each file once to
    this account.
    """
    marker = root / DEMO_MARKER
    _refuse_foreign_data_dir(root, "dev")
    root.mkdir(parents=True, exist_ok=True)
    if not marker.exists():
        marker.write_text(
            "This folder holds sandbox data written by `orderspace-pipelines dev`; the demo may clear it.\n"
        )
    ledger = WarehouseFolders.under(root).ledger_path
    if not ledger.exists():
        return None
    kept = ledger.with_name(PREVIOUS_LEDGER_NAME)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{kept}{suffix}").unlink(missing_ok=True)
    try:  # fold the WAL into the database file, so that one atomic rename moves all of it
        with closing(sqlite3.connect(ledger)) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.DatabaseError:
        pass  # not a database we can open: move its files as they are
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{ledger}{suffix}")
        if source.exists():
            os.replace(source, f"{kept}{suffix}")
    return kept


def _first_pull() -> None:
    """The whole history, recorded in the dev instance, so the UI and the push have data from the start."""
    from orderspace_pipelines.definitions import build_resources
    from orderspace_pipelines.defs.sync import run_sync

    result = run_sync(since=None, select=None, instance=dagster_instance(), resources=build_resources())
    print(result.describe(), flush=True)


@dataclass(frozen=True)
class DevOptions:
    """What `orderspace-pipelines dev` runs: the UI's port, the sandbox's scale and activity (changes a
    minute, each sent as a webhook), the receiver's port (0 picks a free one)."""

    port: int = 3000
    scale: str = "small"
    activity: float = 6.0
    webhook_port: int = 8787


def _free_port() -> int:
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# How long what is left of a child's process group gets between SIGTERM and SIGKILL (a run worker marks its
# run failed in that time); a bound, not a wait: an empty group ends the stop at once.
GROUP_GRACE_SECONDS = 10.0


def _say(message: str, *, file: TextIO | None = None) -> None:
    """Print one line; after a SIGHUP the terminal may be gone (EIO), which must not stop the stop."""
    with contextlib.suppress(OSError):
        print(message, file=file or sys.stdout, flush=True)


def _stop(process: subprocess.Popen, name: str, *, timeout: float, own_group: bool = False) -> None:
    """SIGINT to `process` (by its PID), then SIGKILL to its process group if it has not exited.

    `own_group`: the process leads its own process group (started with setsid); once it has exited, what is
    left of that group (grandchildren its own stop missed) gets SIGTERM, then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _say(f"{name} did not stop within {timeout:.0f} s; killing it", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.kill()
        process.wait()
    if own_group:
        _end_group(process.pid, timeout=GROUP_GRACE_SECONDS)


def _end_group(pgid: int, *, timeout: float) -> None:
    """SIGTERM to what is left of process group `pgid`, SIGKILL if some of it outlives `timeout`. (Linux
    does not give a new process a PID still in use as a group id, so this reaches that group only.)"""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return  # nothing is left of it
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


@contextmanager
def receiver_process(port: int, *, timeout: float = 60.0) -> Iterator[str]:
    """Run `orderspace-pipelines webhooks serve` on 127.0.0.1:`port`; yield its URL once it answers."""
    command = [sys.executable, "-m", "orderspace_pipelines.cli", "webhooks", "serve", "--port", str(port)]
    process = subprocess.Popen(command)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the webhook receiver exited with code {process.returncode} at start")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the webhook receiver did not answer on {base} within {timeout:.0f} s")
            time.sleep(0.1)
        yield f"{base}/webhooks/orderspace"
    finally:
        _stop(process, "the webhook receiver", timeout=20)


def _register(url: str) -> None:
    """`webhooks register URL` against the sandbox, so its changes reach the receiver."""
    from orderspace_pipelines.webhooks.commands import register_command

    if register_command(url) != 0:
        raise RuntimeError(f"could not register the webhook {url} with the sandbox")


@contextmanager
def dagster_dev(port: int) -> Iterator[subprocess.Popen]:
    """`dagster dev` (webserver + daemon) in its own session, with SIGINT/SIGTERM at their defaults (a
    parent that ignores them, like a shell's background job, would otherwise pass that on); stopped by PID."""
    dagster = str(Path(sys.executable).with_name("dagster"))
    module = ["-m", "orderspace_pipelines.definitions"]
    # Turn the schedules on so the daily pull and the hourly snapshot run while the UI is up.
    subprocess.run([dagster, "schedule", "start", "--start-all", *module], check=False)
    command = ["setsid", "env", "--default-signal=INT,TERM", dagster, "dev", *module]
    ui = subprocess.Popen([*command, "-h", "127.0.0.1", "-p", str(port)])
    try:
        yield ui
    finally:
        _stop(ui, "dagster dev", timeout=60, own_group=True)


def _print_dev_summary(
    root: Path, home: Path, sandbox: SandboxProcess, webhook_url: str, port: int, options: DevOptions
) -> None:
    folders = WarehouseFolders.under(root).ensure()
    lines = [
        ("Dagster UI", f"http://127.0.0.1:{port}   (Ctrl-C stops everything)"),
        ("Sandbox API", f"{sandbox.api_url}   (controls: {sandbox.base_url}/_sandbox/)"),
        ("Sandbox activity", f"{options.activity:g} changes a minute, each sent as a signed webhook"),
        ("Webhook receiver", f"{webhook_url}   (subscription registered)"),
        ("Change feed", "change_feed_sensor applies events every 30 s; see each table's asset page"),
        ("Warehouse inbox", f"{folders.inbox}   (warehouse_inbox_sensor pushes what lands here)"),
        ("Data", f"{root}   DAGSTER_HOME: {home}"),
    ]
    print("=" * 72)
    for name, value in lines:
        print(f"{name + ':':<18}{value}")
    print("=" * 72, flush=True)


# What stops the dev stack: Ctrl-C, SIGTERM (kill, systemd, docker, supervisors), SIGHUP (terminal closed).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _stop_on_signals() -> None:
    """Make each of `STOP_SIGNALS` raise KeyboardInterrupt in the main thread, as Ctrl-C does, so that one
    `except` stops every child in order. A signal ignored at start stays ignored (SIGINT in a shell's
    background job, SIGHUP under `nohup`); SIGTERM always stops the stack. Once one has arrived, all three are
    ignored: a second signal (another Ctrl-C, a supervisor's SIGTERM after a SIGHUP) must not cut the stop
    short, and each child's stop is bounded (`_stop` kills what does not stop in time)."""

    def stop(signum: int, frame: FrameType | None) -> None:
        _ignore_stop_signals()
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for signum in STOP_SIGNALS:
        if signum == signal.SIGTERM or signal.getsignal(signum) not in (signal.SIG_IGN, None):
            signal.signal(signum, stop)


def _ignore_stop_signals() -> None:
    """From here on the stack is stopping: `STOP_SIGNALS` are ignored (the stop of every child is bounded)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def dev_command(options: DevOptions) -> int:
    """The Dagster UI with its daemon (schedules and sensors live) against a fresh sandbox account, whose
    activity mode sends its changes as webhooks to the receiver, registered before Dagster starts.

    The sandbox is the demo's account (seed 42, the sandbox's fixed end date): the same ids, order numbers,
    SKUs and timestamps in every session, so the samples match it and a lake pulled by an earlier session
    (or the demo) stays consistent with it; a moving end date would shift every record's creation day and
    land the same record in two date partitions.

    Ctrl-C (SIGINT), SIGTERM (`kill`, systemd, docker, supervisors) and SIGHUP (the terminal closed) all stop
    the stack the same way: Dagster (and what is left of its process group), the receiver, then the sandbox,
    then one "Stopped: ..." line (see `_stop_on_signals`). The exit code is then 0 whichever signal it was:
    the stop was asked for and done, and a supervisor counts 0 as a clean stop (systemd would log 143 as a
    failure unless told `SuccessExitStatus=143`). Otherwise it is dagster dev's own exit code.
    """
    root = data_dir()
    kept_ledger = _prepare_dev_data_dir(root)
    home = ensure_dagster_home(root / "dagster_home")
    _stop_on_signals()
    webhook_port = options.webhook_port or _free_port()
    sandbox_args = ["--port", "0", "--scale", options.scale, "--seed", "42"]
    # Plain http to 127.0.0.1 (the real API wants https); retries after 2, 4, 6... s, not 30, 60...
    sandbox_args += [
        "--activity",
        f"{options.activity:g}",
        "--webhook-allow-http",
        "--webhook-retry-base",
        "2",
    ]
    puller: threading.Thread | None = None
    code = 0
    try:
        with sandbox_process(*sandbox_args) as sandbox:
            point_environment_at(sandbox, rate_limit=60, rate_window=60.0)
            os.environ.setdefault("ORDERSPACE_THROTTLE_DB", str(home / "dev-throttle.sqlite"))
            os.environ["ORDERSPACE_DATA_DIR"] = str(root)
            with receiver_process(webhook_port) as webhook_url:
                _register(webhook_url)
                if kept_ledger is not None:
                    print(
                        "Fresh sandbox account: the previous session's warehouse ledger is kept as "
                        f"{kept_ledger}; files dropped now are pushed to this account."
                    )
                with dagster_dev(options.port) as ui:
                    _print_dev_summary(root, home, sandbox, webhook_url, options.port, options)
                    if not (root / "parquet" / "orders").exists():
                        print(
                            "The lake is empty: a first full pull runs now (about a minute at 60 requests "
                            "a minute); watch it under Runs.",
                            flush=True,
                        )
                        puller = threading.Thread(target=_first_pull, name="first-pull", daemon=True)
                        puller.start()
                    code = _wait_for_exit(ui)
                    _ignore_stop_signals()  # dagster dev ended by itself: stop the rest
    except KeyboardInterrupt:
        _say("Stopped: Dagster, the webhook receiver and the sandbox.")
    if puller is not None and puller.is_alive():
        _exit_during_first_pull(code)
    return code


def _wait_for_exit(process: subprocess.Popen) -> int:
    """`process.wait()` in half-second slices, so the main thread runs Python code at least that often.

    A signal sent to this process may be taken by any of its threads (the first pull's, DuckDB's, pyarrow's
    pools); Python runs the handler in the main thread, and only when that thread next runs Python code. A
    main thread blocked in one long waitpid() would not do so until dagster dev exited. CI once saw the stack
    sleep through a SIGTERM for 3 minutes during the first pull (not reproduced on demand since; the test
    now reports each thread's signal state if it happens again), so the main thread never blocks for long."""
    while True:
        try:
            return process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            continue


def _exit_during_first_pull(code: int) -> NoReturn:
    """End the process at once while the first pull's thread is still inside native code (pyarrow, DuckDB):
    interpreter shutdown would tear that thread down mid-call and abort the process (SIGABRT, seen in CI).
    Every child process is already stopped; the pull's writes are atomic, so nothing is left half-written."""
    _say("The first pull was interrupted; the next `make dev` pulls again.")
    with contextlib.suppress(OSError):
        sys.stderr.flush()
    _kill_own_children()
    os._exit(code)


def _kill_own_children() -> None:
    """SIGKILL this process's remaining children: the first pull's compute-log followers (`tail -F`, started
    by Dagster in the pull's thread), which would outlive an `os._exit` (seen in CI after a SIGHUP)."""
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        with contextlib.suppress(OSError):
            for pid in (task / "children").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
