"""Per-month summary of a run, printed by `carbonlake run` (small aggregates only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

KG_PER_TONNE = 1000.0
TOP_N = 3


@dataclass(frozen=True)
class MonthSummary:
    """The headline numbers of one month, in tonnes CO2e (MTCO2e)."""

    month: str
    model_version: str
    allocated_lbm_t: float
    allocated_mbm_t: float
    unallocated_lbm_t: dict[str, float]
    unallocated_mbm_t: float
    accounts: int
    external_accounts: int
    top_regions: list[tuple[str, float]]
    top_services: list[tuple[str, float]]

    @property
    def total_lbm_t(self) -> float:
        return self.allocated_lbm_t + sum(self.unallocated_lbm_t.values())

    @property
    def total_mbm_t(self) -> float:
        return self.allocated_mbm_t + self.unallocated_mbm_t


def _lbm(prefix: str = "") -> F.Column:
    return (
        F.col(f"{prefix}scope1_kg") + F.col(f"{prefix}scope2_lbm_kg") + F.col(f"{prefix}scope3_kg")
    )


def _mbm(prefix: str = "") -> F.Column:
    return (
        F.col(f"{prefix}scope1_kg") + F.col(f"{prefix}scope2_mbm_kg") + F.col(f"{prefix}scope3_kg")
    )


def summarise_months(
    account_emissions: DataFrame, unallocated: DataFrame, months: Sequence[object]
) -> list[MonthSummary]:
    """Totals, allocated vs unallocated by reason, accounts, top regions and services per month."""
    wanted = [F.lit(m) for m in months]
    results = account_emissions.where(F.col("month").isin(*wanted))
    gaps = unallocated.where(F.col("month").isin(*wanted))
    totals = {
        r["month"]: r
        for r in results.groupBy("month")
        .agg(
            F.first("model_version").alias("model_version"),
            F.sum("total_lbm_kg").alias("lbm"),
            F.sum("total_mbm_kg").alias("mbm"),
            F.countDistinct("usage_account_id").alias("accounts"),
            F.countDistinct(F.when(~F.col("is_internal"), F.col("usage_account_id"))).alias(
                "external"
            ),
        )
        .collect()
    }
    by_reason: dict[object, dict[str, float]] = {}
    unallocated_mbm: dict[object, float] = {}
    for r in (
        gaps.groupBy("month", "reason")
        .agg(F.sum(_lbm()).alias("lbm"), F.sum(_mbm()).alias("mbm"))
        .collect()
    ):
        by_reason.setdefault(r["month"], {})[r["reason"]] = r["lbm"] / KG_PER_TONNE
        unallocated_mbm[r["month"]] = unallocated_mbm.get(r["month"], 0.0) + r["mbm"] / KG_PER_TONNE
    top: dict[tuple[object, str], list[tuple[str, float]]] = {}
    for dimension in ("region_code", "product_code"):
        ranked = (
            results.groupBy("month", dimension)
            .agg(F.sum("total_lbm_kg").alias("lbm"))
            .orderBy("month", F.desc("lbm"), dimension)
            .collect()
        )
        for r in ranked:
            bucket = top.setdefault((r["month"], dimension), [])
            if len(bucket) < TOP_N:
                bucket.append((r[dimension], r["lbm"] / KG_PER_TONNE))
    summaries = []
    for month in months:
        row = totals.get(month)
        summaries.append(
            MonthSummary(
                month=f"{month:%Y-%m}",
                model_version=row["model_version"] if row else "-",
                allocated_lbm_t=(row["lbm"] / KG_PER_TONNE) if row else 0.0,
                allocated_mbm_t=(row["mbm"] / KG_PER_TONNE) if row else 0.0,
                unallocated_lbm_t=by_reason.get(month, {}),
                unallocated_mbm_t=unallocated_mbm.get(month, 0.0),
                accounts=row["accounts"] if row else 0,
                external_accounts=row["external"] if row else 0,
                top_regions=top.get((month, "region_code"), []),
                top_services=top.get((month, "product_code"), []),
            )
        )
    return summaries


def format_summary(summaries: Sequence[MonthSummary]) -> str:
    """A plain-text table of the month summaries (t = MTCO2e)."""
    lines = [
        "month    model  total LBM t  total MBM t  allocated LBM t  unallocated LBM t"
        "  accounts (ext)"
    ]
    for s in summaries:
        unallocated = sum(s.unallocated_lbm_t.values())
        lines.append(
            f"{s.month}  {s.model_version:5}  {s.total_lbm_t:11,.3f}  {s.total_mbm_t:11,.3f}"
            f"  {s.allocated_lbm_t:15,.3f}  {unallocated:17,.3f}"
            f"  {s.accounts} ({s.external_accounts})"
        )
    for s in summaries:
        reasons = ", ".join(f"{k} {v:,.3f}" for k, v in sorted(s.unallocated_lbm_t.items())) or "-"
        regions = ", ".join(f"{k} {v:,.3f}" for k, v in s.top_regions) or "-"
        services = ", ".join(f"{k} {v:,.3f}" for k, v in s.top_services) or "-"
        lines.append(f"{s.month}  unallocated by reason (t LBM): {reasons}")
        lines.append(f"{s.month}  top regions (t LBM): {regions}; top services: {services}")
    return "\n".join(lines)
