"""Every payer's report data in a few passes over the lake, a batch of payers at a time.

`gather_report_data` for one payer costs about fifteen Spark jobs; an operator with
thousands of payers would wait hours for one job set each. Here each aggregate is
computed once per batch with the payer as a leading group key and split on the driver,
so a batch's frames are exactly what the single-payer report gathers for each payer
(tests/test_report.py compares them) and the driver holds one batch at a time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from carbon_core import schemas
from carbon_core.errors import CarbonlakeError, InputError
from carbon_core.lake import table_exists, tables
from carbon_core.lake.runs import read_published
from carbon_core.report import aggregates as agg
from carbon_core.report.data import (
    TOP_ACCOUNTS,
    ReportData,
    ReportRequest,
    TargetProgress,
    business_unit_totals,
    optional_table,
    payer_targets,
    target_series_of,
    targets_from_progress,
    unit_payers_of,
    with_versions,
)

PAYER = "payer_account_id"
BY_PAYER = (PAYER,)
PAYERS_PER_BATCH = 250  # the driver holds one batch's small frames at a time

_PERIODS = T.StructType(
    [
        T.StructField(PAYER, T.StringType(), False),
        T.StructField("period_from", T.DateType(), False),
        T.StructField("period_to", T.DateType(), False),
    ]
)


def _in_requested_months(df: DataFrame, request: ReportRequest) -> DataFrame:
    if request.month_from is not None:
        df = df.where(F.col("month") >= F.lit(request.month_from))
    if request.month_to is not None:
        df = df.where(F.col("month") <= F.lit(request.month_to))
    return df


def payers_to_report(emissions: DataFrame, request: ReportRequest) -> list[str]:
    """The payers with rows in the requested months, in id order (one id per payer)."""
    rows = _in_requested_months(emissions, request).select(PAYER).distinct().orderBy(PAYER)
    return [r[0] for r in rows.collect()]


class _Split:
    """A batch's frame (payer as its first column) cut into one frame per payer."""

    def __init__(self, frame: pd.DataFrame) -> None:
        mine = frame.drop(columns=PAYER)
        self._empty = mine.iloc[0:0].reset_index(drop=True)
        self._parts = {
            str(payer): part.drop(columns=PAYER).reset_index(drop=True)
            for payer, part in frame.groupby(PAYER, sort=False)
        }

    def of(self, payer: str) -> pd.DataFrame:
        return self._parts.get(payer, self._empty)


def _split(df: DataFrame) -> _Split:
    return _Split(df.toPandas())  # one batch of payers' reduced frames


def _period_of(bounds: Any, request: ReportRequest) -> tuple[dt.date, dt.date]:
    return (request.month_from or bounds["first"], request.month_to or bounds["last"])


def gather_payer_reports(
    spark: SparkSession,
    lake: Path | str,
    request: ReportRequest,
    *,
    payers_per_batch: int = PAYERS_PER_BATCH,
) -> Iterator[ReportData]:
    """Each payer's ReportData (as `gather_report_data` with `payer=` gives it), in id order,
    for every payer with rows in the requested months."""
    if request.payer is not None:
        raise ValueError("gather_payer_reports covers every payer: leave request.payer unset")
    if request.month_from and request.month_to and request.month_to < request.month_from:
        raise CarbonlakeError(
            f"--to {request.month_to:%Y-%m} is before --from {request.month_from:%Y-%m}"
        )
    emissions_path = tables.ACCOUNT_EMISSIONS.uri(lake)
    if not table_exists(spark, emissions_path):
        raise InputError(f"lake table not found: {emissions_path} (run `carbonlake run` first)")
    emissions = read_published(spark, lake, tables.ACCOUNT_EMISSIONS)
    payers = payers_to_report(emissions, request)
    context = _LakeContext(spark, lake)
    for start in range(0, len(payers), payers_per_batch):
        yield from _batch(
            spark, emissions, payers[start : start + payers_per_batch], request, context
        )


class _LakeContext:
    """The optional tables a payer's report reads, and the payer-independent intensity
    ranking, computed once per period."""

    def __init__(self, spark: SparkSession, lake: Path | str) -> None:
        self.site_monthly = optional_table(spark, lake, tables.SITE_MONTHLY)
        self.efficiency = optional_table(spark, lake, tables.CLUSTER_EFFICIENCY)
        self.benchmarks = optional_table(spark, lake, tables.REGION_BENCHMARKS)
        self.forecast = optional_table(spark, lake, tables.FORECAST)
        self.backtest = optional_table(spark, lake, tables.FORECAST_BACKTEST)
        self.has_bu_monthly = table_exists(spark, tables.BU_MONTHLY.uri(lake))
        units = optional_table(spark, lake, tables.bronze("business_units"))
        self.business_units = (
            units if units is not None else spark.createDataFrame([], schemas.BUSINESS_UNITS.schema)
        )
        self._intensity: dict[tuple[dt.date, dt.date], pd.DataFrame] = {}
        # Targets, the units' payers and the targets' series are payer-independent and
        # small (one row per target x year, unit, unit x month): read once.
        progress = optional_table(spark, lake, tables.TARGET_PROGRESS)
        self.targets: list[TargetProgress] | None = None
        self.unit_payers: dict[str, list[str]] = {}
        self.target_series = pd.DataFrame()
        if progress is not None:
            self.targets = targets_from_progress(progress.toPandas())
            self.unit_payers = unit_payers_of(spark, lake)
            self.target_series = target_series_of(spark, lake, self.targets)

    def targets_of(self, payer: str) -> tuple[list[TargetProgress] | None, pd.DataFrame, list[str]]:
        """A payer's targets (its own units'), their series, and its shared target units."""
        if self.targets is None:
            return None, self.target_series.copy(), []
        own, shared = payer_targets(self.targets, self.unit_payers, payer)
        units = {t.business_unit for t in own}
        series = self.target_series[self.target_series["business_unit"].isin(units)]
        series = series.reset_index(drop=True)
        return with_versions(own, series), series, shared

    def intensity(self, period: tuple[dt.date, dt.date]) -> pd.DataFrame | None:
        if self.benchmarks is None:
            return None
        if period not in self._intensity:
            ranking = agg.service_intensity(self.benchmarks, *period)
            self._intensity[period] = ranking.toPandas()  # one row per service x cluster
        return self._intensity[period].copy()  # each payer's data its own frame


