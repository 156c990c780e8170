"""gold/forecast: monthly emissions per payer x region x product to the horizon, LBM and MBM.

The model, step by step (each step is a number an auditor can recompute):

1. History. A series is (payer_account_id, region_code, location, product_code). Its
   history is the monthly sum of gold/account_emissions from the series' first month to
   the lake's last actual month (the latest month in gold/account_emissions); a month
   without rows inside that span counts as 0 (an account that stopped trends to 0).
2. Energy. The series' monthly energy_kwh is forecast from the month after the last
   actual month to `forecast.horizon_end`:
   - method 'ets': statsmodels' ETSModel (additive error, additive damped trend, no
     seasonality), fitted by maximum likelihood; `get_prediction().summary_frame(alpha)`
     gives the mean and the prediction interval at `forecast.interval_level`.
   - method 'naive', used when the history has fewer than `forecast.min_history_months`
     months, is constant (all-zero included) or the fit fails or returns non-finite
     numbers: the mean of the last 12 months (fewer if the history is shorter), with the
     interval mean ± z·s, s the sample standard deviation (ddof 1) of the history's
     monthly energy (0 for one month), z the normal quantile of (1 + level) / 2.
   Mean and bounds are clamped at 0.
3. Intensities. From the series' last 12 months (its whole history when those have no
   energy): i_s2lbm = scope2_lbm / energy and i_other = (scope1 + scope3) / energy. A
   series without any energy has intensities 0 (and a forecast energy of 0).
4. Grid-factor trend. For each region (cluster), the factor zones its sites used in the
   last 12 months of silver/site_monthly (factor_level, factor_zone) are looked up in the
   reference grid_factors; per zone a straight line (numpy Polynomial.fit, degree 1) is
   fitted to kg_per_kwh over the years, and the zone's multiplier is
   g(year) = line(year) / line(last reference year of the zone), clamped at >= 0 (1 for a
   zone with one year, no rows, or a non-positive line at its last year). The region's
   g_r(year) is the mean of its zones' multipliers weighted by their Scope 2 LBM in those
   12 months (1 for a region without any).
5. LBM = E_fc(m) x [i_other + i_s2lbm x g_r(year(m))].
6. MBM. Announced contracts (bronze energy_contracts) overlapping forecast months are
   spread over months (carbon_core.calendar, in proportion to seconds). Site-bound ones
   go to their site's cluster; boundary ones are split over the clusters having sites in
   that market boundary in proportion to the cluster's forecast energy times the share
   of the cluster's site energy that is in the boundary (last 12 months of
   site_monthly). Per region and month: covered share c = min(1, contracted kWh /
   forecast energy of the region), contract factor f = kWh-weighted mean of the
   contracts' emission factors, and
   MBM = E_fc x [i_other + (1 - c) x i_s2lbm x g_r + c x f].
   Uncovered energy is valued at the location trend: residual-mix factors are not
   projected. Coverage is measured against the allocated (account) energy, not the
   site's total, so it is an upper bound when part of the energy is unallocated.
7. Intervals. The energy bounds times the same LBM and MBM multipliers (c from the
   point forecast).
8. Backtest. The last `forecast.holdout_months` months are held out: every series is
   fitted by the same code on its history up to the month before them and forecast over
   them (steps 2-7, with the grid multipliers and coverage shares of step 4 and 6), then
   scored against the actual totals: MAPE (in percent) = mean over held-out months with
   a non-zero actual of |forecast - actual| / actual x 100, for LBM and MBM. Null when a
   series has no month before the held-out window or no held-out month with a non-zero
   actual. The columns backtest_mape_lbm/mbm repeat it on every row of the series, and
   gold/forecast_backtest holds it once per series with the forecast's method and the
   number of held-out months the series was forecast over (0 without a month before them).

Series are fitted in parallel on the executors with groupBy().applyInPandas(): the fit
is an optimisation that column expressions cannot express; nothing but small per-region
and per-zone aggregates reaches the driver.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from carbon_core import schemas
from carbon_core.calendar import month_range, parse_month, shift_month, spread_over_months
from carbon_core.config import ForecastSettings
from carbon_core.ingest import read_bronze
from carbon_core.insight.rollups import ROLLUP_QUANTITIES
from carbon_core.lake import tables
from carbon_core.lake.runs import read_published
from carbon_core.schemas import conform

SERIES_KEYS: tuple[str, ...] = ("payer_account_id", "region_code", "location", "product_code")
# Water has no carbon: the forecast follows energy and emissions only.
HISTORY_QUANTITIES: tuple[str, ...] = tuple(q for q in ROLLUP_QUANTITIES if q != "water_l")
METHOD_ETS = "ets"
METHOD_NAIVE = "naive"
RUN_FORECAST = "forecast"
RUN_BACKTEST = "backtest"
# Intensities, zone weights and boundary shares describe the recent past: one year.
RECENT_MONTHS = 12

FIT_SCHEMA = T.StructType(
    [T.StructField(k, T.StringType(), True) for k in SERIES_KEYS]
    + [
        T.StructField("month", T.DateType(), False),
        T.StructField("run", T.StringType(), False),
        T.StructField("method", T.StringType(), False),
        T.StructField("history_months", T.IntegerType(), False),
        T.StructField("energy_kwh", T.DoubleType(), False),
        T.StructField("energy_lower_kwh", T.DoubleType(), False),
        T.StructField("energy_upper_kwh", T.DoubleType(), False),
        T.StructField("s2lbm_intensity", T.DoubleType(), False),
        T.StructField("other_intensity", T.DoubleType(), False),
    ]
)
GRID_MULTIPLIER_SCHEMA = T.StructType(
    [
        T.StructField("region_code", T.StringType(), False),
        T.StructField("year", T.IntegerType(), False),
        T.StructField("grid_multiplier", T.DoubleType(), False),
    ]
)


# --- energy forecast of one series (pandas, runs on the executors) ----------------------


@dataclass(frozen=True)
class EnergyForecast:
    """A series' forecast monthly energy: method, mean and interval bounds (all >= 0)."""

    method: str
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def _normal_quantile(interval_level: float) -> float:
    return NormalDist().inv_cdf(0.5 + interval_level / 2)


