"""Steps G (cluster pool) and F (region expansion): pools shared pro rata, per quantity."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from carbon_core.allocation.columns import (
    ENERGY,
    NO_BASIS,
    NO_CONSUMERS,
    POOL_KEYS,
    REGION_EXPANSION,
    is_v1,
    is_v2,
    quantities,
    ratio,
    summed_quantities,
    unallocated_rows,
)
from carbon_core.schemas import QUANTITIES

_SUM = "_sum_"
_POOL = "_pool_"
_NO_BASIS = "_no_basis_"


@dataclass(frozen=True)
class ClusterPoolStep:
    """Step G's output: the rows with their share, pools that found no row, unallocated."""

    rows: DataFrame  # ROW_KEYS + is_internal + quantities
    to_expansion: DataFrame  # POOL_KEYS + quantities (to step F)
    unallocated: DataFrame  # POOL_KEYS + reason + quantities


@dataclass(frozen=True)
class ExpansionStep:
    """Step F's output: the rows with their share and what stays unallocated."""

    rows: DataFrame  # ROW_KEYS + is_internal + quantities
    unallocated: DataFrame  # POOL_KEYS + reason + quantities


def _no_basis(q: str) -> Column:
    """True when neither the quantity itself nor energy gives the receiving rows a weight."""
    no_values = F.coalesce(F.col(_SUM + q), F.lit(0.0)) <= 0
    no_energy = F.coalesce(F.col(_SUM + ENERGY), F.lit(0.0)) <= 0
    return no_values & no_energy


def _pool_weight(q: str) -> Column:
    """A row's weight for quantity q: its q, else (all rows' q zero) its energy."""
    return F.when(F.col(_SUM + q) > 0, F.col(q) / F.col(_SUM + q)).otherwise(
        ratio(F.col(ENERGY), F.col(_SUM + ENERGY))
    )


def share_pro_rata(
    rows: DataFrame, pool: DataFrame, keys: Sequence[str]
) -> tuple[DataFrame, DataFrame]:
    """Add each pool quantity to the rows with the same keys pro rata to the rows' value of
    that quantity before the pool (all zero: to their energy_kwh).

    Returns the rows and, per pool key, a `_no_basis_<q>` flag per quantity (no weight at all).
    """
    totals = rows.groupBy(*keys).agg(*(F.sum(q).alias(_SUM + q) for q in QUANTITIES))
    basis = pool.select(*keys, *(F.col(q).alias(_POOL + q) for q in QUANTITIES)).join(
        totals, on=list(keys), how="left"
    )
    shared = rows.join(basis, on=list(keys), how="left").select(
        *(c for c in rows.columns if c not in QUANTITIES),
        *(
            (F.col(q) + F.coalesce(F.col(_POOL + q) * _pool_weight(q), F.lit(0.0))).alias(q)
            for q in QUANTITIES
        ),
    )
    flags = basis.select(*keys, *(_no_basis(q).alias(_NO_BASIS + q) for q in QUANTITIES))
    return shared, flags


def _no_basis_pieces(contributions: DataFrame, flags: DataFrame, keys: Sequence[str]) -> DataFrame:
    """The contributions of the quantities that had no basis, as unallocated no_basis."""
    return (
        contributions.join(flags, on=list(keys), how="inner")
        .select(
            *POOL_KEYS,
            *(
                F.when(F.col(_NO_BASIS + q), F.col(q)).otherwise(F.lit(0.0)).alias(q)
                for q in QUANTITIES
            ),
        )
        .select(*unallocated_rows(NO_BASIS))
    )


def share_cluster_pool(rows: DataFrame, cluster_pool: DataFrame) -> ClusterPoolStep:
    """Step G: v2.0 shares a cluster's pool among its result rows (none: on to F);
    v1.0 reports it as no_consumers."""
    pool = cluster_pool.groupBy(*POOL_KEYS).agg(*summed_quantities())
    reported = pool.where(is_v1()).select(*unallocated_rows(NO_CONSUMERS))
    row_clusters = rows.select("month", "cluster_id").distinct()
    v2_pool = pool.where(is_v2())
    to_expansion = v2_pool.join(row_clusters, on=["month", "cluster_id"], how="left_anti")
    sharing = v2_pool.join(row_clusters, on=["month", "cluster_id"], how="inner")
    shared, flags = share_pro_rata(rows, sharing.drop("model_version"), ["month", "cluster_id"])
    no_basis = _no_basis_pieces(sharing, flags, ["month", "cluster_id"])
    return ClusterPoolStep(
        rows=shared,
        to_expansion=to_expansion.select(*POOL_KEYS, *quantities()),
        unallocated=reported.unionByName(no_basis),
    )


def share_expansion_pool(rows: DataFrame, contributions: DataFrame) -> ExpansionStep:
    """Step F: v2.0 shares the month's expansion pool among its external rows (none:
    no_consumers under the source cluster); v1.0 reports it as region_expansion."""
    sources = contributions.groupBy(*POOL_KEYS).agg(*summed_quantities())
    reported = sources.where(is_v1()).select(*unallocated_rows(REGION_EXPANSION))
    external = F.col("is_internal") == F.lit(False)
    receivers = rows.where(external)
    others = rows.where(~external | F.col("is_internal").isNull())
    receiving_months = receivers.select("month").distinct()
    v2_sources = sources.where(is_v2())
    orphaned = v2_sources.join(receiving_months, on="month", how="left_anti").select(
        *unallocated_rows(NO_CONSUMERS)
    )
    shared_sources = v2_sources.join(receiving_months, on="month", how="inner")
    pool = shared_sources.groupBy("month").agg(*summed_quantities())
    shared, flags = share_pro_rata(receivers, pool, ["month"])
    # No basis for a quantity: each source cluster's part stays unallocated under it.
    no_basis = _no_basis_pieces(shared_sources, flags, ["month"])
    return ExpansionStep(
        rows=shared.unionByName(others),
        unallocated=reported.unionByName(orphaned).unionByName(no_basis),
    )
