"""Real CLI processes for the concurrency tests: start one with its output in a log, wait on a condition."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[2]


def wait_for(condition: Callable[[], bool], what: str, limit: float = 120.0) -> None:
    """Poll `condition` until it holds (a deadline against hanging, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


def start(args: list[str], env: dict[str, str], log: Path) -> tuple[subprocess.Popen[str], IO[str]]:
    """`args` as a process in the repository, stdout and stderr into `log`."""
    handle = log.open("w")
    process = subprocess.Popen(args, env=env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, text=True)
    return process, handle


def finish(
    process: subprocess.Popen[str], handle: IO[str], log: Path, timeout: float = 300
) -> tuple[int, str]:
    """The process's exit code and its whole log, once it ends."""
    code = process.wait(timeout=timeout)
    handle.close()
    return code, log.read_text()
