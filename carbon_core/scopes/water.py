"""Water withdrawn per site-month (docs/methodology.md §6.4)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from carbon_core.calendar import MONTH, spread_over_months


def water_by_month(site_water: DataFrame) -> DataFrame:
    """(site_id, month, water_l): withdrawal_l spread over months and summed per site."""
    periods = site_water.select("site_id", "period_start", "period_end", "withdrawal_l")
    return (
        spread_over_months(periods, value_columns=("withdrawal_l",))
        .groupBy("site_id", MONTH)
        .agg(F.sum("withdrawal_l").alias("water_l"))
    )
