"""Rollups of gold/account_emissions: business units (an unmapped account included), payer,
linked account, region and service, all through rollup_emissions; numbers by hand."""

from __future__ import annotations

import datetime as dt

import pytest
from helpers import assert_conforms, assert_frames_equal, frame
from pyspark.sql import DataFrame, SparkSession

from carbon_core import schemas
from carbon_core.insight.rollups import (
    BY_LINKED_ACCOUNT,
    BY_PAYER,
    BY_REGION,
    BY_SERVICE,
    build_bu_monthly,
    check_rollup_totals,
    rollup_emissions,
)

JAN, FEB = dt.date(2025, 1, 1), dt.date(2025, 2, 1)


def _emission(month, payer, account, region, product, energy, s1, lbm, mbm, s3, water):
    location = {"r1": "Region One", "r2": "Region Two"}[region]
    return (
        month, "v2.0", payer, account, False, region, location, product,
        energy, s1, lbm, mbm, s3, water, s1 + lbm + s3, s1 + mbm + s3,
    )  # fmt: skip


# Payer p1 with accounts a1 (Retail, RC-1), a2 (Retail, RC-2); payer p2 with a3 (unmapped).
ROWS = [
    _emission(JAN, "p1", "a1", "r1", "EC2", 100.0, 1.0, 40.0, 10.0, 5.0, 7.0),
    _emission(JAN, "p1", "a1", "r1", "S3", 20.0, 0.0, 8.0, 2.0, 1.0, 1.0),
    _emission(JAN, "p1", "a2", "r1", "EC2", 50.0, 0.5, 20.0, 5.0, 2.5, 3.5),
    _emission(JAN, "p2", "a3", "r2", "EC2", 10.0, 0.0, 6.0, 6.0, 1.0, 0.5),
    _emission(FEB, "p1", "a1", "r1", "EC2", 80.0, 1.0, 32.0, 8.0, 4.0, 5.0),
    _emission(FEB, "p2", "a3", "r1", "EC2", 30.0, 0.0, 12.0, 3.0, 1.5, 2.0),
]
BUSINESS_UNITS = [
    ("a1", "Retail", "RC-1", "env=prod"),
    ("a2", "Retail", "RC-2", None),
    ("zz", "Ghost", "GC-1", None),  # an account without emissions adds no row
]


