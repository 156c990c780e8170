"""The table catalog: locations, keys, and the constraints Delta enforces on gold tables."""

from __future__ import annotations

import datetime as dt

import pytest
from delta.tables import DeltaTable
from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import types as T

from carbon_core import schemas
from carbon_core.lake import read_table, replace_months, tables

JAN = dt.date(2025, 1, 1)
# One valid gold/account_emissions row: month, version, payer, account, internal, cluster,
# location, product, six quantities, two totals.
VALID = (JAN, "v2.0", "111", "222", False, "us-east-1", "US East", "AmazonEC2")
QUANTITIES = (10.0, 1.0, 2.0, 3.0, 4.0, 0.0, 7.0, 8.0)
WRITE_REFUSED = (Py4JJavaError, PySparkException)


def _nullable(schema: T.StructType) -> T.StructType:
    """The schema with every field nullable: a frame as a computation would produce it."""
    return T.StructType([T.StructField(f.name, f.dataType, True) for f in schema.fields])


def _emissions(spark, *rows):
    return spark.createDataFrame(list(rows), _nullable(schemas.ACCOUNT_EMISSIONS)).transform(
        schemas.conform, schemas.ACCOUNT_EMISSIONS
    )


def test_every_table_is_named_once_and_keys_are_not_nullable():
    names = [t.name for t in tables.catalog()]
    assert len(names) == len(set(names))
    assert "gold/forecast_backtest" in names and "gold/target_progress" in names
    assert tables.ACCOUNT_EMISSIONS.keys == (
        "month",
        "model_version",
        "payer_account_id",
        "usage_account_id",
        "region_code",
        "product_code",
    )
    for table in tables.MONTHLY_TABLES:
        assert table.partition_by == ("month",)
        assert "month" in table.keys


def test_locations_are_uris_under_the_lake():
    assert tables.ACCOUNT_EMISSIONS.uri("s3a://bucket/lake/") == (
        "s3a://bucket/lake/gold/account_emissions"
    )
    assert tables.bronze("usage").uri("lake") == "lake/bronze/usage"
    assert tables.quarantine("racks").uri("file:///tmp/l") == "file:///tmp/l/quarantine/racks"
    with pytest.raises(KeyError):
        tables.bronze("no_such_dataset")


def test_delta_refuses_a_null_key_or_a_negative_quantity_in_a_gold_table(spark, tmp_path):
    lake = str(tmp_path / "lake")
    uri = tables.ensure_lake_table(spark, lake, tables.ACCOUNT_EMISSIONS)
    replace_months(_emissions(spark, VALID + QUANTITIES), uri, months=[JAN])
    assert read_table(spark, uri).count() == 1

    null_payer = (JAN, "v2.0", None, "222", False, "us-east-1", "US East", "AmazonEC2")
    with pytest.raises(WRITE_REFUSED, match="NOT NULL constraint violated"):
        replace_months(_emissions(spark, null_payer + QUANTITIES), uri, months=[JAN])
    negative_scope2 = (10.0, 1.0, -0.5, 3.0, 4.0, 0.0, 7.0, 8.0)
    with pytest.raises(WRITE_REFUSED, match="quantities_non_negative"):
        replace_months(_emissions(spark, VALID + negative_scope2), uri, months=[JAN])

    # Refused writes commit nothing: the valid row is still the only one.
    rows = read_table(spark, uri).collect()
    assert [(r["payer_account_id"], r["scope2_lbm_kg"]) for r in rows] == [("111", 2.0)]
    detail = DeltaTable.forPath(spark, uri).detail().first()
    assert "delta.constraints.quantities_non_negative" in detail["properties"]


def test_overwriting_a_derived_table_keeps_its_constraints(spark, tmp_path):
    lake = str(tmp_path / "lake")
    progress = spark.createDataFrame(
        [("Retail", "lbm", 2024, 2030, 42.0, 12, 1200.0, 2025, 6, 500.0, 1000.0, 1116.0, True)],
        schemas.TARGET_PROGRESS,
    )
    uri = tables.overwrite_lake_table(progress, lake, tables.TARGET_PROGRESS)
    tables.overwrite_lake_table(progress, lake, tables.TARGET_PROGRESS)
    assert read_table(spark, uri).count() == 1
    written = read_table(spark, uri).schema
    assert [f.name for f in written.fields if not f.nullable] == list(tables.TARGET_PROGRESS.keys)
    no_unit = spark.createDataFrame(
        [(None, "lbm", 2024, 2030, 42.0, 12, 1200.0, 2025, 6, 500.0, 1000.0, 1116.0, True)],
        _nullable(schemas.TARGET_PROGRESS),
    )
    with pytest.raises(WRITE_REFUSED, match="NOT NULL constraint violated"):
        tables.overwrite_lake_table(no_unit, lake, tables.TARGET_PROGRESS)


def test_reading_a_missing_table_names_it(spark, tmp_path):
    from carbon_core.errors import InputError

    with pytest.raises(InputError, match="gold/unallocated"):
        tables.read_lake_table(spark, str(tmp_path / "lake"), tables.UNALLOCATED)
