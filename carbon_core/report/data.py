"""Read the lake tables a report needs and bring their small aggregates to the driver."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carbon_core import schemas
from carbon_core.config import TargetSettings
from carbon_core.errors import CarbonlakeError, InputError
from carbon_core.lake import read_table, table_exists
from carbon_core.pipeline import (
    GOLD_ACCOUNT_EMISSIONS,
    GOLD_BU_MONTHLY,
    GOLD_CLUSTER_EFFICIENCY,
    GOLD_FORECAST,
    GOLD_REGION_BENCHMARKS,
    GOLD_UNALLOCATED,
    SILVER_SITE_MONTHLY,
    lake_path,
)
from carbon_core.report import aggregates as agg
from carbon_core.report.targets import TargetProgress, target_progress

BRONZE_ACCOUNTS = "bronze/accounts"
BRONZE_BUSINESS_UNITS = "bronze/business_units"
TOP_ACCOUNTS = 15


class UnknownPayerError(CarbonlakeError):
    """The requested payer has no accounts in the lake."""


@dataclass(frozen=True)
class ReportRequest:
    """What to report on: the whole operator or one payer, over a month range."""

    payer: str | None = None
    month_from: dt.date | None = None
    month_to: dt.date | None = None
    targets: tuple[TargetSettings, ...] = ()


@dataclass
class ReportData:
    """Every chart's data as small pandas frames; None where a lake table is absent."""

    payer: str | None
    month_from: dt.date
    month_to: dt.date
    model_versions: list[str]
    monthly: pd.DataFrame
    by_region: pd.DataFrame
    by_service: pd.DataFrame
    by_account: pd.DataFrame
    by_business_unit: pd.DataFrame | None = None
    unallocated: pd.DataFrame | None = None
    coverage: pd.DataFrame | None = None
    factor_levels: pd.DataFrame | None = None
    efficiency: pd.DataFrame | None = None
    intensity: pd.DataFrame | None = None
    history: pd.DataFrame | None = None  # all months, for the forecast fan
    forecast: pd.DataFrame | None = None
    backtest: pd.DataFrame | None = None
    backtest_medians: pd.DataFrame | None = None
    targets: list[TargetProgress] = field(default_factory=list)

    @property
    def total_lbm_kg(self) -> float:
        return float(self.monthly["total_lbm_kg"].sum())

    @property
    def total_mbm_kg(self) -> float:
        return float(self.monthly["total_mbm_kg"].sum())


def _optional(spark: SparkSession, lake: Path | str, table: str) -> DataFrame | None:
    path = lake_path(lake, table)
    return read_table(spark, path) if table_exists(spark, path) else None


def _small(df: DataFrame) -> pd.DataFrame:
    """Bring a small aggregate to the driver (callers pass only reduced frames)."""
    return df.toPandas()


def _check_payer(spark: SparkSession, lake: Path | str, emissions: DataFrame, payer: str) -> None:
    accounts = _optional(spark, lake, BRONZE_ACCOUNTS)
    known_in = accounts if accounts is not None else emissions
    if known_in.where(F.col("payer_account_id") == F.lit(payer)).limit(1).count() == 0:
        raise UnknownPayerError(f"unknown payer account: {payer}")


def _period(emissions: DataFrame, request: ReportRequest) -> tuple[dt.date, dt.date]:
    bounds = emissions.agg(F.min("month"), F.max("month")).first()
    first, last = (bounds[0], bounds[1]) if bounds is not None else (None, None)
    month_from = request.month_from or first
    month_to = request.month_to or last
    if month_from is None or month_to is None:
        raise InputError("gold/account_emissions has no rows to report on")
    if month_to < month_from:
        raise CarbonlakeError(f"--to {month_to:%Y-%m} is before --from {month_from:%Y-%m}")
    return month_from, month_to


def _clusters_of(emissions: DataFrame) -> DataFrame:
    return emissions.select(F.col("region_code").alias("cluster_id")).distinct()


