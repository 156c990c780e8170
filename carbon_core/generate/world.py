"""generate_world: a complete, consistent landing zone for every dataset of DATA_CONTRACT.md."""

from __future__ import annotations

import csv
import datetime as dt
import shutil
from pathlib import Path
from typing import Literal

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carbon_core.generate import frames, small
from carbon_core.generate.plan import WorldPlan, build_plan

UsageFormat = Literal["csv", "parquet"]
MALFORMED_SUFFIX = ".malformed"  # counts key: "<dataset>.malformed"


def _write_small(table: small.Table, folder: Path) -> int:
    """One CSV file with a header: <folder>/<dataset>.csv (the folder is replaced)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    with (folder / f"{folder.name}.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table.columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(table.rows)
    return len(table.rows)


# Spark splits a Parquet file only between row groups: with the writer's default
# (128 MB) a file of a few million rows is one row group, read by one task while the
# other cores wait (the 1e6 benchmark world ingested its usage on one of two cores).
PARQUET_ROW_GROUP_BYTES = 8 * 1024 * 1024


def _write_spark(df: DataFrame, folder: Path, fmt: UsageFormat = "csv") -> None:
    """Spark's files under <folder> (replaced); CSV with a header."""
    writer = df.write.mode("overwrite")
    if fmt == "parquet":
        writer.option("parquet.block.size", PARQUET_ROW_GROUP_BYTES).parquet(str(folder))
    else:
        writer.option("header", True).csv(str(folder))


def _daily_it(telemetry: DataFrame) -> tuple[small.DailyEnergy, int]:
    """Per site and day, the IT kWh of the telemetry (sites x days rows); and the row count."""
    rows = (
        telemetry.groupBy("site_id", F.to_date("hour").alias("day"))
        .agg(F.sum("it_energy_kwh").alias("kwh"), F.count(F.lit(1)).alias("n"))
        .collect()
    )
    daily: small.DailyEnergy = {}
    for row in rows:
        day: dt.date = row["day"]
        daily.setdefault(row["site_id"], {})[day] = float(row["kwh"])
    return daily, sum(int(row["n"]) for row in rows)


def _hourly(
    spark: SparkSession,
    plan: WorldPlan,
    out: Path,
    share: float,
    usage_format: UsageFormat,
) -> tuple[dict[str, int], small.DailyEnergy]:
    """racks, rack_telemetry and usage, written by Spark executors."""
    counts: dict[str, int] = {}
    seed = plan.seed
    sites = frames.sites_frame(spark, plan)
    expected_telemetry = plan.total_racks * plan.hours
    gids = spark.range(
        0, plan.total_racks, 1, numPartitions=frames.partitions_for(expected_telemetry)
    ).withColumnRenamed("id", "gid")
    # Cached: three jobs read the racks, and the optimizer would otherwise inline their
    # (large) attribute expressions into every telemetry row's plan.
    racks = frames.racks_frame(gids, sites, plan, seed).cache()
    anchors = racks.filter((F.col("k") == 0) & F.col("anchor_idx").isNotNull())

    bad_racks = small.malformed_count(plan.total_racks, share)
    racks_out = frames.racks_text(racks)
    if bad_racks:
        racks_out = racks_out.unionByName(frames.malformed_racks(anchors, plan, seed, bad_racks))
    _write_spark(racks_out.coalesce(1), out / "racks")
    counts["racks"], counts["racks" + MALFORMED_SUFFIX] = plan.total_racks + bad_racks, bad_racks

    telemetry = frames.telemetry_frame(racks, plan, seed)
    daily, n_telemetry = _daily_it(telemetry)
    bad_telemetry = small.malformed_count(n_telemetry, share)
    telemetry_out = frames.telemetry_text(telemetry)
    if bad_telemetry:
        telemetry_out = telemetry_out.unionByName(
            frames.malformed_telemetry(anchors, plan, seed, bad_telemetry)
        )
    # In Parquet the telemetry keeps its text columns (malformed rows need them);
    # ingest reads every landing column as text either way.
    _write_spark(telemetry_out, out / "rack_telemetry", usage_format)
    counts["rack_telemetry"] = n_telemetry + bad_telemetry
    counts["rack_telemetry" + MALFORMED_SUFFIX] = bad_telemetry

    tables = frames.usage_tables(spark, plan)
    n_series = len(plan.series)
    n_usage = plan.scale
    ids = spark.range(
        0, n_usage, 1, numPartitions=frames.partitions_for(n_usage)
    ).withColumnRenamed("id", "row_id")
    usage = frames.usage_rows(ids, tables, n_series, seed)
    text = usage_format == "csv"
    usage_out = frames.usage_text(usage) if text else usage
    bad_usage = small.malformed_count(n_usage, share)
    if bad_usage:
        usage_out = usage_out.unionByName(
            frames.malformed_usage(tables, n_series, n_usage, plan, seed, bad_usage, text=text)
        )
    _write_spark(usage_out, out / "usage", usage_format)
    counts["usage"], counts["usage" + MALFORMED_SUFFIX] = n_usage + bad_usage, bad_usage
    racks.unpersist()
    return counts, daily


def generate_world(
    spark: SparkSession,
    out: Path,
    *,
    scale: int = 1_000_000,
    seed: int = 7,
    malformed_share: float = 0.002,
    start_month: str = "2024-10",
    months: int = 6,
    usage_format: UsageFormat = "csv",
) -> dict[str, int]:
    """Write <out>/<dataset>/ for every landing dataset; rows written per dataset.

    The result maps each dataset name to the rows written (malformed included) and
    "<dataset>.malformed" to how many of them break the dataset's rules. Valid rows do
    not depend on `malformed_share`: a world generated with 0 is this world minus its
    malformed rows.
    """
    if usage_format not in ("csv", "parquet"):
        raise ValueError(f"usage_format must be csv or parquet, got {usage_format!r}")
    if not 0 <= malformed_share < 1:
        raise ValueError("malformed_share must be in [0, 1)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plan = build_plan(scale, seed, start_month, months)
    counts, daily = _hourly(spark, plan, out, malformed_share, usage_format)
    energy = small.Energy(plan, daily)
    prices = small.price_table(plan)
    tables = {
        "clusters": small.clusters_table(plan, malformed_share),
        "sites": small.sites_table(plan, malformed_share),
        "accounts": small.accounts_table(plan, malformed_share),
        "service_catalog": small.catalog_table(plan, malformed_share),
        "business_units": small.business_units_table(plan, malformed_share),
        "electricity_prices": small.prices_table(plan, prices, malformed_share),
        "utility_invoices": small.invoices_table(plan, energy, prices, malformed_share),
        "fuel_records": small.fuel_table(plan, malformed_share),
        "energy_contracts": small.contracts_table(plan, energy, malformed_share),
        "site_water": small.water_table(plan, energy, malformed_share),
    }
    for name, table in tables.items():
        counts[name] = _write_small(table, out / name)
        counts[name + MALFORMED_SUFFIX] = len(table.malformed)
    return counts
