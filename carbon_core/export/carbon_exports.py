"""Per-payer, per-month export files with the AWS Data Exports carbon-table columns.

Values are rounded only here: kg -> MTCO2e with 6 decimals (gram resolution),
written as decimals so that CSV never shows scientific notation.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from carbon_core.calendar import month_range, shift_month
from carbon_core.errors import InputError
from carbon_core.hadoop import HadoopFiles, qualified
from carbon_core.ids import is_path_safe
from carbon_core.lake import ensure_table, read_table, table_commit_time, table_exists, tables
from carbon_core.lake.delta_io import retry_on_conflict
from carbon_core.lake.runs import published_at, read_published
from carbon_core.schemas import EDGE_KIND, EDGE_LOCATION, EXPORT_MANIFEST

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
# Text the export writes itself (timestamps, units): never from input.
_GENERATED_TEXT = frozenset(
    {"usage_period_start", "usage_period_end", "last_refresh_timestamp"}
    | {f"{name}_unit" for name, _ in _VALUES}
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


MANIFEST = "_manifest"  # a Delta table under the export location


# A spreadsheet takes a cell starting with one of these for a formula (OWASP, CSV
# injection): such a text cell gets a leading apostrophe, which spreadsheets show as text.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formulas(rows: DataFrame) -> DataFrame:
    """Every string column of the export rows with formula-like cells prefixed by `'`."""
    pattern = "^[" + "".join(re.escape(c) for c in FORMULA_PREFIXES) + "]"
    return rows.select(
        *(
            F.when(F.col(f.name).rlike(pattern), F.concat(F.lit("'"), F.col(f.name)))
            .otherwise(F.col(f.name))
            .alias(f.name)
            if isinstance(f.dataType, T.StringType) and f.name not in _GENERATED_TEXT
            else F.col(f.name)
            for f in rows.schema.fields
        )
    )


@dataclass
class ExportReport:
    """Which payer-month file sets were written or removed."""

    written: list[tuple[str, str]] = field(default_factory=list)  # (payer, YYYY-MM)
    removed: list[tuple[str, str]] = field(default_factory=list)  # no rows any more
    backfilled_payers: list[str] = field(default_factory=list)
    out: str = ""


def exported_months(spark: SparkSession, out: str | Path) -> DataFrame | None:
    """The export manifest (schemas.EXPORT_MANIFEST): a row per payer-month file set in
    place; None before the first export."""
    uri = f"{str(out).rstrip('/')}/{MANIFEST}"
    return read_table(spark, uri) if table_exists(spark, uri) else None


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
    """Write <out>/<payer>/<YYYY-MM>/carbon_<payer>_<YYYY-MM>.<fmt>; a payer the manifest
    does not list yet gets its history backfilled.

    Each file is written under a staging folder of its own export and renamed onto its
    place, so a reader finds the old file or the new one. Payer-months of the exported
    months that have no rows any more are removed. The manifest (<out>/_manifest, a Delta
    table) changes last, in one commit: an export that dies before it leaves the manifest
    as it was, and the next export repeats the backfill it did not finish."""
    if not months:
        raise InputError("nothing to export: no months selected")
    root = str(out).rstrip("/")
    files = HadoopFiles(spark, root)
    export_id = uuid.uuid4().hex
    rows = to_export_rows(account_emissions, clusters, refreshed_at=refreshed_at)
    payers = sorted(
        r[0] for r in rows.select("payer_account_id").distinct().collect()
    )  # one row per payer account: small
    unsafe = [p for p in payers if not is_path_safe(p)]
    if unsafe:
        # The ingest quarantines such ids; a path is never built from one.
        raise InputError(f"payer account id(s) not safe as a folder name: {unsafe[:5]!r}")
    manifest = exported_months(spark, root)
    in_place: dict[tuple[str, dt.date], str] = (
        {}
        if manifest is None
        else {
            (r["payer_account_id"], r["month"]): r["file"]
            for r in manifest.select("payer_account_id", "month", "file").collect()
        }
    )  # one row per payer-month exported: small
    known_payers = {payer for payer, _ in in_place}
    new_payers = [p for p in payers if p not in known_payers]
    last = max(months)
    backfill_from = shift_month(last, -(history_months - 1))
    period = F.to_date(F.substring("usage_period_start", 1, 10))
    requested = period.isin(*[F.lit(m) for m in months])
    backfill = (
        F.col("payer_account_id").isin(*new_payers)
        & (period >= F.lit(backfill_from))
        & (period <= F.lit(last))
    )
    if fmt == "csv":
        rows = neutralise_formulas(rows)
    selected = rows.where(requested | backfill).withColumn(
        "_part", F.concat_ws("/", "payer_account_id", F.substring("usage_period_start", 1, 7))
    )
    counts = {
        r["_part"]: int(r["rows"])
        for r in selected.groupBy("_part").agg(F.count(F.lit(1)).alias("rows")).collect()
    }  # one row per payer-month: small
    # Its own staging folder: concurrent exports never touch each other's files.
    staging = f"{root}/_staging/{export_id}"
    writer = (
        selected.repartition("_part")
        # _part first: a partitioned write sorts by it and would otherwise drop the rest
        # of the order, leaving files whose rows come in any order.
        .sortWithinPartitions("_part", "usage_account_id", "region_code", "product_code")
        .write.partitionBy("_part")
        .mode("errorifexists")
    )
    if fmt == "csv":
        # RFC 4180: a quote inside a quoted field is doubled (Spark's default escapes it
        # with a backslash, which Python's csv module and pandas misread).
        writer.option("header", True).option("escape", '"').csv(staging)
    else:
        writer.parquet(staging)
    report = ExportReport(backfilled_payers=new_payers, out=root)
    placed: list[tuple[str, dt.date, str, int]] = []
    for part_dir in files.list_children(staging) if files.exists(staging) else []:
        name = part_dir.rstrip("/").rsplit("/", 1)[-1]
        if not name.startswith("_part="):
            continue
        part = _unescape(name.removeprefix("_part="))
        payer, month = part.split("/")
        target = f"{root}/{payer}/{month}"
        files.mkdirs(target)
        data = [f for f in files.list_children(part_dir) if _base(f).startswith("part-")]
        final = f"{target}/carbon_{payer}_{month}.{fmt}"
        files.replace(data[0], final)  # one task per payer-month: one file
        # Spark's markers and the local file system's .crc side files are not for customers
        for side_file in files.list_children(target):
            if _base(side_file).startswith((".", "_")):
                files.delete(side_file)
        placed.append((payer, dt.date.fromisoformat(f"{month}-01"), final, counts.get(part, 0)))
        report.written.append((payer, month))
    # Payer-months of the requested months that the manifest lists and that have no rows
    # now (a new payer has nothing in the manifest to remove).
    written = {(p, m) for p, m, _, _ in placed}
    stale = sorted(pm for pm in in_place if pm not in written and pm[1] in set(months))
    for p, m in stale:
        files.delete(f"{root}/{p}/{m:%Y-%m}")
        report.removed.append((p, f"{m:%Y-%m}"))
    _record_manifest(spark, root, placed, stale, export_id)
    files.delete(staging)
    files.delete_if_empty(f"{root}/_staging")
    report.written.sort()
    log(
        f"export: {len(report.written)} payer-month file set(s) under {root}"
        + (f", first export (backfill) for {len(new_payers)} payer(s)" if new_payers else "")
        + (f", {len(report.removed)} without rows any more removed" if report.removed else "")
    )
    return report


def _base(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[-1]


def _record_manifest(
    spark: SparkSession,
    root: str,
    placed: Sequence[tuple[str, dt.date, str, int]],
    removed: Sequence[tuple[str, dt.date]],
    export_id: str,
) -> None:
    """One MERGE: the placed payer-months upserted, the removed ones deleted (retried when
    a concurrent export commits first)."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    rows = [(p, m, f, n, export_id, now, False) for p, m, f, n in placed] + [
        (p, m, None, None, export_id, now, True) for p, m in removed
    ]
    if not rows:
        return
    schema = T.StructType([*EXPORT_MANIFEST.fields, T.StructField("_removed", T.BooleanType())])
    uri = f"{root}/{MANIFEST}"
    ensure_table(spark, uri, schema=EXPORT_MANIFEST)

    def merge() -> None:
        source = spark.createDataFrame(rows, schema)
        (
            DeltaTable.forPath(spark, qualified(uri))
            .alias("t")
            .merge(
                source.alias("s"),
                "t.payer_account_id = s.payer_account_id AND t.month = s.month",
            )
            .whenMatchedDelete(condition="s._removed")
            .whenMatchedUpdate(set={c: f"s.`{c}`" for c in EXPORT_MANIFEST.fieldNames()})
            .whenNotMatchedInsert(
                condition="NOT s._removed",
                values={c: f"s.`{c}`" for c in EXPORT_MANIFEST.fieldNames()},
            )
            .execute()
        )

    retry_on_conflict(merge)


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
    month) as published; `last_refresh_timestamp` is the time of the last publication."""
    emissions = read_published(spark, lake, tables.ACCOUNT_EMISSIONS)
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
        refreshed_at=published_at(spark, lake)
        or table_commit_time(spark, tables.ACCOUNT_EMISSIONS.uri(lake)),
        fmt=fmt,
        history_months=history_months,
        log=log,
    )


def _unescape(value: str) -> str:
    """Undo Hive partition-path escaping (Spark writes '/' as %2F)."""
    from urllib.parse import unquote

    return unquote(value)
