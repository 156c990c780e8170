"""Scope 1 per site-month (docs/methodology.md §6.1): fuel x fuel factors, provisional rule."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from carbon_core.calendar import MONTH, spread_over_months

SCOPE1_COLUMNS: tuple[str, ...] = ("site_id", MONTH, "scope1_kg", "provisional")


def _fuel_key(col: str) -> Column:
    # Case and surrounding blanks are not meaningful in a fuel or unit name.
    return F.lower(F.trim(F.col(col)))


def fuel_emissions_by_month(fuel_records: DataFrame, fuel_factors: DataFrame) -> DataFrame:
    """Actual Scope 1 per site and calendar month (every month any record touches)."""
    factors = fuel_factors.select(
        _fuel_key("source_type").alias("source_type"),
        _fuel_key("unit").alias("unit"),
        F.col("kg_per_unit").cast("double").alias("kg_per_unit"),
    ).dropDuplicates(["source_type", "unit"])
    records = fuel_records.select(
        "site_id",
        "period_start",
        "period_end",
        _fuel_key("source_type").alias("source_type"),
        _fuel_key("unit").alias("unit"),
        F.col("quantity").cast("double").alias("quantity"),
    )
    # Unknown (source_type, unit) pairs were quarantined at ingestion; inner join defensively.
    emissions = records.join(F.broadcast(factors), on=["source_type", "unit"], how="inner").select(
        "site_id",
        "period_start",
        "period_end",
        (F.col("quantity") * F.col("kg_per_unit")).alias("scope1_kg"),
    )
    return (
        spread_over_months(emissions, value_columns=("scope1_kg",))
        .groupBy("site_id", MONTH)
        .agg(F.sum("scope1_kg").alias("scope1_kg"))
    )


def fuel_record_years(fuel_records: DataFrame) -> DataFrame:
    """(site_id, year) for every calendar year a site's fuel record of any kind overlaps."""
    periods = fuel_records.select("site_id", "period_start", "period_end")
    return (
        spread_over_months(periods, value_columns=())
        .select("site_id", F.year(MONTH).alias("year"))
        .distinct()
    )


def scope1_site_months(
    site_months: DataFrame, fuel_records: DataFrame, fuel_factors: DataFrame
) -> DataFrame:
    """Scope 1 and `provisional` per (site_id, month) of `site_months`.

    A year without any record of the site takes, month by month, the site's actual
    Scope 1 of the same calendar month in the most recent earlier year with a record
    (provisional, even when 0); with no such year, 0 and not provisional.
    `fuel_records` must hold all the records (not only the run's months).
    """
    actual = fuel_emissions_by_month(fuel_records, fuel_factors)
    record_years = fuel_record_years(fuel_records)
    sm = site_months.select("site_id", MONTH, F.year(MONTH).alias("year"))
    site_years = sm.select("site_id", "year").distinct()
    ry = record_years.select(F.col("site_id").alias("r_site_id"), F.col("year").alias("r_year"))
    source_year = (
        site_years.join(
            ry,
            on=(F.col("site_id") == F.col("r_site_id")) & (F.col("r_year") <= F.col("year")),
            how="inner",
        )
        .groupBy("site_id", "year")
        .agg(F.max("r_year").alias("source_year"))
    )
    with_source = sm.join(source_year, on=["site_id", "year"], how="left")
    # A source year before the month's own year means the year itself has no record.
    provisional = F.coalesce(F.col("source_year") < F.col("year"), F.lit(False))
    # The month whose actuals are used: the month itself, or the same calendar month of
    # the source year (null when there is no source year: 0).
    source_month = F.when(
        F.col("source_year").isNotNull(),
        F.make_date(F.col("source_year"), F.month(MONTH), F.lit(1)),
    )
    a = actual.select(
        F.col("site_id").alias("a_site_id"),
        F.col(MONTH).alias("a_month"),
        F.col("scope1_kg"),
    )
    keyed = with_source.withColumn("_source_month", source_month).withColumn(
        "_provisional", provisional
    )
    joined = keyed.join(
        a,
        on=(F.col("site_id") == F.col("a_site_id")) & (F.col("_source_month") == F.col("a_month")),
        how="left",
    )
    return joined.select(
        "site_id",
        MONTH,
        F.coalesce(F.col("scope1_kg"), F.lit(0.0)).alias("scope1_kg"),
        F.col("_provisional").alias("provisional"),
    )
