"""Delta Lake I/O (the only module that writes tables) and the table catalog."""

from carbon_core.lake.delta_io import (
    TableCheckpoint,
    ensure_table,
    merge_into,
    read_table,
    replace_months,
    replace_rows,
    replace_where,
    restore_tables,
    set_table_properties,
    table_commit_time,
    table_exists,
    table_properties,
    table_version,
    write_table,
)

__all__ = [
    "TableCheckpoint",
    "ensure_table",
    "merge_into",
    "read_table",
    "replace_months",
    "replace_rows",
    "replace_where",
    "restore_tables",
    "set_table_properties",
    "table_commit_time",
    "table_exists",
    "table_properties",
    "table_version",
    "write_table",
]
