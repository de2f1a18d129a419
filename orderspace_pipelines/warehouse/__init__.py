"""Warehouse files -> Orderspace: detection, parsing, validation, the exactly-once ledger, planning, sending.

No Dagster here (the job and the sensor in `defs/` call into this package). Entry point:

```python
from orderspace_pipelines.warehouse import push_file
result = push_file(path, client=client, data_dir=data_dir)   # -> PushResult
```
"""

from orderspace_pipelines.warehouse.files import (
    FileMissingError,
    WarehouseFolders,
    atomic_write_text,
    is_candidate,
    sha256_of,
)
from orderspace_pipelines.warehouse.ledger import Ledger, SqliteLedger, open_ledger
from orderspace_pipelines.warehouse.parsing import FileKind, ParsedFile, parse_bytes
from orderspace_pipelines.warehouse.push import PushOptions, push_file
from orderspace_pipelines.warehouse.report import PushResult, RowResult

__all__ = [
    "FileKind",
    "FileMissingError",
    "Ledger",
    "ParsedFile",
    "PushOptions",
    "PushResult",
    "RowResult",
    "SqliteLedger",
    "WarehouseFolders",
    "atomic_write_text",
    "is_candidate",
    "open_ledger",
    "parse_bytes",
    "push_file",
    "sha256_of",
]
