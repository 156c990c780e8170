"""Run-time invariants of docs/methodology.md §8: conservation, non-negativity, known accounts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import reduce
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from carbon_core.errors import InvariantError
from carbon_core.schemas import QUANTITIES

CONSERVATION = "conservation"
NON_NEGATIVE = "non_negative"
KNOWN_ACCOUNTS = "known_accounts"
ABS_TOLERANCE_AT_ZERO = 1e-9
_EXPECTED = "expected"
_ACTUAL = "actual"


@dataclass(frozen=True)
class InvariantResult:
    """One invariant check for one month (and quantity, when it is per quantity)."""

    month: dt.date
    check: str
    quantity: str | None
    expected: float
    actual: float
    ok: bool

    @property
    def difference(self) -> float:
        """actual - expected."""
        return self.actual - self.expected

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly mapping (for gold/run_log)."""
        return {**asdict(self), "month": self.month.isoformat()}


def _long(df: DataFrame, side: str, columns: Sequence[str]) -> DataFrame:
    """(month, quantity, side, value) per row and quantity present in `columns`."""
    pairs = [
        F.struct(F.lit(q).alias("quantity"), F.col(q).cast("double").alias("value"))
        for q in columns
    ]
    return df.select("month", F.explode(F.array(*pairs)).alias("_q")).select(
        "month", F.col("_q.quantity").alias("quantity"), F.lit(side).alias("side"), "_q.value"
    )


def _within(expected: float, actual: float, rel_tolerance: float) -> bool:
    if expected == 0:
        return abs(actual) <= ABS_TOLERANCE_AT_ZERO
    return abs(actual - expected) <= rel_tolerance * abs(expected)


def check_invariants(
    *,
    site_monthly: DataFrame,
    rack_embodied: DataFrame,
    account_emissions: DataFrame,
    unallocated: DataFrame,
    accounts: DataFrame,
    rel_tolerance: float = 1e-9,
    months: Sequence[dt.date] | None = None,
) -> list[InvariantResult]:
    """Per month x quantity: results + unallocated = site_monthly + rack embodied; no negative
    quantity; every usage account of the results exists in accounts."""
    sides = reduce(
        lambda a, b: a.unionByName(b),
        [
            _long(site_monthly, _EXPECTED, QUANTITIES),
            _long(rack_embodied, _EXPECTED, ["scope3_kg"]),
            _long(account_emissions, _ACTUAL, QUANTITIES),
            _long(unallocated, _ACTUAL, QUANTITIES),
        ],
    )
    if months is not None:
        sides = sides.where(F.col("month").isin(list(months)))
    # Aggregates of months x quantities: small enough to collect.
    sums = sides.groupBy("month", "quantity").agg(
        F.sum(F.when(F.col("side") == _EXPECTED, F.coalesce("value", F.lit(0.0)))).alias(
            "expected"
        ),
        F.sum(F.when(F.col("side") == _ACTUAL, F.coalesce("value", F.lit(0.0)))).alias("actual"),
        F.min(F.when(F.col("side") == _ACTUAL, F.col("value"))).alias("minimum"),
    )
    missing = (
        account_emissions.select("month", "usage_account_id")
        .distinct()
        .join(
            accounts.select(F.col("account_id").alias("usage_account_id")),
            on="usage_account_id",
            how="left_anti",
        )
        .groupBy("month")
        .agg(F.count(F.lit(1)).alias("missing"))
    )
    missing_by_month = {row["month"]: int(row["missing"]) for row in missing.collect()}
    results: list[InvariantResult] = []
    month_list: set[dt.date] = set()
    for row in sorted(sums.collect(), key=lambda r: (r["month"], QUANTITIES.index(r["quantity"]))):
        expected = float(row["expected"] or 0.0)
        actual = float(row["actual"] or 0.0)
        minimum = 0.0 if row["minimum"] is None else float(row["minimum"])
        month, quantity = row["month"], row["quantity"]
        month_list.add(month)
        results.append(
            InvariantResult(
                month,
                CONSERVATION,
                quantity,
                expected,
                actual,
                _within(expected, actual, rel_tolerance),
            )
        )
        results.append(InvariantResult(month, NON_NEGATIVE, quantity, 0.0, minimum, minimum >= 0))
    for month in sorted(month_list | set(missing_by_month)):
        count = missing_by_month.get(month, 0)
        results.append(InvariantResult(month, KNOWN_ACCOUNTS, None, 0.0, float(count), count == 0))
    return results


def assert_invariants(results: Sequence[InvariantResult]) -> None:
    """Raise InvariantError on the first failed invariant, naming month, quantity, difference."""
    for result in results:
        if not result.ok:
            subject = result.quantity or "accounts"
            raise InvariantError(
                f"invariant {result.check} failed for {result.month:%Y-%m} {subject}: "
                f"expected {result.expected!r}, actual {result.actual!r}, "
                f"difference {result.difference!r}"
            )
