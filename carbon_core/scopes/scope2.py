"""Scope 2 per site-month: location-based and market-based (docs/methodology.md §4 and §5).

Market-based hierarchy: the site's own instruments first (one pool per site and
period), then the boundary's instruments shared pro rata to the sites' still
uncovered energy, then the boundary's residual mix, else the location factor.
The matching period is the month, or the calendar year with annual matching;
leftover instrument kWh is reported as surplus and never carried over.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from carbon_core import schemas
from carbon_core.calendar import MONTH, spread_over_months
from carbon_core.errors import CarbonlakeError
from carbon_core.factors.codes import normalise_code

MONTHLY, ANNUAL = "monthly", "annual"
MONTHS_PER_YEAR = 12
PERIOD = "_period"

MARKET_COLUMNS: tuple[str, ...] = (
    "site_id",
    MONTH,
    "site_covered_kwh",
    "boundary_covered_kwh",
    "residual_mix_kwh",
    "location_fallback_kwh",
    "scope2_mbm_kg",
)


@dataclass(frozen=True)
class MarketBasedResult:
    """Per site-month MBM lineage and Scope 2 MBM, and the unused instrument kWh."""

    site_months: DataFrame  # MARKET_COLUMNS
    surplus: DataFrame  # schemas.INSTRUMENT_SURPLUS


def check_annual_months(months: Sequence[dt.date]) -> None:
    """Annual matching needs all twelve months of every year the run touches."""
    present: dict[int, set[int]] = {}
    for m in months:
        present.setdefault(m.year, set()).add(m.month)
    incomplete = {
        year: sorted(set(range(1, MONTHS_PER_YEAR + 1)) - got)
        for year, got in sorted(present.items())
        if len(got) < MONTHS_PER_YEAR
    }
    if incomplete:
        detail = "; ".join(
            f"{year}: missing {', '.join(f'{year}-{m:02d}' for m in missing)}"
            for year, missing in incomplete.items()
        )
        raise CarbonlakeError(
            "market_matching 'annual' needs every month of each year in the run ("
            + detail
            + "); run whole calendar years or use monthly matching"
        )


def location_based(energy_kwh: str | Column, location_factor: str | Column) -> Column:
    """Scope 2 location-based kg: energy x location factor (0 when no factor resolved)."""
    energy = F.col(energy_kwh) if isinstance(energy_kwh, str) else energy_kwh
    factor = F.col(location_factor) if isinstance(location_factor, str) else location_factor
    return F.coalesce(energy * factor, F.lit(0.0))


def _period(matching: str) -> Column:
    if matching == ANNUAL:
        return F.make_date(F.year(MONTH), F.lit(1), F.lit(1))
    return F.col(MONTH)


def _pools(contracts: DataFrame, months: DataFrame, matching: str) -> DataFrame:
    """Instruments of the run months per (site_id, market_boundary, period): kWh, factor x kWh."""
    normalised = contracts.select(
        normalise_code("site_id").alias("_site_key"),
        F.col("site_id"),
        normalise_code("market_boundary").alias("market_boundary"),
        "period_start",
        "period_end",
        F.col("energy_kwh").cast("double").alias("pool_kwh"),
        (F.col("energy_kwh") * F.col("emission_factor_kg_per_kwh")).alias("pool_kg"),
    )
    site_bound = F.col("_site_key").isNotNull()
    spread = spread_over_months(normalised, value_columns=("pool_kwh", "pool_kg")).join(
        F.broadcast(months), on=MONTH, how="left_semi"
    )
    keyed = spread.select(
        F.when(site_bound, F.col("site_id")).alias("site_id"),
        # A contract with a site_id is site-bound, whatever its market_boundary says.
        F.when(~site_bound, F.col("market_boundary")).alias("market_boundary"),
        _period(matching).alias(PERIOD),
        "pool_kwh",
        "pool_kg",
    ).filter(F.col("site_id").isNotNull() | F.col("market_boundary").isNotNull())
    return keyed.groupBy("site_id", "market_boundary", PERIOD).agg(
        F.sum("pool_kwh").alias("pool_kwh"), F.sum("pool_kg").alias("pool_kg")
    )


def _pool_factor(kwh: str, kg: str) -> Column:
    # Energy-weighted mean of the instruments' factors; irrelevant when the pool is empty.
    return F.when(F.col(kwh) > 0, F.col(kg) / F.col(kwh)).otherwise(F.lit(0.0))


def _annual_share(covered: str) -> Column:
    # A month's covered kWh: its energy times the year's covered share.
    has_energy = F.col("period_kwh") > 0
    share = F.col(covered) / F.col("period_kwh")
    return F.when(has_energy, F.col("energy_kwh") * share).otherwise(F.lit(0.0))


def market_based(
    site_energy: DataFrame,
    energy_contracts: DataFrame,
    residual_factors: DataFrame,
    months: DataFrame,
    *,
    matching: str = MONTHLY,
) -> MarketBasedResult:
    """Scope 2 market-based per site-month and instrument surplus.

    `site_energy`: site_id, month, energy_kwh, market_boundary, location_factor (one row
    per site-month of the run). `residual_factors`: market_boundary, year, residual_factor.
    `months`: the run's months (annual matching needs whole years: see check_annual_months).
    """
    if matching not in (MONTHLY, ANNUAL):
        raise CarbonlakeError(f"unknown market_matching {matching!r}: expected monthly or annual")
    pools = _pools(energy_contracts, months, matching)
    site_pools = pools.filter(F.col("site_id").isNotNull()).select(
        "site_id", PERIOD, F.col("pool_kwh").alias("s_kwh"), F.col("pool_kg").alias("s_kg")
    )
    boundary_pools = pools.filter(F.col("site_id").isNull()).select(
        "market_boundary", PERIOD, F.col("pool_kwh").alias("b_kwh"), F.col("pool_kg").alias("b_kg")
    )
    energy = site_energy.select(
        "site_id",
        MONTH,
        F.coalesce(F.col("energy_kwh"), F.lit(0.0)).alias("energy_kwh"),
        "market_boundary",
        "location_factor",
        _period(matching).alias(PERIOD),
    )
    # Energy of each site over the matching period (the month itself, or its year).
    period_energy = energy.groupBy("site_id", "market_boundary", PERIOD).agg(
        F.sum("energy_kwh").alias("period_kwh")
    )

    # 1. Site-bound pool: covered = min(pool, site energy).
    step1 = period_energy.join(site_pools, on=["site_id", PERIOD], how="left").select(
        "site_id",
        "market_boundary",
        PERIOD,
        "period_kwh",
        F.least(F.coalesce("s_kwh", F.lit(0.0)), F.col("period_kwh")).alias("p_site_covered"),
        _pool_factor("s_kwh", "s_kg").alias("site_pool_factor"),
    )
    site_surplus = site_pools.join(
        period_energy.select("site_id", PERIOD, "period_kwh"), on=["site_id", PERIOD], how="left"
    ).select(
        PERIOD,
        "site_id",
        F.lit(None).cast(T.StringType()).alias("market_boundary"),
        (F.col("s_kwh") - F.least(F.col("s_kwh"), F.coalesce("period_kwh", F.lit(0.0)))).alias(
            "surplus_kwh"
        ),
    )

    # 2. Boundary-wide pool shared pro rata to the still uncovered energy of all its sites.
    uncovered = F.col("period_kwh") - F.col("p_site_covered")
    with_uncovered = step1.withColumn("p_uncovered", uncovered)
    boundary_need = (
        with_uncovered.filter(F.col("market_boundary").isNotNull())
        .groupBy("market_boundary", PERIOD)
        .agg(F.sum("p_uncovered").alias("boundary_uncovered"))
    )
    boundary = boundary_pools.join(boundary_need, on=["market_boundary", PERIOD], how="full_outer")
    b_kwh = F.coalesce(F.col("b_kwh"), F.lit(0.0))
    b_need = F.coalesce(F.col("boundary_uncovered"), F.lit(0.0))
    boundary_shares = boundary.select(
        "market_boundary",
        PERIOD,
        F.when(b_need > 0, F.least(F.lit(1.0), b_kwh / b_need))
        .otherwise(F.lit(0.0))
        .alias("b_share"),
        _pool_factor("b_kwh", "b_kg").alias("boundary_pool_factor"),
        F.greatest(b_kwh - b_need, F.lit(0.0)).alias("b_surplus"),
    )
    step2 = with_uncovered.join(boundary_shares, on=["market_boundary", PERIOD], how="left").select(
        "site_id",
        PERIOD,
        "period_kwh",
        "p_site_covered",
        (F.col("p_uncovered") * F.coalesce("b_share", F.lit(0.0))).alias("p_boundary_covered"),
        "site_pool_factor",
        F.coalesce("boundary_pool_factor", F.lit(0.0)).alias("boundary_pool_factor"),
    )
    boundary_surplus = boundary_shares.filter(F.col("b_surplus") > 0).select(
        PERIOD,
        F.lit(None).cast(T.StringType()).alias("site_id"),
        "market_boundary",
        F.col("b_surplus").alias("surplus_kwh"),
    )

    # Back to months: with monthly matching the period is the month; with annual matching
    # each month gets the year's covered shares.
    monthly = energy.join(step2, on=["site_id", PERIOD], how="left")
    if matching == MONTHLY:
        site_covered = F.col("p_site_covered")
        boundary_covered = F.col("p_boundary_covered")
    else:
        site_covered = _annual_share("p_site_covered")
        boundary_covered = _annual_share("p_boundary_covered")
    covered = monthly.select(
        "site_id",
        MONTH,
        "energy_kwh",
        "market_boundary",
        "location_factor",
        F.coalesce(site_covered, F.lit(0.0)).alias("site_covered_kwh"),
        F.coalesce(boundary_covered, F.lit(0.0)).alias("boundary_covered_kwh"),
        F.coalesce("site_pool_factor", F.lit(0.0)).alias("site_pool_factor"),
        "boundary_pool_factor",
    )

    # 3. The rest: the boundary's residual mix, else the site's location factor.
    residual = residual_factors.select(
        "market_boundary", F.col("year").cast("int").alias("_year"), "residual_factor"
    )
    rest = F.greatest(
        F.col("energy_kwh") - F.col("site_covered_kwh") - F.col("boundary_covered_kwh"), F.lit(0.0)
    )
    has_mix = F.col("residual_factor").isNotNull()
    final = covered.withColumn("_year", F.year(MONTH)).join(
        F.broadcast(residual), on=["market_boundary", "_year"], how="left"
    )
    residual_kwh = F.when(has_mix, rest).otherwise(F.lit(0.0))
    fallback_kwh = F.when(has_mix, F.lit(0.0)).otherwise(rest)
    mbm = (
        F.col("site_covered_kwh") * F.col("site_pool_factor")
        + F.col("boundary_covered_kwh") * F.coalesce("boundary_pool_factor", F.lit(0.0))
        + F.col("residual_mix_kwh") * F.coalesce("residual_factor", F.lit(0.0))
        + F.col("location_fallback_kwh") * F.coalesce("location_factor", F.lit(0.0))
    )
    site_months = (
        final.withColumns({"residual_mix_kwh": residual_kwh, "location_fallback_kwh": fallback_kwh})
        .withColumn("scope2_mbm_kg", mbm)
        .select(*MARKET_COLUMNS)
    )
    surplus = (
        site_surplus.filter(F.col("surplus_kwh") > 0)
        .unionByName(boundary_surplus)
        .select(
            F.col(PERIOD).alias(MONTH),
            F.col("site_id"),
            F.col("market_boundary"),
            F.col("surplus_kwh"),
        )
    )
    return MarketBasedResult(
        site_months=site_months, surplus=surplus.select(*schemas.INSTRUMENT_SURPLUS.fieldNames())
    )
