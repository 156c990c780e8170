"""Steps C (rack -> foundational service), D (service -> consumer accounts) and E
(non-foundational pass-through)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from carbon_core.allocation.columns import (
    POOL_KEYS,
    ROW_KEYS,
    UNUSED_CAPACITY,
    is_v1,
    is_v2,
    quantities,
    scaled_quantities,
    summed_quantities,
    unallocated_rows,
)
from carbon_core.allocation.racks import used_share
from carbon_core.errors import CarbonlakeError

NON_FOUNDATIONAL = "non_foundational"
SERVICE_KEYS: tuple[str, ...] = (*POOL_KEYS, "product_code")
USAGE_KEYS: tuple[str, ...] = ("month", "cluster_id", "product_code")


@dataclass(frozen=True)
class ServiceStep:
    """Step C's output: service pools and (v1.0) unused capacity."""

    pools: DataFrame  # SERVICE_KEYS + quantities
    unallocated: DataFrame  # POOL_KEYS + reason + quantities


@dataclass(frozen=True)
class AccountStep:
    """Step D's output: result rows and service pools that found no consumer."""

    rows: DataFrame  # ROW_KEYS + quantities
    cluster_pool: DataFrame  # POOL_KEYS + quantities (to step G)


@dataclass(frozen=True)
class PassThrough:
    """A non-foundational service: its product, what it runs on, who operates it."""

    product_code: str
    runs_on: str
    owner_account_id: str


def racks_to_services(racks: DataFrame) -> ServiceStep:
    """Step C: rack quantities to the pool of the rack's service in its cluster.

    v2.0 pools the whole rack; v1.0 pools the used share and reports the rest as unused.
    """
    share = used_share()
    pooled_share = F.when(is_v1(), share).otherwise(F.lit(1.0))
    pools = (
        racks.select(*SERVICE_KEYS, *scaled_quantities(pooled_share))
        .groupBy(*SERVICE_KEYS)
        .agg(*summed_quantities())
    )
    unused = (
        racks.where(is_v1())
        .select(*POOL_KEYS, *scaled_quantities(F.lit(1.0) - share))
        .groupBy(*POOL_KEYS)
        .agg(*summed_quantities())
        .select(*unallocated_rows(UNUSED_CAPACITY))
    )
    return ServiceStep(pools=pools, unallocated=unused)


def usage_weights(usage: DataFrame, service_catalog: DataFrame, calendar: DataFrame) -> DataFrame:
    """(month, cluster_id, product_code, payer, usage account, usage_amount): positive usage
    in the product's allocation unit, summed per run month."""
    units = service_catalog.select("product_code", "allocation_unit")
    months = calendar.select("month")
    in_unit = F.col("usage_unit") == F.col("allocation_unit")
    return (
        usage.join(F.broadcast(units), on="product_code", how="inner")
        .where(in_unit & (F.col("usage_amount") > 0))
        .select(
            F.trunc(F.to_date("usage_start"), "month").alias("month"),
            F.col("region_code").alias("cluster_id"),
            "product_code",
            "payer_account_id",
            "usage_account_id",
            "usage_amount",
        )
        .join(F.broadcast(months), on="month", how="inner")
        .groupBy(*USAGE_KEYS, "payer_account_id", "usage_account_id")
        .agg(F.sum("usage_amount").alias("usage_amount"))
    )


def _with_usage_share(weights: DataFrame) -> DataFrame:
    """Usage weights with each account's share of its (month, cluster, product) total."""
    total = F.sum("usage_amount").over(Window.partitionBy(*USAGE_KEYS))
    return weights.withColumn("_share", F.col("usage_amount") / total)


def services_to_accounts(pools: DataFrame, weights: DataFrame) -> AccountStep:
    """Step D: service pools to consumer accounts pro rata to usage in the allocation unit."""
    consumers = _with_usage_share(weights).select(
        *USAGE_KEYS, "payer_account_id", "usage_account_id", "_share"
    )
    rows = pools.join(consumers, on=list(USAGE_KEYS), how="inner").select(
        *ROW_KEYS, *scaled_quantities(F.col("_share"))
    )
    used = consumers.select(*USAGE_KEYS).distinct()
    unused = (
        pools.join(used, on=list(USAGE_KEYS), how="left_anti")
        .groupBy(*POOL_KEYS)
        .agg(*summed_quantities())
    )
    return AccountStep(rows=rows, cluster_pool=unused)


