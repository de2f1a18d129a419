"""A child process for the kill tests: push one file and die (`os._exit(70)`) at a named checkpoint.

    python -m tests.push.crash_child FILE POINT NTH [job]

`POINT` is one of `orderspace_pipelines.warehouse.hooks`' points (empty: no crash). With `job`, the file is
pushed through the Dagster job (`run_push`), else with `push_file` and a client from the environment.
"""

from __future__ import annotations

import sys
from pathlib import Path

from orderspace_pipelines.warehouse import hooks


def main(argv: list[str]) -> int:
    path, point, nth = Path(argv[0]), argv[1], int(argv[2])
    if point:
        hooks.install(hooks.crash_at(point, nth))
    if argv[3:] == ["job"]:
        from orderspace_pipelines.defs.push_jobs import run_push

        run_push(path)
        return 0
    from orderspace_pipelines.client import OrderspaceClient
    from orderspace_pipelines.settings import OrderspaceSettings
    from orderspace_pipelines.warehouse import push_file

    settings = OrderspaceSettings.from_env()
    with OrderspaceClient.from_settings(settings) as client:
        push_file(path, client=client, data_dir=settings.data_dir, database_url=settings.database_url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
