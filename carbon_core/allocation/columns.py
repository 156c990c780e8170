"""Column helpers shared by the allocation steps: quantity vectors, names, versions."""

from __future__ import annotations

from functools import reduce

from pyspark.sql import Column
from pyspark.sql import functions as F

from carbon_core.schemas import QUANTITIES

V1 = "v1.0"
V2 = "v2.0"

ENERGY = "energy_kwh"
SCOPE3 = "scope3_kg"

# gold/unallocated reasons (docs/methodology.md §7.1).
NETWORK_OVERHEAD = "network_overhead"
UNUSED_CAPACITY = "unused_capacity"
NO_CONSUMERS = "no_consumers"
REGION_EXPANSION = "region_expansion"
NO_BASIS = "no_basis"
REASONS: tuple[str, ...] = (
    NETWORK_OVERHEAD,
    UNUSED_CAPACITY,
    NO_CONSUMERS,
    REGION_EXPANSION,
    NO_BASIS,
)

# Keys of the intermediate frames.
MONTH_KEYS: tuple[str, ...] = ("month", "model_version")
POOL_KEYS: tuple[str, ...] = ("month", "model_version", "cluster_id")
ROW_KEYS: tuple[str, ...] = (
    "month",
    "model_version",
    "cluster_id",
    "payer_account_id",
    "usage_account_id",
    "product_code",
)


def is_v1() -> Column:
    """True in months allocated under methodology v1.0."""
    return F.col("model_version") == F.lit(V1)


def is_v2() -> Column:
    """True in months allocated under methodology v2.0."""
    return F.col("model_version") == F.lit(V2)


def quantities() -> list[Column]:
    """The quantity columns, unchanged."""
    return [F.col(q) for q in QUANTITIES]


def filled_quantities(prefix: str = "") -> list[Column]:
    """The quantity columns (optionally prefixed in the input) with null read as 0."""
    return [F.coalesce(F.col(prefix + q), F.lit(0.0)).cast("double").alias(q) for q in QUANTITIES]


def scaled_quantities(factor: Column, prefix: str = "") -> list[Column]:
    """Every quantity multiplied by one factor (one allocation step, one weight)."""
    return [(F.col(prefix + q) * factor).alias(q) for q in QUANTITIES]


def summed_quantities(prefix: str = "") -> list[Column]:
    """Aggregations summing every quantity (output names without the prefix)."""
    return [F.sum(prefix + q).alias(prefix + q) for q in QUANTITIES]


def prefixed_quantities(prefix: str) -> list[Column]:
    """The quantity columns renamed with a prefix (to keep them apart in a join)."""
    return [F.col(q).alias(prefix + q) for q in QUANTITIES]


def any_quantity_nonzero() -> Column:
    """True when at least one quantity of the row is not zero."""
    return reduce(lambda a, b: a | b, [F.coalesce(F.col(q), F.lit(0.0)) != 0 for q in QUANTITIES])


def ratio(numerator: Column, denominator: Column) -> Column:
    """numerator / denominator when the denominator is positive, else 0."""
    return F.when(denominator > 0, numerator / denominator).otherwise(F.lit(0.0))


def unallocated_rows(reason: str) -> list[Column]:
    """The columns of an unallocated piece: pool keys, reason, quantities."""
    return [*(F.col(k) for k in POOL_KEYS), F.lit(reason).alias("reason"), *quantities()]
