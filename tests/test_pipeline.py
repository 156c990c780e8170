"""End to end on a generated world: counts, invariants, idempotence, month isolation,
failure atomicity, exports."""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import replace
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from carbon_core import schemas
from carbon_core.errors import InvariantError
from carbon_core.export import EXPORT_COLUMNS, export_carbon
from carbon_core.hadoop import persisted_rdd_ids
from carbon_core.lake import read_table, table_commit_time, table_version, tables
from carbon_core.lake.runs import read_published
from carbon_core.pipeline import run_pipeline

DEC, JAN = dt.date(2024, 12, 1), dt.date(2025, 1, 1)
QUIET = lambda _line: None  # noqa: E731


@pytest.fixture(scope="module")
def world(generated_world):
    copy = generated_world("pipeline")
    return copy.config, copy.counts, copy.report


def _delta_rs_count(path: str) -> int:
    deltalake = pytest.importorskip("deltalake")
    return deltalake.DeltaTable(path).to_pyarrow_table().num_rows


def test_every_landing_row_is_in_bronze_or_quarantine(world, spark):
    config, counts, _ = world
    for dataset in schemas.DATASETS:
        bronze = _delta_rs_count(tables.bronze(dataset.name).uri(config.lake))
        quarantine = tables.read_lake_table(spark, config.lake, tables.quarantine(dataset.name))
        at_ingest = quarantine.where(F.col("stage") == "ingest").count()
        assert counts[dataset.name] == bronze + at_ingest, dataset.name
        assert at_ingest > 0, f"the generated world has malformed {dataset.name} rows"


def test_run_covers_both_methodology_versions_and_invariants_hold(world, spark):
    config, _, report = world
    assert report.months == [DEC, JAN]
    assert report.invariants and all(r.ok for r in report.invariants)
    emissions = tables.read_lake_table(spark, config.lake, tables.ACCOUNT_EMISSIONS)
    versions = {
        (r["month"], r["model_version"])
        for r in emissions.select("month", "model_version").distinct().collect()
    }
    assert versions == {(DEC, "v1.0"), (JAN, "v2.0")}
    site_monthly = tables.read_lake_table(spark, config.lake, tables.SITE_MONTHLY)
    assert site_monthly.where(F.col("factor_level").isNull()).count() == 0
    log = tables.read_lake_table(spark, config.lake, tables.RUN_LOG).collect()
    # started (months not known yet), started with the months, committed
    assert sorted(r["status"] for r in log) == ["committed", "started", "started"]


def test_no_quantity_is_negative(world, spark):
    config, _, _ = world
    for table in (tables.SITE_MONTHLY, tables.ACCOUNT_EMISSIONS, tables.UNALLOCATED):
        frame = tables.read_lake_table(spark, config.lake, table)
        negative = frame.where(F.least(*[F.col(q) for q in schemas.QUANTITIES]) < 0).count()
        assert negative == 0, table.name


def test_conservation_per_month_and_quantity(world, spark):
    """Results + unallocated = site-months + rack embodied (the run log's own check,
    recomputed here from the committed tables)."""
    config, _, report = world
    emissions = tables.read_lake_table(spark, config.lake, tables.ACCOUNT_EMISSIONS)
    unallocated = tables.read_lake_table(spark, config.lake, tables.UNALLOCATED)
    out = (
        emissions.select("month", *schemas.QUANTITIES)
        .unionByName(unallocated.select("month", *schemas.QUANTITIES))
        .groupBy("month")
        .agg(*[F.sum(q).alias(q) for q in schemas.QUANTITIES])
    )
    expected = {
        (r.month, r.quantity): r.expected for r in report.invariants if r.check == "conservation"
    }
    for row in out.collect():
        for quantity in schemas.QUANTITIES:
            assert row[quantity] == pytest.approx(expected[(row["month"], quantity)], rel=1e-9)