def naive_energy_forecast(
    energy: pd.Series, horizon: int, *, interval_level: float
) -> EnergyForecast:
    """Mean of the last 12 months, interval mean ± z·s(history), clamped at 0."""
    values = energy.to_numpy(dtype=float)
    level = float(values[-RECENT_MONTHS:].mean()) if len(values) else 0.0
    spread = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    half_width = _normal_quantile(interval_level) * spread
    mean = np.full(horizon, max(level, 0.0))
    return EnergyForecast(
        METHOD_NAIVE,
        mean,
        np.full(horizon, max(level - half_width, 0.0)),
        np.full(horizon, max(level + half_width, 0.0)),
    )


def _ets_energy_forecast(energy: pd.Series, horizon: int, interval_level: float) -> EnergyForecast:
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    # numpy input breaks get_prediction in statsmodels 0.15: keep the PeriodIndex.
    model = ETSModel(energy.astype(float), error="add", trend="add", damped_trend=True)
    with warnings.catch_warnings():
        # Convergence chatter on short or flat series; a bad fit is caught below.
        warnings.simplefilter("ignore")
        fitted = model.fit(disp=False)
        frame = fitted.get_prediction(start=len(energy), end=len(energy) + horizon - 1)
        summary = frame.summary_frame(alpha=1 - interval_level)
    mean, lower, upper = (
        summary[c].to_numpy(dtype=float) for c in ("mean", "pi_lower", "pi_upper")
    )
    if len(mean) != horizon or not np.isfinite(np.concatenate([mean, lower, upper])).all():
        raise ValueError("ETS returned no finite forecast")
    return EnergyForecast(
        METHOD_ETS, np.clip(mean, 0, None), np.clip(lower, 0, None), np.clip(upper, 0, None)
    )