@pytest.fixture(scope="module")
def emissions(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(ROWS, schemas.ACCOUNT_EMISSIONS)


@pytest.fixture(scope="module")
def business_units(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(BUSINESS_UNITS, schemas.BUSINESS_UNITS.schema)


def _by(frame: DataFrame, *keys: str) -> dict[tuple, dict]:
    return {tuple(r[k] for k in keys): r.asDict() for r in frame.collect()}


def test_bu_monthly_sums_per_grain_and_keeps_unmapped_accounts(spark, emissions, business_units):
    bu = build_bu_monthly(emissions, business_units)
    assert_conforms(bu.schema, schemas.BU_MONTHLY)
    one, two = "Region One", "Region Two"
    # One account per grain here, so each row carries its account's quantities; totals
    # LBM = s1 + lbm + s3, MBM = s1 + mbm + s3 (a3 in January: 0 + 6 + 1 = 7 and 7).
    expected = frame(
        spark,
        schemas.BU_MONTHLY,
        [  # ..., accounts, energy, s1, lbm, mbm, s3, water, total LBM, total MBM
            (JAN, "v2.0", "Retail", "RC-1", "r1", one, "EC2", 1,
             100.0, 1.0, 40.0, 10.0, 5.0, 7.0, 46.0, 16.0),
            (JAN, "v2.0", "Retail", "RC-1", "r1", one, "S3", 1,
             20.0, 0.0, 8.0, 2.0, 1.0, 1.0, 9.0, 3.0),
            (JAN, "v2.0", "Retail", "RC-2", "r1", one, "EC2", 1,
             50.0, 0.5, 20.0, 5.0, 2.5, 3.5, 23.0, 8.0),
            (JAN, "v2.0", "unmapped", None, "r2", two, "EC2", 1,
             10.0, 0.0, 6.0, 6.0, 1.0, 0.5, 7.0, 7.0),
            (FEB, "v2.0", "Retail", "RC-1", "r1", one, "EC2", 1,
             80.0, 1.0, 32.0, 8.0, 4.0, 5.0, 37.0, 13.0),
            (FEB, "v2.0", "unmapped", None, "r1", one, "EC2", 1,
             30.0, 0.0, 12.0, 3.0, 1.5, 2.0, 13.5, 4.5),
        ],
    )  # fmt: skip
    assert_frames_equal(bu, expected, rtol=0.0, atol=0.0)  # sums of binary-exact numbers


def test_bu_monthly_adds_up_per_business_unit(emissions, business_units):
    bu = build_bu_monthly(emissions, business_units)
    retail_jan = (
        bu.where("business_unit = 'Retail' AND month = DATE'2025-01-01'")
        .groupBy()
        .sum("total_lbm_kg", "total_mbm_kg", "water_l")
        .first()
    )
    # a1 EC2 46 + a1 S3 9 + a2 EC2 23 = 78 LBM; 16 + 3 + 8 = 27 MBM; water 7 + 1 + 3.5
    assert tuple(retail_jan) == (78.0, 27.0, 11.5)


def test_payer_linked_account_region_and_service_rollups(emissions):
    payer = _by(rollup_emissions(emissions, BY_PAYER), "month", "payer_account_id")
    # p1 in January: a1 (EC2, S3) and a2 -> 2 accounts; energy 100 + 20 + 50
    assert payer[(JAN, "p1")]["accounts"] == 2
    assert payer[(JAN, "p1")]["energy_kwh"] == 170.0
    assert payer[(JAN, "p1")]["total_lbm_kg"] == 46.0 + 9.0 + 23.0
    assert payer[(FEB, "p2")]["total_mbm_kg"] == 0.0 + 3.0 + 1.5

    linked = _by(rollup_emissions(emissions, BY_LINKED_ACCOUNT), "month", "usage_account_id")
    assert linked[(JAN, "a1")]["scope2_mbm_kg"] == 12.0
    assert linked[(JAN, "a1")]["payer_account_id"] == "p1"

    region = _by(rollup_emissions(emissions, BY_REGION), "month", "region_code")
    # r1 in February: a1 and a3; scope 3 4 + 1.5; r2 only in January
    assert region[(FEB, "r1")]["accounts"] == 2
    assert region[(FEB, "r1")]["scope3_kg"] == 5.5
    assert set(region) == {(JAN, "r1"), (JAN, "r2"), (FEB, "r1")}

    service = _by(rollup_emissions(emissions, BY_SERVICE), "month", "product_code")
    # EC2 in January: a1, a2, a3; LBM 46 + 23 + 7
    assert service[(JAN, "EC2")]["accounts"] == 3
    assert service[(JAN, "EC2")]["total_lbm_kg"] == 76.0


def test_totals_check_holds_and_catches_a_lost_account(emissions, business_units):
    bu = build_bu_monthly(emissions, business_units)
    results = check_rollup_totals(bu, emissions)
    assert results and all(r.ok for r in results)
    jan_lbm = next(r for r in results if r.month == JAN and r.quantity == "total_lbm_kg")
    assert jan_lbm.expected == jan_lbm.actual == 46.0 + 9.0 + 23.0 + 7.0

    lost = bu.where("business_unit != 'unmapped'")  # what an inner join would have done
    broken = [r for r in check_rollup_totals(lost, emissions) if not r.ok]
    assert {(r.month, r.quantity) for r in broken} >= {(JAN, "total_mbm_kg"), (FEB, "energy_kwh")}
    feb_energy = next(r for r in broken if r.month == FEB and r.quantity == "energy_kwh")
    assert (feb_energy.expected, feb_energy.actual) == (110.0, 80.0)


def test_rollup_needs_a_grouping(emissions):
    with pytest.raises(ValueError, match="at least one"):
        rollup_emissions(emissions, [])
