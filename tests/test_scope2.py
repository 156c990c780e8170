"""Market-based Scope 2 (docs/methodology.md §5): site and boundary pools, residual mix, surplus."""

from __future__ import annotations

import datetime as dt

import pytest
from helpers import assert_conforms, assert_frames_equal, bronze, d, frame, ts
from pyspark.sql import types as T

from carbon_core import schemas
from carbon_core.calendar import months_frame
from carbon_core.errors import CarbonlakeError
from carbon_core.scopes import check_annual_months, market_based

ENERGY = T.StructType(
    [
        T.StructField("site_id", T.StringType()),
        T.StructField("month", T.DateType()),
        T.StructField("energy_kwh", T.DoubleType()),
        T.StructField("market_boundary", T.StringType()),
        T.StructField("location_factor", T.DoubleType()),
    ]
)
RESIDUAL = T.StructType(
    [
        T.StructField("market_boundary", T.StringType()),
        T.StructField("year", T.IntegerType()),
        T.StructField("residual_factor", T.DoubleType()),
    ]
)
JAN = d("2025-01-01")
# Hand numbers to 1e-12 relative, no absolute slack: a zero must be zero.
EXACT = {"rtol": 1e-12, "atol": 0.0}
SURPLUS = "month DATE, site_id STRING, market_boundary STRING, surplus_kwh DOUBLE"


def _contract(cid, kwh, ef, start, end, site_id=None, boundary=None):
    return {
        "contract_id": cid,
        "instrument": "ppa",
        "site_id": site_id,
        "market_boundary": boundary,
        "period_start": ts(start),
        "period_end": ts(end),
        "energy_kwh": kwh,
        "emission_factor_kg_per_kwh": ef,
    }


def test_monthly_hierarchy_pools_residual_mix_and_surplus(spark):
    energy = frame(
        spark,
        ENERGY,
        [
            {
                "site_id": "a",
                "month": JAN,
                "energy_kwh": 1000.0,
                "market_boundary": "NEWE",
                "location_factor": 0.3,
            },
            {
                "site_id": "b",
                "month": JAN,
                "energy_kwh": 500.0,
                "market_boundary": "NEWE",
                "location_factor": 0.3,
            },
            # c belongs to a pre-launch cluster: it still shares the boundary pool.
            {
                "site_id": "c",
                "month": JAN,
                "energy_kwh": 300.0,
                "market_boundary": "NEWE",
                "location_factor": 0.3,
            },
            {
                "site_id": "f",
                "month": JAN,
                "energy_kwh": 400.0,
                "market_boundary": "FR",
                "location_factor": 0.05,
            },
            {
                "site_id": "x",
                "month": JAN,
                "energy_kwh": 10.0,
                "market_boundary": None,
                "location_factor": 0.47,
            },
        ],
    )
    jan = ("2025-01-01", "2025-02-01")
    contracts = bronze(
        spark,
        schemas.ENERGY_CONTRACTS,
        [
            # a: site pool 600 kWh @ 0 + 200 kWh @ 0.3 = 800 kWh, factor 60/800 = 0.075.
            _contract("a1", 600.0, 0.0, *jan, site_id="a"),
            _contract("a2", 200.0, 0.3, *jan, site_id="a", boundary="NEWE"),
            # b: site pool 700 @ 0.1 > 500 kWh: covered 500, 200 kWh site-bound surplus.
            _contract("b1", 700.0, 0.1, *jan, site_id="b"),
            # NEWE pool 250 @ 0.02; uncovered: a 200, b 0, c 300 = 500 -> share 0.5.
            _contract("n1", 250.0, 0.02, *jan, boundary=" newe "),
            # A DE pool without sites: all surplus.
            _contract("de", 1000.0, 0.0, *jan, boundary="DE"),
            # February instruments do not touch January.
            _contract("feb", 999.0, 0.0, "2025-02-01", "2025-03-01", site_id="a"),
        ],
    )
    residual = frame(
        spark, RESIDUAL, [{"market_boundary": "NEWE", "year": 2025, "residual_factor": 0.5}]
    )
    result = market_based(energy, contracts, residual, months_frame(spark, [JAN]))
    lineage = [
        "site_covered_kwh",
        "boundary_covered_kwh",
        "residual_mix_kwh",
        "location_fallback_kwh",
        "scope2_mbm_kg",
    ]
    expected = frame(
        spark,
        "site_id STRING, " + ", ".join(f"{c} DOUBLE" for c in lineage),
        [
            # a: 800 x 0.075 + 100 x 0.02 + 100 x 0.5 = 60 + 2 + 50 = 112.
            ("a", 800.0, 100.0, 100.0, 0.0, 112.0),
            ("b", 500.0, 0.0, 0.0, 0.0, 50.0),  # 500 x 0.1
            ("c", 0.0, 150.0, 150.0, 0.0, 78.0),  # 150x0.02 + 150x0.5
            ("f", 0.0, 0.0, 0.0, 400.0, 20.0),  # 400 x 0.05
            ("x", 0.0, 0.0, 0.0, 10.0, 4.7),  # 10 x 0.47
        ],
    )
    assert_frames_equal(result.site_months.select("site_id", *lineage), expected, **EXACT)

    expected_surplus = frame(spark, SURPLUS, [(JAN, None, "DE", 1000.0), (JAN, "b", None, 200.0)])
    got_surplus = result.surplus.select("month", "site_id", "market_boundary", "surplus_kwh")
    assert_frames_equal(got_surplus, expected_surplus, rtol=0.0, atol=0.0)
    assert_conforms(result.surplus.schema, schemas.INSTRUMENT_SURPLUS)


