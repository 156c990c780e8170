"""Building embodied carbon per site-month (docs/methodology.md §6.2, the building part)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from carbon_core.calendar import MONTH, month_of


def building_embodied_by_month(
    site_months: DataFrame, sites: DataFrame, *, lifetime_months: int
) -> DataFrame:
    """(site_id, month, scope3_kg): embodied / lifetime in each of the lifetime months from
    the month of building_in_service_date (full amount in the first and last month); no
    date or no embodied value: 0."""
    buildings = sites.select(
        "site_id",
        F.coalesce(F.col("building_embodied_kgco2e").cast("double"), F.lit(0.0)).alias("embodied"),
        month_of("building_in_service_date").alias("first_month"),
    )
    joined = site_months.select("site_id", MONTH).join(
        F.broadcast(buildings), on="site_id", how="left"
    )
    age = F.months_between(F.col(MONTH), F.col("first_month")).cast("int")
    in_life = F.col("first_month").isNotNull() & (age >= 0) & (age < F.lit(lifetime_months))
    monthly = F.col("embodied") / F.lit(float(lifetime_months))
    return joined.select(
        "site_id", MONTH, F.when(in_life, monthly).otherwise(F.lit(0.0)).alias("scope3_kg")
    )


def sites_without_building_date(sites: DataFrame) -> DataFrame:
    """Sites that get no building Scope 3 because building_in_service_date is empty."""
    return sites.filter(F.col("building_in_service_date").isNull()).select(
        "site_id",
        F.col("building_embodied_kgco2e").cast("double").alias("building_embodied_kgco2e"),
    )
