"""Reduction targets: the straight-line path by hand, annualised progress, on_track, and the
JSON progress kept in a table property of gold/bu_monthly."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pyspark.sql import DataFrame, SparkSession

from carbon_core import schemas
from carbon_core.config import TargetSettings
from carbon_core.insight.targets import TARGETS_PROPERTY, path_kg, progress_json, target_progress
from carbon_core.lake import (
    TableCheckpoint,
    restore_tables,
    set_table_properties,
    table_properties,
    table_version,
    write_table,
)

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


def test_straight_line_path_by_hand():
    # baseline 1200 kg, 42 % off by 2030 over 6 years: 7 % of the baseline a year
    assert path_kg(RETAIL, 1200.0, 2024) == 1200.0
    assert path_kg(RETAIL, 1200.0, 2025) == pytest.approx(1116.0, rel=1e-12)
    assert path_kg(RETAIL, 1200.0, 2027) == pytest.approx(948.0, rel=1e-12)
    assert path_kg(RETAIL, 1200.0, 2030) == pytest.approx(696.0, rel=1e-12)
    assert path_kg(RETAIL, 1200.0, 2033) == pytest.approx(696.0, rel=1e-12)  # stays at target


def _progress(frame: DataFrame) -> dict[tuple[str, int], dict]:
    return {(r["business_unit"], r["year"]): r.asDict() for r in frame.collect()}


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


def test_progress_json_lives_in_a_table_property_and_restores(spark, bu_monthly, tmp_path):
    path = tmp_path / "bu_monthly"
    write_table(bu_monthly, path, mode="overwrite")
    before = TableCheckpoint(str(path), table_version(spark, path))
    text = progress_json(target_progress(bu_monthly, [RETAIL]))
    assert set_table_properties(spark, path, {TARGETS_PROPERTY: text}) is True
    # an unchanged value makes no commit
    version = table_version(spark, path)
    assert set_table_properties(spark, path, {TARGETS_PROPERTY: text}) is False
    assert table_version(spark, path) == version
    stored = json.loads(table_properties(spark, path)[TARGETS_PROPERTY])
    assert [(r["year"], r["on_track"]) for r in stored][:2] == [(2024, True), (2025, True)]
    assert stored[1]["path_kg"] == 1116.0 and stored[1]["business_unit"] == "Retail"
    # quotes and backslashes survive the SQL literal
    set_table_properties(spark, path, {"carbonlake.note": "it's a \\ test"})
    assert table_properties(spark, path)["carbonlake.note"] == "it's a \\ test"
    set_table_properties(spark, path, {"carbonlake.note": None})
    assert "carbonlake.note" not in table_properties(spark, path)
    # a failed run's restore takes the property back with the data
    restore_tables(spark, [before])
    assert TARGETS_PROPERTY not in table_properties(spark, path)