def forecast_energy(
    energy: pd.Series, horizon: int, *, min_history_months: int, interval_level: float
) -> EnergyForecast:
    """ETS (damped additive trend) when the history allows it, else the naive forecast."""
    values = energy.to_numpy(dtype=float)
    fit_ets = len(values) >= min_history_months and np.ptp(values) > 0 and horizon > 0
    if fit_ets:
        try:
            return _ets_energy_forecast(energy, horizon, interval_level)
        except Exception:
            # statsmodels raises several kinds (LinAlgError, ValueError...); any failed
            # fit falls back to the labelled naive method, never to a failed run.
            pass
    return naive_energy_forecast(energy, horizon, interval_level=interval_level)


def recent_intensities(history: pd.DataFrame) -> tuple[float, float]:
    """(i_s2lbm, i_other) in kg/kWh from the last 12 months, else the whole history, else 0."""
    for window in (history.tail(RECENT_MONTHS), history):
        energy = float(window["energy_kwh"].sum())
        if energy > 0:
            s2lbm = float(window["scope2_lbm_kg"].sum())
            other = float(window["scope1_kg"].sum() + window["scope3_kg"].sum())
            return s2lbm / energy, other / energy
    return 0.0, 0.0


def project_series(
    history: pd.DataFrame,
    months: Sequence[dt.date],
    *,
    min_history_months: int,
    interval_level: float,
) -> pd.DataFrame:
    """Energy forecast and intensities of one series for `months` (following its history).

    `history` holds one row per consecutive month (zeros filled), oldest first.
    """
    energy = pd.Series(
        history["energy_kwh"].to_numpy(dtype=float),
        index=pd.to_datetime(history["month"]).dt.to_period("M"),
    )
    forecast = forecast_energy(
        energy,
        len(months),
        min_history_months=min_history_months,
        interval_level=interval_level,
    )
    s2lbm, other = recent_intensities(history)
    return pd.DataFrame(
        {
            "month": list(months),
            "method": forecast.method,
            "energy_kwh": forecast.mean,
            "energy_lower_kwh": forecast.lower,
            "energy_upper_kwh": forecast.upper,
            "s2lbm_intensity": s2lbm,
            "other_intensity": other,
        }
    )


def _complete_history(pdf: pd.DataFrame, last_month: dt.date) -> pd.DataFrame:
    """One row per month from the series' first month to last_month; missing months are 0."""
    frame = pdf.assign(month=pd.to_datetime(pdf["month"]).dt.date).groupby("month").sum()
    first = min(frame.index)
    months = month_range(first, last_month) if first <= last_month else []
    # A null quantity counts as 0, like a missing month, rather than poison the fit.
    frame = frame.reindex(months, fill_value=0.0).fillna(0.0)
    return frame.rename_axis("month").reset_index()


def _fit_series_group(
    pdf: pd.DataFrame,
    *,
    last_actual: dt.date,
    horizon_end: dt.date,
    holdout_months: int,
    min_history_months: int,
    interval_level: float,
) -> pd.DataFrame:
    """applyInPandas body: the forecast and the backtest rows of one series."""
    keys = {k: pdf[k].iloc[0] for k in SERIES_KEYS}
    values = pdf[["month", "energy_kwh", "scope1_kg", "scope2_lbm_kg", "scope3_kg"]]
    history = _complete_history(values, last_actual)
    train_end = shift_month(last_actual, -holdout_months)
    runs = [(RUN_FORECAST, history, shift_month(last_actual, 1), horizon_end)]
    training = history[history["month"] <= train_end].reset_index(drop=True)
    if len(training):
        runs.append((RUN_BACKTEST, training, shift_month(train_end, 1), last_actual))
    frames = []
    for run, past, first, last in runs:
        if first > last:
            continue
        projected = project_series(
            past,
            month_range(first, last),
            min_history_months=min_history_months,
            interval_level=interval_level,
        )
        frames.append(projected.assign(run=run, history_months=len(past), **keys))
    if not frames:
        return pd.DataFrame({f.name: [] for f in FIT_SCHEMA.fields})
    return pd.concat(frames, ignore_index=True)[FIT_SCHEMA.fieldNames()]


