"""Reduction targets: the straight-line path and progress against it (driver-side, tiny data).

Input is the per month x business-unit rollup already reduced by Spark (a few
hundred rows at most), so this works on a pandas frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from carbon_core.config import TargetSettings
from carbon_core.insight.targets import path_kg

MONTHS_PER_YEAR = 12


@dataclass(frozen=True)
class TargetProgress:
    """One target: its straight-line path (annual kg) and the latest year against it."""

    target: TargetSettings
    baseline_kg: float | None  # annual total of the baseline year (annualised if partial)
    baseline_months: int
    path: tuple[tuple[int, float], ...]  # (year, annual kg on the straight line)
    latest_year: int | None
    latest_kg: float | None  # annual total of the latest year with data (annualised)
    latest_months: int

    @property
    def label(self) -> str:
        t = self.target
        return (
            f"{t.business_unit}: -{t.reduction_percent:g} % {t.basis.upper()} "
            f"{t.baseline_year}→{t.target_year}"
        )

    def path_kg(self, year: int) -> float | None:
        """The straight-line value for a year (None outside baseline..target)."""
        return dict(self.path).get(year)

    @property
    def status(self) -> str:
        """'on track', 'off track' or why it cannot be told."""
        if self.baseline_kg is None:
            return f"no data for baseline year {self.target.baseline_year}"
        if self.latest_year is None or self.latest_year <= self.target.baseline_year:
            return "no data after the baseline year"
        allowed = self.path_kg(min(self.latest_year, self.target.target_year))
        if allowed is None or self.latest_kg is None:
            return "no data"
        return "on track" if self.latest_kg <= allowed else "off track"


def straight_line_path(target: TargetSettings, baseline_kg: float) -> tuple[tuple[int, float], ...]:
    """(year, annual kg) from the baseline year to the target year, on the one path formula
    that gold/bu_monthly's target progress uses."""
    return tuple(
        (year, path_kg(target, baseline_kg, year))
        for year in range(target.baseline_year, target.target_year + 1)
    )


def _annual(frame: pd.DataFrame, column: str, year: int) -> tuple[float | None, int]:
    """A year's total, annualised from the months present (None without data)."""
    rows = frame[frame["year"] == year]
    months = int(rows["month"].nunique())
    if months == 0:
        return None, 0
    return float(rows[column].sum()) * MONTHS_PER_YEAR / months, months


def target_progress(bu_totals: pd.DataFrame, target: TargetSettings) -> TargetProgress:
    """Progress of one target from month x business_unit totals (total_lbm_kg/total_mbm_kg)."""
    column = f"total_{target.basis}_kg"
    unit = bu_totals[bu_totals["business_unit"] == target.business_unit].copy()
    unit["year"] = pd.to_datetime(unit["month"]).dt.year
    baseline_kg, baseline_months = _annual(unit, column, target.baseline_year)
    path: tuple[tuple[int, float], ...] = ()
    if baseline_kg is not None:
        path = straight_line_path(target, baseline_kg)
    latest_year = int(unit["year"].max()) if len(unit) else None
    latest_kg, latest_months = (
        _annual(unit, column, latest_year) if latest_year is not None else (None, 0)
    )
    return TargetProgress(
        target=target,
        baseline_kg=baseline_kg,
        baseline_months=baseline_months,
        path=path,
        latest_year=latest_year,
        latest_kg=latest_kg,
        latest_months=latest_months,
    )
