"""Reduction targets per business unit: the straight-line path and the progress against it.

The path starts at the baseline year's annual total of the business unit (LBM or MBM) and
falls linearly to (1 - reduction_percent / 100) x baseline in the target year; later years
stay at the target level. A year with fewer than 12 months of data is annualised
(total x 12 / months) before it is compared, and so is a partial baseline year.
Every run rebuilds gold/target_progress from the whole of gold/bu_monthly; the report
reads that table.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from carbon_core.config import TargetSettings
from carbon_core.lake import tables
from carbon_core.lake.runs import read_published
from carbon_core.schemas import TARGET_PROGRESS, conform

MONTHS_PER_YEAR = 12
BASIS_COLUMNS = {"lbm": "total_lbm_kg", "mbm": "total_mbm_kg"}


def _path(baseline: Column, year: Column) -> Column:
    """The straight-line path's annual kg in a year (the baseline before the baseline year)."""
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
    # Non-nullable: they carry the keys of gold/target_progress through the joins.
    target_frame = spark.createDataFrame(
        rows,
        "target_index int not null, business_unit string not null, basis string not null, "
        "baseline_year int not null, target_year int not null, reduction_percent double",
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


def write_target_progress(
    spark: SparkSession, lake: tables.Lake, targets: Sequence[TargetSettings]
) -> str:
    """Rebuild gold/target_progress from gold/bu_monthly (empty without targets); its URI."""
    bu_monthly = read_published(spark, lake, tables.BU_MONTHLY)
    return tables.overwrite_lake_table(
        target_progress(bu_monthly, targets), lake, tables.TARGET_PROGRESS
    )
