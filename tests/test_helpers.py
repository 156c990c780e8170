"""The test helpers themselves: the frame builder and what the frame assertion refuses."""

from __future__ import annotations

import datetime as dt

import pytest
from helpers import assert_frames_equal, frame
from pyspark.errors import PySparkAssertionError
from pyspark.sql import SparkSession
from pyspark.sql import types as T

SCHEMA = "month DATE NOT NULL, site_id STRING NOT NULL, kwh DOUBLE"
JAN, FEB = dt.date(2025, 1, 1), dt.date(2025, 2, 1)


def test_frame_takes_a_ddl_schema_dicts_tuples_and_defaults(spark: SparkSession) -> None:
    df = frame(
        spark,
        SCHEMA,
        [{"month": JAN, "site_id": "S1"}, (FEB, "S2", 2.5)],
        defaults={"kwh": 0.0},
    )
    assert df.schema == T.StructType(
        [
            T.StructField("month", T.DateType(), False),
            T.StructField("site_id", T.StringType(), False),
            T.StructField("kwh", T.DoubleType(), True),
        ]
    )
    assert [tuple(r) for r in df.orderBy("month").collect()] == [
        (JAN, "S1", 0.0),
        (FEB, "S2", 2.5),
    ]
    with pytest.raises(AssertionError, match="kWh"):
        frame(spark, SCHEMA, [{"month": JAN, "site_id": "S1", "kWh": 1.0}])


def test_frames_equal_in_any_row_order_within_the_tolerance(spark: SparkSession) -> None:
    actual = frame(spark, SCHEMA, [(FEB, "S1", 0.1 + 0.2), (JAN, "S1", 1e6 * (1 + 1e-10))])
    expected = frame(spark, SCHEMA, [(JAN, "S1", 1e6), (FEB, "S1", 0.3)])
    assert_frames_equal(actual, expected)
    with pytest.raises(PySparkAssertionError):
        assert_frames_equal(actual, expected, ordered=True)


@pytest.mark.parametrize(
    "expected_rows",
    [
        [(JAN, "S1", 1.0 + 2e-9), (FEB, "S1", 2.0)],  # beyond rtol 1e-9
        [(JAN, "S1", 1.0), (FEB, "S1", float("nan"))],  # a NaN is not 2.0
        [(JAN, "S1", 1.0), (FEB, "S1", None)],  # nor is a null
        [(JAN, "S1", 1.0), (FEB, "S2", 2.0)],  # another key
        [(JAN, "S1", 1.0)],  # a row missing
        [(JAN, "S1", 1.0), (FEB, "S1", 2.0), (FEB, "S1", 2.0)],  # a row twice
    ],
)
def test_frames_differ(spark: SparkSession, expected_rows: list[tuple]) -> None:
    actual = frame(spark, SCHEMA, [(JAN, "S1", 1.0), (FEB, "S1", 2.0)])
    with pytest.raises(PySparkAssertionError):
        assert_frames_equal(actual, frame(spark, SCHEMA, expected_rows))
    with pytest.raises(PySparkAssertionError):  # and the other way round
        assert_frames_equal(frame(spark, SCHEMA, expected_rows), actual)


def test_frames_differ_in_a_column_type_or_name(spark: SparkSession) -> None:
    actual = frame(spark, SCHEMA, [(JAN, "S1", 1.0)])
    for schema in ("month DATE, site_id STRING, kwh FLOAT", "month DATE, site STRING, kwh DOUBLE"):
        other = frame(spark, schema, [(JAN, "S1", 1.0)])
        with pytest.raises(PySparkAssertionError):
            assert_frames_equal(actual, other)


def test_nan_equals_nan_and_the_tolerance_is_the_callers(spark: SparkSession) -> None:
    nan = frame(spark, SCHEMA, [(JAN, "S1", float("nan"))])
    assert_frames_equal(nan, frame(spark, SCHEMA, [(JAN, "S1", float("nan"))]))
    close = frame(spark, SCHEMA, [(JAN, "S1", 1.001)])
    assert_frames_equal(close, frame(spark, SCHEMA, [(JAN, "S1", 1.0)]), rtol=1e-3)
