"""Racks: in-service months, embodied carbon, steps A (site -> racks) and B (network overhead).

Also the used share of step C and gold/rack_utilisation, which describe racks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from carbon_core.allocation.columns import (
    ENERGY,
    NETWORK_OVERHEAD,
    POOL_KEYS,
    SCOPE3,
    is_v1,
    is_v2,
    prefixed_quantities,
    quantities,
    ratio,
    summed_quantities,
    unallocated_rows,
)
from carbon_core.calendar import run_calendar
from carbon_core.schemas import QUANTITIES, RACK_UTILISATION, conform

NETWORK_RACK = "network"
_SITE_PREFIX = "_site_"
_NET_PREFIX = "_net_"


def in_service(month: Column, month_end: Column) -> Column:
    """A rack is in service if it started before the month's end and retired after its start."""
    started = F.col("in_service_date") < month_end
    not_retired = F.col("retired_date").isNull() | (F.col("retired_date") > month)
    return started & not_retired


def embodied_in_month(month: Column, it_lifetime_months: int) -> Column:
    """embodied / lifetime in the lifetime months from the in-service month, else 0."""
    first = F.trunc(F.col("in_service_date"), "month")
    within = (month >= first) & (month < F.add_months(first, it_lifetime_months))
    amount = F.coalesce(F.col("embodied_kgco2e"), F.lit(0.0)) / F.lit(float(it_lifetime_months))
    return F.when(within, amount).otherwise(F.lit(0.0))


def rack_embodied_monthly(
    racks: DataFrame, months: Sequence[dt.date], *, it_lifetime_months: int
) -> DataFrame:
    """(month, rack_id, scope3_kg): each rack's amortised embodied carbon while in service."""
    calendar = run_calendar(racks.sparkSession, months)
    first = F.trunc(F.col("in_service_date"), "month")
    within_lifetime = (F.col("month") >= first) & (
        F.col("month") < F.add_months(first, it_lifetime_months)
    )
    return (
        racks.crossJoin(F.broadcast(calendar))
        .where(in_service(F.col("month"), F.col("month_end")) & within_lifetime)
        .select(
            "month",
            "rack_id",
            embodied_in_month(F.col("month"), it_lifetime_months).alias(SCOPE3),
        )
    )


def telemetry_monthly(rack_telemetry: DataFrame) -> DataFrame:
    """(month, rack_id, it_energy_kwh, used_capacity, telemetry_hours) summed per UTC month."""
    return (
        rack_telemetry.withColumn("month", F.trunc(F.to_date("hour"), "month"))
        .groupBy("month", "rack_id")
        .agg(
            F.sum("it_energy_kwh").alias("it_energy_kwh"),
            F.sum("used_capacity").alias("used_capacity"),
            F.count(F.lit(1)).alias("telemetry_hours"),
        )
    )


def rack_months(
    racks: DataFrame,
    sites: DataFrame,
    calendar: DataFrame,
    rack_telemetry: DataFrame,
    *,
    it_lifetime_months: int,
) -> DataFrame:
    """Every rack in service in a run month, with its cluster, telemetry and embodied carbon."""
    site_cluster = sites.select("site_id", "cluster_id")
    telemetry = telemetry_monthly(rack_telemetry)
    in_month = racks.crossJoin(F.broadcast(calendar)).where(
        in_service(F.col("month"), F.col("month_end"))
    )
    return (
        in_month.join(F.broadcast(site_cluster), on="site_id", how="left")
        .join(telemetry, on=["month", "rack_id"], how="left")
        .select(
            "month",
            "model_version",
            "rack_id",
            "site_id",
            "cluster_id",
            (F.col("rack_type") == F.lit(NETWORK_RACK)).alias("is_network"),
            "product_code",
            F.coalesce(F.col("capacity"), F.lit(0.0)).alias("capacity"),
            F.coalesce(F.col("it_energy_kwh"), F.lit(0.0)).alias("it_energy_kwh"),
            F.coalesce(F.col("used_capacity"), F.lit(0.0)).alias("used_capacity"),
            F.coalesce(F.col("telemetry_hours"), F.lit(0)).cast("long").alias("telemetry_hours"),
            embodied_in_month(F.col("month"), it_lifetime_months).alias("embodied_kg"),
        )
    )


RACK_ATTRIBUTES: tuple[str, ...] = (
    "month",
    "model_version",
    "rack_id",
    "site_id",
    "cluster_id",
    "is_network",
    "product_code",
    "capacity",
    "it_energy_kwh",
    "used_capacity",
    "telemetry_hours",
)


@dataclass(frozen=True)
class SiteStep:
    """Step A's output: racks with their quantities, and site quantities with no rack."""

    racks: DataFrame  # RACK_ATTRIBUTES + quantities
    cluster_pool: DataFrame  # POOL_KEYS + quantities (to step G)


