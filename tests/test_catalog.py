"""`carbonlake catalog`: the lake's tables registered by name in the session's catalog
(docs/operations.md §5.1), queried with SQL by name; idempotent, re-pointing, skipping."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from helpers import d, frame

from carbon_core import schemas
from carbon_core.cli import main
from carbon_core.config import config_from_mapping
from carbon_core.errors import ConfigError
from carbon_core.lake import replace_months, tables
from carbon_core.lake.register import (
    CatalogError,
    catalog_name,
    catalog_names,
    register_tables,
)
from carbon_core.pipeline import RunReport

JAN, FEB = d("2025-01-01"), d("2025-02-01")
DATABASE = "carbonlake_test"


def _emission(month, account, lbm, mbm):
    zeros = dict.fromkeys(schemas.QUANTITIES, 0.0)
    return {
        **zeros,
        "month": month,
        "model_version": "v2.0",
        "payer_account_id": "100000000001",
        "usage_account_id": account,
        "is_internal": False,
        "region_code": "us-east-1",
        "location": "US East (N. Virginia)",
        "product_code": "AmazonEC2",
        "energy_kwh": 1000.0,
        "scope2_lbm_kg": lbm,
        "scope2_mbm_kg": mbm,
        "total_lbm_kg": lbm,
        "total_mbm_kg": mbm,
    }


def _write_lake(spark, lake: str, scale: float = 1.0) -> None:
    """A tiny lake: gold/account_emissions (two months) and gold/unallocated."""
    emissions = frame(
        spark,
        schemas.ACCOUNT_EMISSIONS,
        [
            _emission(JAN, "200000000001", 120.5 * scale, 80.25 * scale),
            _emission(JAN, "200000000002", 30.0 * scale, 10.0 * scale),
            _emission(FEB, "200000000001", 99.0 * scale, 45.5 * scale),
        ],
    )
    unallocated = frame(
        spark,
        schemas.UNALLOCATED,
        [
            {
                **dict.fromkeys(schemas.QUANTITIES, 0.0),
                "month": JAN,
                "model_version": "v2.0",
                "cluster_id": "c1",
                "reason": "idle",
                "scope2_mbm_kg": 7.5 * scale,
            }
        ],
    )
    for table, rows in ((tables.ACCOUNT_EMISSIONS, emissions), (tables.UNALLOCATED, unallocated)):
        uri = tables.ensure_lake_table(spark, lake, table)
        replace_months(rows, uri, months=[JAN, FEB])


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory) -> str:
    """The tiny lake every test registers (a test that changes it changes a copy)."""
    location = str(tmp_path_factory.mktemp("catalog") / "lake")
    _write_lake(spark, location)
    return location


@pytest.fixture
def database(spark) -> Iterator[str]:
    yield DATABASE
    # External tables: dropping them leaves the lake's files alone.
    spark.sql(f"DROP DATABASE IF EXISTS {DATABASE} CASCADE")


def _monthly_mbm(spark, name: str) -> dict:
    rows = spark.sql(
        f"select month, sum(total_mbm_kg) as mbm from {name} group by month order by month"
    ).collect()
    return {r["month"]: r["mbm"] for r in rows}


def test_catalog_names_are_stable_and_unique():
    names = catalog_names()
    assert len(names) == len(tables.catalog())
    assert {catalog_name(t): t.name for t in (*tables.MONTHLY_TABLES, *tables.DERIVED_TABLES)} == {
        "site_monthly": "silver/site_monthly",
        "instrument_surplus": "silver/instrument_surplus",
        "cluster_efficiency": "gold/cluster_efficiency",
        "rack_utilisation": "gold/rack_utilisation",
        "account_emissions": "gold/account_emissions",
        "unallocated": "gold/unallocated",
        "bu_monthly": "gold/bu_monthly",
        "region_benchmarks": "gold/region_benchmarks",
        "forecast": "gold/forecast",
        "forecast_backtest": "gold/forecast_backtest",
        "target_progress": "gold/target_progress",
    }
    assert catalog_name(tables.RUN_LOG) == "run_log"
    for dataset in schemas.DATASETS:
        assert names[f"bronze_{dataset.name}"].name == f"bronze/{dataset.name}"
        assert names[f"quarantine_{dataset.name}"].name == f"quarantine/{dataset.name}"


def test_a_name_collision_is_refused():
    clash = tables.LakeTable("gold/bronze_usage", schemas.QUARANTINE)
    with pytest.raises(CatalogError, match="bronze/usage and gold/bronze_usage"):
        catalog_names([tables.bronze("usage"), clash])


def test_tables_are_queried_by_name_registration_is_idempotent_and_follows_a_moved_lake(
    spark, lake, tmp_path, database
):

    report = register_tables(spark, lake, database)
    assert report.names("registered") == [
        f"{database}.account_emissions",
        f"{database}.unallocated",
    ]
    every_other = [
        t.name for t in tables.catalog() if t not in (tables.ACCOUNT_EMISSIONS, tables.UNALLOCATED)
    ]
    assert list(report.skipped) == every_other
    assert _monthly_mbm(spark, f"{database}.account_emissions") == {JAN: 90.25, FEB: 45.5}
    by_account = spark.sql(
        f"select usage_account_id, sum(total_lbm_kg) as lbm from {database}.account_emissions "
        "where month = date'2025-01-01' group by 1 order by 1"
    ).collect()
    assert [(r[0], r[1]) for r in by_account] == [("200000000001", 120.5), ("200000000002", 30.0)]
    assert spark.sql(f"select sum(scope2_mbm_kg) from {database}.unallocated").first()[0] == 7.5

    again = register_tables(spark, lake, database)
    assert again.names("unchanged") == report.names()
    assert again.names("registered") == again.names("re-pointed") == []
    assert _monthly_mbm(spark, f"{database}.account_emissions") == {JAN: 90.25, FEB: 45.5}

    # The lake moves (and its copy is restated): the names follow it.
    moved = str(tmp_path / "moved" / "lake")
    shutil.copytree(lake, moved)
    _write_lake(spark, moved, scale=2.0)
    repointed = register_tables(spark, f"file://{moved}", database)
    assert repointed.names("re-pointed") == report.names()
    assert _monthly_mbm(spark, f"{database}.account_emissions") == {JAN: 180.5, FEB: 91.0}
    assert "re-pointed" in repointed.lines()[0]
    assert register_tables(spark, moved, database).names("unchanged") == report.names()


def test_a_name_held_by_a_managed_table_is_left_alone_and_nothing_is_registered(
    spark, lake, database
):
    spark.sql(f"CREATE DATABASE {database}")
    spark.sql(f"CREATE TABLE {database}.unallocated USING parquet AS SELECT 1 AS x")
    with pytest.raises(CatalogError, match="unallocated exists as a managed"):
        register_tables(spark, lake, database)
    assert not spark.catalog.tableExists(f"{database}.account_emissions")
    assert spark.sql(f"select x from {database}.unallocated").first()[0] == 1


def test_catalog_command_and_register_after_run(spark, lake, database, capsys, monkeypatch):
    assert main(["catalog", "--database", database, "--lake", lake]) == 0
    out = capsys.readouterr().out
    assert f"catalog {database}.account_emissions: registered at " in out
    assert f"catalog {database}: 2 registered, 0 re-pointed, 0 unchanged, " in out
    assert "skipped: bronze/clusters" in out
    spark.sql(f"DROP DATABASE {database} CASCADE")

    # A run with catalog.register_after_run registers once it has committed (the run's
    # work itself is stubbed: tests/test_pipeline.py covers it).
    import carbon_core.pipeline as pipeline

    monkeypatch.setattr(pipeline, "_run", lambda *a, **k: RunReport("r1", [JAN]))
    monkeypatch.setattr(pipeline, "append_run_record", lambda *a, **k: None)
    config = config_from_mapping(
        {"lake": lake, "catalog": {"database": database, "register_after_run": True}}
    )
    lines: list[str] = []
    pipeline.run_pipeline(spark, config, log=lines.append)
    # The two gold tables, and control/run_claims, which the run itself created.
    assert lines[-1].startswith(f"catalog {database}: 3 registered")
    assert _monthly_mbm(spark, f"{database}.account_emissions") == {JAN: 90.25, FEB: 45.5}


def test_catalog_settings_are_validated():
    assert config_from_mapping({}).catalog.database == "carbonlake"
    assert config_from_mapping({"catalog": {"database": "main.carbonlake"}}).catalog.database
    with pytest.raises(ConfigError, match=r"catalog\.database"):
        config_from_mapping({"catalog": {"database": "bad-name"}})