def pass_through_levels(service_catalog: DataFrame) -> list[list[PassThrough]]:
    """Non-foundational services grouped in topological order of `runs_on`; a cycle raises."""
    # The catalog is a small reference table: resolving its graph on the driver is fine.
    catalog = service_catalog.select("product_code", "kind", "runs_on", "owner_account_id")
    services = {
        row["product_code"]: PassThrough(
            row["product_code"], row["runs_on"], row["owner_account_id"]
        )
        for row in catalog.collect()
        if row["kind"] == NON_FOUNDATIONAL
    }
    levels: dict[str, int] = {}
    for start in sorted(services):
        path: list[str] = []
        current = start
        while current in services and current not in levels:
            if current in path:
                cycle = [*path[path.index(current) :], current]
                raise CarbonlakeError("service_catalog: runs_on cycle " + " -> ".join(cycle))
            path.append(current)
            current = services[current].runs_on
        base = levels.get(current, 0)
        for depth, code in enumerate(reversed(path), start=1):
            levels[code] = base + depth
    grouped: dict[int, list[PassThrough]] = {}
    for code, level in levels.items():
        grouped.setdefault(level, []).append(services[code])
    return [sorted(grouped[level], key=lambda s: s.product_code) for level in sorted(grouped)]


_SPEC_SCHEMA = T.StructType(
    [
        T.StructField("_service", T.StringType(), False),
        T.StructField("_runs_on", T.StringType(), True),
        T.StructField("_owner", T.StringType(), True),
        T.StructField("_split", T.DoubleType(), False),
    ]
)


def pass_through(
    rows: DataFrame,
    weights: DataFrame,
    levels: Sequence[Sequence[PassThrough]],
    materialise: Callable[[DataFrame], DataFrame] = lambda df: df,
) -> DataFrame:
    """Step E: what the owner of N received for N's runs_on service goes to N's customers.

    v2.0 passes it pro rata to usage of N (N's allocation unit); v1.0, and v2.0 when N has
    no customer in the cluster, keeps it as the owner's row reported under N.
    """
    spark = rows.sparkSession
    for level in levels:
        # An owner running several services on one runs_on service: what it received is
        # split equally between them (no basis to tell its uses apart).
        owned = {(s.runs_on, s.owner_account_id) for s in level}
        split = {
            key: sum(1 for s in level if (s.runs_on, s.owner_account_id) == key) for key in owned
        }
        specs = spark.createDataFrame(
            [
                (
                    s.product_code,
                    s.runs_on,
                    s.owner_account_id,
                    float(split[s.runs_on, s.owner_account_id]),
                )
                for s in level
            ],
            _SPEC_SCHEMA,
        )
        rows = materialise(_pass_level(rows, weights, specs))
    return rows


def _pass_level(rows: DataFrame, weights: DataFrame, specs: DataFrame) -> DataFrame:
    """One topological level of step E."""
    owned_input = (F.col("product_code") == F.col("_runs_on")) & (
        F.col("usage_account_id") == F.col("_owner")
    )
    received = (
        rows.join(F.broadcast(specs), on=owned_input, how="inner")
        .select(
            *(c for c in ROW_KEYS if c != "product_code"),
            F.col("_service").alias("product_code"),
            *scaled_quantities(F.lit(1.0) / F.col("_split")),
        )
        .groupBy(*ROW_KEYS)
        .agg(*summed_quantities())
    )
    kept_rows = rows.join(F.broadcast(specs), on=owned_input, how="left_anti")
    customers = (
        _with_usage_share(weights)
        .join(
            F.broadcast(specs.select(F.col("_service").alias("product_code"))),
            on="product_code",
            how="inner",
        )
        .select(
            *USAGE_KEYS,
            F.col("payer_account_id").alias("_payer"),
            F.col("usage_account_id").alias("_account"),
            "_share",
        )
    )
    with_customers = customers.select(*USAGE_KEYS).distinct().withColumn("_has", F.lit(True))
    received = received.join(with_customers, on=list(USAGE_KEYS), how="left")
    passes = is_v2() & F.col("_has").isNotNull()
    passed = (
        received.where(passes)
        .join(customers, on=list(USAGE_KEYS), how="inner")
        .select(
            "month",
            "model_version",
            "cluster_id",
            F.col("_payer").alias("payer_account_id"),
            F.col("_account").alias("usage_account_id"),
            "product_code",
            *scaled_quantities(F.col("_share")),
        )
    )
    stays = received.where(~passes).select(*ROW_KEYS, *quantities())
    return kept_rows.unionByName(passed).unionByName(stays)
