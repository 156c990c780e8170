"""Reduction targets per business unit: the straight-line path and the progress against it.

The path starts at the baseline year's annual total of the business unit (LBM or MBM) and
falls linearly to (1 - reduction_percent / 100) x baseline in the target year; later years
stay at the target level. A year with fewer than 12 months of data is annualised
(total x 12 / months) before it is compared, and so is a partial baseline year.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from carbon_core.allocation.columns import conform
from carbon_core.config import TargetSettings
from carbon_core.schemas import TARGET_PROGRESS

# Delta table property of gold/bu_monthly holding target_progress as a JSON array.
TARGETS_PROPERTY = "carbonlake.targets"
MONTHS_PER_YEAR = 12
BASIS_COLUMNS = {"lbm": "total_lbm_kg", "mbm": "total_mbm_kg"}
JSON_DIGITS = 6  # kg to the milligram: re-runs on the same data give the same text


def path_kg(target: TargetSettings, baseline_kg: float, year: int) -> float:
    """The straight-line path's annual kg in a year (the baseline before the baseline year)."""
    span = target.target_year - target.baseline_year
    elapsed = min(max(year - target.baseline_year, 0), span)
    return baseline_kg * (1.0 - target.reduction_percent / 100.0 * elapsed / span)


def _path(baseline: Column, year: Column) -> Column:
    """Column form of path_kg (same formula) over the target's columns."""
    span = F.col("target_year") - F.col("baseline_year")
    elapsed = F.least(F.greatest(year - F.col("baseline_year"), F.lit(0)), span)
    return baseline * (F.lit(1.0) - F.col("reduction_percent") / 100.0 * elapsed / span)


def target_progress(bu_monthly: DataFrame, targets: Sequence[TargetSettings]) -> DataFrame:
    """Per target x year from the baseline year to max(target year, last year of data):
    actual kg (months present), annualised kg, straight-line path kg and on_track
    (annualised <= path; null without data for the year or the baseline)."""
    spark = bu_monthly.sparkSession
    if not targets:
        return spark.createDataFrame([], TARGET_PROGRESS)
    rows = [
        (i, t.business_unit, t.basis, t.baseline_year, t.target_year, float(t.reduction_percent))
        for i, t in enumerate(targets)
    ]
    target_frame = spark.createDataFrame(
        rows,
        "target_index int, business_unit string, basis string, baseline_year int, "
        "target_year int, reduction_percent double",
    )
    basis_kg = F.when(F.col("basis") == "lbm", F.col("lbm_kg")).otherwise(F.col("mbm_kg"))
    annual = (
        bu_monthly.groupBy("business_unit", F.year("month").alias("year"))
        .agg(
            F.sum(BASIS_COLUMNS["lbm"]).alias("lbm_kg"),
            F.sum(BASIS_COLUMNS["mbm"]).alias("mbm_kg"),
            F.count_distinct("month").alias("months"),
        )
        .join(F.broadcast(target_frame.select("business_unit").distinct()), "business_unit")
    )
    with_annual = target_frame.join(annual, on="business_unit", how="left")
    per_target = with_annual.groupBy("target_index").agg(
        F.max("year").alias("last_year"),
        F.max(F.when(F.col("year") == F.col("baseline_year"), basis_kg)).alias("_base_total"),
        F.max(F.when(F.col("year") == F.col("baseline_year"), F.col("months"))).alias(
            "baseline_months"
        ),
    )
    years = target_frame.join(per_target, on="target_index").select(
        "*",
        F.explode(
            F.sequence(
                F.col("baseline_year"),
                F.greatest(F.col("target_year"), F.coalesce(F.col("last_year"), F.lit(0))),
            )
        ).alias("year"),
    )
    actual = with_annual.select(
        "target_index", "year", "months", basis_kg.alias("actual_kg")
    ).where(F.col("year").isNotNull())
    baseline = (F.col("_base_total") * MONTHS_PER_YEAR / F.col("baseline_months")).alias(
        "baseline_kg"
    )
    progress = (
        years.select("*", baseline)
        .join(actual, on=["target_index", "year"], how="left")
        .select(
            "*",
            (F.col("actual_kg") * MONTHS_PER_YEAR / F.col("months")).alias("annualised_kg"),
            _path(F.col("baseline_kg"), F.col("year")).alias("path_kg"),
        )
        .withColumn("on_track", F.col("annualised_kg") <= F.col("path_kg"))
        .orderBy("target_index", "year")
    )
    return conform(progress, TARGET_PROGRESS)


def progress_json(progress: DataFrame) -> str:
    """target_progress as a compact JSON array (one object per target x year; small)."""
    records = []
    ordered = progress.orderBy(
        "business_unit", "basis", "baseline_year", "target_year", "reduction_percent", "year"
    )
    for row in ordered.collect():
        record = row.asDict()
        for name, value in record.items():
            if isinstance(value, float):
                record[name] = round(value, JSON_DIGITS)
        records.append(record)
    return json.dumps(records, separators=(",", ":"), sort_keys=False)