# --- Spark steps ----------------------------------------------------------------------


def series_history(account_emissions: DataFrame) -> DataFrame:
    """Monthly sums of the quantities per series (payer x region x location x product)."""
    return account_emissions.groupBy(*SERIES_KEYS, "month").agg(
        *[F.sum(q).alias(q) for q in HISTORY_QUANTITIES]
    )


def fit_series(
    history: DataFrame,
    *,
    last_actual: dt.date,
    horizon_end: dt.date,
    settings: ForecastSettings,
) -> DataFrame:
    """Per series, forecast energy and intensities for the forecast and backtest months."""

    def body(pdf: pd.DataFrame) -> pd.DataFrame:
        return _fit_series_group(
            pdf,
            last_actual=last_actual,
            horizon_end=horizon_end,
            holdout_months=settings.holdout_months,
            min_history_months=settings.min_history_months,
            interval_level=settings.interval_level,
        )

    columns = ["month", "energy_kwh", "scope1_kg", "scope2_lbm_kg", "scope3_kg"]
    # The fits are CPU-bound and the input is small: an explicit repartition keeps every
    # task slot busy, where adaptive execution would coalesce the groups into one task.
    slots = int(history.sparkSession.conf.get("spark.sql.shuffle.partitions") or "8")
    return (
        history.select(*SERIES_KEYS, *columns)
        .repartition(slots, *SERIES_KEYS)
        .groupBy(*SERIES_KEYS)
        .applyInPandas(body, schema=FIT_SCHEMA)
    )


def zone_multipliers(
    factor_years: Sequence[tuple[int, float]], years: Sequence[int]
) -> dict[int, float]:
    """g(year) = line(year) / line(last year), line a least-squares straight line, g >= 0."""
    if len({y for y, _ in factor_years}) < 2:
        return {year: 1.0 for year in years}
    from numpy.polynomial import Polynomial

    x = np.array([y for y, _ in factor_years], dtype=float)
    line = Polynomial.fit(x, np.array([k for _, k in factor_years], dtype=float), deg=1)
    anchor = float(line(x.max()))
    if anchor <= 0:
        return {year: 1.0 for year in years}
    return {year: max(float(line(year)) / anchor, 0.0) for year in years}


def _recent(site_monthly: DataFrame, last_actual: dt.date) -> DataFrame:
    first = shift_month(last_actual, 1 - RECENT_MONTHS)
    return site_monthly.where(F.col("month").between(F.lit(first), F.lit(last_actual)))


