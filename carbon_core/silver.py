"""silver/site_monthly, silver/instrument_surplus and gold/cluster_efficiency.

One row per site of `sites` and month of the run: energy (invoices + gap filling),
location factor with lineage, market-based lineage, Scope 1 (with the provisional
rule), building Scope 3, Scope 2 LBM/MBM and water, by docs/methodology.md §2 to §6.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from carbon_core import schemas
from carbon_core.calendar import MONTH, months_frame
from carbon_core.config import MethodologySettings
from carbon_core.energy.site_energy import (
    gap_filled_energy,
    invoice_energy_by_month,
    invoice_quarantine,
    overlaps_months,
    price_invoices,
    site_hourly_it,
    site_month_energy,
)
from carbon_core.factors.codes import resolve_site_codes
from carbon_core.factors.resolve import (
    attach_market_zones,
    resolve_location_factors,
    resolve_residual_mix,
)
from carbon_core.reference import ReferenceTables
from carbon_core.schemas import conform
from carbon_core.scopes.scope1 import scope1_site_months
from carbon_core.scopes.scope2 import ANNUAL, check_annual_months, location_based, market_based
from carbon_core.scopes.scope3 import building_embodied_by_month, sites_without_building_date
from carbon_core.scopes.water import water_by_month


@dataclass(frozen=True)
class SiteMonthlyResult:
    """The silver tables of a run, the invoices rejected on the way, and data for warnings."""

    site_monthly: DataFrame  # schemas.SITE_MONTHLY, one row per site x run month
    instrument_surplus: DataFrame  # schemas.INSTRUMENT_SURPLUS, positive surpluses only
    invoice_quarantine: DataFrame  # schemas.QUARANTINE, stage "site_energy"
    cluster_efficiency: DataFrame  # schemas.CLUSTER_EFFICIENCY, cluster x run month
    sites_without_building_date: DataFrame  # site_id, building_embodied_kgco2e: the run warns


def cluster_efficiency(site_monthly: DataFrame) -> DataFrame:
    """Per cluster and month: facility and IT energy, water, PUE and WUE (null when IT is 0)."""
    sums = site_monthly.groupBy(MONTH, "cluster_id").agg(
        F.sum("energy_kwh").alias("facility_energy_kwh"),
        F.sum("it_energy_kwh").alias("it_energy_kwh"),
        F.sum("water_l").alias("water_l"),
    )
    has_it = F.col("it_energy_kwh") > 0
    return conform(
        sums.withColumns(
            {
                "pue": F.when(has_it, F.col("facility_energy_kwh") / F.col("it_energy_kwh")),
                "wue_l_per_kwh": F.when(has_it, F.col("water_l") / F.col("it_energy_kwh")),
            }
        ),
        schemas.CLUSTER_EFFICIENCY,
    )


def build_site_monthly(
    *,
    sites: DataFrame,
    racks: DataFrame,
    rack_telemetry: DataFrame,
    utility_invoices: DataFrame,
    electricity_prices: DataFrame,
    fuel_records: DataFrame,
    energy_contracts: DataFrame,
    site_water: DataFrame,
    reference: ReferenceTables,
    months: Sequence[dt.date],
    methodology: MethodologySettings,
) -> SiteMonthlyResult:
    """Site-month quantities of the run's months from bronze (docs/methodology.md §2 to §6)."""
    if not months:
        raise ValueError("build_site_monthly needs at least one month")
    if methodology.market_matching == ANNUAL:
        check_annual_months(months)
    month_df = months_frame(sites.sparkSession, months)
    years = month_df.select(F.year(MONTH).alias("year")).distinct()

    # docs/methodology.md §4: codes, eGRID subregion, market boundary, factors.
    # Small intermediates (sites, site-months) that several branches read are cached: the
    # plan is analysed and run once instead of once per branch.
    zones = attach_market_zones(resolve_site_codes(sites), reference.zip_to_egrid).cache()
    site_months = zones.select("site_id", "cluster_id", "market_boundary").crossJoin(
        F.broadcast(month_df)
    )
    location = resolve_location_factors(zones, reference.grid_factors, years)
    residual = resolve_residual_mix(zones, reference.residual_mix, years)

    # docs/methodology.md §3: site energy.
    run_invoices = overlaps_months(utility_invoices, month_df)
    priced = price_invoices(run_invoices, zones, electricity_prices).cache()
    hourly_it = site_hourly_it(rack_telemetry, racks, month_df)
    gaps = gap_filled_energy(
        hourly_it, priced, sites, default_design_pue=methodology.default_design_pue
    )
    energy = site_month_energy(
        site_months.select("site_id", MONTH), invoice_energy_by_month(priced), gaps
    )

    with_factors = (
        site_months.join(energy, on=["site_id", MONTH], how="left")
        .withColumn("year", F.year(MONTH))
        .join(F.broadcast(location), on=["site_id", "year"], how="left")
        .cache()
    )

    # docs/methodology.md §5: market-based Scope 2.
    market = market_based(
        with_factors.select("site_id", MONTH, "energy_kwh", "market_boundary", "location_factor"),
        energy_contracts,
        residual,
        month_df,
        matching=methodology.market_matching,
    )

    # docs/methodology.md §6: Scope 1, building Scope 3, water.
    keys = site_months.select("site_id", MONTH)
    scope1 = scope1_site_months(keys, fuel_records, reference.fuel_factors)
    scope3 = building_embodied_by_month(
        keys, sites, lifetime_months=methodology.building_lifetime_months
    )
    water = water_by_month(site_water)

    assembled = (
        with_factors.join(market.site_months, on=["site_id", MONTH], how="left")
        .join(scope1, on=["site_id", MONTH], how="left")
        .join(scope3, on=["site_id", MONTH], how="left")
        .join(water, on=["site_id", MONTH], how="left")
    )
    zero = F.lit(0.0)
    site_monthly = conform(
        assembled.withColumns(
            {
                "scope2_lbm_kg": location_based("energy_kwh", "location_factor"),
                "water_l": F.coalesce("water_l", zero),
                "scope1_kg": F.coalesce("scope1_kg", zero),
                "scope3_kg": F.coalesce("scope3_kg", zero),
                "provisional": F.coalesce("provisional", F.lit(False)),
            }
        ),
        schemas.SITE_MONTHLY,
    ).cache()
    return SiteMonthlyResult(
        site_monthly=site_monthly,
        instrument_surplus=conform(market.surplus, schemas.INSTRUMENT_SURPLUS),
        invoice_quarantine=conform(invoice_quarantine(priced, month_df), schemas.QUARANTINE),
        cluster_efficiency=cluster_efficiency(site_monthly),
        sites_without_building_date=sites_without_building_date(sites),
    )
