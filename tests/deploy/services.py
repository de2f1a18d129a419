"""Separate processes for the multi-host deployment test: start each in its own process group, stop them all.

Every service (code server, webserver, daemon, a second host's command) is started as
`setsid env --default-signal=INT,TERM <argv>`: its own session and process group (so the whole tree it spawns,
run workers included, can be signalled at once) with default signal handling (pytest's own handlers are not
inherited). `ServiceStack.stop_all()` sends SIGTERM to each group, waits, then SIGKILLs whatever is left of
the group, so nothing outlives the test, passed or failed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STOP_SECONDS = 30.0  # how long a group gets to stop on SIGTERM before it is killed
T = TypeVar("T")


@dataclass
class Service:
    """One started process group and its combined stdout/stderr log."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, chars: int = 3000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} (pid {self.pid}, exit {self.process.poll()}) ---\n{text[-chars:]}"

    def wait(self, timeout: float) -> int:
        """The exit code; fails the test with the log's tail if the process runs past `timeout`."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout:g} s\n{self.tail()}") from None

    def stop(self) -> None:
        """SIGTERM to the group, a grace period, then SIGKILL to whatever of the group is left."""
        _signal_group(self.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_SECONDS)
        _signal_group(self.pid, signal.SIGKILL)  # children that outlived the leader (run workers, steps)
        self.process.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


@dataclass
class ServiceStack:
    """The processes of one test, stopped in reverse order of start."""

    log_dir: Path
    services: list[Service] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path = REPO) -> Service:
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["setsid", "env", "--default-signal=INT,TERM", *argv],
                env=dict(env),
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        service = Service(name, process, log)
        self.services.append(service)
        return service

    def named(self, name: str) -> Service:
        return next(service for service in self.services if service.name == name)

    def logs(self) -> str:
        """Every service's log tail, for a failure message."""
        return "\n".join(service.tail() for service in self.services)

    def stop_all(self) -> None:
        for service in reversed(self.services):
            service.stop()


def wait_for(what: str, probe: Callable[[], T | None], *, timeout: float, diagnose: Callable[[], str]) -> T:
    """Poll `probe` until it returns something other than None; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{diagnose()}")
        time.sleep(0.5)


def graphql(url: str, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One GraphQL request to the webserver; errors fail the test with the server's message."""
    response = httpx.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
    assert response.status_code == 200, (response.status_code, response.text[-2000:])
    body = response.json()
    assert "errors" not in body, body["errors"]
    return dict(body["data"])