def grid_multipliers(
    site_monthly: DataFrame,
    grid_factors: DataFrame,
    *,
    last_actual: dt.date,
    years: Sequence[int],
) -> DataFrame:
    """Per region and year, the Scope 2 LBM-weighted grid-factor trend multiplier g_r."""
    spark = site_monthly.sparkSession
    zone_weights = [
        (r["cluster_id"], r["factor_level"], r["factor_zone"], r["weight_kg"] or 0.0)
        for r in _recent(site_monthly, last_actual)
        .where(F.col("factor_zone").isNotNull())
        .groupBy("cluster_id", "factor_level", "factor_zone")
        .agg(F.sum("scope2_lbm_kg").alias("weight_kg"))
        .collect()
    ]
    zones = {(level, zone) for _, level, zone, _ in zone_weights}
    factor_rows: dict[tuple[str, str], list[tuple[int, float]]] = {z: [] for z in zones}
    if zones:
        wanted = spark.createDataFrame(
            sorted(zones), "factor_level string, factor_zone string"
        ).alias("z")
        reference = grid_factors.alias("g")
        for r in (
            reference.join(
                wanted,
                (F.col("g.level") == F.col("z.factor_level"))
                & (F.col("g.zone") == F.col("z.factor_zone")),
                how="inner",
            )
            .select("g.level", "g.zone", "g.year", "g.kg_per_kwh")
            .collect()
        ):
            factor_rows[(r["level"], r["zone"])].append((r["year"], r["kg_per_kwh"]))
    per_zone = {z: zone_multipliers(rows, years) for z, rows in factor_rows.items()}
    weighted: dict[str, dict[int, float]] = {}
    totals: dict[str, float] = {}
    for cluster, level, zone, weight in zone_weights:
        totals[cluster] = totals.get(cluster, 0.0) + weight
        sums = weighted.setdefault(cluster, dict.fromkeys(years, 0.0))
        for year in years:
            sums[year] += weight * per_zone[(level, zone)][year]
    rows = [
        (cluster, year, sums[year] / totals[cluster] if totals[cluster] > 0 else 1.0)
        for cluster, sums in sorted(weighted.items())
        for year in years
    ]
    return spark.createDataFrame(rows, GRID_MULTIPLIER_SCHEMA)


def contract_coverage(
    energy_contracts: DataFrame,
    sites: DataFrame,
    site_monthly: DataFrame,
    region_energy: DataFrame,
    *,
    last_actual: dt.date,
) -> DataFrame:
    """Per region and month of region_energy: covered_share c and contract_factor f."""
    months = region_energy.select("month").distinct()
    pieces = spread_over_months(
        energy_contracts.select(
            "site_id",
            "market_boundary",
            "period_start",
            "period_end",
            "energy_kwh",
            (F.col("energy_kwh") * F.col("emission_factor_kg_per_kwh")).alias("contract_kg"),
        ),
        value_columns=["energy_kwh", "contract_kg"],
    ).join(F.broadcast(months), on="month", how="inner")
    # Ingest quarantines contracts whose site_id is unknown, so the inner join keeps all.
    site_bound = (
        pieces.where(F.col("site_id").isNotNull())
        .join(sites.select("site_id", F.col("cluster_id").alias("region_code")), "site_id", "inner")
        .select("region_code", "month", "energy_kwh", "contract_kg")
    )
    boundary_pools = (
        pieces.where(F.col("site_id").isNull() & F.col("market_boundary").isNotNull())
        .groupBy("market_boundary", "month")
        .agg(F.sum("energy_kwh").alias("pool_kwh"), F.sum("contract_kg").alias("pool_kg"))
    )
    recent = _recent(site_monthly, last_actual)
    boundary_share = (
        recent.groupBy(F.col("cluster_id").alias("region_code"), "market_boundary")
        .agg(F.sum("energy_kwh").alias("boundary_kwh"))
        .join(
            recent.groupBy(F.col("cluster_id").alias("region_code")).agg(
                F.sum("energy_kwh").alias("cluster_kwh")
            ),
            on="region_code",
            how="inner",
        )
        .where(F.col("cluster_kwh") > 0)
        .select(
            "region_code",
            "market_boundary",
            (F.col("boundary_kwh") / F.col("cluster_kwh")).alias("boundary_share"),
        )
    )
    claims = region_energy.join(boundary_share, on="region_code", how="inner").select(
        "region_code",
        "market_boundary",
        "month",
        (F.col("energy_kwh") * F.col("boundary_share")).alias("claim_kwh"),
    )
    claim_totals = claims.groupBy("market_boundary", "month").agg(
        F.sum("claim_kwh").alias("boundary_claim_kwh")
    )
    has_claim = F.col("boundary_claim_kwh") > 0
    split = F.col("claim_kwh") / F.col("boundary_claim_kwh")
    boundary_bound = (
        boundary_pools.join(claim_totals, on=["market_boundary", "month"], how="inner")
        .where(has_claim)
        .join(claims, on=["market_boundary", "month"], how="inner")
        .select(
            "region_code",
            "month",
            (F.col("pool_kwh") * split).alias("energy_kwh"),
            (F.col("pool_kg") * split).alias("contract_kg"),
        )
    )
    contracted = (
        site_bound.unionByName(boundary_bound)
        .groupBy("region_code", "month")
        .agg(F.sum("energy_kwh").alias("contracted_kwh"), F.sum("contract_kg").alias("contract_kg"))
    )
    has_energy = F.col("r.energy_kwh") > 0
    has_contracts = F.col("c.contracted_kwh") > 0
    return (
        region_energy.alias("r")
        .join(contracted.alias("c"), on=["region_code", "month"], how="left")
        .select(
            "region_code",
            "month",
            F.when(
                has_energy & has_contracts,
                F.least(F.lit(1.0), F.col("c.contracted_kwh") / F.col("r.energy_kwh")),
            )
            .otherwise(F.lit(0.0))
            .alias("covered_share"),
            F.when(has_contracts, F.col("c.contract_kg") / F.col("c.contracted_kwh"))
            .otherwise(F.lit(0.0))
            .alias("contract_factor"),
        )
    )


