"""Create, append to, merge into, replace one month of, and read Delta tables.

Every write is a single Delta commit, so a write that fails mid-way leaves the
table exactly as it was. Writers take keyword-only options, in the manner of
delta-rs's ``write_deltalake``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from delta.exceptions import (
    ConcurrentAppendException,
    ConcurrentDeleteDeleteException,
    ConcurrentDeleteReadException,
    ConcurrentTransactionException,
    ConcurrentWriteException,
    DeltaConcurrentModificationException,
    MetadataChangedException,
    ProtocolChangedException,
)
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from carbon_core.hadoop import qualified

WriteMode = Literal["overwrite", "append", "error"]
T_ = TypeVar("T_")
CONSTRAINT_PROPERTY = "delta.constraints."
# The session setting whose text Delta stores as `userMetadata` in every commit's info.
COMMIT_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"
# A commit that lost to a concurrent one (optimistic concurrency): retry from a fresh read.
COMMIT_CONFLICTS: tuple[type[BaseException], ...] = (
    ConcurrentAppendException,
    ConcurrentDeleteDeleteException,
    ConcurrentDeleteReadException,
    ConcurrentTransactionException,
    ConcurrentWriteException,
    DeltaConcurrentModificationException,
    MetadataChangedException,
    ProtocolChangedException,
)


def _uri(path: str | Path) -> str:
    """Local paths made absolute (Delta's table builder rejects relative ones); URIs as given."""
    return qualified(str(path))


def table_exists(spark: SparkSession, path: str | Path) -> bool:
    """True when a Delta table (a _delta_log) exists at path."""
    return DeltaTable.isDeltaTable(spark, _uri(path))


def read_table(spark: SparkSession, path: str | Path, *, version: int | None = None) -> DataFrame:
    """Read a Delta table, optionally as of an earlier version (time travel)."""
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(_uri(path))


def table_version(spark: SparkSession, path: str | Path) -> int | None:
    """The latest committed version, or None when there is no table."""
    if not table_exists(spark, path):
        return None
    last = DeltaTable.forPath(spark, _uri(path)).history(1).select("version").first()
    return None if last is None else int(last["version"])


def retry_on_conflict(
    commit: Callable[[], T_], *, attempts: int = 20, pause_s: float = 0.2
) -> T_:
    """commit(), again while it loses to a concurrent commit (Delta's optimistic
    concurrency); only for a commit that is the same whenever it runs, e.g. replacing the
    run's own months or appending a row."""
    for attempt in range(attempts):
        try:
            return commit()
        except COMMIT_CONFLICTS:
            if attempt == attempts - 1:
                raise
            time.sleep(pause_s * (attempt + 1))
    raise AssertionError("unreachable")


def tagged_version(spark: SparkSession, path: str | Path, text: str) -> int | None:
    """The latest version of the table whose commit carries `text` as userMetadata."""
    history = DeltaTable.forPath(spark, _uri(path))
    # The commit is almost always among the last few; the whole history only if not.
    for frame in (history.history(50), history.history()):
        found = frame.where(frame["userMetadata"] == text).agg({"version": "max"}).first()
        if found is not None and found[0] is not None:
            return int(found[0])
    return None


def table_commit_time(spark: SparkSession, path: str | Path) -> dt.datetime:
    """Timestamp of the latest commit (stable across re-reads: used as refresh time)."""
    last = DeltaTable.forPath(spark, _uri(path)).history(1).select("timestamp").first()
    if last is None:
        raise ValueError(f"no commits in {path}")
    return last["timestamp"]


def ensure_table(
    spark: SparkSession,
    path: str | Path,
    *,
    schema: T.StructType,
    partition_by: Sequence[str] = (),
    checks: Mapping[str, str] | None = None,
) -> None:
    """Create an empty table with the schema unless one exists.

    Non-nullable fields become NOT NULL columns; `checks` (name -> SQL condition) become
    CHECK constraints, so that Delta refuses a write breaking them. All in the creating
    commit: Delta keeps a CHECK constraint as the table property `delta.constraints.<name>`
    (what ALTER TABLE ADD CONSTRAINT writes, a commit each, after validating rows an
    empty table does not have).
    """
    if table_exists(spark, path):
        return
    builder = DeltaTable.createIfNotExists(spark).location(_uri(path)).addColumns(schema)
    if partition_by:
        builder = builder.partitionedBy(*partition_by)
    for name, condition in (checks or {}).items():
        builder = builder.property(f"{CONSTRAINT_PROPERTY}{name.lower()}", condition)
    builder.execute()


def write_table(
    df: DataFrame,
    path: str | Path,
    *,
    mode: WriteMode,
    partition_by: Sequence[str] = (),
    properties: Mapping[str, str] | None = None,
    merge_schema: bool = False,
) -> None:
    """Write df as one commit: overwrite (schema included), append, or error if present.
    `merge_schema` adds df's new nullable columns to an existing table in the same commit.

    `properties` (TBLPROPERTIES) hold for this write already: a new table is created
    with them; an existing table lacking them gets them first, in a commit of its own
    (Delta applies a writer's table properties only when it creates the table).
    """
    spark = df.sparkSession
    writer = df.write.format("delta").mode(mode)
    if properties:
        if table_exists(spark, path):
            set_table_properties(spark, path, properties)
        else:
            writer = writer.options(**properties)
    if mode == "overwrite":
        writer = writer.option("overwriteSchema", "true")
    elif merge_schema:
        writer = writer.option("mergeSchema", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.save(_uri(path))


def months_predicate(months: Sequence[dt.date], column: str) -> str:
    """`column IN (DATE'...', ...)` for the months (a replaceWhere or filter condition)."""
    literals = ", ".join(f"DATE'{m.isoformat()}'" for m in sorted(set(months)))
    return f"{column} IN ({literals})"


def replace_months(
    df: DataFrame,
    path: str | Path,
    *,
    months: Sequence[dt.date],
    month_column: str = "month",
    transaction: tuple[str, int] | None = None,
) -> None:
    """Replace exactly these months' partitions with df, in one atomic commit.

    Delta rejects the commit if df holds a row outside the months, so a bug can
    never overwrite another month. `transaction` (application id, version) makes the
    write idempotent: Delta skips it when the table already holds that transaction.
    """
    if not months:
        raise ValueError("replace_months needs at least one month")
    spark = df.sparkSession
    if not table_exists(spark, path):
        ensure_table(spark, path, schema=df.schema, partition_by=(month_column,))
    writer = df.write.format("delta").mode("overwrite")
    if transaction is not None:
        writer = writer.option("txnAppId", transaction[0]).option("txnVersion", transaction[1])
    writer.option("replaceWhere", months_predicate(months, month_column)).save(_uri(path))


def replace_rows(df: DataFrame, path: str | Path) -> None:
    """Replace every row of an existing table with df in one commit, keeping the table's
    schema and constraints (an overwrite that replaced the schema would drop NOT NULL)."""
    df.write.format("delta").mode("overwrite").save(_uri(path))


def replace_where(
    df: DataFrame, path: str | Path, *, predicate: str, merge_schema: bool = False
) -> None:
    """Replace the rows matching a SQL predicate with df, in one atomic commit;
    `merge_schema` adds df's new nullable columns to the table in the same commit."""
    spark = df.sparkSession
    if not table_exists(spark, path):
        ensure_table(spark, path, schema=df.schema)
    writer = df.write.format("delta").mode("overwrite").option("replaceWhere", predicate)
    if merge_schema:
        writer = writer.option("mergeSchema", "true")
    writer.save(_uri(path))


def merge_into(
    df: DataFrame,
    path: str | Path,
    *,
    keys: Sequence[str],
    partition_by: Sequence[str] = (),
    update_existing: bool = True,
    evolve_schema: bool = False,
) -> None:
    """Upsert df into the table on keys (null-safe) in one MERGE commit; creates it if absent.
    `evolve_schema` adds df's columns that the table lacks (a table from an older release)."""
    spark = df.sparkSession
    if not table_exists(spark, path):
        ensure_table(spark, path, schema=df.schema, partition_by=partition_by)
    condition = " AND ".join(f"target.`{k}` <=> source.`{k}`" for k in keys)
    merge = (
        DeltaTable.forPath(spark, _uri(path)).alias("target").merge(df.alias("source"), condition)
    )
    if evolve_schema:
        merge = merge.withSchemaEvolution()
    if update_existing:
        merge = merge.whenMatchedUpdateAll()
    merge.whenNotMatchedInsertAll().execute()


@dataclass(frozen=True)
class TableCheckpoint:
    """A table's version before a multi-table run, to restore if the run fails."""

    path: str
    version: int | None


def restore_tables(spark: SparkSession, checkpoints: Sequence[TableCheckpoint]) -> None:
    """Put tables back to their recorded versions (a run failed after some commits)."""
    for checkpoint in checkpoints:
        current = table_version(spark, checkpoint.path)
        if current is None or current == checkpoint.version:
            continue
        table = DeltaTable.forPath(spark, _uri(checkpoint.path))
        if checkpoint.version is None:
            # The table did not exist before: empty it, keeping history for audit.
            table.delete()
        else:
            table.restoreToVersion(checkpoint.version)


def sql_text(value: str) -> str:
    """A SQL string literal (Spark unescapes backslashes in literals)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def table_properties(spark: SparkSession, path: str | Path) -> dict[str, str]:
    """The table's properties (TBLPROPERTIES), e.g. for metadata a run recorded."""
    detail = DeltaTable.forPath(spark, _uri(path)).detail().select("properties").first()
    return {} if detail is None or detail["properties"] is None else dict(detail["properties"])


def set_table_properties(
    spark: SparkSession,
    path: str | Path,
    properties: Mapping[str, str | None],
) -> bool:
    """Set (or, for None, unset) table properties in one commit each way; properties that
    already hold the value are left alone, so a no-op makes no commit. True if it committed."""
    current = table_properties(spark, path)
    to_set = {k: v for k, v in properties.items() if v is not None and current.get(k) != v}
    to_unset = [k for k, v in properties.items() if v is None and k in current]
    table = f"delta.`{_uri(path)}`"
    if to_set:
        pairs = ", ".join(f"{sql_text(k)} = {sql_text(v)}" for k, v in to_set.items())
        spark.sql(f"ALTER TABLE {table} SET TBLPROPERTIES ({pairs})")
    if to_unset:
        keys = ", ".join(sql_text(k) for k in to_unset)
        spark.sql(f"ALTER TABLE {table} UNSET TBLPROPERTIES IF EXISTS ({keys})")
    return bool(to_set or to_unset)


def table_partitioning(spark: SparkSession, path: str | Path) -> list[str]:
    """A table's partition columns, in order."""
    detail = DeltaTable.forPath(spark, _uri(path)).detail().select("partitionColumns").first()
    return [] if detail is None else list(detail["partitionColumns"])
