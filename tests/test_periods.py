"""Spreading periods over calendar months (docs/methodology.md §2)."""

from __future__ import annotations

import pytest
from helpers import d, frame, ts
from pyspark.sql import functions as F
from pyspark.sql import types as T

from carbon_core.calendar import month_of, spread_over_months

SCHEMA = T.StructType(
    [
        T.StructField("id", T.StringType()),
        T.StructField("period_start", T.TimestampType()),
        T.StructField("period_end", T.TimestampType()),
        T.StructField("kwh", T.DoubleType()),
    ]
)


def test_spread_in_proportion_to_seconds_with_exclusive_end(spark):
    rows = [
        # 2025-01-15..2025-02-15 = 31 days: January 17 days, February 14 days.
        {
            "id": "two_months",
            "period_start": ts("2025-01-15"),
            "period_end": ts("2025-02-15"),
            "kwh": 3100.0,
        },
        # A bill for 1-31 December ends 2025-01-01 (exclusive): December only.
        {
            "id": "december",
            "period_start": ts("2024-12-01"),
            "period_end": ts("2025-01-01"),
            "kwh": 500.0,
        },
        # Yearly record 2025: December gets 31/365 of it, not 1/12.
        {
            "id": "year_2025",
            "period_start": ts("2025-01-01"),
            "period_end": ts("2026-01-01"),
            "kwh": 365.0,
        },
        # Leap year 2024: February 29/366.
        {
            "id": "year_2024",
            "period_start": ts("2024-01-01"),
            "period_end": ts("2025-01-01"),
            "kwh": 366.0,
        },
        # 12 hours inside one day, 06:00 to 18:00 on 2025-03-31 -> all March.
        {
            "id": "hours",
            "period_start": ts("2025-03-31 06:00"),
            "period_end": ts("2025-03-31 18:00"),
            "kwh": 7.0,
        },
        # Inverted and empty periods produce nothing.
        {
            "id": "inverted",
            "period_start": ts("2025-02-01"),
            "period_end": ts("2025-01-01"),
            "kwh": 1.0,
        },
        {
            "id": "empty",
            "period_start": ts("2025-02-01"),
            "period_end": ts("2025-02-01"),
            "kwh": 1.0,
        },
    ]
    out = spread_over_months(frame(spark, SCHEMA, rows), value_columns=["kwh"])
    assert out.columns == ["id", "period_start", "period_end", "month", "kwh"]
    got = {(r["id"], r["month"]): r["kwh"] for r in out.collect()}

    assert got[("two_months", d("2025-01-01"))] == pytest.approx(3100 * 17 / 31, rel=1e-12)  # 1700
    assert got[("two_months", d("2025-02-01"))] == pytest.approx(3100 * 14 / 31, rel=1e-12)  # 1400
    assert got[("december", d("2024-12-01"))] == pytest.approx(500.0, rel=1e-12)
    assert got[("year_2025", d("2025-12-01"))] == pytest.approx(31.0, rel=1e-12)  # 365 * 31/365
    assert got[("year_2025", d("2025-02-01"))] == pytest.approx(28.0, rel=1e-12)
    assert got[("year_2024", d("2024-02-01"))] == pytest.approx(29.0, rel=1e-12)  # 366 * 29/366
    assert got[("hours", d("2025-03-01"))] == pytest.approx(7.0, rel=1e-12)
    counts: dict[str, int] = {}
    for key in got:
        counts[key[0]] = counts.get(key[0], 0) + 1
    # One row per record and month touched; the exclusive end adds no January row.
    assert counts == {"two_months": 2, "december": 1, "year_2025": 12, "year_2024": 12, "hours": 1}
    assert sum(v for (i, _), v in got.items() if i == "year_2025") == pytest.approx(365.0)


def test_month_of_hour_is_utc_month_start(spark):
    df = frame(spark, SCHEMA, [{"id": "h", "period_start": ts("2025-01-31 23:00")}])
    row = df.select(month_of("period_start").alias("m"), month_of(F.col("period_start"))).first()
    assert row[0] == d("2025-01-01")
    assert row[1] == d("2025-01-01")
