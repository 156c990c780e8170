"""Month arithmetic on the driver (the run's month list is small)."""

from __future__ import annotations

import datetime as dt


def add_months(month: dt.date, count: int) -> dt.date:
    """The first day of the month `count` months after `month` (negative: before)."""
    index = month.year * 12 + (month.month - 1) + count
    return dt.date(index // 12, index % 12 + 1, 1)


def month_range(first: dt.date, last: dt.date) -> list[dt.date]:
    """Every month start from first to last inclusive."""
    if last < first:
        raise ValueError(f"month range ends ({last:%Y-%m}) before it starts ({first:%Y-%m})")
    months = []
    current = dt.date(first.year, first.month, 1)
    while current <= last:
        months.append(current)
        current = add_months(current, 1)
    return months