def test_bu_monthly_adds_up_to_account_emissions_and_keeps_unmapped_accounts(world, spark):
    config, _, _ = world
    totals = [F.sum(q).alias(q) for q in ("total_lbm_kg", "total_mbm_kg", "water_l")]

    def per_month(table):
        frame = tables.read_lake_table(spark, config.lake, table).groupBy("month").agg(*totals)
        return {r["month"]: r for r in frame.collect()}

    expected, got = per_month(tables.ACCOUNT_EMISSIONS), per_month(tables.BU_MONTHLY)
    assert set(got) == set(expected) == {DEC, JAN}
    for month, row in expected.items():
        for quantity in ("total_lbm_kg", "total_mbm_kg", "water_l"):
            assert got[month][quantity] == pytest.approx(row[quantity], rel=1e-9), quantity
    unmapped = tables.read_lake_table(spark, config.lake, tables.BU_MONTHLY).where(
        F.col("business_unit") == schemas.UNMAPPED_BUSINESS_UNIT
    )
    assert unmapped.where(F.col("total_mbm_kg") > 0).count() > 0


def test_the_generated_world_is_physically_plausible(world, spark):
    """PUE, WUE, unused capacity and scope shares in published ranges (docs/sample-world.md)."""
    config, _, _ = world
    efficiency = tables.read_lake_table(spark, config.lake, tables.CLUSTER_EFFICIENCY)
    bounds = (
        efficiency.where(F.col("pue").isNotNull())
        .agg(
            F.min("pue").alias("pue_min"),
            F.max("pue").alias("pue_max"),
            F.min("wue_l_per_kwh").alias("wue_min"),
            F.max("wue_l_per_kwh").alias("wue_max"),
            F.count(F.lit(1)).alias("cluster_months"),
        )
        .first()
    )
    assert bounds["cluster_months"] >= 20
    assert bounds["pue_min"] >= 1.04 and bounds["pue_max"] <= 1.45, bounds
    assert bounds["wue_min"] >= 0.01 and bounds["wue_max"] <= 3.0, bounds

    racks = tables.read_lake_table(spark, config.lake, tables.RACK_UTILISATION).where(
        F.col("product_code").isNotNull()
    )
    unused = racks.agg(
        (F.sum(F.col("energy_kwh") * (1 - F.col("used_share"))) / F.sum("energy_kwh")).alias("u")
    ).first()["u"]
    assert 0.20 <= unused <= 0.40, unused

    quantities = ("scope1_kg", "scope2_lbm_kg", "scope3_kg")
    both = tables.read_lake_table(spark, config.lake, tables.ACCOUNT_EMISSIONS).select(*quantities)
    both = both.unionByName(
        tables.read_lake_table(spark, config.lake, tables.UNALLOCATED).select(*quantities)
    )
    sums = both.agg(*[F.sum(q).alias(q) for q in quantities]).first()
    total = sum(sums[q] for q in quantities)
    assert 0 < sums["scope1_kg"] / total <= 0.05, sums
    assert 0.05 <= sums["scope3_kg"] / total <= 0.30, sums


def _snapshot(spark, lake):
    return {t.name: table_version(spark, t.uri(lake)) for t in tables.MONTHLY_TABLES}


def test_rerun_of_one_month_is_identical_and_touches_only_that_month(world, spark):
    config, _, _ = world
    path = tables.ACCOUNT_EMISSIONS.uri(config.lake)
    before = read_table(spark, path).localCheckpoint()
    versions = _snapshot(spark, config.lake)
    persisted = persisted_rdd_ids(spark)
    run_pipeline(spark, config, month_from=DEC, month_to=DEC, skip_ingest=True, log=QUIET)
    # what the run cached or checkpointed is released; the caller's checkpoint `before`
    # is read below. Delta keeps (and drops) its own caches of table snapshots.
    left = {
        rdd_id: rdd.name()
        for rdd_id, rdd in spark.sparkContext._jsc.getPersistentRDDs().items()
        if int(rdd_id) not in persisted
    }
    assert {i: n for i, n in left.items() if not str(n).startswith("Delta Table State")} == {}
    after = read_table(spark, path)
    # Equal to the last bits but for summation order: a run of one month reads only that
    # month's bronze partitions, so its sums add the same values in another order.
    assertDataFrameEqual(after, before, checkRowOrder=False, rtol=1e-12, atol=1e-9)
    # one commit per monthly table, and its predicate is exactly December
    # (none where the month has no rows to remove or add: Delta skips an empty commit)
    for table, version in _snapshot(spark, config.lake).items():
        assert version in (versions[table], versions[table] + 1), table
    assert _snapshot(spark, config.lake)[tables.ACCOUNT_EMISSIONS.name] == (
        versions[tables.ACCOUNT_EMISSIONS.name] + 1
    )
    from delta.tables import DeltaTable

    last = DeltaTable.forPath(spark, path).history(1).first()
    assert "2024-12-01" in last["operationParameters"]["predicate"]
    assert "2025-01-01" not in last["operationParameters"]["predicate"]


