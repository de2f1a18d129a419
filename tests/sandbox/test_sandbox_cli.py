"""`python -m orderspace_sandbox` as a real process: ready line, ready file, clean stop."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sandbox_test_helpers import plain

from orderspace_sandbox import main


def _start(tmp_path: Path, *flags: str) -> tuple[subprocess.Popen, dict]:
    ready = tmp_path / "ready.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orderspace_sandbox",
            "--port",
            "0",
            "--ready-file",
            str(ready),
            *flags,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not ready.exists():
        if process.poll() is not None:
            pytest.fail(f"sandbox exited early: {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("sandbox never became ready")
        time.sleep(0.02)
    return process, json.loads(ready.read_text())


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_cli_serves_writes_the_ready_file_and_stops_cleanly(tmp_path, stop_signal):
    process, info = _start(tmp_path, "--rate-limit", "5", "--rate-window", "30", "--fault", "503_empty:1")
    try:
        assert info["pid"] == process.pid
        assert info["api_url"].endswith("/v1") and info["token_url"].endswith("/oauth/token")
        form = {
            "client_id": "sandbox-client",
            "client_secret": "sandbox-secret",
            "grant_type": "client_credentials",
        }
        token = plain.post(info["token_url"], data=form).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert plain.get(f"{info['api_url']}/orders", headers=headers).status_code == 503  # the startup fault
        assert plain.get(f"{info['api_url']}/orders", headers=headers).status_code == 200
        base = info["api_url"].rsplit("/v1", 1)[0]
        assert plain.get(f"{base}/_sandbox/stats").json()["rate_limit"] == 5
    finally:
        process.send_signal(stop_signal)
        out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    first_line = out.splitlines()[0]
    assert first_line.startswith(
        f"Orderspace sandbox on {base}  api={info['api_url']}  token={info['token_url']}"
    )
    assert "scale=tiny" in first_line
    assert "sandbox-secret" not in out + err
    assert "Traceback" not in err
    assert not (tmp_path / "ready.json").exists()


def test_bad_flags_exit_2_with_a_message(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--fault", "meltdown"])
    assert exit_info.value.code == 2
    assert "unknown fault kind 'meltdown'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--end-date", "someday"])
    assert "YYYY-MM-DD" in capsys.readouterr().err


def test_a_port_in_use_is_a_clear_error(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--port", str(port)]) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
