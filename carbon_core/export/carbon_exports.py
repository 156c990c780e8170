"""Per-payer, per-month export files with the AWS Data Exports carbon-table columns.

Values are rounded only here: kg -> MTCO2e with 6 decimals (gram resolution),
written as decimals so that CSV never shows scientific notation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from carbon_core.calendar import month_range, shift_month
from carbon_core.errors import InputError
from carbon_core.hadoop import HadoopFiles
from carbon_core.lake import table_commit_time, tables
from carbon_core.schemas import EDGE_KIND, EDGE_LOCATION

ExportFormat = Literal["csv", "parquet"]

KG_PER_MTCO2E = 1000
MTCO2E = "MTCO2e"
EXPORT_DECIMAL = "decimal(38,6)"
EDGE_REGION_CODE = "global"

# (export value column, gold column in kg); Scope 3 is the same under LBM and MBM
_VALUES: tuple[tuple[str, str], ...] = (
    ("total_lbm_emissions", "total_lbm_kg"),
    ("total_mbm_emissions", "total_mbm_kg"),
    ("total_scope_1_emissions", "scope1_kg"),
    ("total_scope_2_lbm_emissions", "scope2_lbm_kg"),
    ("total_scope_2_mbm_emissions", "scope2_mbm_kg"),
    ("total_scope_3_lbm_emissions", "scope3_kg"),
    ("total_scope_3_mbm_emissions", "scope3_kg"),
)
_KEYS = (
    "usage_period_start",
    "usage_period_end",
    "payer_account_id",
    "usage_account_id",
    "product_code",
    "region_code",
    "location",
    "model_version",
)
EXPORT_COLUMNS: tuple[str, ...] = (
    *_KEYS,
    *(c for name, _ in _VALUES for c in (f"{name}_value", f"{name}_unit")),
    "last_refresh_timestamp",
)


def _iso_utc(column: Column) -> Column:
    return F.date_format(column.cast("timestamp"), "yyyy-MM-dd'T'HH:mm:ss'Z'")


def to_export_rows(
    account_emissions: DataFrame, clusters: DataFrame, *, refreshed_at: dt.datetime
) -> DataFrame:
    """Gold account rows -> export rows: external accounts only, edge clusters as global."""
    edge = F.broadcast(
        clusters.where(F.col("kind") == EDGE_KIND).select(
            F.col("cluster_id").alias("edge_cluster_id")
        )
    )
    is_edge = F.col("edge_cluster_id").isNotNull()
    external = (
        account_emissions.where(~F.col("is_internal"))
        .join(edge, F.col("region_code") == F.col("edge_cluster_id"), how="left")
        .select(
            _iso_utc(F.col("month")).alias("usage_period_start"),
            _iso_utc(F.add_months("month", 1)).alias("usage_period_end"),
            "payer_account_id",
            "usage_account_id",
            "product_code",
            F.when(is_edge, F.lit(EDGE_REGION_CODE))
            .otherwise(F.col("region_code"))
            .alias("region_code"),
            F.when(is_edge, F.lit(EDGE_LOCATION)).otherwise(F.col("location")).alias("location"),
            "model_version",
            *(F.col(gold).alias(name) for name, gold in _VALUES),
        )
    )
    summed = external.groupBy(*_KEYS).agg(*(F.sum(name).alias(name) for name, _ in _VALUES))
    refreshed = refreshed_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return summed.select(
        *_KEYS,
        *(
            column
            for name, _ in _VALUES
            for column in (
                (F.col(name) / KG_PER_MTCO2E).cast(EXPORT_DECIMAL).alias(f"{name}_value"),
                F.lit(MTCO2E).alias(f"{name}_unit"),
            )
        ),
        F.lit(refreshed).alias("last_refresh_timestamp"),
    )


@dataclass
class ExportReport:
    """Which payer-month file sets were written."""

    written: list[tuple[str, str]] = field(default_factory=list)  # (payer, YYYY-MM)
    backfilled_payers: list[str] = field(default_factory=list)
    out: str = ""


def export_carbon(
    spark: SparkSession,
    account_emissions: DataFrame,
    clusters: DataFrame,
    out: str | Path,
    *,
    months: Sequence[dt.date],
    refreshed_at: dt.datetime,
    fmt: ExportFormat = "csv",
    history_months: int = 38,
    log: Callable[[str], None] = print,
) -> ExportReport:
    """Write <out>/<payer>/<YYYY-MM>/ file sets; a payer's first export backfills history."""
    if not months:
        raise InputError("nothing to export: no months selected")
    root = str(out).rstrip("/")
    files = HadoopFiles(spark, root)
    rows = to_export_rows(account_emissions, clusters, refreshed_at=refreshed_at)
    payers = sorted(
        r[0] for r in rows.select("payer_account_id").distinct().collect()
    )  # one row per payer account: small
    new_payers = [p for p in payers if not files.exists(f"{root}/{p}")]
    last = max(months)
    backfill_from = shift_month(last, -(history_months - 1))
    period = F.to_date(F.substring("usage_period_start", 1, 10))
    requested = period.isin(*[F.lit(m) for m in months])
    backfill = (
        F.col("payer_account_id").isin(*new_payers)
        & (period >= F.lit(backfill_from))
        & (period <= F.lit(last))
    )
    selected = rows.where(requested | backfill).withColumn(
        "_part", F.concat_ws("/", "payer_account_id", F.substring("usage_period_start", 1, 7))
    )
    staging = f"{root}/_staging"
    files.delete(staging)
    writer = (
        selected.repartition("_part")
        # _part first: a partitioned write sorts by it and would otherwise drop the rest
        # of the order, leaving files whose rows come in any order.
        .sortWithinPartitions("_part", "usage_account_id", "region_code", "product_code")
        .write.partitionBy("_part")
        .mode("overwrite")
    )
    if fmt == "csv":
        writer.option("header", True).csv(staging)
    else:
        writer.parquet(staging)
    report = ExportReport(backfilled_payers=new_payers, out=root)
    if not files.exists(staging):
        return report
    for part_dir in files.list_children(staging):
        name = part_dir.rstrip("/").rsplit("/", 1)[-1]
        if not name.startswith("_part="):
            continue
        payer, month = _unescape(name.removeprefix("_part=")).split("/")
        target = f"{root}/{payer}/{month}"
        files.delete(target)
        files.mkdirs(f"{root}/{payer}")
        files.rename(part_dir, target)
        for data_file in files.list_children(target):
            if data_file.rsplit("/", 1)[-1].startswith("part-"):
                files.rename(data_file, f"{target}/carbon_{payer}_{month}.{fmt}")
        # Spark's markers and the local file system's .crc side files are not for customers
        for side_file in files.list_children(target):
            if side_file.rsplit("/", 1)[-1].startswith((".", "_")):
                files.delete(side_file)
        report.written.append((payer, month))
    files.delete(staging)
    report.written.sort()
    log(
        f"export: {len(report.written)} payer-month file set(s) under {root}"
        + (f", first export (backfill) for {len(new_payers)} payer(s)" if new_payers else "")
    )
    return report