def test_a_run_that_breaks_an_invariant_commits_nothing(world, spark, monkeypatch):
    config, _, _ = world
    import carbon_core.pipeline as pipeline

    real_allocate = pipeline.allocate

    def broken_allocate(**kwargs):
        result = real_allocate(**kwargs)
        doubled = result.account_emissions.unionByName(result.account_emissions)
        return replace(result, account_emissions=doubled)

    monkeypatch.setattr(pipeline, "allocate", broken_allocate)
    versions = _snapshot(spark, config.lake)
    runs = tables.read_lake_table(spark, config.lake, tables.RUN_LOG).count()
    with pytest.raises(InvariantError, match=r"conservation.*2024-12|2024-12.*conservation"):
        run_pipeline(spark, config, month_from=DEC, month_to=DEC, skip_ingest=True, log=QUIET)
    assert _snapshot(spark, config.lake) == versions
    # The run log says so: started (with its months), then failed with the reason.
    log = tables.read_lake_table(spark, config.lake, tables.RUN_LOG)
    assert log.count() == runs + 2
    failed = log.where(F.col("status") == "failed").collect()
    assert len(failed) == 1 and "InvariantError" in failed[0]["message"]
    assert failed[0]["months"] == [DEC]


def test_a_failure_after_a_commit_restores_nothing_and_publishes_nothing(world, spark, monkeypatch):
    """A failing run's commit stays in the table's history, unpublished: readers see the
    table as before, and the run log says the run failed (tests/test_run_protocol.py)."""
    config, _, _ = world
    import carbon_core.pipeline as pipeline

    path = tables.ACCOUNT_EMISSIONS.uri(config.lake)
    before = read_published(spark, config.lake, tables.ACCOUNT_EMISSIONS).localCheckpoint()
    version = table_version(spark, path)

    def commit_then_fail(spark_, config_, reference, *, announce, **kwargs):
        announce([JAN])
        emptied = read_table(spark_, path).where(F.col("month") == JAN).limit(0)
        pipeline.replace_months(emptied, path, months=[JAN])
        raise OSError("disk full (injected)")

    monkeypatch.setattr(pipeline, "_run", commit_then_fail)
    with pytest.raises(OSError, match="injected"):
        pipeline.run_pipeline(spark, config, month_from=JAN, month_to=JAN, log=QUIET)
    assert table_version(spark, path) == version + 1  # the run's commit, no RESTORE
    got = read_published(spark, config.lake, tables.ACCOUNT_EMISSIONS)
    assertDataFrameEqual(got, before, checkRowOrder=False, rtol=0, atol=0)
    statuses = [r["status"] for r in read_table(spark, tables.RUN_LOG.uri(config.lake)).collect()]
    assert "failed" in statuses


def test_exports_match_gold_and_hide_internal_accounts(world, spark):
    config, _, _ = world
    # As readers see it (an earlier test left an unpublished commit in the latest version).
    emissions = read_published(spark, config.lake, tables.ACCOUNT_EMISSIONS)
    clusters = tables.read_lake_table(spark, config.lake, tables.bronze("clusters"))
    out = Path(config.exports)
    export_carbon(
        spark,
        emissions,
        clusters,
        out,
        months=[JAN],
        refreshed_at=table_commit_time(spark, tables.ACCOUNT_EMISSIONS.uri(config.lake)),
        log=QUIET,
    )
    external_payers = {
        r[0] for r in emissions.where(~F.col("is_internal")).select("payer_account_id").collect()
    }
    assert {p.name for p in out.iterdir() if not p.name.startswith("_")} == external_payers
    internal = {
        r[0] for r in emissions.where(F.col("is_internal")).select("usage_account_id").collect()
    }
    gold_jan = {
        (r["usage_account_id"], r["region_code"], r["product_code"]): r["total_lbm_kg"]
        for r in emissions.where(F.col("month") == JAN).collect()
    }
    edge = {r[0] for r in clusters.where(F.col("kind") == "edge").select("cluster_id").collect()}
    checked = 0
    for file in out.glob("*/2025-01/*.csv"):
        with file.open(newline="") as handle:
            for row in csv.DictReader(handle):
                assert list(row) == list(EXPORT_COLUMNS)
                assert row["usage_account_id"] not in internal
                if row["region_code"] == "global":
                    continue
                kg = gold_jan[(row["usage_account_id"], row["region_code"], row["product_code"])]
                expected = (Decimal(repr(kg)) / 1000).quantize(Decimal("0.000001"), ROUND_HALF_UP)
                assert Decimal(row["total_lbm_emissions_value"]) == expected
                checked += 1
    assert checked > 0
    assert edge, "the generated world has an edge cluster"


