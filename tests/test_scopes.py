"""Scope 1 (with the provisional rule), building Scope 3 and water (docs/methodology.md §6)."""

from __future__ import annotations

from helpers import assert_frames_equal, bronze, d, frame, ts
from pyspark.sql import types as T

from carbon_core import schemas
from carbon_core.scopes import (
    building_embodied_by_month,
    scope1_site_months,
    sites_without_building_date,
    water_by_month,
)

SITE_MONTHS = T.StructType(
    [T.StructField("site_id", T.StringType()), T.StructField("month", T.DateType())]
)
FEB, MAR = d("2025-02-01"), d("2025-03-01")
# Shipped factors (carbon_core/reference/data/fuel_factors.csv).
DIESEL_L, GAS_M3 = 2.705126, 1.92449
# Hand numbers to 1e-12 relative, no absolute slack: a zero must be zero.
EXACT = {"rtol": 1e-12, "atol": 0.0}


def _fuel(rid, site, start, end, source, qty, unit):
    return {
        "record_id": rid,
        "site_id": site,
        "period_start": ts(start),
        "period_end": ts(end),
        "source_type": source,
        "quantity": qty,
        "unit": unit,
    }


def _factors(spark):
    return spark.createDataFrame(
        [("diesel", "l", DIESEL_L, "epa"), ("natural_gas", "m3", GAS_M3, "epa")],
        schemas.FUEL_FACTORS,
    )


def test_scope1_provisional_then_restated_by_actuals(spark):
    history = [
        # s 2024: diesel 100 l in March; gas 366 m3 over leap year 2024 (1 m3 a day).
        _fuel("d24", "s", "2024-03-01", "2024-04-01", "diesel", 100.0, "l"),
        _fuel("g24", "s", "2024-01-01", "2025-01-01", "natural_gas", 366.0, "m3"),
        # v: only a June 2024 record -> 2025 months are provisional with 0.
        _fuel("v24", "v", "2024-06-01", "2024-07-01", "diesel", 1.0, "l"),
        # u: only a later (2026) record -> 0, not provisional.
        _fuel("u26", "u", "2026-01-01", "2026-02-01", "diesel", 1.0, "l"),
    ]
    sites = ["s", "v", "u", "none"]
    keys = frame(
        spark, SITE_MONTHS, [{"site_id": s, "month": m} for s in sites for m in (FEB, MAR)]
    )

    def run(records):
        out = scope1_site_months(
            keys, bronze(spark, schemas.FUEL_RECORDS, records), _factors(spark)
        )
        return out.select("site_id", "month", "scope1_kg", "provisional")

    def expected(s_feb, s_mar):
        # v and u as said above; "none" has no record at all: 0, not provisional.
        rows = [("s", FEB, *s_feb), ("s", MAR, *s_mar), ("v", FEB, 0.0, True),
                ("v", MAR, 0.0, True), ("u", FEB, 0.0, False), ("u", MAR, 0.0, False),
                ("none", FEB, 0.0, False), ("none", MAR, 0.0, False)]  # fmt: skip
        return frame(
            spark, "site_id STRING, month DATE, scope1_kg DOUBLE, provisional BOOLEAN", rows
        )

    # Feb 2025 <- Feb 2024: 29 m3 gas x 1.92449; Mar 2025 <- Mar 2024: 100 l diesel + 31 m3 gas.
    before = expected((29 * GAS_M3, True), (100 * DIESEL_L + 31 * GAS_M3, True))
    assert_frames_equal(run(history), before, **EXACT)

    # A 2025 record arrives (10 l of diesel on 10 March, written in upper case): the whole
    # year 2025 of s now uses actuals: February 0, March 27.05126, not provisional.
    after = run([*history, _fuel("d25", "s", "2025-03-10", "2025-03-11", " Diesel", 10.0, "L")])
    assert_frames_equal(after, expected((0.0, False), (10 * DIESEL_L, False)), **EXACT)


def test_building_embodied_amortisation_window_and_water(spark):
    sites = bronze(
        spark,
        schemas.SITES,
        [
            # 300 kg over 3 months from 2025-01-20: 100 kg in Jan, Feb and Mar (full month
            # amounts, no daily proration), nothing in Dec 2024 or Apr 2025.
            {
                "site_id": "b",
                "cluster_id": "c",
                "building_embodied_kgco2e": 300.0,
                "building_in_service_date": d("2025-01-20"),
            },
            {"site_id": "nodate", "cluster_id": "c", "building_embodied_kgco2e": 900.0},
        ],
    )
    months = [d("2024-12-01"), d("2025-01-01"), d("2025-03-01"), d("2025-04-01")]
    keys = frame(
        spark, SITE_MONTHS, [{"site_id": s, "month": m} for s in ("b", "nodate") for m in months]
    )
    out = building_embodied_by_month(keys, sites, lifetime_months=3)
    expected = frame(
        spark,
        "site_id STRING, month DATE, scope3_kg DOUBLE",
        [*(("b", m, kg) for m, kg in zip(months, (0.0, 100.0, 100.0, 0.0), strict=True)),
         *(("nodate", m, 0.0) for m in months)],
    )  # fmt: skip
    assert_frames_equal(out.select("site_id", "month", "scope3_kg"), expected, **EXACT)
    missing = [tuple(r) for r in sites_without_building_date(sites).collect()]
    assert missing == [("nodate", 900.0)]

    water = bronze(
        spark,
        schemas.SITE_WATER,
        [
            # 590 l over 2025-01-01..2025-03-01 (59 days): Jan 310, Feb 280.
            {
                "site_id": "b",
                "period_start": ts("2025-01-01"),
                "period_end": ts("2025-03-01"),
                "withdrawal_l": 590.0,
            },
            {
                "site_id": "b",
                "period_start": ts("2025-01-10"),
                "period_end": ts("2025-01-11"),
                "withdrawal_l": 5.0,
            },
        ],
    )
    assert_frames_equal(
        water_by_month(water).select("site_id", "month", "water_l"),
        frame(
            spark,
            "site_id STRING, month DATE, water_l DOUBLE",
            [("b", d("2025-01-01"), 315.0), ("b", d("2025-02-01"), 280.0)],
        ),
        **EXACT,
    )
