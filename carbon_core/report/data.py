"""Read the lake tables a report needs and bring their small aggregates to the driver."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carbon_core import schemas
from carbon_core.errors import CarbonlakeError, InputError
from carbon_core.lake import table_exists, tables
from carbon_core.lake.runs import read_published
from carbon_core.report import aggregates as agg

TOP_ACCOUNTS = 15


class UnknownPayerError(CarbonlakeError):
    """The requested payer has no accounts in the lake."""


@dataclass(frozen=True)
class ReportRequest:
    """What to report on: the whole operator or one payer, over a month range."""

    payer: str | None = None
    month_from: dt.date | None = None
    month_to: dt.date | None = None


@dataclass(frozen=True)
class TargetProgress:
    """One configured target as gold/target_progress holds it: its path and latest year."""

    business_unit: str
    basis: str
    baseline_year: int
    target_year: int
    reduction_percent: float
    baseline_kg: float | None  # annual total of the baseline year (annualised if partial)
    path: tuple[tuple[int, float], ...]  # (year, annual kg) from the baseline to the target year
    latest_year: int | None  # the last year with data
    latest_kg: float | None  # its total, annualised
    latest_months: int
    latest_path_kg: float | None  # the path in that year
    latest_on_track: bool | None
    # Methodology versions of the unit's months in the baseline and in the latest year.
    baseline_versions: tuple[str, ...] = ()
    latest_versions: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return (
            f"{self.business_unit}: -{self.reduction_percent:g} % {self.basis.upper()} "
            f"{self.baseline_year}→{self.target_year}"
        )

    @property
    def status(self) -> str:
        """'on track', 'off track' or why it cannot be told."""
        if self.baseline_kg is None:
            return f"no data for baseline year {self.baseline_year}"
        if self.latest_year is None or self.latest_year <= self.baseline_year:
            return "no data after the baseline year"
        if self.baseline_versions and self.latest_versions != self.baseline_versions:
            # A v1.0 baseline against a v2.0 year measures the methodology change.
            return (
                f"not comparable: {self.baseline_year} under {' + '.join(self.baseline_versions)}, "
                f"{self.latest_year} under {' + '.join(self.latest_versions) or 'none'}"
            )
        if self.latest_on_track is None:
            return "no data"
        return "on track" if self.latest_on_track else "off track"


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
    targets: list[TargetProgress] | None = None  # None: no gold/target_progress
    # month, model_version, business_unit, total_lbm_kg, total_mbm_kg of the targets' units
    target_series: pd.DataFrame | None = None
    # A payer's units with a target that also hold other payers' accounts (not shown).
    shared_target_units: list[str] = field(default_factory=list)

    @property
    def total_lbm_kg(self) -> float:
        return float(self.monthly["total_lbm_kg"].sum())

    @property
    def total_mbm_kg(self) -> float:
        return float(self.monthly["total_mbm_kg"].sum())


def optional_table(
    spark: SparkSession, lake: Path | str, table: tables.LakeTable
) -> DataFrame | None:
    uri = table.uri(lake)
    return read_published(spark, lake, table) if table_exists(spark, uri) else None


def _known(value: Any) -> Any:
    """A pandas cell, None for a missing one (NaN, None, NaT)."""
    return None if pd.isna(value) else value


def _float(value: Any) -> float | None:
    known = _known(value)
    return None if known is None else float(known)


def targets_from_progress(progress: pd.DataFrame) -> list[TargetProgress]:
    """One TargetProgress per target from the rows of gold/target_progress."""
    keys = ["business_unit", "basis", "baseline_year", "target_year", "reduction_percent"]
    found = []
    for key, rows in progress.sort_values([*keys, "year"]).groupby(keys, sort=False):
        unit, basis, baseline_year, target_year, reduction = key
        path = tuple(
            (int(year), float(kg))
            for year, kg in zip(rows["year"], rows["path_kg"], strict=True)
            if year <= target_year and _known(kg) is not None
        )
        with_data = rows[rows["months"].fillna(0) > 0]
        latest = with_data.iloc[-1] if len(with_data) else None
        on_track = None if latest is None else _known(latest["on_track"])
        found.append(
            TargetProgress(
                business_unit=str(unit),
                basis=str(basis),
                baseline_year=int(baseline_year),
                target_year=int(target_year),
                reduction_percent=float(reduction),
                baseline_kg=_float(rows["baseline_kg"].iloc[0]),
                path=path,
                latest_year=None if latest is None else int(latest["year"]),
                latest_kg=None if latest is None else _float(latest["annualised_kg"]),
                latest_months=0 if latest is None else int(latest["months"]),
                latest_path_kg=None if latest is None else _float(latest["path_kg"]),
                latest_on_track=None if on_track is None else bool(on_track),
            )
        )
    return found


def with_versions(targets: list[TargetProgress], series: pd.DataFrame) -> list[TargetProgress]:
    """The targets with the methodology versions of their baseline and latest years."""
    years = pd.to_datetime(series["month"]).dt.year

    def versions(unit: str, year: int | None) -> tuple[str, ...]:
        if year is None:
            return ()
        rows = series[(series["business_unit"] == unit) & (years == year)]
        return tuple(sorted({str(v) for v in rows["model_version"].dropna()}))

    return [
        replace(
            t,
            baseline_versions=versions(t.business_unit, t.baseline_year),
            latest_versions=versions(t.business_unit, t.latest_year),
        )
        for t in targets
    ]


def payer_targets(
    targets: list[TargetProgress], unit_payers: dict[str, list[str]], payer: str
) -> tuple[list[TargetProgress], list[str]]:
    """The targets of units whose accounts all belong to the payer (their series is the
    payer's own data), and the payer's other units that have targets (shared with other
    payers: their totals would show other payers' emissions)."""
    own = [t for t in targets if unit_payers.get(t.business_unit) == [payer]]
    shared = {
        t.business_unit
        for t in targets
        if payer in unit_payers.get(t.business_unit, []) and len(unit_payers[t.business_unit]) > 1
    }
    return own, sorted(shared)


def unit_payers_of(spark: SparkSession, lake: Path | str) -> dict[str, list[str]]:
    """Business unit -> sorted payers of its accounts (bronze business_units, accounts)."""
    units = optional_table(spark, lake, tables.bronze("business_units"))
    accounts = optional_table(spark, lake, tables.bronze("accounts"))
    if units is None or accounts is None:
        return {}
    rows = agg.business_unit_payers(units, accounts).collect()  # one row per unit
    return {r["business_unit"]: [p for p in r["payers"] if p is not None] for r in rows}


def target_series_of(
    spark: SparkSession, lake: Path | str, targets: list[TargetProgress]
) -> pd.DataFrame:
    """Monthly totals per methodology version of the targets' business units."""
    columns = ["month", "model_version", "business_unit", "total_lbm_kg", "total_mbm_kg"]
    bu_monthly = optional_table(spark, lake, tables.BU_MONTHLY)
    units = sorted({t.business_unit for t in targets})
    if bu_monthly is None or not units:
        return pd.DataFrame({c: [] for c in columns})
    return _small(agg.target_series(bu_monthly, units))


def _small(df: DataFrame) -> pd.DataFrame:
    """Bring a small aggregate to the driver (callers pass only reduced frames)."""
    return df.toPandas()


def _check_payer(spark: SparkSession, lake: Path | str, emissions: DataFrame, payer: str) -> None:
    accounts = optional_table(spark, lake, tables.bronze("accounts"))
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
    emissions_path = tables.ACCOUNT_EMISSIONS.uri(lake)
    if not table_exists(spark, emissions_path):
        raise InputError(f"lake table not found: {emissions_path} (run `carbonlake run` first)")
    all_emissions = read_published(spark, lake, tables.ACCOUNT_EMISSIONS)
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
        unallocated = optional_table(spark, lake, tables.UNALLOCATED)
        if unallocated is not None:
            period = agg.in_period(unallocated, month_from, month_to)
            data.unallocated = _small(agg.unallocated_by_reason(period))
    site_monthly = optional_table(spark, lake, tables.SITE_MONTHLY)
    if site_monthly is not None:
        sites = clusters_only(agg.in_period(site_monthly, month_from, month_to)).cache()
        data.coverage = _small(agg.coverage_by_month(sites))
        data.factor_levels = _small(agg.factor_levels_by_month(sites))
        sites.unpersist()
    efficiency = optional_table(spark, lake, tables.CLUSTER_EFFICIENCY)
    if efficiency is not None:
        period = clusters_only(agg.in_period(efficiency, month_from, month_to))
        data.efficiency = _small(agg.efficiency_by_cluster(period))
    benchmarks = optional_table(spark, lake, tables.REGION_BENCHMARKS)
    if benchmarks is not None:
        # Every cluster stays in the ranking: it is where a workload could move to.
        data.intensity = _small(agg.service_intensity(benchmarks, month_from, month_to))
    forecast = optional_table(spark, lake, tables.FORECAST)
    if forecast is not None:
        data.forecast = _small(agg.forecast_by_month(agg.for_payer(forecast, request.payer)))
    backtest = optional_table(spark, lake, tables.FORECAST_BACKTEST)
    if backtest is not None:
        mine = agg.for_payer(backtest, request.payer)
        data.backtest = _small(agg.backtest_summary(mine))
        data.backtest_medians = _small(agg.backtest_medians(mine))
    progress = optional_table(spark, lake, tables.TARGET_PROGRESS)
    if progress is not None:
        shown = targets_from_progress(_small(progress))
        if request.payer is not None:
            shown, data.shared_target_units = payer_targets(
                shown, unit_payers_of(spark, lake), request.payer
            )
        data.target_series = target_series_of(spark, lake, shown)
        data.targets = with_versions(shown, data.target_series)
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
        bu_monthly = optional_table(spark, lake, tables.BU_MONTHLY)
        if bu_monthly is None:
            return
        all_months = _small(agg.bu_monthly_totals(bu_monthly))
    else:
        # bu_monthly carries no payer, so a payer's rollup comes from its own account rows.
        if not table_exists(spark, tables.BU_MONTHLY.uri(lake)):
            return
        business_units = optional_table(spark, lake, tables.bronze("business_units"))
        if business_units is None:
            business_units = spark.createDataFrame([], schemas.BUSINESS_UNITS.schema)
        all_months = _small(
            agg.payer_bu_monthly_totals(
                payer_emissions, business_units, schemas.UNMAPPED_BUSINESS_UNIT
            )
        )
    data.by_business_unit = business_unit_totals(all_months, data.month_from, data.month_to)


def business_unit_totals(
    monthly: pd.DataFrame, month_from: dt.date, month_to: dt.date
) -> pd.DataFrame:
    """The period's LBM and MBM per business unit from its monthly totals, largest first."""
    months = pd.to_datetime(monthly["month"]).dt.date
    in_range = (months >= month_from) & (months <= month_to)
    return (
        monthly[in_range]
        .groupby("business_unit", as_index=False)[["total_lbm_kg", "total_mbm_kg"]]
        .sum()
        .sort_values(["total_lbm_kg", "business_unit"], ascending=[False, True])
    )