def _batch(
    spark: SparkSession,
    emissions: DataFrame,
    payers: list[str],
    request: ReportRequest,
    context: _LakeContext,
) -> Iterator[ReportData]:
    mine = emissions.where(F.col(PAYER).isin(payers))
    bounds = {
        r[PAYER]: r
        for r in mine.groupBy(PAYER)
        .agg(F.min("month").alias("first"), F.max("month").alias("last"))
        .collect()
    }
    periods = {payer: _period_of(bounds[payer], request) for payer in payers}
    period_rows = spark.createDataFrame(
        [(payer, *period) for payer, period in periods.items()], _PERIODS
    )

    def in_own_period(df: DataFrame) -> DataFrame:
        joined = df.join(F.broadcast(period_rows), on=PAYER)
        inside = F.col("month").between(F.col("period_from"), F.col("period_to"))
        return joined.where(inside).drop("period_from", "period_to")

    in_period = in_own_period(mine).cache()
    used_clusters = in_period.select(PAYER, F.col("region_code").alias("cluster_id")).distinct()

    def clusters_used(df: DataFrame) -> DataFrame:
        return in_own_period(df.join(F.broadcast(used_clusters), on="cluster_id"))

    versions = {
        r[PAYER]: sorted(v for v in r["versions"] if v is not None)
        for r in in_period.groupBy(PAYER)
        .agg(F.collect_set("model_version").alias("versions"))
        .collect()
    }
    monthly = _split(agg.monthly_by_scope(in_period, BY_PAYER))
    by_region = _split(agg.totals_by(in_period, "region_code", "location", by=BY_PAYER))
    by_service = _split(agg.totals_by(in_period, "product_code", by=BY_PAYER))
    by_account = _split(agg.top_accounts(in_period, "usage_account_id", TOP_ACCOUNTS, BY_PAYER))
    history = _split(agg.monthly_by_scope(mine, BY_PAYER))
    units = None
    if context.has_bu_monthly:
        units = _split(
            agg.payer_bu_monthly_totals(
                mine, context.business_units, schemas.UNMAPPED_BUSINESS_UNIT, BY_PAYER
            )
        )
    coverage = levels = efficiency = forecast = backtest = medians = None
    if context.site_monthly is not None:
        sites = clusters_used(context.site_monthly).cache()
        coverage = _split(agg.coverage_by_month(sites, BY_PAYER))
        levels = _split(agg.factor_levels_by_month(sites, BY_PAYER))
        sites.unpersist()
    if context.efficiency is not None:
        efficiency = _split(agg.efficiency_by_cluster(clusters_used(context.efficiency), BY_PAYER))
    if context.forecast is not None:
        batch_forecast = context.forecast.where(F.col(PAYER).isin(payers))
        forecast = _split(agg.forecast_by_month(batch_forecast, BY_PAYER))
    if context.backtest is not None:
        batch_backtest = context.backtest.where(F.col(PAYER).isin(payers))
        backtest = _split(agg.backtest_summary(batch_backtest, BY_PAYER))
        medians = _split(agg.backtest_medians(batch_backtest, BY_PAYER))
    in_period.unpersist()

    for payer in payers:
        month_from, month_to = periods[payer]
        targets, target_series, shared_units = context.targets_of(payer)
        yield ReportData(
            payer=payer,
            month_from=month_from,
            month_to=month_to,
            model_versions=versions.get(payer, []),
            monthly=monthly.of(payer),
            by_region=by_region.of(payer),
            by_service=by_service.of(payer),
            by_account=by_account.of(payer),
            history=history.of(payer),
            by_business_unit=(
                None
                if units is None
                else business_unit_totals(units.of(payer), month_from, month_to)
            ),
            coverage=None if coverage is None else coverage.of(payer),
            factor_levels=None if levels is None else levels.of(payer),
            efficiency=None if efficiency is None else efficiency.of(payer),
            intensity=context.intensity(periods[payer]),
            forecast=None if forecast is None else forecast.of(payer),
            backtest=None if backtest is None else backtest.of(payer),
            backtest_medians=None if medians is None else medians.of(payer),
            targets=targets,
            target_series=None if targets is None else target_series,
            shared_target_units=shared_units,
        )
