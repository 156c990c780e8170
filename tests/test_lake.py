"""Delta I/O: one-commit writes, month replacement, merges, failure atomicity, interop."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from carbon_core.lake import (
    TableCheckpoint,
    merge_into,
    read_table,
    replace_months,
    replace_where,
    restore_tables,
    set_table_properties,
    table_properties,
    table_version,
    write_table,
)

SCHEMA = T.StructType(
    [
        T.StructField("month", T.DateType()),
        T.StructField("site_id", T.StringType()),
        T.StructField("energy_kwh", T.DoubleType()),
    ]
)
JAN, FEB, MAR = dt.date(2025, 1, 1), dt.date(2025, 2, 1), dt.date(2025, 3, 1)


def _rows(spark, rows):
    return spark.createDataFrame(rows, SCHEMA)


def test_replace_months_replaces_exactly_that_month_in_one_commit(spark, tmp_path):
    path = str(tmp_path / "site_monthly")
    replace_months(
        _rows(spark, [(JAN, "a", 1.0), (FEB, "a", 2.0), (FEB, "b", 3.0), (MAR, "a", 4.0)]),
        path,
        months=[JAN, FEB, MAR],
    )
    before = table_version(spark, path)
    replace_months(_rows(spark, [(FEB, "c", 30.0)]), path, months=[FEB])

    assert table_version(spark, path) == before + 1
    assertDataFrameEqual(
        read_table(spark, path),
        _rows(spark, [(JAN, "a", 1.0), (FEB, "c", 30.0), (MAR, "a", 4.0)]),
    )
    # time travel keeps the replaced month readable for audit
    assert read_table(spark, path, version=before).where(F.col("month") == FEB).count() == 2


def test_replace_months_rejects_rows_outside_the_months(spark, tmp_path):
    path = str(tmp_path / "t")
    replace_months(_rows(spark, [(JAN, "a", 1.0)]), path, months=[JAN])
    version = table_version(spark, path)
    with pytest.raises(Exception, match=r"(?i)replaceWhere|does not conform|DELTA_REPLACE_WHERE"):
        replace_months(_rows(spark, [(FEB, "x", 9.0)]), path, months=[JAN])
    assert table_version(spark, path) == version
    assertDataFrameEqual(read_table(spark, path), _rows(spark, [(JAN, "a", 1.0)]))


def test_relative_paths_work_like_absolute_ones(spark, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    replace_where(_rows(spark, [(JAN, "a", 1.0)]), "lake/quarantine/x", predicate="site_id = 'a'")
    replace_months(_rows(spark, [(FEB, "b", 2.0)]), "lake/silver/y", months=[FEB])
    assert read_table(spark, str(tmp_path / "lake/quarantine/x")).count() == 1
    assert table_version(spark, "lake/silver/y") == 1  # create, then the month's commit


def test_merge_upserts_on_keys(spark, tmp_path):
    path = str(tmp_path / "m")
    merge_into(_rows(spark, [(JAN, "a", 1.0), (JAN, "b", 2.0)]), path, keys=["month", "site_id"])
    merge_into(_rows(spark, [(JAN, "b", 20.0), (FEB, "b", 5.0)]), path, keys=["month", "site_id"])
    assertDataFrameEqual(
        read_table(spark, path),
        _rows(spark, [(JAN, "a", 1.0), (JAN, "b", 20.0), (FEB, "b", 5.0)]),
    )


def test_failure_in_the_middle_of_a_write_leaves_table_unchanged(spark, tmp_path):
    path = str(tmp_path / "f")
    write_table(_rows(spark, [(JAN, "a", 1.0)]), path, mode="overwrite", partition_by=["month"])
    version = table_version(spark, path)
    # 1000 rows over 4 tasks; the row with id 700 fails after other tasks wrote files.
    failing = spark.range(0, 1000, 1, 4).select(
        F.lit(FEB).alias("month"),
        F.col("id").cast("string").alias("site_id"),
        F.when(F.col("id") == 700, F.raise_error(F.lit("injected failure")))
        .otherwise(F.col("id").cast("double"))
        .alias("energy_kwh"),
    )
    with pytest.raises(Exception, match="injected failure"):
        write_table(failing, path, mode="append")
    with pytest.raises(Exception, match="injected failure"):
        replace_months(failing, path, months=[FEB])
    assert table_version(spark, path) == version
    assertDataFrameEqual(read_table(spark, path), _rows(spark, [(JAN, "a", 1.0)]))


def _stats_columns_of_latest_files(path) -> set[str]:
    """The columns with min/max statistics in the add actions of the latest commit."""
    latest = sorted((path / "_delta_log").glob("*.json"))[-1]
    adds = [json.loads(line)["add"] for line in latest.read_text().splitlines() if '"add"' in line]
    assert adds
    return {name for add in adds for name in json.loads(add["stats"])["minValues"]}


def test_write_table_properties_hold_for_the_write_itself_new_table_or_not(spark, tmp_path):
    only_site = {"delta.dataSkippingStatsColumns": "site_id"}
    rows = _rows(spark, [(JAN, "a", 1.0), (FEB, "b", 2.0)])
    created = tmp_path / "created"
    write_table(rows, created, mode="overwrite", properties=only_site)
    assert table_version(spark, created) == 0  # created with them: one commit
    assert table_properties(spark, created)["delta.dataSkippingStatsColumns"] == "site_id"
    assert _stats_columns_of_latest_files(created) == {"site_id"}
    # Readers filter on columns without statistics just the same.
    deltalake = pytest.importorskip("deltalake")
    polars = pytest.importorskip("polars")
    kept = deltalake.DeltaTable(str(created)).to_pyarrow_table(filters=[("energy_kwh", ">", 1.5)])
    assert kept.column("site_id").to_pylist() == ["b"]
    assert polars.read_delta(str(created)).filter(polars.col("energy_kwh") > 1.5).height == 1

    existing = tmp_path / "existing"
    write_table(rows, existing, mode="overwrite")
    assert _stats_columns_of_latest_files(existing) == {"month", "site_id", "energy_kwh"}
    write_table(rows, existing, mode="overwrite", properties=only_site)
    assert table_properties(spark, existing)["delta.dataSkippingStatsColumns"] == "site_id"
    assert _stats_columns_of_latest_files(existing) == {"site_id"}
    version = table_version(spark, existing)
    write_table(rows, existing, mode="overwrite", properties=only_site)
    assert table_version(spark, existing) == version + 1  # set already: no extra commit
    assertDataFrameEqual(read_table(spark, existing), rows)


def test_set_table_properties_commits_a_change_only_and_restores(spark, tmp_path):
    path = tmp_path / "t"
    write_table(_rows(spark, [(JAN, "s1", 1.0)]), path, mode="overwrite")
    before = TableCheckpoint(str(path), table_version(spark, path))
    assert set_table_properties(spark, path, {"carbonlake.note": "first"}) is True
    # an unchanged value makes no commit
    version = table_version(spark, path)
    assert set_table_properties(spark, path, {"carbonlake.note": "first"}) is False
    assert table_version(spark, path) == version
    # quotes and backslashes survive the SQL literal
    set_table_properties(spark, path, {"carbonlake.note": "it's a \\ test"})
    assert table_properties(spark, path)["carbonlake.note"] == "it's a \\ test"
    set_table_properties(spark, path, {"carbonlake.note": None})
    assert "carbonlake.note" not in table_properties(spark, path)
    # a failed run's restore takes a property back with the data
    set_table_properties(spark, path, {"carbonlake.note": "again"})
    restore_tables(spark, [before])
    assert "carbonlake.note" not in table_properties(spark, path)


def test_restore_tables_undoes_commits_of_a_failed_run(spark, tmp_path):
    path = str(tmp_path / "r")
    write_table(_rows(spark, [(JAN, "a", 1.0)]), path, mode="overwrite")
    checkpoint = TableCheckpoint(path, table_version(spark, path))
    replace_months(_rows(spark, [(JAN, "z", 9.0)]), path, months=[JAN])
    restore_tables(spark, [checkpoint])
    assertDataFrameEqual(read_table(spark, path), _rows(spark, [(JAN, "a", 1.0)]))


def test_tables_read_identically_from_delta_rs_duckdb_and_polars(spark, tmp_path):
    deltalake = pytest.importorskip("deltalake")
    duckdb = pytest.importorskip("duckdb")
    polars = pytest.importorskip("polars")

    path = str(tmp_path / "interop")
    replace_months(
        _rows(spark, [(JAN, "a", 1.5), (FEB, "b", 2.25), (FEB, None, 0.0)]), path, months=[JAN, FEB]
    )
    replace_months(_rows(spark, [(FEB, "b", 7.0)]), path, months=[FEB])  # a second commit
    expected = sorted(
        (r["month"], r["site_id"], r["energy_kwh"]) for r in read_table(spark, path).collect()
    )
    assert expected == [(JAN, "a", 1.5), (FEB, "b", 7.0)]

    via_delta_rs = deltalake.DeltaTable(path).to_pyarrow_table().to_pylist()
    assert sorted((r["month"], r["site_id"], r["energy_kwh"]) for r in via_delta_rs) == expected

    via_polars = polars.read_delta(path).rows()
    columns = polars.read_delta(path).columns
    idx = [columns.index(c) for c in ("month", "site_id", "energy_kwh")]
    assert sorted(tuple(r[i] for i in idx) for r in via_polars) == expected

    # DuckDB's own delta extension is downloaded at run time, which this project
    # cannot rely on; DuckDB scans the table through delta-rs's Arrow dataset instead.
    con = duckdb.connect()
    arrow = deltalake.DeltaTable(path).to_pyarrow_dataset()  # noqa: F841 - read by DuckDB
    via_duckdb = con.execute(
        "SELECT month, site_id, energy_kwh FROM arrow ORDER BY month, site_id"
    ).fetchall()
    assert sorted(via_duckdb) == expected
