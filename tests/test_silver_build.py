"""build_site_monthly end to end on a tiny world (docs/methodology.md §2 to §6)."""

from __future__ import annotations

import pytest
from helpers import assert_conforms, bronze, d, ts

from carbon_core import schemas
from carbon_core.config import MethodologySettings
from carbon_core.errors import CarbonlakeError
from carbon_core.reference import ReferenceTables
from carbon_core.silver import build_site_monthly

JAN, FEB = d("2025-01-01"), d("2025-02-01")
DIESEL_L = 2.705126


def _reference(spark) -> ReferenceTables:
    grid = [
        ("egrid_subregion", "NEWE", 2023, 0.25, "egrid2023"),
        ("subdivision", "CA-QC", 2019, 0.002, "nir"),
        ("country", "FR", 2024, 0.05, "fr"),
        ("global", "WORLD", 2024, 0.47, "world"),
    ]
    return ReferenceTables(
        grid_factors=spark.createDataFrame(grid, schemas.GRID_FACTORS),
        residual_mix=spark.createDataFrame([("NEWE", 2023, 0.5, "rm")], schemas.RESIDUAL_MIX),
        zip_to_egrid=spark.createDataFrame([("02134", "NEWE")], schemas.ZIP_TO_EGRID),
        fuel_factors=spark.createDataFrame(
            [("diesel", "l", DIESEL_L, "epa")], schemas.FUEL_FACTORS
        ),
        files={},
    )


def _inputs(spark) -> dict:
    return {
        "sites": bronze(
            spark,
            schemas.SITES,
            [
                {
                    "site_id": "s1",
                    "cluster_id": "c1",
                    "country_code": "US",
                    "postal_code": "2134-0001",
                    "design_pue": 1.2,
                    "building_embodied_kgco2e": 1200.0,
                    "building_in_service_date": d("2024-06-05"),
                },
                {"site_id": "s2", "cluster_id": "c1", "latitude": 45.50, "longitude": -73.57},
                {"site_id": "s3", "cluster_id": "c2", "country_code": "FR"},
            ],
        ),
        "racks": bronze(
            spark,
            schemas.RACKS,
            [{"rack_id": "r1", "site_id": "s1"}, {"rack_id": "r2", "site_id": "s2"}],
        ),
        "rack_telemetry": bronze(
            spark,
            schemas.RACK_TELEMETRY,
            [
                {"rack_id": "r1", "hour": ts("2025-01-05 00:00"), "it_energy_kwh": 2.0},  # invoiced
                {"rack_id": "r1", "hour": ts("2025-01-20 00:00"), "it_energy_kwh": 5.0},  # gap
                {"rack_id": "r2", "hour": ts("2025-02-01 01:00"), "it_energy_kwh": 4.0},  # gap
            ],
        ),
        "utility_invoices": bronze(
            spark,
            schemas.UTILITY_INVOICES,
            [
                {
                    "invoice_id": "i1",
                    "site_id": "s1",
                    "period_start": ts("2025-01-01"),
                    "period_end": ts("2025-01-16"),
                    "energy_kwh": 1500.0,
                },
                # USD invoice, CAD price: quarantined, covers no hour.
                {
                    "invoice_id": "i2",
                    "site_id": "s2",
                    "period_start": ts("2025-01-01"),
                    "period_end": ts("2025-03-01"),
                    "amount": 10.0,
                    "currency": "USD",
                },
                # 310 EUR / 0.1 EUR (FR 2024, nearest earlier) = 3100 kWh: Jan 17/31, Feb 14/31.
                {
                    "invoice_id": "i3",
                    "site_id": "s3",
                    "period_start": ts("2025-01-15"),
                    "period_end": ts("2025-02-15"),
                    "amount": 310.0,
                    "currency": "EUR",
                },
                # Outside the run: never quarantined here.
                {
                    "invoice_id": "i4",
                    "site_id": "s2",
                    "period_start": ts("2023-01-01"),
                    "period_end": ts("2023-02-01"),
                    "amount": 1.0,
                    "currency": "USD",
                },
            ],
        ),
        "electricity_prices": bronze(
            spark,
            schemas.ELECTRICITY_PRICES,
            [
                {"country_code": "FR", "year": 2024, "price_per_kwh": 0.1, "currency": "EUR"},
                {"country_code": "CA", "year": 2025, "price_per_kwh": 0.1, "currency": "CAD"},
            ],
        ),
        "fuel_records": bronze(
            spark,
            schemas.FUEL_RECORDS,
            [
                {
                    "record_id": "f1",
                    "site_id": "s1",
                    "period_start": ts("2024-02-01"),
                    "period_end": ts("2024-03-01"),
                    "source_type": "diesel",
                    "quantity": 10.0,
                    "unit": "l",
                },
            ],
        ),
        "energy_contracts": bronze(
            spark,
            schemas.ENERGY_CONTRACTS,
            [
                {
                    "contract_id": "k1",
                    "instrument": "supplier",
                    "site_id": "s1",
                    "period_start": ts("2025-01-01"),
                    "period_end": ts("2025-02-01"),
                    "energy_kwh": 1000.0,
                    "emission_factor_kg_per_kwh": 0.0,
                },
                {
                    "contract_id": "k2",
                    "instrument": "rec",
                    "market_boundary": "CA",
                    "period_start": ts("2025-02-01"),
                    "period_end": ts("2025-03-01"),
                    "energy_kwh": 10.0,
                    "emission_factor_kg_per_kwh": 0.0,
                },
            ],
        ),
        "site_water": bronze(
            spark,
            schemas.SITE_WATER,
            [
                {
                    "site_id": "s3",
                    "period_start": ts("2025-01-01"),
                    "period_end": ts("2025-02-01"),
                    "withdrawal_l": 100.0,
                },
            ],
        ),
    }


