"""The lake: flattening API records, explicit Arrow schemas, atomic Parquet partitions and the DuckDB catalog.

No Dagster and no HTTP here. `schemas` declares the tables, `flatten` turns API records into typed Arrow
tables, `storage` writes and reads the Parquet files atomically, `catalog` keeps the DuckDB views, and
`sweep` lands a stream of API pages into daily partitions (the pull assets drive it).
"""

from orderspace_pipelines.lake.catalog import (
    CATALOG_TABLES,
    catalog_path,
    connect_read_only,
    lake_connection,
    refresh_catalog,
    summary,
)
from orderspace_pipelines.lake.schemas import RESOURCES, TABLES, table_spec

__all__ = [
    "CATALOG_TABLES",
    "RESOURCES",
    "TABLES",
    "catalog_path",
    "connect_read_only",
    "lake_connection",
    "refresh_catalog",
    "summary",
    "table_spec",
]
