"""generate_world: a complete, consistent landing zone, every dataset of docs/data-contract.md."""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import json
import os
from collections.abc import Callable
from typing import Any, Literal

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carbon_core.hadoop import HadoopFiles, join
from carbonlake_tools.generate import frames, small
from carbonlake_tools.generate.plan import WorldPlan, build_plan

UsageFormat = Literal["csv", "parquet"]
MALFORMED_SUFFIX = ".malformed"  # counts key: "<dataset>.malformed"


def _write_small(files: HadoopFiles, table: small.Table, folder: str) -> int:
    """One CSV file with a header: <folder>/<dataset>.csv (the folder is replaced)."""
    if files.exists(folder):
        files.delete(folder)
    files.mkdirs(folder)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(table.columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(table.rows)
    name = folder.rstrip("/").rsplit("/", 1)[-1]
    files.write_text(join(folder, f"{name}.csv"), text.getvalue())
    return len(table.rows)


# Spark splits a Parquet file only between row groups: with the writer's default
# (128 MB) a file of a few million rows is one row group, read by one task while the
# other cores wait (the 1e6 benchmark world ingested its usage on one of two cores).
PARQUET_ROW_GROUP_BYTES = 8 * 1024 * 1024


def _write_spark(df: DataFrame, folder: str, fmt: UsageFormat = "csv") -> None:
    """Spark's files under <folder> (replaced); CSV with a header."""
    writer = df.write.mode("overwrite")
    if fmt == "parquet":
        writer.option("parquet.block.size", PARQUET_ROW_GROUP_BYTES).parquet(folder)
    else:
        writer.option("header", True).csv(folder)


# The hourly datasets are written in pieces of about this many rows, each one Spark job
# whose files join the dataset folder only once complete: a 1e9-row world takes hours, and
# an interrupted generation resumes from its last complete piece (`resume=True`).
PIECE_ROWS = 100_000_000
STATE_FILE = "_generate_state.json"  # at the landing root; readers skip "_" names
_STAGING = "_piece"
HOURLY_DATASETS = ("racks", "rack_telemetry", "usage")


class _Pieces:
    """The pieces of the hourly datasets written so far, and what each one counted."""

    def __init__(self, files: HadoopFiles, out: str, key: dict[str, object], resume: bool) -> None:
        self.files = files
        self.path = join(out, STATE_FILE)
        resumable = resume and files.exists(self.path)
        state = json.loads(files.read_text(self.path)) if resumable else {}
        self.key = key
        self.done: dict[str, object] = state.get("done", {}) if state.get("key") == key else {}
        if not self.done:
            for name in HOURLY_DATASETS:
                if files.exists(join(out, name)):
                    files.delete(join(out, name))
        self._save()

    def _save(self) -> None:
        self.files.replace_text(self.path, json.dumps({"key": self.key, "done": self.done}))

    def write(
        self,
        name: str,
        df: DataFrame,
        folder: str,
        fmt: UsageFormat,
        result: Callable[[], Any] | None = None,
    ) -> Any:
        """Write piece `name` of a dataset unless it is done; `result()` after writing it,
        stored with the piece (None without `result`), or the stored one when done."""
        if name in self.done:
            return self.done[name]
        staging = join(folder, _STAGING)
        _write_spark(df, staging, fmt)
        for stale in self.files.list_children(folder):  # moved before an interruption
            if _base_name(stale).startswith(f"{name}-"):
                self.files.delete(stale)
        for file in sorted(self.files.list_children(staging)):
            if _base_name(file).startswith("part-"):
                self.files.rename(file, join(folder, f"{name}-{_base_name(file)}"))
        self.files.delete(staging)
        self.done[name] = result() if result is not None else None
        self._save()
        return self.done[name]


def _base_name(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def _ranges(total: int, per_piece: int) -> list[tuple[int, int]]:
    step = max(1, per_piece)
    return [(lo, min(lo + step, total)) for lo in range(0, total, step)]


def _daily_it(telemetry: DataFrame) -> tuple[dict[str, dict[str, float]], int]:
    """Per site and ISO day, the IT kWh of the telemetry (sites x days rows); and the row count."""
    rows = (
        telemetry.groupBy("site_id", F.to_date("hour").alias("day"))
        .agg(F.sum("it_energy_kwh").alias("kwh"), F.count(F.lit(1)).alias("n"))
        .collect()
    )
    daily: dict[str, dict[str, float]] = {}
    for row in rows:
        daily.setdefault(row["site_id"], {})[row["day"].isoformat()] = float(row["kwh"])
    return daily, sum(int(row["n"]) for row in rows)


def _sum_daily(pieces: list[tuple[dict[str, dict[str, float]], int]]) -> small.DailyEnergy:
    total: small.DailyEnergy = {}
    for daily, _ in pieces:
        for site, days in daily.items():
            into = total.setdefault(site, {})
            for day, kwh in days.items():
                key = dt.date.fromisoformat(day)
                into[key] = into.get(key, 0.0) + kwh
    return total


def _hourly(
    spark: SparkSession,
    plan: WorldPlan,
    out: str,
    share: float,
    usage_format: UsageFormat,
    pieces: _Pieces,
    piece_rows: int,
) -> tuple[dict[str, int], small.DailyEnergy]:
    """racks, rack_telemetry and usage, written by Spark executors, piece by piece."""
    counts: dict[str, int] = {}
    seed = plan.seed
    for name in HOURLY_DATASETS:
        pieces.files.mkdirs(join(out, name))
    sites = frames.sites_frame(spark, plan)
    expected_telemetry = plan.total_racks * plan.hours
    gids = spark.range(
        0, plan.total_racks, 1, numPartitions=frames.partitions_for(expected_telemetry)
    ).withColumnRenamed("id", "gid")
    # Cached: every telemetry piece reads the racks, and the optimizer would otherwise
    # inline their (large) attribute expressions into every telemetry row's plan.
    racks = frames.racks_frame(gids, sites, plan, seed).cache()
    anchors = racks.filter((F.col("k") == 0) & F.col("anchor_idx").isNotNull())

    bad_racks = small.malformed_count(plan.total_racks, share)
    racks_out = frames.racks_text(racks)
    if bad_racks:
        racks_out = racks_out.unionByName(frames.malformed_racks(anchors, plan, seed, bad_racks))
    pieces.write("racks", racks_out.coalesce(1), join(out, "racks"), "csv")
    counts["racks"], counts["racks" + MALFORMED_SUFFIX] = plan.total_racks + bad_racks, bad_racks

    # A telemetry piece is the racks of a range of rack numbers, every hour of each.
    per_piece = piece_rows // max(1, plan.hours)
    telemetry_pieces = []
    for i, (lo, hi) in enumerate(_ranges(plan.total_racks, per_piece)):
        in_range = racks.filter((F.col("gid") >= lo) & (F.col("gid") < hi))
        telemetry = frames.telemetry_frame(in_range, plan, seed)
        telemetry_pieces.append(
            pieces.write(
                f"t{i:03d}",
                frames.telemetry_text(telemetry),
                join(out, "rack_telemetry"),
                usage_format,
                functools.partial(_daily_it, telemetry),
            )
        )
    daily = _sum_daily(telemetry_pieces)
    n_telemetry = sum(n for _, n in telemetry_pieces)
    bad_telemetry = small.malformed_count(n_telemetry, share)
    if bad_telemetry:
        # In Parquet the telemetry keeps its text columns (malformed rows need them);
        # ingest reads every landing column as text either way.
        bad = frames.malformed_telemetry(anchors, plan, seed, bad_telemetry)
        pieces.write("tbad", bad, join(out, "rack_telemetry"), usage_format)
    counts["rack_telemetry"] = n_telemetry + bad_telemetry
    counts["rack_telemetry" + MALFORMED_SUFFIX] = bad_telemetry

    tables = frames.usage_tables(spark, plan)
    n_series = len(plan.series)
    n_usage = plan.scale
    text = usage_format == "csv"
    for i, (lo, hi) in enumerate(_ranges(n_usage, piece_rows)):
        ids = spark.range(
            lo, hi, 1, numPartitions=frames.partitions_for(hi - lo)
        ).withColumnRenamed("id", "row_id")
        usage = frames.usage_rows(ids, tables, n_series, seed)
        pieces.write(
            f"u{i:03d}",
            frames.usage_text(usage) if text else usage,
            join(out, "usage"),
            usage_format,
        )
    bad_usage = small.malformed_count(n_usage, share)
    if bad_usage:
        bad = frames.malformed_usage(tables, n_series, n_usage, plan, seed, bad_usage, text=text)
        pieces.write("ubad", bad, join(out, "usage"), usage_format)
    counts["usage"], counts["usage" + MALFORMED_SUFFIX] = n_usage + bad_usage, bad_usage
    racks.unpersist()
    return counts, daily


def generate_world(
    spark: SparkSession,
    out: str | os.PathLike[str],
    *,
    scale: int = 1_000_000,
    seed: int = 7,
    malformed_share: float = 0.002,
    start_month: str = "2024-10",
    months: int = 6,
    usage_format: UsageFormat = "csv",
    resume: bool = False,
    piece_rows: int = PIECE_ROWS,
    payers: int | None = None,
) -> dict[str, int]:
    """Write <out>/<dataset>/ for every landing dataset; rows written per dataset.

    The result maps each dataset name to the rows written (malformed included) and
    "<dataset>.malformed" to how many of them break the dataset's rules. Valid rows do
    not depend on `malformed_share`: a world generated with 0 is this world minus its
    malformed rows. `payers` sets the number of external payers (default: a handful,
    growing with the scale). With `resume`, the pieces of the hourly datasets that an interrupted
    generation of the same world (same arguments) completed are kept, not written again.
    """
    if usage_format not in ("csv", "parquet"):
        raise ValueError(f"usage_format must be csv or parquet, got {usage_format!r}")
    if not 0 <= malformed_share < 1:
        raise ValueError("malformed_share must be in [0, 1)")
    out = os.fspath(out)
    files = HadoopFiles(spark, out)
    files.mkdirs(out)
    plan = build_plan(scale, seed, start_month, months, payers)
    key: dict[str, object] = {
        "scale": scale,
        "seed": seed,
        "malformed_share": malformed_share,
        "start_month": start_month,
        "months": months,
        "format": usage_format,
        "piece_rows": piece_rows,
        # only when set: the key of a world generated before the option stays the same
        **({} if payers is None else {"payers": payers}),
    }
    pieces = _Pieces(files, out, key, resume)
    counts, daily = _hourly(spark, plan, out, malformed_share, usage_format, pieces, piece_rows)
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
        counts[name] = _write_small(files, table, join(out, name))
        counts[name + MALFORMED_SUFFIX] = len(table.malformed)
    return counts