def test_build_site_monthly_tiny_world(spark):
    result = build_site_monthly(
        **_inputs(spark),
        reference=_reference(spark),
        months=[JAN, FEB],
        methodology=MethodologySettings(),
    )
    assert_conforms(result.site_monthly.schema, schemas.SITE_MONTHLY)
    rows = {(r["site_id"], r["month"]): r.asDict() for r in result.site_monthly.collect()}
    assert len(rows) == 6  # 3 sites x 2 months

    s1 = rows[("s1", JAN)]
    # 1500 invoiced + 5 kWh uncovered IT x 1.2 = 1506; estimated 6/1506.
    assert s1["energy_kwh"] == pytest.approx(1506.0, rel=1e-12)
    assert s1["estimated_energy_share"] == pytest.approx(6 / 1506, rel=1e-12)
    assert s1["it_energy_kwh"] == pytest.approx(7.0, rel=1e-12)
    assert (s1["factor_level"], s1["factor_zone"], s1["factor_year"], s1["factor_source"]) == (
        "egrid_subregion",
        "NEWE",
        2023,
        "egrid2023",
    )
    assert s1["scope2_lbm_kg"] == pytest.approx(1506 * 0.25, rel=1e-12)
    # Site-bound 1000 @ 0; the other 506 take NEWE's residual mix 0.5 -> 253.
    assert (s1["market_boundary"], s1["site_covered_kwh"], s1["residual_mix_kwh"]) == (
        "NEWE",
        pytest.approx(1000.0),
        pytest.approx(506.0),
    )
    assert s1["scope2_mbm_kg"] == pytest.approx(253.0, rel=1e-12)
    # No 2025 fuel record: Jan <- Jan 2024 (0), Feb <- Feb 2024 (10 l diesel); provisional.
    assert (s1["scope1_kg"], s1["provisional"]) == (0.0, True)
    assert rows[("s1", FEB)]["scope1_kg"] == pytest.approx(10 * DIESEL_L, rel=1e-12)
    assert rows[("s1", FEB)]["provisional"] is True
    assert s1["scope3_kg"] == pytest.approx(2.0, rel=1e-12)  # 1200 / 600 months

    s2_feb = rows[("s2", FEB)]
    # Montreal coordinates -> CA-QC (2019 factor); quarantined invoice covers nothing:
    # 4 kWh IT x default PUE 1.15 = 4.6 kWh; boundary CA REC 10 kWh @ 0 covers it all.
    assert (s2_feb["factor_level"], s2_feb["factor_zone"]) == ("subdivision", "CA-QC")
    assert s2_feb["energy_kwh"] == pytest.approx(4.6, rel=1e-12)
    assert s2_feb["scope2_lbm_kg"] == pytest.approx(4.6 * 0.002, rel=1e-12)
    assert (s2_feb["market_boundary"], s2_feb["boundary_covered_kwh"]) == ("CA", 4.6)
    assert s2_feb["scope2_mbm_kg"] == 0.0
    assert rows[("s2", JAN)]["energy_kwh"] == 0.0
    assert rows[("s2", JAN)]["estimated_energy_share"] == 0.0

    s3_jan, s3_feb = rows[("s3", JAN)], rows[("s3", FEB)]
    assert s3_jan["energy_kwh"] == pytest.approx(1700.0, rel=1e-12)  # 3100 x 17/31
    assert s3_feb["energy_kwh"] == pytest.approx(1400.0, rel=1e-12)  # 3100 x 14/31
    assert s3_jan["estimated_energy_share"] == pytest.approx(1.0, rel=1e-12)
    assert s3_jan["scope2_lbm_kg"] == pytest.approx(85.0, rel=1e-12)  # 1700 x 0.05
    # FR has no residual mix: location factor.
    assert s3_jan["location_fallback_kwh"] == pytest.approx(1700.0, rel=1e-12)
    assert (s3_jan["water_l"], s3_feb["water_l"]) == (100.0, 0.0)
    assert (s3_jan["provisional"], s3_jan["scope1_kg"]) == (False, 0.0)

    # CA REC: 10 - 4.6 = 5.4 kWh surplus in February.
    surplus = [tuple(r) for r in result.instrument_surplus.collect()]
    assert surplus == [(FEB, None, "CA", pytest.approx(5.4, rel=1e-12))]

    # One reject per run month the invoice touches (January and February), so that a run
    # of one month replaces its own rejects only.
    quarantine = sorted(result.invoice_quarantine.collect(), key=lambda r: r["month"])
    reason = "price currency CAD differs from invoice currency USD"
    assert [(r["month"], r["reason"]) for r in quarantine] == [(JAN, reason), (FEB, reason)]
    assert all('"invoice_id":"i2"' in r["raw"] for r in quarantine)

    eff = {(r["cluster_id"], r["month"]): r for r in result.cluster_efficiency.collect()}
    assert_conforms(result.cluster_efficiency.schema, schemas.CLUSTER_EFFICIENCY)
    assert eff[("c1", JAN)]["facility_energy_kwh"] == pytest.approx(1506.0, rel=1e-12)
    assert eff[("c1", JAN)]["pue"] == pytest.approx(1506 / 7, rel=1e-12)
    assert eff[("c1", FEB)]["pue"] == pytest.approx(1.15, rel=1e-12)  # 4.6 / 4
    assert (eff[("c2", JAN)]["pue"], eff[("c2", JAN)]["wue_l_per_kwh"]) == (None, None)
    assert len(eff) == 4

    assert sorted(r["site_id"] for r in result.sites_without_building_date.collect()) == [
        "s2",
        "s3",
    ]


def test_annual_matching_refuses_partial_years(spark):
    with pytest.raises(CarbonlakeError, match="annual"):
        build_site_monthly(
            **_inputs(spark),
            reference=_reference(spark),
            months=[JAN, FEB],
            methodology=MethodologySettings(market_matching="annual"),
        )