def _emissions(fits: DataFrame, grid: DataFrame, coverage: DataFrame) -> DataFrame:
    """LBM and MBM point forecasts and bounds from energy, intensities, g_r, c and f."""
    g = F.coalesce(F.col("grid_multiplier"), F.lit(1.0))
    c = F.coalesce(F.col("covered_share"), F.lit(0.0))
    f = F.coalesce(F.col("contract_factor"), F.lit(0.0))
    s2lbm, other = F.col("s2lbm_intensity"), F.col("other_intensity")
    lbm_per_kwh = other + s2lbm * g
    mbm_per_kwh = other + (1 - c) * s2lbm * g + c * f
    energy, lower, upper = (
        F.col(n) for n in ("energy_kwh", "energy_lower_kwh", "energy_upper_kwh")
    )
    return (
        fits.withColumn("year", F.year("month"))
        .join(F.broadcast(grid), on=["region_code", "year"], how="left")
        .join(F.broadcast(coverage), on=["region_code", "month"], how="left")
        .select(
            *SERIES_KEYS,
            "month",
            "run",
            "method",
            "history_months",
            "energy_kwh",
            (energy * lbm_per_kwh).alias("total_lbm_kg"),
            (lower * lbm_per_kwh).alias("lbm_lower_kg"),
            (upper * lbm_per_kwh).alias("lbm_upper_kg"),
            (energy * mbm_per_kwh).alias("total_mbm_kg"),
            (lower * mbm_per_kwh).alias("mbm_lower_kg"),
            (upper * mbm_per_kwh).alias("mbm_upper_kg"),
            c.alias("covered_share"),
        )
    )


def _same_series(left: str, right: str, extra: Sequence[str] = ()) -> Column:
    # Null-safe: a null key must match itself rather than silently drop the series.
    return reduce(
        lambda a, b: a & b,
        [F.col(f"{left}.{k}").eqNullSafe(F.col(f"{right}.{k}")) for k in (*SERIES_KEYS, *extra)],
    )


def backtest_mape(backtest: DataFrame, history: DataFrame) -> DataFrame:
    """Per series, the held-out months and the MAPE (percent) of their LBM and MBM forecasts."""
    scored = backtest.alias("b").join(
        history.alias("h"), _same_series("b", "h", ("month",)), "left"
    )

    def percent_error(quantity: str) -> Column:
        actual = F.coalesce(F.col(f"h.{quantity}"), F.lit(0.0))
        error = F.abs(F.col(f"b.{quantity}") - actual) / F.abs(actual)
        return F.avg(F.when(actual != 0, error)) * 100

    return scored.groupBy(*[F.col(f"b.{k}").alias(k) for k in SERIES_KEYS]).agg(
        F.count_distinct("b.month").cast(T.IntegerType()).alias("holdout_months"),
        percent_error("total_lbm_kg").alias("backtest_mape_lbm"),
        percent_error("total_mbm_kg").alias("backtest_mape_mbm"),
    )


