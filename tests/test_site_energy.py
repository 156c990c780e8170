"""Site energy: price estimates, quarantine, gap filling (docs/methodology.md §3)."""

from __future__ import annotations

import json

from helpers import assert_frames_equal, bronze, d, frame, ts
from pyspark.sql import types as T

from carbon_core import schemas
from carbon_core.calendar import months_frame
from carbon_core.energy import (
    gap_filled_energy,
    invoice_energy_by_month,
    invoice_quarantine,
    price_invoices,
    site_hourly_it,
    site_month_energy,
)

CODES = T.StructType(
    [
        T.StructField("site_id", T.StringType()),
        T.StructField("country_code", T.StringType()),
        T.StructField("subdivision_code", T.StringType()),
    ]
)
# Hand numbers to 1e-12 relative, no absolute slack: a zero must be zero.
EXACT = {"rtol": 1e-12, "atol": 0.0}


def test_amount_only_invoices_price_fallback_and_quarantine(spark):
    codes = frame(
        spark,
        CODES,
        [
            {"site_id": "nsw", "country_code": "AU", "subdivision_code": "AU-NSW"},
            {"site_id": "vic", "country_code": "AU", "subdivision_code": "AU-VIC"},
            {"site_id": "qc", "country_code": "CA", "subdivision_code": "CA-QC"},
            {"site_id": "jp", "country_code": "JP"},
        ],
    )
    prices = bronze(
        spark,
        schemas.ELECTRICITY_PRICES,
        [
            {
                "country_code": "AU",
                "subdivision_code": "AU-NSW",
                "year": 2023,
                "price_per_kwh": 0.25,
                "currency": "AUD",
            },
            # Another subdivision's price never applies to AU-VIC.
            {
                "country_code": "AU",
                "subdivision_code": "AU-QLD",
                "year": 2025,
                "price_per_kwh": 9.0,
                "currency": "AUD",
            },
            {
                "country_code": "AU",
                "subdivision_code": "",
                "year": 2024,
                "price_per_kwh": 0.20,
                "currency": "AUD",
            },
            {"country_code": "AU", "year": 2026, "price_per_kwh": 0.40, "currency": "aud"},
            {"country_code": "CA", "year": 2020, "price_per_kwh": 0.10, "currency": "CAD"},
            # The subdivision level exists for NSW, so NSW never falls back to country.
            {"country_code": "AU", "year": 2025, "price_per_kwh": 0.50, "currency": "AUD"},
        ],
    )
    inv = [
        # NSW, 2025: subdivision level, nearest earlier year 2023 -> 100 / 0.25 = 400 kWh.
        {
            "invoice_id": "i1",
            "site_id": "nsw",
            "period_start": ts("2025-03-01"),
            "period_end": ts("2025-04-01"),
            "amount": 100.0,
            "currency": "AUD",
        },
        # VIC, 2025: no VIC price -> country AU 2025 (0.50) -> 200 kWh.
        {
            "invoice_id": "i2",
            "site_id": "vic",
            "period_start": ts("2025-03-01"),
            "period_end": ts("2025-04-01"),
            "amount": 100.0,
            "currency": "aud",
        },
        # VIC, 2023: country level, no 2023 or earlier -> nearest later 2024 (0.20) -> 500 kWh.
        {
            "invoice_id": "i3",
            "site_id": "vic",
            "period_start": ts("2023-12-15"),
            "period_end": ts("2024-01-15"),
            "amount": 100.0,
            "currency": "AUD",
        },
        # Currency mismatch: quarantined, no conversion.
        {
            "invoice_id": "i4",
            "site_id": "qc",
            "period_start": ts("2025-03-01"),
            "period_end": ts("2025-04-01"),
            "amount": 50.0,
            "currency": "USD",
        },
        # No price at any level.
        {
            "invoice_id": "i5",
            "site_id": "jp",
            "period_start": ts("2025-03-01"),
            "period_end": ts("2025-04-01"),
            "amount": 50.0,
            "currency": "JPY",
        },
        # Measured kWh wins over the amount; not estimated.
        {
            "invoice_id": "i6",
            "site_id": "nsw",
            "period_start": ts("2025-03-01"),
            "period_end": ts("2025-04-01"),
            "energy_kwh": 42.0,
            "amount": 1.0,
            "currency": "AUD",
        },
    ]
    priced = price_invoices(bronze(spark, schemas.UTILITY_INVOICES, inv), codes, prices)
    # One row per invoice across the price joins.
    expected = frame(
        spark,
        "invoice_id STRING, kwh DOUBLE, estimated BOOLEAN, reject_reason STRING",
        [
            ("i1", 400.0, True, None),
            ("i2", 200.0, True, None),
            ("i3", 500.0, True, None),
            ("i4", None, True, "price currency CAD differs from invoice currency USD"),
            ("i5", None, True, "no electricity price for site"),
            ("i6", 42.0, False, None),
        ],
    )
    got = priced.select("invoice_id", "kwh", "estimated", "reject_reason")
    assert_frames_equal(got, expected, **EXACT)

    # The rejects are kept per run month they touch: March 2025 only (their periods end on
    # 1 April, exclusive), so a run of other months leaves them alone.
    run_months = months_frame(spark, [d("2025-03-01"), d("2025-04-01")])
    quarantine = invoice_quarantine(priced, run_months).collect()
    assert quarantine[0].asDict().keys() == set(schemas.QUARANTINE.fieldNames())
    by_id = {json.loads(r["raw"])["invoice_id"]: r for r in quarantine}
    assert sorted(by_id) == ["i4", "i5"]
    assert {r["month"] for r in quarantine} == {d("2025-03-01")}
    assert invoice_quarantine(priced, months_frame(spark, [d("2025-05-01")])).count() == 0
    assert by_id["i5"]["stage"] == "site_energy"
    assert by_id["i5"]["_source_file"] == "utility_invoices.csv"
    assert json.loads(by_id["i4"]["raw"])["amount"] == 50.0


