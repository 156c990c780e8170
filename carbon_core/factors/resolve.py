"""Emission-factor resolution (docs/methodology.md §4 and §5).

Levels, most precise first: eGRID subregion (US sites, by ZIP), subdivision,
country, global. The most precise level that has a factor for any year wins;
within it the activity year, else the nearest earlier year, else the nearest
later year. Reference tables are small and broadcast.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from carbon_core.factors.codes import normalise_code

LEVEL_EGRID = "egrid_subregion"
LEVEL_SUBDIVISION = "subdivision"
LEVEL_COUNTRY = "country"
LEVEL_GLOBAL = "global"
# Rank = precision order: lower wins.
LEVEL_RANKS: dict[str, int] = {
    LEVEL_EGRID: 0,
    LEVEL_SUBDIVISION: 1,
    LEVEL_COUNTRY: 2,
    LEVEL_GLOBAL: 3,
}
# Year preference classes: exact year, then earlier years, then later years.
_SAME_YEAR, _EARLIER_YEAR, _LATER_YEAR = 0, 1, 2

LOCATION_FACTOR_COLUMNS: tuple[str, ...] = (
    "site_id",
    "year",
    "factor_level",
    "factor_zone",
    "factor_year",
    "factor_source",
    "location_factor",
)


def year_preference(activity_year: str | Column, candidate_year: str | Column) -> list[Column]:
    """Sort keys choosing the activity year, else nearest earlier, else nearest later."""
    activity = F.col(activity_year) if isinstance(activity_year, str) else activity_year
    candidate = F.col(candidate_year) if isinstance(candidate_year, str) else candidate_year
    kind = (
        F.when(candidate == activity, F.lit(_SAME_YEAR))
        .when(candidate < activity, F.lit(_EARLIER_YEAR))
        .otherwise(F.lit(_LATER_YEAR))
    )
    return [kind, F.abs(activity - candidate)]


def nearest_year(
    df: DataFrame,
    *,
    keys: Sequence[str],
    activity_year: str,
    candidate_year: str,
    tiebreak: Sequence[str] = (),
) -> DataFrame:
    """Keep, per `keys`, the candidate row whose year is preferred by `year_preference`."""
    order = [*year_preference(activity_year, candidate_year), *[F.col(c) for c in tiebreak]]
    window = Window.partitionBy(*keys).orderBy(*order)
    return (
        df.withColumn("_year_rank", F.row_number().over(window))
        .filter(F.col("_year_rank") == 1)
        .drop("_year_rank")
    )


def zip_lookup(zip_to_egrid: DataFrame) -> DataFrame:
    """Normalised, one-row-per-ZIP lookup (postal_zip5, egrid_subregion)."""
    return (
        zip_to_egrid.select(
            F.lpad(F.trim("postal_code"), 5, "0").alias("postal_zip5"),
            normalise_code("egrid_subregion").alias("egrid_subregion"),
        )
        .filter(F.col("egrid_subregion").isNotNull())
        # A replacement table might map a ZIP twice: take one deterministically.
        .groupBy("postal_zip5")
        .agg(F.min("egrid_subregion").alias("egrid_subregion"))
    )


def attach_market_zones(site_codes: DataFrame, zip_to_egrid: DataFrame) -> DataFrame:
    """Add `egrid_subregion` (US sites, by ZIP) and `market_boundary` (eGRID, else country)."""
    zips = zip_lookup(zip_to_egrid)
    with_egrid = site_codes.join(F.broadcast(zips), on="postal_zip5", how="left")
    return with_egrid.withColumn(
        "market_boundary", F.coalesce(F.col("egrid_subregion"), F.col("country_code"))
    )


def _normalised_grid(grid_factors: DataFrame) -> DataFrame:
    level = F.lower(F.trim("level"))
    rank = F.lit(None).cast("int")
    for name, value in LEVEL_RANKS.items():
        rank = F.when(level == F.lit(name), F.lit(value)).otherwise(rank)
    return grid_factors.select(
        level.alias("level"),
        rank.alias("level_rank"),
        normalise_code("zone").alias("zone"),
        F.col("year").cast("int").alias("factor_year"),
        F.col("kg_per_kwh").cast("double").alias("kg_per_kwh"),
        F.col("source").alias("source"),
    ).filter(F.col("level_rank").isNotNull() & F.col("factor_year").isNotNull())


def resolve_location_factors(
    site_zones: DataFrame, grid_factors: DataFrame, years: DataFrame
) -> DataFrame:
    """Per site and activity year (column `year` of `years`): the location factor and its lineage.

    `site_zones` needs site_id, egrid_subregion, subdivision_code, country_code. A site
    with no factor at any level (a grid table without a global row) has no output row.
    """
    candidates = site_zones.select(
        "site_id",
        F.array(
            F.struct(F.lit(LEVEL_EGRID).alias("level"), F.col("egrid_subregion").alias("zone")),
            F.struct(
                F.lit(LEVEL_SUBDIVISION).alias("level"), F.col("subdivision_code").alias("zone")
            ),
            F.struct(F.lit(LEVEL_COUNTRY).alias("level"), F.col("country_code").alias("zone")),
            F.struct(F.lit(LEVEL_GLOBAL).alias("level"), F.lit(None).cast("string").alias("zone")),
        ).alias("zones"),
    ).select("site_id", F.inline("zones"))
    grid = _normalised_grid(grid_factors).alias("g")
    c = candidates.alias("c")
    # Global rows apply to every site whatever their zone (WORLD in the shipped data).
    matches = (F.col("c.level") == F.col("g.level")) & (
        (F.col("c.zone") == F.col("g.zone")) | (F.col("c.level") == F.lit(LEVEL_GLOBAL))
    )
    rows = c.join(F.broadcast(grid), on=matches, how="inner").select(
        "c.site_id",
        "g.level",
        "g.level_rank",
        "g.zone",
        "g.factor_year",
        "g.kg_per_kwh",
        "g.source",
    )
    best_rank = F.min("level_rank").over(Window.partitionBy("site_id"))
    best_level = rows.withColumn("_best", best_rank).filter(F.col("level_rank") == F.col("_best"))
    per_year = best_level.crossJoin(F.broadcast(years.select(F.col("year").cast("int"))))
    chosen = nearest_year(
        per_year,
        keys=("site_id", "year"),
        activity_year="year",
        candidate_year="factor_year",
        tiebreak=("zone", "source"),
    )
    return chosen.select(
        "site_id",
        "year",
        F.col("level").alias("factor_level"),
        F.col("zone").alias("factor_zone"),
        "factor_year",
        F.col("source").alias("factor_source"),
        F.col("kg_per_kwh").alias("location_factor"),
    )


def resolve_residual_mix(
    boundaries: DataFrame, residual_mix: DataFrame, years: DataFrame
) -> DataFrame:
    """Per market boundary and year: the residual-mix factor (same year fallback as factors).

    Output: market_boundary, year, residual_factor, residual_year, residual_source; a
    boundary without any residual-mix row has no output row.
    """
    mix = residual_mix.select(
        normalise_code("zone").alias("market_boundary"),
        F.col("year").cast("int").alias("residual_year"),
        F.col("kg_per_kwh").cast("double").alias("residual_factor"),
        F.col("source").alias("residual_source"),
    ).filter(F.col("residual_year").isNotNull())
    distinct = boundaries.select("market_boundary").filter(F.col("market_boundary").isNotNull())
    rows = (
        distinct.distinct()
        .join(F.broadcast(mix), on="market_boundary", how="inner")
        .crossJoin(F.broadcast(years.select(F.col("year").cast("int"))))
    )
    chosen = nearest_year(
        rows,
        keys=("market_boundary", "year"),
        activity_year="year",
        candidate_year="residual_year",
        tiebreak=("residual_source",),
    )
    return chosen.select(
        "market_boundary", "year", "residual_factor", "residual_year", "residual_source"
    )