def _materialised(small: DataFrame) -> DataFrame:
    """A small aggregate (region x month) computed once, as a local table to broadcast."""
    return small.sparkSession.createDataFrame(small.collect(), small.schema)


@dataclass(frozen=True)
class ForecastTables:
    """gold/forecast and gold/forecast_backtest of one build (lazy frames)."""

    forecast: DataFrame  # schemas.FORECAST
    backtest: DataFrame  # schemas.FORECAST_BACKTEST: one row per forecast series


def build_forecast(
    account_emissions: DataFrame,
    site_monthly: DataFrame,
    energy_contracts: DataFrame,
    sites: DataFrame,
    grid_factors: DataFrame,
    settings: ForecastSettings,
) -> ForecastTables:
    """gold/forecast and its per-series backtest from the whole account_emissions history."""
    spark = account_emissions.sparkSession
    # Read by the fits and by the backtest's scoring.
    history = series_history(account_emissions).persist(StorageLevel.MEMORY_AND_DISK)
    latest = history.agg(F.max("month")).first()
    last_actual = latest[0] if latest is not None else None
    horizon_end = parse_month(settings.horizon_end)
    if last_actual is None:
        return ForecastTables(
            spark.createDataFrame([], schemas.FORECAST),
            spark.createDataFrame([], schemas.FORECAST_BACKTEST),
        )
    # The fits feed the region totals, the emissions and the backtest: fit each series once.
    fits = fit_series(
        history, last_actual=last_actual, horizon_end=horizon_end, settings=settings
    ).persist(StorageLevel.MEMORY_AND_DISK)
    first_month = shift_month(last_actual, 1 - settings.holdout_months)
    years = list(range(first_month.year, max(horizon_end.year, last_actual.year) + 1))
    grid = grid_multipliers(site_monthly, grid_factors, last_actual=last_actual, years=years)
    region_energy = fits.groupBy("region_code", "month").agg(
        F.sum("energy_kwh").alias("energy_kwh")
    )
    coverage = _materialised(
        contract_coverage(
            energy_contracts, sites, site_monthly, region_energy, last_actual=last_actual
        )
    )
    emissions = _emissions(fits, grid, coverage)
    holdout = history.where(F.col("month") >= F.lit(first_month))
    # Joined to both tables: score each series once.
    mape = backtest_mape(emissions.where(F.col("run") == RUN_BACKTEST), holdout).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    forecast = emissions.where(F.col("run") == RUN_FORECAST).alias("f")
    forecast_table = (
        forecast.join(mape.alias("m"), _same_series("f", "m"), how="left")
        .select(
            *[F.col(f"f.{k}").alias(k) for k in SERIES_KEYS],
            F.col("f.month").alias("month"),
            F.col("f.method").alias("method"),
            F.col("f.history_months").cast(T.IntegerType()).alias("history_months"),
            F.lit(last_actual).alias("last_actual_month"),
            F.lit(settings.interval_level).cast(T.DoubleType()).alias("interval_level"),
            *[
                F.col(f"f.{c}").alias(c)
                for c in ("energy_kwh", *schemas.FORECAST_BANDS, "covered_share")
            ],
            F.col("m.backtest_mape_lbm").alias("backtest_mape_lbm"),
            F.col("m.backtest_mape_mbm").alias("backtest_mape_mbm"),
        )
        .transform(conform, schemas.FORECAST)
    )
    # The series of gold/forecast, with the method of their forecast run.
    series = fits.where(F.col("run") == RUN_FORECAST).select(*SERIES_KEYS, "method").distinct()
    backtest_table = (
        series.alias("s")
        .join(mape.alias("m"), _same_series("s", "m"), how="left")
        .select(
            *[F.col(f"s.{k}").alias(k) for k in SERIES_KEYS],
            F.col("s.method").alias("method"),
            F.lit(last_actual).alias("last_actual_month"),
            F.coalesce(F.col("m.holdout_months"), F.lit(0)).alias("holdout_months"),
            F.col("m.backtest_mape_lbm").alias("backtest_mape_lbm"),
            F.col("m.backtest_mape_mbm").alias("backtest_mape_mbm"),
        )
        .transform(conform, schemas.FORECAST_BACKTEST)
    )
    return ForecastTables(forecast_table, backtest_table)