def test_gap_filling_from_telemetry_times_design_pue(spark):
    sites = bronze(
        spark,
        schemas.SITES,
        [
            {"site_id": "a", "cluster_id": "c", "design_pue": 1.2},
            {"site_id": "b", "cluster_id": "c"},  # no PUE: default 1.15
            {"site_id": "z", "cluster_id": "c"},  # no data at all
        ],
    )
    racks = bronze(
        spark,
        schemas.RACKS,
        [
            {"rack_id": "r1", "site_id": "a"},
            {"rack_id": "r2", "site_id": "a"},
            {"rack_id": "r3", "site_id": "b"},
        ],
    )
    telemetry = bronze(
        spark,
        schemas.RACK_TELEMETRY,
        [
            {"rack_id": "r1", "hour": ts("2025-01-01 00:00"), "it_energy_kwh": 2.0},  # covered
            {"rack_id": "r2", "hour": ts("2025-01-10 05:00"), "it_energy_kwh": 3.0},  # covered
            {"rack_id": "r1", "hour": ts("2025-01-16 00:00"), "it_energy_kwh": 1.0},  # end excl.
            {"rack_id": "r1", "hour": ts("2025-01-20 00:00"), "it_energy_kwh": 1.5},
            {"rack_id": "r2", "hour": ts("2025-01-20 00:00"), "it_energy_kwh": 2.5},
            {"rack_id": "r1", "hour": ts("2025-01-31 23:00"), "it_energy_kwh": 0.5},
            {"rack_id": "r3", "hour": ts("2025-01-05 00:00"), "it_energy_kwh": 10.0},
            {"rack_id": "r3", "hour": ts("2025-02-05 00:00"), "it_energy_kwh": 99.0},  # not run
        ],
    )
    inv = [
        # Site a: 2025-01-01..2025-01-16 (15 days), 1500 kWh, all in January.
        {
            "invoice_id": "a1",
            "site_id": "a",
            "period_start": ts("2025-01-01"),
            "period_end": ts("2025-01-16"),
            "energy_kwh": 1500.0,
        },
        # Site b: a rejected invoice covers no hour.
        {
            "invoice_id": "b1",
            "site_id": "b",
            "period_start": ts("2025-01-01"),
            "period_end": ts("2025-02-01"),
            "amount": 10.0,
            "currency": "EUR",
        },
    ]
    codes = frame(spark, CODES, [{"site_id": "a"}, {"site_id": "b"}, {"site_id": "z"}])
    prices = bronze(spark, schemas.ELECTRICITY_PRICES, [])
    priced = price_invoices(bronze(spark, schemas.UTILITY_INVOICES, inv), codes, prices)
    months = months_frame(spark, [d("2025-01-01")])
    hourly = site_hourly_it(telemetry, racks, months)
    gaps = gap_filled_energy(hourly, priced, sites, default_design_pue=1.15)
    site_months = sites.select("site_id").crossJoin(months)
    out = site_month_energy(site_months, invoice_energy_by_month(priced), gaps)
    expected = frame(
        spark,
        "site_id STRING, energy_kwh DOUBLE, estimated_energy_share DOUBLE, it_energy_kwh DOUBLE",
        [
            # a: uncovered IT = 1.0 (16th 00:00, end exclusive) + 1.5 + 2.5 + 0.5 = 5.5;
            # x 1.2 = 6.6.
            ("a", 1500 + 6.6, 6.6 / 1506.6, 2 + 3 + 1 + 1.5 + 2.5 + 0.5),
            # b: only telemetry (the rejected invoice covers nothing): 10 x 1.15 = 11.5,
            # share 1.
            ("b", 11.5, 1.0, 10.0),
            # z: nothing -> zeros, share 0.
            ("z", 0.0, 0.0, 0.0),
        ],
    )
    got = out.select("site_id", "energy_kwh", "estimated_energy_share", "it_energy_kwh")
    assert_frames_equal(got, expected, **EXACT)
