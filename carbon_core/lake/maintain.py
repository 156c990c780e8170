"""`carbonlake maintain`: compact the large bronze tables and vacuum every lake table.

OPTIMIZE rewrites the many small files that month after month of ingests leave in the
hourly bronze tables into fewer large ones (a new table version; the data is the same).
VACUUM then deletes the data files that no version younger than the retention still
references, in every table of the catalog. Time travel and audit reach back exactly as
far as the retention (docs/operations.md §4.4): a version older than it can no longer be
read, though its commit stays in the history.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from carbon_core import schemas
from carbon_core.config import MaintenanceSettings
from carbon_core.hadoop import qualified
from carbon_core.lake import table_exists, tables
from carbon_core.lake.status import lake_status
from carbon_core.session import label_jobs, temporary_conf


@dataclass(frozen=True)
class TableMaintenance:
    """What maintain did to one table."""

    table: str
    files_compacted: int  # files OPTIMIZE replaced (0 when not optimised)
    files_written: int

    def line(self) -> str:
        if not self.files_compacted:
            return f"maintain {self.table}: vacuumed"
        return (
            f"maintain {self.table}: {self.files_compacted} files compacted into "
            f"{self.files_written}, vacuumed"
        )


def optimised_tables() -> tuple[tables.LakeTable, ...]:
    """The tables OPTIMIZE compacts: the hourly bronze tables, which grow every month."""
    return tuple(tables.bronze(name) for name in schemas.MONTH_PARTITIONED)


LISTING_PARALLELISM = "spark.sql.sources.parallelPartitionDiscovery.parallelism"


def _maintain(
    spark: SparkSession, uri: str, table: tables.LakeTable, compact: bool, retention_hours: int
) -> TableMaintenance:
    label_jobs(spark, f"maintain/{table.name}")
    delta = DeltaTable.forPath(spark, uri)
    removed = added = 0
    if compact:
        metrics = delta.optimize().executeCompaction().select("metrics").first()
        if metrics is not None:
            removed = int(metrics["metrics"]["numFilesRemoved"])
            added = int(metrics["metrics"]["numFilesAdded"])
    delta.vacuum(float(retention_hours))
    return TableMaintenance(table.name, removed, added)


def maintain_lake(
    spark: SparkSession,
    lake: str,
    settings: MaintenanceSettings,
    *,
    log: Callable[[str], None] | None = print,
) -> Sequence[TableMaintenance]:
    """OPTIMIZE the hourly bronze tables, then VACUUM every existing table of the lake.

    Delta's own retention check stays on, so VACUUM refuses a retention shorter than a
    table's `delta.deletedFileRetentionDuration` (7 days unless set longer)."""
    compacted = {t.name for t in optimised_tables()}
    # A run that wrote months and did not publish them left the published version's files
    # removed from the latest one: VACUUM would delete what readers read.
    shadowed = sorted(
        {f"{m.month:%Y-%m}" for m in lake_status(spark, lake).months if m.pending_run}
    )
    done = []
    # VACUUM lists a table's files in this many tasks; Spark's default (10,000) is meant
    # for huge tables, and each of the lake's ~40 tables would pay for them.
    tasks = str(spark.conf.get("spark.sql.shuffle.partitions") or 8)
    with temporary_conf(spark, LISTING_PARALLELISM, tasks):
        for table in tables.catalog():
            uri = qualified(table.uri(lake))
            if not table_exists(spark, uri):
                continue
            if shadowed and table in tables.MONTHLY_TABLES:
                if log is not None:
                    log(
                        f"maintain {table.name}: not vacuumed: months {', '.join(shadowed)} "
                        "have an unpublished later run; re-run them first"
                    )
                continue
            result = _maintain(
                spark, uri, table, table.name in compacted, settings.vacuum_retention_hours
            )
            if log is not None:
                log(result.line())
            done.append(result)
    if log is not None:
        log(
            f"maintain: {len(done)} tables vacuumed (retention "
            f"{settings.vacuum_retention_hours} h), "
            f"{sum(1 for d in done if d.files_compacted)} compacted"
        )
    return done
