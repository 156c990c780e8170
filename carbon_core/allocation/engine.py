"""Allocation engine: docs/methodology.md §7, steps A-G, both methodology versions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from carbon_core.allocation.columns import (
    POOL_KEYS,
    ROW_KEYS,
    SCOPE3,
    any_quantity_nonzero,
    filled_quantities,
    quantities,
    summed_quantities,
)
from carbon_core.allocation.pools import share_cluster_pool, share_expansion_pool
from carbon_core.allocation.racks import (
    network_overhead,
    rack_months,
    rack_utilisation,
    site_to_racks,
)
from carbon_core.allocation.services import (
    pass_through,
    pass_through_levels,
    racks_to_services,
    services_to_accounts,
    usage_weights,
)
from carbon_core.calendar import run_calendar
from carbon_core.config import MethodologySettings
from carbon_core.schemas import (
    ACCOUNT_EMISSIONS,
    EDGE_KIND,
    EDGE_LOCATION,
    QUANTITIES,
    UNALLOCATED,
    conform,
)

Materialise = Callable[[DataFrame], DataFrame]


def local_checkpoint(df: DataFrame) -> DataFrame:
    """Compute a step's output once and cut its lineage.

    Every step reads its input several times (totals, shares, leftovers); without a cut the
    logical plan doubles at each step and planning time explodes.
    """
    return df.localCheckpoint(eager=True)


@dataclass(frozen=True)
class AllocationResult:
    """The allocation's gold tables for the run's months."""

    account_emissions: DataFrame  # schemas.ACCOUNT_EMISSIONS
    unallocated: DataFrame  # schemas.UNALLOCATED
    rack_utilisation: DataFrame  # schemas.RACK_UTILISATION


def cluster_months(clusters: DataFrame, calendar: DataFrame) -> DataFrame:
    """(month, cluster_id, location, pre_launch) per cluster and run month."""
    location = F.when(F.col("kind") == F.lit(EDGE_KIND), F.lit(EDGE_LOCATION)).otherwise(
        F.coalesce(F.col("name"), F.col("cluster_id"))
    )
    # Pre-launch: launching on or after the first day of the next month.
    pre_launch = F.coalesce(F.col("launch_date") >= F.col("month_end"), F.lit(False))
    return clusters.crossJoin(F.broadcast(calendar)).select(
        "month", "cluster_id", location.alias("location"), pre_launch.alias("pre_launch")
    )


def _with_pre_launch(df: DataFrame, clusters_in_month: DataFrame) -> DataFrame:
    """Add the cluster's pre-launch flag (an unknown cluster counts as live)."""
    status = clusters_in_month.select("month", "cluster_id", "pre_launch")
    return df.join(F.broadcast(status), on=["month", "cluster_id"], how="left").withColumn(
        "pre_launch", F.coalesce(F.col("pre_launch"), F.lit(False))
    )


def _union_all(frames: Sequence[DataFrame]) -> DataFrame:
    return reduce(lambda a, b: a.unionByName(b), frames)


def _account_emissions(rows: DataFrame, clusters_in_month: DataFrame) -> DataFrame:
    """Result rows as gold/account_emissions (all-zero rows dropped)."""
    location = clusters_in_month.select("month", "cluster_id", "location")
    scope1, scope3 = F.col("scope1_kg"), F.col(SCOPE3)
    return (
        rows.where(any_quantity_nonzero())
        .join(F.broadcast(location), on=["month", "cluster_id"], how="left")
        .select(
            "month",
            "model_version",
            "payer_account_id",
            "usage_account_id",
            "is_internal",
            F.col("cluster_id").alias("region_code"),
            F.coalesce(F.col("location"), F.col("cluster_id")).alias("location"),
            "product_code",
            *quantities(),
            (scope1 + F.col("scope2_lbm_kg") + scope3).alias("total_lbm_kg"),
            (scope1 + F.col("scope2_mbm_kg") + scope3).alias("total_mbm_kg"),
        )
        .transform(conform, ACCOUNT_EMISSIONS)
    )


