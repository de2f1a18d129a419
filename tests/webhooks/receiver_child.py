"""A child process for the kill tests: run the receiver and, at a named checkpoint, stop there for good.

    python -m tests.webhooks.receiver_child PORT_FILE [POINT]     (with ORDERSPACE_DATA_DIR set)

It runs the receiver as `webhooks serve` does (`serve_command`, SIGTERM handling included) on 127.0.0.1,
port 0, and writes the port to PORT_FILE. With POINT (one of
`orderspace_pipelines.webhooks.hooks`' points) the request that reaches it writes PORT_FILE + ".paused" and
sleeps, so the test can SIGKILL the process exactly there.
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from pathlib import Path

from orderspace_pipelines.webhooks import hooks
from orderspace_pipelines.webhooks.commands import serve_command


def main(argv: list[str]) -> int:
    port_file = Path(argv[0])
    point = argv[1] if len(argv) > 1 else ""
    logging.basicConfig(level=logging.INFO)

    def pause(reached: str) -> None:
        if reached == point:
            Path(f"{port_file}.paused").write_text(reached)
            time.sleep(3600)

    if point:
        hooks.install(pause)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections wait in the backlog until uvicorn serves them
    temporary = port_file.with_suffix(".tmp")
    temporary.write_text(str(sock.getsockname()[1]))
    temporary.replace(port_file)
    return serve_command("127.0.0.1", sock.getsockname()[1], sock=sock)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
