"""Small Spark aggregations behind the report's charts (DataFrame -> DataFrame).

Every function here reduces a gold or silver table to at most one row per
month x (region | service | reason | business unit | factor level), so the
result is safe to bring to the driver for charting. `by` adds leading group keys
(the payer, when one pass serves a batch of payers' reports): each group's rows are
what the function gives for that group's rows alone.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from carbon_core import schemas
from carbon_core.insight.benchmarks import greener_regions
from carbon_core.insight.rollups import ROLLUP_QUANTITIES

# Backtest MAPE buckets (upper bounds, in percent) of the summary chart.
MAPE_BUCKETS: tuple[tuple[str, float], ...] = (
    ("< 5 %", 5.0),
    ("5-10 %", 10.0),
    ("10-20 %", 20.0),
    ("20-50 %", 50.0),
)
MAPE_OVER = "≥ 50 %"
MAPE_MISSING = "no backtest"


def _sum(column: str) -> Column:
    return F.sum(F.col(column)).alias(column)


def _ratio(numerator: Column, denominator: Column) -> Column:
    """numerator / denominator, null when the denominator is not positive."""
    return F.when(denominator > 0, numerator / denominator)


def in_period(df: DataFrame, month_from: dt.date, month_to: dt.date) -> DataFrame:
    """Rows whose month lies in [month_from, month_to]."""
    return df.where(F.col("month").between(F.lit(month_from), F.lit(month_to)))


def for_payer(df: DataFrame, payer: str | None) -> DataFrame:
    """Only the rows of one payer (all rows when payer is None)."""
    if payer is None:
        return df
    return df.where(F.col("payer_account_id") == F.lit(payer))


Keys = tuple[str, ...]


def monthly_by_scope(emissions: DataFrame, by: Keys = ()) -> DataFrame:
    """Per month: every scope, LBM and MBM totals, energy and water."""
    return (
        emissions.groupBy(*by, "month")
        .agg(*(_sum(q) for q in ROLLUP_QUANTITIES))
        .orderBy(*by, "month")
    )


def totals_by(emissions: DataFrame, *keys: str, by: Keys = ()) -> DataFrame:
    """LBM and MBM totals per key, largest LBM first."""
    return (
        emissions.groupBy(*by, *keys)
        .agg(_sum("total_lbm_kg"), _sum("total_mbm_kg"), _sum("energy_kwh"))
        .orderBy(*by, F.col("total_lbm_kg").desc(), *keys)
    )


def top_accounts(emissions: DataFrame, key: str, limit: int, by: Keys = ()) -> DataFrame:
    """The `limit` largest accounts (by LBM) under `key`, ties by account id."""
    columns: list[Column | str] = [
        *by,
        F.col(key).alias("account_id"),
        "total_lbm_kg",
        "total_mbm_kg",
    ]
    if not by:
        return totals_by(emissions, key).limit(limit).select(*columns)
    rank = F.row_number().over(
        Window.partitionBy(*by).orderBy(F.col("total_lbm_kg").desc(), F.col(key))
    )
    return (
        totals_by(emissions, key, by=by)
        .withColumn("rank", rank)
        .where(F.col("rank") <= limit)
        .orderBy(*by, F.col("total_lbm_kg").desc(), key)
        .select(*columns)
    )


def unallocated_by_reason(unallocated: DataFrame) -> DataFrame:
    """Per month and reason: the unallocated footprint, LBM and MBM."""
    lbm = F.col("scope1_kg") + F.col("scope2_lbm_kg") + F.col("scope3_kg")
    mbm = F.col("scope1_kg") + F.col("scope2_mbm_kg") + F.col("scope3_kg")
    return (
        unallocated.groupBy("month", "reason")
        .agg(
            F.sum(lbm).alias("total_lbm_kg"),
            F.sum(mbm).alias("total_mbm_kg"),
            _sum("energy_kwh"),
        )
        .orderBy("month", "reason")
    )


def coverage_by_month(site_monthly: DataFrame, by: Keys = ()) -> DataFrame:
    """Per month: energy-weighted estimated share, provisional flag and site-month count."""
    estimated_kwh = F.col("energy_kwh") * F.coalesce(F.col("estimated_energy_share"), F.lit(0.0))
    return (
        site_monthly.groupBy(*by, "month")
        .agg(
            F.sum("energy_kwh").alias("energy_kwh"),
            F.sum(estimated_kwh).alias("estimated_kwh"),
            F.max(F.col("provisional").cast("int")).alias("provisional_sites"),
            F.count(F.lit(1)).alias("site_months"),
        )
        .select(
            *by,
            "month",
            "energy_kwh",
            _ratio(F.col("estimated_kwh"), F.col("energy_kwh")).alias("estimated_share"),
            (F.coalesce(F.col("provisional_sites"), F.lit(0)) > 0).alias("provisional"),
            "site_months",
        )
        .orderBy(*by, "month")
    )


def factor_levels_by_month(site_monthly: DataFrame, by: Keys = ()) -> DataFrame:
    """Per month and grid-factor level: the number of site-months that used it."""
    level = F.coalesce(F.col("factor_level"), F.lit("none"))
    return (
        site_monthly.groupBy(*by, "month", level.alias("factor_level"))
        .agg(F.count(F.lit(1)).alias("site_months"))
        .orderBy(*by, "month", "factor_level")
    )


def efficiency_by_cluster(cluster_efficiency: DataFrame, by: Keys = ()) -> DataFrame:
    """Per cluster over the period: PUE and WUE as ratios of sums (energy-weighted)."""
    return (
        cluster_efficiency.groupBy(*by, "cluster_id")
        .agg(_sum("facility_energy_kwh"), _sum("it_energy_kwh"), _sum("water_l"))
        .select(
            *by,
            "cluster_id",
            "it_energy_kwh",
            _ratio(F.col("facility_energy_kwh"), F.col("it_energy_kwh")).alias("pue"),
            _ratio(F.col("water_l"), F.col("it_energy_kwh")).alias("wue_l_per_kwh"),
        )
        .where(F.col("pue").isNotNull())
        .orderBy(*by, "pue", "cluster_id")
    )


def service_intensity(benchmarks: DataFrame, month_from: dt.date, month_to: dt.date) -> DataFrame:
    """Per foundational service and cluster with usage: kg CO2e per unit over the period,
    greenest (LBM) first, from the same ranking as `insight.benchmarks.greener_regions`.

    A cluster is flagged `estimated` when any of its energy in the period was estimated,
    and `provisional` when any month used provisional inputs.
    """
    ranked = greener_regions(benchmarks, month_from, month_to)
    return (
        ranked.where(F.col("usage_amount") > 0)
        .select(
            "product_code",
            "allocation_unit",
            "cluster_id",
            "location",
            "usage_amount",
            "lbm_kg_per_unit",
            "mbm_kg_per_unit",
            (F.coalesce(F.col("estimated_energy_share"), F.lit(0.0)) > 0).alias("estimated"),
            F.col("provisional"),
        )
        .orderBy("product_code", "lbm_kg_per_unit", "cluster_id")
    )


def bu_monthly_totals(bu_monthly: DataFrame, by: Keys = ()) -> DataFrame:
    """Per month and business unit: LBM and MBM totals (operator-wide rollup)."""
    return (
        bu_monthly.groupBy(*by, "month", "business_unit")
        .agg(_sum("total_lbm_kg"), _sum("total_mbm_kg"))
        .orderBy(*by, "month", "business_unit")
    )


def payer_bu_monthly_totals(
    emissions: DataFrame, business_units: DataFrame, unmapped: str, by: Keys = ()
) -> DataFrame:
    """Per month and business unit from account rows (one payer's report); unmapped kept."""
    mapping = business_units.select(
        F.col("account_id").alias("usage_account_id"), "business_unit"
    ).dropDuplicates(["usage_account_id"])
    labelled = emissions.join(F.broadcast(mapping), on="usage_account_id", how="left").select(
        *by,
        "month",
        F.coalesce(F.col("business_unit"), F.lit(unmapped)).alias("business_unit"),
        "total_lbm_kg",
        "total_mbm_kg",
    )
    return bu_monthly_totals(labelled, by)


def business_unit_payers(business_units: DataFrame, accounts: DataFrame) -> DataFrame:
    """Per business unit: the sorted payers of its accounts (one row per unit)."""
    mapping = business_units.select("account_id", "business_unit").dropDuplicates(["account_id"])
    payers = accounts.select("account_id", "payer_account_id").dropDuplicates(["account_id"])
    return (
        mapping.join(payers, on="account_id", how="left")
        .groupBy("business_unit")
        .agg(F.array_sort(F.collect_set("payer_account_id")).alias("payers"))
        .orderBy("business_unit")
    )


def target_series(bu_monthly: DataFrame, units: list[str]) -> DataFrame:
    """Per month, methodology version and business unit of `units`: LBM and MBM totals."""
    return (
        bu_monthly.where(F.col("business_unit").isin(units))
        .groupBy("month", "model_version", "business_unit")
        .agg(_sum("total_lbm_kg"), _sum("total_mbm_kg"))
        .orderBy("business_unit", "month", "model_version")
    )


def forecast_by_month(forecast: DataFrame, by: Keys = ()) -> DataFrame:
    """Per forecast month: LBM and MBM with summed interval bounds (a conservative band)."""
    return (
        forecast.groupBy(*by, "month")
        .agg(
            *(_sum(c) for c in schemas.FORECAST_BANDS),
            F.max("interval_level").alias("interval_level"),
        )
        .orderBy(*by, "month")
    )


def _mape_bucket(column: str) -> Column:
    value = F.col(column)
    bucket = F.when(value.isNull() | F.isnan(value), F.lit(MAPE_MISSING))
    for label, upper in MAPE_BUCKETS:
        bucket = bucket.when(value < upper, F.lit(label))
    return bucket.otherwise(F.lit(MAPE_OVER))


def backtest_summary(backtest: DataFrame, by: Keys = ()) -> DataFrame:
    """Per forecast method and MAPE bucket: the number of series of gold/forecast_backtest."""
    long = backtest.select(
        *by,
        "method",
        F.explode(
            F.array(
                F.struct(F.lit("LBM").alias("basis"), _mape_bucket("backtest_mape_lbm").alias("b")),
                F.struct(F.lit("MBM").alias("basis"), _mape_bucket("backtest_mape_mbm").alias("b")),
            )
        ).alias("m"),
    )
    return (
        long.groupBy(*by, "method", F.col("m.basis").alias("basis"), F.col("m.b").alias("bucket"))
        .agg(F.count(F.lit(1)).alias("series"))
        .orderBy(*by, "method", "basis", "bucket")
    )


def backtest_medians(backtest: DataFrame, by: Keys = ()) -> DataFrame:
    """Per method of gold/forecast_backtest: series and median backtest MAPE (LBM, MBM)."""
    return (
        backtest.groupBy(*by, "method")
        .agg(
            F.count(F.lit(1)).alias("series"),
            F.percentile_approx("backtest_mape_lbm", 0.5).alias("median_mape_lbm"),
            F.percentile_approx("backtest_mape_mbm", 0.5).alias("median_mape_mbm"),
        )
        .orderBy(*by, "method")
    )
