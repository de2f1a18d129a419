"""Run config shared by the in-process runs of the CLI (`sync`, `push`, `demo`)."""

from typing import Any

# The console shows INFO and up (progress, warnings); the full DEBUG event stream stays in the instance.
CONSOLE_INFO: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