def backtest_summary(backtest: DataFrame, settings: ForecastSettings) -> dict[str, Any]:
    """Holdout months, series counts by method and median MAPE of gold/forecast_backtest."""
    by_method = {
        r["method"]: r["series"]
        for r in backtest.groupBy("method").agg(F.count(F.lit(1)).alias("series")).collect()
    }
    totals = backtest.agg(
        F.max("last_actual_month").alias("last_actual"),
        F.count("backtest_mape_lbm").alias("scored_lbm"),
        F.count("backtest_mape_mbm").alias("scored_mbm"),
        # Exact, interpolated between the two middle values like statistics.median.
        F.median("backtest_mape_lbm").alias("median_lbm"),
        F.median("backtest_mape_mbm").alias("median_mbm"),
    ).first()
    last_actual = totals["last_actual"] if totals is not None else None
    holdout = (
        month_range(shift_month(last_actual, 1 - settings.holdout_months), last_actual)
        if last_actual
        else []
    )
    return {
        "last_actual_month": f"{last_actual:%Y-%m}" if last_actual else None,
        "holdout_months": [f"{m:%Y-%m}" for m in holdout],
        "horizon_end": settings.horizon_end,
        "interval_level": settings.interval_level,
        "mape_unit": "percent",
        "series": sum(by_method.values()),
        "series_by_method": dict(sorted(by_method.items())),
        "series_scored": {
            "lbm": totals["scored_lbm"] if totals else 0,
            "mbm": totals["scored_mbm"] if totals else 0,
        },
        "median_mape_lbm": totals["median_lbm"] if totals else None,
        "median_mape_mbm": totals["median_mbm"] if totals else None,
    }


def summary_line(summary: dict[str, Any]) -> str:
    """One line for the run log: series by method and the median backtest MAPE."""

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}%"

    methods = ", ".join(f"{m} {n}" for m, n in summary["series_by_method"].items()) or "none"
    return (
        f"forecast: {summary['series']} series to {summary['horizon_end']} ({methods}); "
        f"backtest on {len(summary['holdout_months'])} held-out month(s): median MAPE "
        f"LBM {pct(summary['median_mape_lbm'])}, MBM {pct(summary['median_mape_mbm'])} "
        f"({summary['series_scored']['lbm']} series scored)"
    )


def write_forecast(
    spark: SparkSession,
    lake: tables.Lake,
    *,
    settings: ForecastSettings,
    grid_factors: DataFrame,
) -> dict[str, Any]:
    """Rebuild gold/forecast and gold/forecast_backtest from the lake; the backtest summary."""
    built = build_forecast(
        read_published(spark, lake, tables.ACCOUNT_EMISSIONS),
        read_published(spark, lake, tables.SITE_MONTHLY),
        read_bronze(spark, lake, "energy_contracts"),
        read_bronze(spark, lake, "sites"),
        grid_factors,
        settings,
    )
    tables.overwrite_lake_table(built.forecast, lake, tables.FORECAST)
    tables.overwrite_lake_table(built.backtest, lake, tables.FORECAST_BACKTEST)
    # Summarise the written table rather than recompute the fits.
    return backtest_summary(tables.read_lake_table(spark, lake, tables.FORECAST_BACKTEST), settings)