def gather_report_data(spark: SparkSession, lake: Path | str, request: ReportRequest) -> ReportData:
    """Read, filter and aggregate everything a report shows (only small aggregates collected)."""
    emissions_path = lake_path(lake, GOLD_ACCOUNT_EMISSIONS)
    if not table_exists(spark, emissions_path):
        raise InputError(f"lake table not found: {emissions_path} (run `carbonlake run` first)")
    all_emissions = read_table(spark, emissions_path)
    if request.payer is not None:
        _check_payer(spark, lake, all_emissions, request.payer)
    payer_emissions = agg.for_payer(all_emissions, request.payer)
    month_from, month_to = _period(payer_emissions, request)
    emissions = agg.in_period(payer_emissions, month_from, month_to).cache()
    account_key = "payer_account_id" if request.payer is None else "usage_account_id"
    versions = [r[0] for r in emissions.select("model_version").distinct().collect()]

    data = ReportData(
        payer=request.payer,
        month_from=month_from,
        month_to=month_to,
        model_versions=sorted(v for v in versions if v is not None),
        monthly=_small(agg.monthly_by_scope(emissions)),
        by_region=_small(agg.totals_by(emissions, "region_code", "location")),
        by_service=_small(agg.totals_by(emissions, "product_code")),
        by_account=_small(agg.top_accounts(emissions, account_key, TOP_ACCOUNTS)),
        history=_small(agg.monthly_by_scope(payer_emissions)),
    )
    # A payer's report shows cluster-level context only for the clusters it used.
    used_clusters = _clusters_of(emissions) if request.payer is not None else None

    def clusters_only(df: DataFrame) -> DataFrame:
        if used_clusters is None:
            return df
        return df.join(F.broadcast(used_clusters), on="cluster_id", how="left_semi")

    _add_business_units(spark, lake, request, data, payer_emissions)
    if request.payer is None:
        unallocated = _optional(spark, lake, GOLD_UNALLOCATED)
        if unallocated is not None:
            period = agg.in_period(unallocated, month_from, month_to)
            data.unallocated = _small(agg.unallocated_by_reason(period))
    site_monthly = _optional(spark, lake, SILVER_SITE_MONTHLY)
    if site_monthly is not None:
        sites = clusters_only(agg.in_period(site_monthly, month_from, month_to)).cache()
        data.coverage = _small(agg.coverage_by_month(sites))
        data.factor_levels = _small(agg.factor_levels_by_month(sites))
        sites.unpersist()
    efficiency = _optional(spark, lake, GOLD_CLUSTER_EFFICIENCY)
    if efficiency is not None:
        period = clusters_only(agg.in_period(efficiency, month_from, month_to))
        data.efficiency = _small(agg.efficiency_by_cluster(period))
    benchmarks = _optional(spark, lake, GOLD_REGION_BENCHMARKS)
    if benchmarks is not None:
        # Every cluster stays in the ranking: it is where a workload could move to.
        data.intensity = _small(agg.service_intensity(benchmarks, month_from, month_to))
    forecast = _optional(spark, lake, GOLD_FORECAST)
    if forecast is not None:
        mine = agg.for_payer(forecast, request.payer)
        data.forecast = _small(agg.forecast_by_month(mine))
        data.backtest = _small(agg.backtest_summary(mine))
        data.backtest_medians = _small(agg.backtest_medians(mine))
    emissions.unpersist()
    return data


def _add_business_units(
    spark: SparkSession,
    lake: Path | str,
    request: ReportRequest,
    data: ReportData,
    payer_emissions: DataFrame,
) -> None:
    """Business-unit totals: gold/bu_monthly for the operator; the payer's own accounts else."""
    if request.payer is None:
        bu_monthly = _optional(spark, lake, GOLD_BU_MONTHLY)
        if bu_monthly is None:
            return
        all_months = _small(agg.bu_monthly_totals(bu_monthly))
    else:
        # bu_monthly carries no payer, so a payer's rollup comes from its own account rows.
        if _optional(spark, lake, GOLD_BU_MONTHLY) is None:
            return
        business_units = _optional(spark, lake, BRONZE_BUSINESS_UNITS)
        if business_units is None:
            business_units = spark.createDataFrame([], schemas.BUSINESS_UNITS.schema)
        all_months = _small(
            agg.payer_bu_monthly_totals(
                payer_emissions, business_units, schemas.UNMAPPED_BUSINESS_UNIT
            )
        )
    months = pd.to_datetime(all_months["month"]).dt.date
    in_range = (months >= data.month_from) & (months <= data.month_to)
    data.by_business_unit = (
        all_months[in_range]
        .groupby("business_unit", as_index=False)[["total_lbm_kg", "total_mbm_kg"]]
        .sum()
        .sort_values(["total_lbm_kg", "business_unit"], ascending=[False, True])
    )
    data.targets = [target_progress(all_months, t) for t in request.targets]