def _year_energy(spark):
    months = [dt.date(2025, m, 1) for m in range(1, 13)]
    rows = []
    for m in months:
        # a: 300 kWh in January, 100 in other months -> 1400 in the year.
        rows.append(
            {
                "site_id": "a",
                "month": m,
                "energy_kwh": 300.0 if m.month == 1 else 100.0,
                "market_boundary": "X",
                "location_factor": 0.4,
            }
        )
        # b: 50 kWh a month -> 600 in the year.
        rows.append(
            {
                "site_id": "b",
                "month": m,
                "energy_kwh": 50.0,
                "market_boundary": "X",
                "location_factor": 0.4,
            }
        )
    contracts = [
        # a: 700 kWh @ 0 over the whole of 2025 (365 days).
        _contract("a_year", 700.0, 0.0, "2025-01-01", "2026-01-01", site_id="a"),
        # X: 1400 kWh @ 0.1 in January only.
        _contract("x_jan", 1400.0, 0.1, "2025-01-01", "2025-02-01", boundary="X"),
    ]
    return months, frame(spark, ENERGY, rows), bronze(spark, schemas.ENERGY_CONTRACTS, contracts)


def test_annual_matching_gives_each_month_the_years_covered_share(spark):
    months, energy, contracts = _year_energy(spark)
    residual = frame(spark, RESIDUAL, [])
    result = market_based(
        energy, contracts, residual, months_frame(spark, months), matching="annual"
    )
    got = {(r["site_id"], r["month"]): r for r in result.site_months.collect()}
    assert len(got) == 24
    # Year: a covered 700 of 1400 -> share 0.5; a uncovered 700 + b 600 = 1300 <= pool 1400
    # -> boundary share 1 -> a boundary-covered 700 (share 0.5), b 600 (share 1).
    feb = d("2025-02-01")
    covered = frame(
        spark,
        "site_id STRING, month DATE, site_covered_kwh DOUBLE, boundary_covered_kwh DOUBLE",
        [("a", JAN, 150.0, 150.0), ("a", feb, 50.0, 50.0), ("b", JAN, 0.0, 50.0)],
    )
    assert_frames_equal(
        result.site_months.join(covered.select("site_id", "month"), ["site_id", "month"]).select(
            *covered.columns
        ),
        covered,
    )
    a_feb = got[("a", feb)]
    # a Feb MBM: 50 x 0 + 50 x 0.1 = 5; nothing left for the location factor.
    assert a_feb["scope2_mbm_kg"] == pytest.approx(5.0, rel=1e-12)
    assert a_feb["location_fallback_kwh"] == pytest.approx(0.0, abs=1e-9)
    # Boundary surplus 1400 - 1300 = 100, written on the year's first month.
    assert_frames_equal(
        result.surplus.select("month", "site_id", "market_boundary", "surplus_kwh"),
        frame(spark, SURPLUS, [(JAN, None, "X", 100.0)]),
        **EXACT,
    )

    monthly = market_based(energy, contracts, residual, months_frame(spark, months))
    m = {(r["site_id"], r["month"]): r for r in monthly.site_months.collect()}
    # Monthly: a's January pool is 700 x 31/365; the rest of a (300 - that) and b's 50 take
    # the January boundary pool (1400 >= 290.5...), share 1.
    jan_pool = 700.0 * 31 / 365
    assert m[("a", JAN)]["site_covered_kwh"] == pytest.approx(jan_pool, rel=1e-12)
    assert m[("a", JAN)]["boundary_covered_kwh"] == pytest.approx(300 - jan_pool, rel=1e-12)
    # February: site pool 700 x 28/365 covers part of a's 100 kWh; no boundary pool; the
    # rest takes the location factor (X has no residual mix).
    feb_pool = 700.0 * 28 / 365
    a_feb_m = m[("a", d("2025-02-01"))]
    assert a_feb_m["site_covered_kwh"] == pytest.approx(feb_pool, rel=1e-12)
    assert a_feb_m["location_fallback_kwh"] == pytest.approx(100 - feb_pool, rel=1e-12)
    assert a_feb_m["scope2_mbm_kg"] == pytest.approx((100 - feb_pool) * 0.4, rel=1e-12)


def test_annual_matching_needs_whole_years():
    with pytest.raises(CarbonlakeError, match="2025-03"):
        check_annual_months([dt.date(2025, m, 1) for m in (1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12)])
    check_annual_months([dt.date(2024, m, 1) for m in range(1, 13)])  # complete: no error