@dataclass(frozen=True)
class NetworkStep:
    """Step B's output: non-network racks with their quantities, and what found no rack."""

    racks: DataFrame  # RACK_ATTRIBUTES + quantities
    cluster_pool: DataFrame  # POOL_KEYS + quantities (to step G)
    unallocated: DataFrame  # POOL_KEYS + reason + quantities (v1.0 network_overhead)


def site_to_racks(site_quantities: DataFrame, racks: DataFrame) -> SiteStep:
    """Step A: site quantities to in-service racks pro rata to IT energy (else capacity)."""
    site = Window.partitionBy("month", "site_id")
    site_drew_energy = F.sum("it_energy_kwh").over(site) > 0
    # Network racks weigh 0 under the capacity fallback (they have no capacity).
    capacity_weight = F.when(F.col("is_network"), F.lit(0.0)).otherwise(F.col("capacity"))
    weighted = racks.withColumn(
        "_weight", F.when(site_drew_energy, F.col("it_energy_kwh")).otherwise(capacity_weight)
    ).withColumn("_site_weight", F.sum("_weight").over(site))
    site_weights = weighted.groupBy("month", "site_id").agg(
        F.max("_site_weight").alias("_site_weight")
    )
    site_values = site_quantities.select("month", "site_id", *prefixed_quantities(_SITE_PREFIX))
    share = ratio(F.col("_weight"), F.col("_site_weight"))
    # A rack's own embodied carbon stays with it even when its site's quantities are pooled.
    rack_quantities = [
        (
            F.coalesce(F.col(_SITE_PREFIX + q) * share, F.lit(0.0))
            + (F.col("embodied_kg") if q == SCOPE3 else F.lit(0.0))
        ).alias(q)
        for q in QUANTITIES
    ]
    allocated = weighted.join(site_values, on=["month", "site_id"], how="left").select(
        *RACK_ATTRIBUTES, *rack_quantities
    )
    no_weight = F.coalesce(F.col("_site_weight"), F.lit(0.0)) <= 0
    pooled = (
        site_quantities.join(site_weights, on=["month", "site_id"], how="left")
        .where(no_weight)
        .select(*POOL_KEYS, *quantities())
    )
    return SiteStep(racks=allocated, cluster_pool=pooled)


def network_overhead(racks: DataFrame) -> NetworkStep:
    """Step B: network racks' quantities to the cluster's other racks pro rata to energy_kwh."""
    network_totals = racks.where(F.col("is_network")).groupBy(*POOL_KEYS).agg(*summed_quantities())
    serving = racks.where(~F.col("is_network"))
    cluster_energy = serving.groupBy("month", "cluster_id").agg(
        F.sum(ENERGY).alias("_cluster_energy")
    )
    v2_totals = network_totals.where(is_v2()).join(
        cluster_energy, on=["month", "cluster_id"], how="left"
    )
    has_receivers = F.coalesce(F.col("_cluster_energy"), F.lit(0.0)) > 0
    shareable = v2_totals.where(has_receivers).select(
        "month", "cluster_id", "_cluster_energy", *prefixed_quantities(_NET_PREFIX)
    )
    share = ratio(F.col(ENERGY), F.col("_cluster_energy"))
    received = serving.join(shareable, on=["month", "cluster_id"], how="left").select(
        *RACK_ATTRIBUTES,
        *(
            (F.col(q) + F.coalesce(F.col(_NET_PREFIX + q) * share, F.lit(0.0))).alias(q)
            for q in QUANTITIES
        ),
    )
    pooled = v2_totals.where(~has_receivers).select(*POOL_KEYS, *quantities())
    # v1.0: network overhead is reported, never allocated.
    overhead = network_totals.where(is_v1()).select(*unallocated_rows(NETWORK_OVERHEAD))
    return NetworkStep(racks=received, cluster_pool=pooled, unallocated=overhead)


def used_share() -> Column:
    """sum(used_capacity) / (capacity * telemetry hours), in [0, 1]; 0 without telemetry."""
    available = F.col("capacity") * F.col("telemetry_hours")
    # Clamped to [0, 1]: summing a full hour's use may round a hair above capacity x hours,
    # which would make the unused part (v1.0) negative.
    share = ratio(F.col("used_capacity"), available)
    return F.least(F.greatest(share, F.lit(0.0)), F.lit(1.0))


def rack_utilisation(racks: DataFrame) -> DataFrame:
    """gold/rack_utilisation: used share, telemetry hours and quantities after steps A and B."""
    return racks.select(
        "month",
        "rack_id",
        "cluster_id",
        "product_code",
        used_share().alias("used_share"),
        F.col("telemetry_hours").cast("long").alias("telemetry_hours"),
        *quantities(),
    ).transform(conform, RACK_UTILISATION)