def export_lake(
    spark: SparkSession,
    lake: str | Path,
    out: str | Path,
    *,
    month_from: dt.date | None = None,
    month_to: dt.date | None = None,
    fmt: ExportFormat = "csv",
    history_months: int = 38,
    log: Callable[[str], None] = print,
) -> ExportReport:
    """Export the lake's gold/account_emissions for a month range (default: its latest
    month); `last_refresh_timestamp` is the time of that table's last commit."""
    emissions = tables.read_lake_table(spark, lake, tables.ACCOUNT_EMISSIONS)
    if month_from is None or month_to is None:
        bounds = emissions.agg(F.max("month")).first()
        latest = bounds[0] if bounds is not None else None
        if latest is None:
            raise InputError(f"{tables.ACCOUNT_EMISSIONS.name} is empty: nothing to export")
        month_from, month_to = month_from or latest, month_to or latest
    return export_carbon(
        spark,
        emissions,
        tables.read_lake_table(spark, lake, tables.bronze("clusters")),
        out,
        months=month_range(month_from, month_to),
        refreshed_at=table_commit_time(spark, tables.ACCOUNT_EMISSIONS.uri(lake)),
        fmt=fmt,
        history_months=history_months,
        log=log,
    )


def _unescape(value: str) -> str:
    """Undo Hive partition-path escaping (Spark writes '/' as %2F)."""
    from urllib.parse import unquote

    return unquote(value)
