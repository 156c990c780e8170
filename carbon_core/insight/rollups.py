"""Emission rollups: one grouping code path for business units, payers, accounts, regions
and services, plus the check that a rollup keeps every kilogram of gold/account_emissions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from carbon_core.allocation.invariants import InvariantResult
from carbon_core.schemas import BU_MONTHLY, QUANTITIES, UNMAPPED_BUSINESS_UNIT, conform

# Every summable column of gold/account_emissions.
ROLLUP_QUANTITIES: tuple[str, ...] = (*QUANTITIES, "total_lbm_kg", "total_mbm_kg")
ACCOUNTS_COLUMN = "accounts"  # distinct usage accounts behind a rollup row

# Groupings of gold/account_emissions (model_version follows the month).
BY_PAYER: tuple[str, ...] = ("month", "model_version", "payer_account_id")
BY_LINKED_ACCOUNT: tuple[str, ...] = (*BY_PAYER, "usage_account_id", "is_internal")
BY_REGION: tuple[str, ...] = ("month", "model_version", "region_code", "location")
BY_SERVICE: tuple[str, ...] = ("month", "model_version", "product_code")
BU_GRAIN: tuple[str, ...] = (
    "month",
    "model_version",
    "business_unit",
    "cost_center",
    "region_code",
    "location",
    "product_code",
)
ROLLUP_TOTALS = "rollup_totals"  # the InvariantResult.check name


def rollup_emissions(account_emissions: DataFrame, by: Sequence[str]) -> DataFrame:
    """Sum every quantity and LBM/MBM total per `by` group, with the number of distinct usage
    accounts (`accounts`). Null group values form their own group, so no row is lost."""
    if not by:
        raise ValueError("rollup_emissions needs at least one grouping column")
    return account_emissions.groupBy(*by).agg(
        *(F.sum(F.coalesce(F.col(q), F.lit(0.0))).alias(q) for q in ROLLUP_QUANTITIES),
        F.count_distinct("usage_account_id").alias(ACCOUNTS_COLUMN),
    )


def with_business_units(account_emissions: DataFrame, business_units: DataFrame) -> DataFrame:
    """account_emissions with each usage account's business_unit and cost_center;
    accounts without a mapping get UNMAPPED_BUSINESS_UNIT and no cost center.

    business_units is bronze/business_units (unique account_id by ingestion, one row per
    account: small, so broadcast).
    """
    mapping = business_units.select(
        F.col("account_id").alias("_bu_account_id"),
        F.col("business_unit").alias("_business_unit"),
        F.col("cost_center").alias("_cost_center"),
    )
    joined = account_emissions.join(
        F.broadcast(mapping), F.col("usage_account_id") == F.col("_bu_account_id"), how="left"
    )
    return joined.select(
        *account_emissions.columns,
        F.coalesce(F.col("_business_unit"), F.lit(UNMAPPED_BUSINESS_UNIT)).alias("business_unit"),
        F.col("_cost_center").alias("cost_center"),
    )


def build_bu_monthly(account_emissions: DataFrame, business_units: DataFrame) -> DataFrame:
    """gold/bu_monthly: month x business unit x cost center x region x product."""
    mapped = with_business_units(account_emissions, business_units)
    return conform(rollup_emissions(mapped, BU_GRAIN), BU_MONTHLY)


def _within(expected: float, actual: float, rel_tolerance: float, abs_tolerance: float) -> bool:
    return abs(actual - expected) <= max(rel_tolerance * abs(expected), abs_tolerance)


def check_rollup_totals(
    rollup: DataFrame,
    account_emissions: DataFrame,
    *,
    rel_tolerance: float = 1e-9,
    abs_tolerance: float = 1e-9,
    check: str = ROLLUP_TOTALS,
) -> list[InvariantResult]:
    """Per month and quantity: the rollup's total equals gold/account_emissions' total
    (a mapping that dropped or duplicated accounts breaks it)."""

    def monthly(frame: DataFrame, side: str) -> DataFrame:
        return frame.groupBy("month").agg(
            *(
                F.sum(F.coalesce(F.col(q), F.lit(0.0))).alias(f"{side}{q}")
                for q in ROLLUP_QUANTITIES
            )
        )

    # months x quantities: small enough to collect
    rows = (
        monthly(account_emissions, "e_")
        .join(monthly(rollup, "r_"), on="month", how="full")
        .orderBy("month")
        .collect()
    )
    results: list[InvariantResult] = []
    for row in rows:
        month: dt.date = row["month"]
        for quantity in ROLLUP_QUANTITIES:
            expected = float(row[f"e_{quantity}"] or 0.0)
            actual = float(row[f"r_{quantity}"] or 0.0)
            ok = _within(expected, actual, rel_tolerance, abs_tolerance)
            results.append(InvariantResult(month, check, quantity, expected, actual, ok))
    return results