def test_report_of_the_generated_world_draws_every_chart_and_keeps_payers_apart(
    world, spark, tmp_path
):
    from carbon_core.report import ReportRequest, write_report
    from carbon_core.report.browser import find_chromium, render_marks

    if find_chromium() is None:
        pytest.skip("chromium not found: scripts/test installs it (apt-get install -y chromium)")
    config, _, _ = world
    accounts = tables.read_lake_table(spark, config.lake, tables.bronze("accounts")).collect()
    external_payers = sorted({r["payer_account_id"] for r in accounts if not r["is_internal"]})
    payer = external_payers[0]
    others = {r["account_id"] for r in accounts if r["payer_account_id"] != payer}

    whole = write_report(spark, config.lake, tmp_path / "report.html", ReportRequest())
    # What the report reads: the published months (an earlier test left an unpublished
    # commit in the latest version).
    emissions = read_published(spark, config.lake, tables.ACCOUNT_EMISSIONS)
    gold_lbm = emissions.agg(F.sum("total_lbm_kg")).first()[0]
    assert whole.total_lbm_kg == pytest.approx(gold_lbm, rel=1e-9)
    marks = render_marks(tmp_path / "report.html")
    assert marks and {chart: n for chart, n in marks.items() if n <= 0} == {}
    assert "not available: run" not in (tmp_path / "report.html").read_text()

    write_report(spark, config.lake, tmp_path / "payer.html", ReportRequest(payer=payer))
    html = (tmp_path / "payer.html").read_text()
    assert payer in html
    assert sorted(a for a in others if a in html) == []
    payer_marks = render_marks(tmp_path / "payer.html")
    assert {chart: n for chart, n in payer_marks.items() if n <= 0} == {}


def test_no_export_file_or_payer_report_shows_another_payers_accounts_or_units(
    world, spark, tmp_path
):
    """Tenant isolation (scripts/isolation runs it at 1,000 payers): every export file of
    both months and every payer's report hold only the payer's own accounts and units."""
    from carbon_core.report import ReportRequest, write_payer_reports
    from carbonlake_tools.isolation import read_tenancy, tenant_leaks

    config, _, _ = world
    emissions = read_published(spark, config.lake, tables.ACCOUNT_EMISSIONS)
    clusters = tables.read_lake_table(spark, config.lake, tables.bronze("clusters"))
    at = dt.datetime(2025, 2, 1)
    exports = tmp_path / "exports"
    export_carbon(
        spark, emissions, clusters, exports, months=[DEC, JAN], refreshed_at=at, log=QUIET
    )
    pages = write_payer_reports(spark, config.lake, tmp_path / "reports", ReportRequest())
    tenancy = read_tenancy(spark, config.lake)
    payers = {r[0] for r in emissions.select("payer_account_id").distinct().collect()}
    assert {p.name.removesuffix(".html") for p in pages} == payers and len(payers) >= 5
    assert len(list(exports.glob("*/*/carbon_*.csv"))) >= len(pages)
    assert tenant_leaks(spark, config.lake, exports, tmp_path / "reports") == []
    # The check can fail: one payer's page with another payer's account in it.
    someone, other = pages[0], pages[1].name.removesuffix(".html")
    stranger = sorted(tenancy.accounts_of(other))[0]
    someone.write_text(someone.read_text() + f"<td>{stranger}</td>")
    assert tenant_leaks(spark, config.lake, exports, tmp_path / "reports") == [
        f"{someone}: names accounts ['{stranger}']"
    ]
