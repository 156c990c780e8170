"""gold/region_benchmarks: per cluster and month, efficiency, factors, renewable coverage and
kg CO2e per unit of each foundational service; and the "greener region" ranking from it."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from carbon_core.schemas import (
    EDGE_KIND,
    EDGE_LOCATION,
    GREENER_REGIONS,
    REGION_BENCHMARKS,
    conform,
)

FOUNDATIONAL = "foundational"
LEVEL_SEPARATOR = ","
CLUSTER_KEYS: tuple[str, ...] = ("month", "cluster_id")
SERVICE_KEYS: tuple[str, ...] = (*CLUSTER_KEYS, "product_code")


def _per(numerator: Column, denominator: Column) -> Column:
    """numerator / denominator, null when the denominator is not positive (no basis)."""
    return F.when(denominator > 0, numerator / denominator)


def _levels(levels: Column) -> Column:
    """An array of factor levels as sorted distinct text, null when empty."""
    text = F.array_join(F.array_sort(F.array_distinct(levels)), LEVEL_SEPARATOR)
    return F.when(text != "", text)


def cluster_location(clusters: DataFrame) -> DataFrame:
    """(cluster_id, location, cluster_kind): edge clusters are reported as "Global"."""
    location = F.when(F.col("kind") == F.lit(EDGE_KIND), F.lit(EDGE_LOCATION)).otherwise(
        F.coalesce(F.col("name"), F.col("cluster_id"))
    )
    return clusters.select(
        "cluster_id", location.alias("location"), F.col("kind").alias("cluster_kind")
    )


def cluster_month_benchmarks(site_monthly: DataFrame, cluster_efficiency: DataFrame) -> DataFrame:
    """Per month x cluster: energy-weighted factors, covered share, estimated share, levels,
    provisional flag (from silver/site_monthly) and PUE/WUE (from gold/cluster_efficiency)."""
    energy = F.coalesce(F.col("energy_kwh"), F.lit(0.0))
    sums = site_monthly.groupBy(*CLUSTER_KEYS).agg(
        F.sum(energy).alias("energy_kwh"),
        F.sum(energy * F.coalesce(F.col("estimated_energy_share"), F.lit(0.0))).alias("_est_kwh"),
        F.sum(F.coalesce(F.col("scope2_lbm_kg"), F.lit(0.0))).alias("_lbm_kg"),
        F.sum(F.coalesce(F.col("scope2_mbm_kg"), F.lit(0.0))).alias("_mbm_kg"),
        F.sum(
            F.coalesce(F.col("site_covered_kwh"), F.lit(0.0))
            + F.coalesce(F.col("boundary_covered_kwh"), F.lit(0.0))
        ).alias("_covered_kwh"),
        F.collect_set("factor_level").alias("_levels"),
        F.coalesce(F.bool_or(F.col("provisional")), F.lit(False)).alias("provisional"),
    )
    efficiency = cluster_efficiency.select(*CLUSTER_KEYS, "pue", "wue_l_per_kwh")
    return sums.join(efficiency, on=list(CLUSTER_KEYS), how="left").select(
        *CLUSTER_KEYS,
        "energy_kwh",
        _per(F.col("_est_kwh"), F.col("energy_kwh")).alias("estimated_energy_share"),
        "pue",
        "wue_l_per_kwh",
        _per(F.col("_lbm_kg"), F.col("energy_kwh")).alias("location_factor_kg_per_kwh"),
        _per(F.col("_mbm_kg"), F.col("energy_kwh")).alias("market_factor_kg_per_kwh"),
        _per(F.col("_covered_kwh"), F.col("energy_kwh")).alias("covered_share"),
        _levels(F.col("_levels")).alias("factor_levels"),
        "provisional",
    )


def service_intensity(
    rack_utilisation: DataFrame, usage: DataFrame, service_catalog: DataFrame
) -> DataFrame:
    """Per month x cluster x foundational product hosted on the cluster's racks: the racks'
    LBM and MBM kg (scope 1 + scope 2 + scope 3) and the product's usage in that region in
    its allocation unit, with kg per unit (null without usage)."""
    foundational = service_catalog.where(F.col("kind") == F.lit(FOUNDATIONAL)).select(
        "product_code", "allocation_unit"
    )

    def q(name: str) -> Column:
        return F.coalesce(F.col(name), F.lit(0.0))

    services = (
        rack_utilisation.where(F.col("product_code").isNotNull())
        .groupBy(*SERVICE_KEYS)
        .agg(
            F.sum(q("scope1_kg") + q("scope2_lbm_kg") + q("scope3_kg")).alias("service_lbm_kg"),
            F.sum(q("scope1_kg") + q("scope2_mbm_kg") + q("scope3_kg")).alias("service_mbm_kg"),
        )
        .join(F.broadcast(foundational), on="product_code", how="inner")
    )
    amounts = (
        usage.join(F.broadcast(foundational), on="product_code", how="inner")
        .where(F.col("usage_unit") == F.col("allocation_unit"))
        .groupBy(
            F.trunc(F.to_date("usage_start"), "month").alias("month"),
            F.col("region_code").alias("cluster_id"),
            "product_code",
        )
        .agg(F.sum("usage_amount").alias("usage_amount"))
    )
    return services.join(amounts, on=list(SERVICE_KEYS), how="left").select(
        *SERVICE_KEYS,
        "allocation_unit",
        F.coalesce(F.col("usage_amount"), F.lit(0.0)).alias("usage_amount"),
        "service_lbm_kg",
        "service_mbm_kg",
        _per(F.col("service_lbm_kg"), F.col("usage_amount")).alias("lbm_kg_per_unit"),
        _per(F.col("service_mbm_kg"), F.col("usage_amount")).alias("mbm_kg_per_unit"),
    )


def build_region_benchmarks(
    site_monthly: DataFrame,
    cluster_efficiency: DataFrame,
    rack_utilisation: DataFrame,
    usage: DataFrame,
    service_catalog: DataFrame,
    clusters: DataFrame,
) -> DataFrame:
    """gold/region_benchmarks: one row per month x cluster (of site_monthly) x foundational
    product hosted there, cluster columns repeated; a cluster-month without such a product
    gets one row with null product columns."""
    per_cluster = cluster_month_benchmarks(site_monthly, cluster_efficiency).join(
        F.broadcast(cluster_location(clusters)), on="cluster_id", how="left"
    )
    per_service = service_intensity(rack_utilisation, usage, service_catalog)
    # A left join keeps the cluster-months without a product; products of a cluster-month
    # outside site_monthly (none by construction) would have no cluster figures to sit beside.
    return conform(
        per_cluster.join(per_service, on=list(CLUSTER_KEYS), how="left").withColumn(
            "location", F.coalesce(F.col("location"), F.col("cluster_id"))
        ),
        REGION_BENCHMARKS,
    )


def greener_regions(
    region_benchmarks: DataFrame, month_from: dt.date, month_to: dt.date
) -> DataFrame:
    """Per foundational product, clusters ranked by kg CO2e per unit over [month_from, month_to]
    (rank 1 = least; by MBM and by LBM; no rank without usage). Each cluster carries its
    energy-weighted estimated_energy_share, factor levels and provisional flag, so a rank
    built on estimated energy or provisional factors says so."""
    if month_to < month_from:
        raise ValueError("greener_regions: month_to is before month_from")
    period = region_benchmarks.where(
        F.col("month").between(F.lit(month_from), F.lit(month_to))
        & F.col("product_code").isNotNull()
    )
    energy = F.coalesce(F.col("energy_kwh"), F.lit(0.0))
    per_cluster = period.groupBy("product_code", "cluster_id").agg(
        F.first("allocation_unit", ignorenulls=True).alias("allocation_unit"),
        F.first("location", ignorenulls=True).alias("location"),
        F.first("cluster_kind", ignorenulls=True).alias("cluster_kind"),
        F.count_distinct("month").alias("months"),
        F.sum("usage_amount").alias("usage_amount"),
        F.sum("service_lbm_kg").alias("service_lbm_kg"),
        F.sum("service_mbm_kg").alias("service_mbm_kg"),
        F.sum(energy).alias("_energy_kwh"),
        F.sum(energy * F.coalesce(F.col("estimated_energy_share"), F.lit(0.0))).alias("_est_kwh"),
        F.flatten(F.collect_list(F.split(F.col("factor_levels"), LEVEL_SEPARATOR))).alias("_lv"),
        F.coalesce(F.bool_or(F.col("provisional")), F.lit(False)).alias("provisional"),
    )
    ranked = per_cluster.select(
        "*",
        _per(F.col("service_lbm_kg"), F.col("usage_amount")).alias("lbm_kg_per_unit"),
        _per(F.col("service_mbm_kg"), F.col("usage_amount")).alias("mbm_kg_per_unit"),
        _per(F.col("_est_kwh"), F.col("_energy_kwh")).alias("estimated_energy_share"),
        _levels(F.col("_lv")).alias("factor_levels"),
    )

    def rank(by: str) -> Column:
        order = Window.partitionBy("product_code").orderBy(F.col(by).asc_nulls_last())
        return F.when(F.col(by).isNotNull(), F.rank().over(order))

    return conform(
        ranked.select(
            "*",
            rank("mbm_kg_per_unit").alias("mbm_rank"),
            rank("lbm_kg_per_unit").alias("lbm_rank"),
        ),
        GREENER_REGIONS,
    ).orderBy("product_code", F.col("mbm_rank").asc_nulls_last(), "cluster_id")
