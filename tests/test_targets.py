"""Reduction targets: the straight-line path by hand, annualised progress, on_track, and
gold/target_progress as the run writes it."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import DataFrame, SparkSession

from carbon_core import schemas
from carbon_core.config import TargetSettings
from carbon_core.insight.targets import target_progress, write_target_progress
from carbon_core.lake import TableCheckpoint, restore_tables, table_version, tables

RETAIL = TargetSettings(
    business_unit="Retail", baseline_year=2024, target_year=2030, reduction_percent=42, basis="mbm"
)
PLATFORM = TargetSettings(
    business_unit="Platform",
    baseline_year=2024,
    target_year=2026,
    reduction_percent=50,
    basis="lbm",
)
NOBODY = TargetSettings(
    business_unit="Nobody", baseline_year=2025, target_year=2027, reduction_percent=10
)


def _bu(month: dt.date, unit: str, product: str, lbm: float, mbm: float):
    values = dict.fromkeys(schemas.BU_MONTHLY.fieldNames())
    values.update(
        month=month, model_version="v2.0", business_unit=unit, region_code="r1",
        location="Region One", product_code=product, accounts=1, total_lbm_kg=lbm,
        total_mbm_kg=mbm,
    )  # fmt: skip
    return tuple(values[name] for name in schemas.BU_MONTHLY.fieldNames())


ROWS = [
    # Retail 2024: October to December only, 100 kg MBM a month (two products in October)
    _bu(dt.date(2024, 10, 1), "Retail", "EC2", 500.0, 60.0),
    _bu(dt.date(2024, 10, 1), "Retail", "S3", 500.0, 40.0),
    _bu(dt.date(2024, 11, 1), "Retail", "EC2", 999.0, 100.0),
    _bu(dt.date(2024, 12, 1), "Retail", "EC2", 999.0, 100.0),
    # Retail 2025: January 90, February 95 kg MBM
    _bu(dt.date(2025, 1, 1), "Retail", "EC2", 999.0, 90.0),
    _bu(dt.date(2025, 2, 1), "Retail", "EC2", 999.0, 95.0),
    # Platform (LBM): December 2024 50 kg, January 2025 40 kg
    _bu(dt.date(2024, 12, 1), "Platform", "EC2", 50.0, 1.0),
    _bu(dt.date(2025, 1, 1), "Platform", "EC2", 40.0, 1.0),
    _bu(dt.date(2025, 1, 1), "unmapped", "EC2", 7.0, 7.0),
]


@pytest.fixture(scope="module")
def bu_monthly(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(ROWS, schemas.BU_MONTHLY)


def _progress(frame: DataFrame) -> dict[tuple[str, int], dict]:
    return {(r["business_unit"], r["year"]): r.asDict() for r in frame.collect()}


def test_straight_line_path_by_hand(bu_monthly):
    # baseline 1200 kg, 42 % off by 2030 over 6 years: 7 % of the baseline (84 kg) a year
    rows = _progress(target_progress(bu_monthly, [RETAIL]))
    path = [rows[("Retail", year)]["path_kg"] for year in range(2024, 2031)]
    assert path == pytest.approx([1200.0, 1116.0, 1032.0, 948.0, 864.0, 780.0, 696.0], rel=1e-12)


def test_progress_per_target_and_year(bu_monthly):
    progress = target_progress(bu_monthly, [RETAIL, PLATFORM, NOBODY])
    assert progress.schema == schemas.TARGET_PROGRESS
    rows = _progress(progress)
    assert sorted(y for (unit, y) in rows if unit == "Retail") == list(range(2024, 2031))
    assert sorted(y for (unit, y) in rows if unit == "Platform") == [2024, 2025, 2026]

    base = rows[("Retail", 2024)]
    # 300 kg over 3 months of 2024, annualised: 1200 kg
    assert (base["baseline_months"], base["baseline_kg"]) == (3, 1200.0)
    assert (base["actual_kg"], base["annualised_kg"], base["path_kg"]) == (300.0, 1200.0, 1200.0)
    assert base["on_track"] is True
    retail_2025 = rows[("Retail", 2025)]
    # 185 kg in 2 months -> 1110 kg a year, below the path's 1116 kg
    assert (retail_2025["months"], retail_2025["actual_kg"]) == (2, 185.0)
    assert retail_2025["annualised_kg"] == pytest.approx(1110.0, rel=1e-12)
    assert retail_2025["path_kg"] == pytest.approx(1116.0, rel=1e-12)
    assert retail_2025["on_track"] is True
    future = rows[("Retail", 2030)]
    assert (future["actual_kg"], future["on_track"]) == (None, None)
    assert future["path_kg"] == pytest.approx(696.0, rel=1e-12)

    platform_2025 = rows[("Platform", 2025)]
    # LBM basis: baseline 50 kg x 12 = 600; path 600 x (1 - 0.5 x 1/2) = 450; actual 40 x 12
    assert platform_2025["baseline_kg"] == 600.0
    assert platform_2025["path_kg"] == pytest.approx(450.0, rel=1e-12)
    assert platform_2025["annualised_kg"] == pytest.approx(480.0, rel=1e-12)
    assert platform_2025["on_track"] is False

    nobody = rows[("Nobody", 2025)]
    assert (nobody["baseline_kg"], nobody["path_kg"], nobody["on_track"]) == (None, None, None)


def test_no_target_gives_an_empty_frame(bu_monthly):
    assert target_progress(bu_monthly, []).count() == 0


def test_the_run_writes_gold_target_progress_and_a_restore_takes_it_back(
    spark, bu_monthly, tmp_path
):
    lake = tmp_path / "lake"
    tables.overwrite_lake_table(bu_monthly, lake, tables.BU_MONTHLY)
    write_target_progress(spark, lake, [RETAIL, PLATFORM])
    table = tables.read_lake_table(spark, lake, tables.TARGET_PROGRESS)
    assert table.schema == schemas.TARGET_PROGRESS
    rows = _progress(table)
    # Retail 2024..2030 and Platform 2024..2026, one row per target and year
    assert table.count() == len(rows) == 7 + 3
    retail = rows[("Retail", 2025)]
    assert (retail["baseline_months"], retail["baseline_kg"], retail["months"]) == (3, 1200.0, 2)
    assert (retail["actual_kg"], retail["on_track"]) == (185.0, True)
    assert retail["annualised_kg"] == pytest.approx(1110.0, rel=1e-12)
    assert retail["path_kg"] == pytest.approx(1116.0, rel=1e-12)
    platform = rows[("Platform", 2025)]
    assert (platform["annualised_kg"], platform["on_track"]) == (480.0, False)
    assert platform["path_kg"] == pytest.approx(450.0, rel=1e-12)
    assert rows[("Platform", 2026)]["path_kg"] == pytest.approx(300.0, rel=1e-12)
    assert rows[("Platform", 2026)]["on_track"] is None

    uri = tables.TARGET_PROGRESS.uri(lake)
    before = TableCheckpoint(uri, table_version(spark, uri))
    # Without targets the table stays, empty, in one more commit.
    write_target_progress(spark, lake, [])
    assert tables.read_lake_table(spark, lake, tables.TARGET_PROGRESS).count() == 0
    assert table_version(spark, uri) == before.version + 1
    # A failed run's restore brings the earlier progress back.
    restore_tables(spark, [before])
    assert tables.read_lake_table(spark, lake, tables.TARGET_PROGRESS).count() == 10