def _unallocated(pieces: Sequence[DataFrame]) -> DataFrame:
    """Unallocated pieces summed per month x cluster x reason (all-zero rows dropped)."""
    return (
        _union_all(pieces)
        .groupBy(*POOL_KEYS, "reason")
        .agg(*summed_quantities())
        .where(any_quantity_nonzero())
        .select("month", "model_version", "cluster_id", "reason", *quantities())
        .transform(conform, UNALLOCATED)
    )


def allocate(
    *,
    site_monthly: DataFrame,
    clusters: DataFrame,
    sites: DataFrame,
    racks: DataFrame,
    rack_telemetry: DataFrame,
    accounts: DataFrame,
    service_catalog: DataFrame,
    usage: DataFrame,
    months: Sequence[dt.date],
    methodology: MethodologySettings,
    materialise: Materialise = local_checkpoint,
) -> AllocationResult:
    """Allocate the months' site quantities and rack embodied carbon to accounts (A-G).

    `materialise` is applied to each step's output (default: a local checkpoint; a reliable
    `DataFrame.checkpoint` or the identity are alternatives).
    """
    calendar = run_calendar(site_monthly.sparkSession, months, methodology)
    clusters_in_month = cluster_months(clusters, calendar)
    site_q = _with_pre_launch(
        site_monthly.join(F.broadcast(calendar), on="month", how="inner").select(
            "month", "model_version", "site_id", "cluster_id", *filled_quantities()
        ),
        clusters_in_month,
    )
    rack_q = materialise(
        _with_pre_launch(
            rack_months(
                racks,
                sites,
                calendar,
                rack_telemetry,
                it_lifetime_months=methodology.it_lifetime_months,
            ),
            clusters_in_month,
        )
    )
    live_sites = site_q.where(~F.col("pre_launch"))
    live_racks = rack_q.where(~F.col("pre_launch"))

    # F sources: everything of a pre-launch cluster skips steps A-E.
    pre_launch_embodied = rack_q.where(F.col("pre_launch")).select(
        *POOL_KEYS,
        *((F.col("embodied_kg") if q == SCOPE3 else F.lit(0.0)).alias(q) for q in QUANTITIES),
    )
    pre_launch_sites = site_q.where(F.col("pre_launch")).select(*POOL_KEYS, *quantities())

    step_a = site_to_racks(live_sites, live_racks)
    step_b = network_overhead(materialise(step_a.racks))
    racks_after_b = materialise(step_b.racks)
    step_c = racks_to_services(racks_after_b)
    # Steps D and E read the weights several times; materialised once, usage (the largest
    # input) is scanned once instead of once per read.
    weights = materialise(usage_weights(usage, service_catalog, calendar))
    step_d = services_to_accounts(step_c.pools, weights)
    step_e = pass_through(step_d.rows, weights, pass_through_levels(service_catalog), materialise)

    internal = accounts.select(F.col("account_id").alias("usage_account_id"), "is_internal")
    result_rows = materialise(
        step_e.groupBy(*ROW_KEYS)
        .agg(*summed_quantities())
        .join(internal, on="usage_account_id", how="left")
    )
    cluster_pool = materialise(
        _union_all([step_a.cluster_pool, step_b.cluster_pool, step_d.cluster_pool])
    )
    step_g = share_cluster_pool(result_rows, cluster_pool)
    expansion = materialise(
        _union_all([pre_launch_sites, pre_launch_embodied, step_g.to_expansion])
    )
    step_f = share_expansion_pool(materialise(step_g.rows), expansion)
    unallocated = [step_b.unallocated, step_c.unallocated, step_g.unallocated, step_f.unallocated]
    # The outputs stay lazy: the caller persists them if it reads them more than once.
    return AllocationResult(
        account_emissions=_account_emissions(step_f.rows, clusters_in_month),
        unallocated=_unallocated(unallocated),
        rack_utilisation=rack_utilisation(racks_after_b),
    )
