"""The run protocol (docs/operations.md §9): a failed, killed or overlapping run never
changes what readers see and never undoes another run's work; derived views and exports
fail on their own."""

from __future__ import annotations

import datetime as dt
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

import carbon_core.pipeline as pipeline
from carbon_core import schemas
from carbon_core.errors import MonthsClaimedError
from carbon_core.export import export_lake
from carbon_core.hadoop import HadoopFiles
from carbon_core.lake import read_table, table_version, tables
from carbon_core.lake.claims import RunClaims, month_key
from carbon_core.lake.runs import published_months, read_published
from carbon_core.lake.status import lake_status

DEC, JAN = dt.date(2024, 12, 1), dt.date(2025, 1, 1)
QUIET = lambda _line: None  # noqa: E731
GOLD = (tables.SITE_MONTHLY, tables.ACCOUNT_EMISSIONS, tables.UNALLOCATED, tables.BU_MONTHLY)


@pytest.fixture(scope="module")
def world(generated_world):
    return generated_world("protocol").config


@pytest.fixture(autouse=True)
def _claims_released(world, spark):
    """A test that fails while a run holds months must not refuse the next test's runs."""
    yield
    uri = tables.RUN_CLAIMS.uri(world.lake)
    if HadoopFiles(spark, uri).exists(f"{uri}/_delta_log"):
        from delta.tables import DeltaTable

        DeltaTable.forPath(spark, uri).delete()


def _published(spark, lake):
    """Every gold table as readers see it, checkpointed (so later commits cannot move it)."""
    return {t.name: read_published(spark, lake, t).localCheckpoint() for t in GOLD}


def _assert_same(spark, lake, before):
    for table in GOLD:
        got = read_published(spark, lake, table)
        # Equal but for summation order (a run of fewer months adds in another order).
        assertDataFrameEqual(got, before[table.name], checkRowOrder=False, rtol=1e-12, atol=1e-9)


def _conservation_gaps(spark, lake):
    """account_emissions + unallocated - site_monthly - rack embodied, per month and
    quantity, from what readers see (the run's conservation check, recomputed)."""
    allocated = (
        read_published(spark, lake, tables.ACCOUNT_EMISSIONS)
        .select("month", *schemas.QUANTITIES)
        .unionByName(
            read_published(spark, lake, tables.UNALLOCATED).select("month", *schemas.QUANTITIES)
        )
        .groupBy("month")
        .agg(*[F.sum(q).alias(q) for q in schemas.QUANTITIES])
    )
    sites = (
        read_published(spark, lake, tables.SITE_MONTHLY)
        .groupBy("month")
        .agg(*[F.sum(q).alias(f"site_{q}") for q in schemas.QUANTITIES])
    )
    joined = allocated.join(sites, "month").collect()
    return {
        (r["month"], q): r[q] - r[f"site_{q}"]
        for r in joined
        for q in schemas.QUANTITIES
        if q != "scope3_kg"  # Scope 3 also holds rack embodied, not in site_monthly
    }


def _statuses(spark, lake, run_id=None):
    log = read_table(spark, tables.RUN_LOG.uri(lake))
    if run_id is not None:
        log = log.where(F.col("run_id") == run_id)
    return [
        r["status"]
        for r in log.orderBy("started_at", F.col("ended_at").asc_nulls_first()).collect()
    ]


def _run_in_another_process(config, month):
    """`carbonlake run` of one month in a process (and JVM) of its own, as a second
    operator's run would be; its run id."""
    path = Path(config.lake).parent / "other-run.yaml"
    path.write_text(f"lake: {config.lake}\nlanding: {config.landing}\n")
    done = subprocess.run(
        [
            *(sys.executable, "-m", "carbon_core.cli", "run", "--config", str(path)),
            *("--from", f"{month:%Y-%m}", "--to", f"{month:%Y-%m}", "--skip-ingest"),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    (run_id,) = re.findall(r"^run (\w+): committed$", done.stdout, flags=re.MULTILINE)
    return run_id


def test_a_run_logs_started_then_committed_with_the_versions_it_wrote(world, spark):
    lake = world.lake
    rows = read_table(spark, tables.RUN_LOG.uri(lake)).collect()
    assert sorted(r["status"] for r in rows) == ["committed", "started", "started"]
    committed = next(r for r in rows if r["status"] == "committed")
    for table in tables.MONTHLY_TABLES:
        assert committed["table_versions"][table.name] == table_version(spark, table.uri(lake))
    assert committed["months"] == [DEC, JAN]
    # The claims are given back once the run ends.
    assert read_table(spark, tables.RUN_CLAIMS.uri(lake)).count() == 0


def test_a_failing_run_leaves_a_concurrent_runs_months_intact(world, spark, monkeypatch):
    """Run A (January) writes two tables; run B (December), another process, runs and
    commits meanwhile; then A fails. B's December is published, A's January writes are
    not, and nothing is restored (B's commits stay the latest versions)."""
    lake = world.lake
    before = _published(spark, lake)
    real = pipeline.replace_months
    state = {"writes": 0, "b_run": None}

    def write_then_fail(frame, uri, *, months, **kwargs):
        if months != [JAN]:
            return real(frame, uri, months=months, **kwargs)
        # A's writes change January (doubling it) so that showing them would be visible.
        real(frame.unionByName(frame), uri, months=months, **kwargs)
        state["writes"] += 1
        if state["writes"] == 2:
            state["b_run"] = _run_in_another_process(world, DEC)
            raise OSError("disk full (injected)")

    monkeypatch.setattr(pipeline, "replace_months", write_then_fail)
    with pytest.raises(OSError, match="injected"):
        pipeline.run_pipeline(
            spark, world, month_from=JAN, month_to=JAN, skip_ingest=True, log=QUIET
        )
    monkeypatch.undo()
    # B committed; A is logged as failed, and readers see exactly what they saw before
    # (B recomputed December from the same bronze: identical numbers).
    assert _statuses(spark, lake, state["b_run"]) == ["started", "committed"]
    assert "failed" in _statuses(spark, lake)
    _assert_same(spark, lake, before)
    # A's January rows are in the latest version of the two tables it wrote, not shown.
    latest = read_table(spark, tables.SITE_MONTHLY.uri(lake)).where(F.col("month") == JAN).count()
    shown = read_published(spark, lake, tables.SITE_MONTHLY).where(F.col("month") == JAN).count()
    assert latest == 2 * shown
    assert published_months(spark, lake).pinned.keys() == {JAN}
    assert any(m.pending_run for m in lake_status(spark, lake).months if m.month == JAN)
    # (Re-running January finishes the job: the next test's last run does.)


def test_a_kill_inside_the_commit_leaves_readers_on_the_last_published_state(
    world, spark, monkeypatch
):
    """A run dies (no `failed` row, no clean-up) after three of its table commits:
    readers still see every month consistent, at the last published versions."""
    lake = world.lake
    before = _published(spark, lake)
    real = pipeline.replace_months
    written = []

    def die_after_three(frame, uri, *, months, **kwargs):
        if len(written) == 3:
            raise KeyboardInterrupt  # stands for SIGKILL: nothing after this runs...
        real(frame.limit(1), uri, months=months, **kwargs)
        written.append(uri)

    monkeypatch.setattr(pipeline, "replace_months", die_after_three)
    # ...so neither the `failed` row nor the claims' release happen.
    monkeypatch.setattr(pipeline, "_record_failure", lambda *args: None)
    monkeypatch.setattr(RunClaims, "release_quietly", lambda self, log: None)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_pipeline(
            spark, world, month_from=DEC, month_to=JAN, skip_ingest=True, log=QUIET
        )
    monkeypatch.undo()
    assert len(written) == 3
    _assert_same(spark, lake, before)
    gaps = _conservation_gaps(spark, lake)
    assert gaps and all(abs(gap) < 1e-6 for gap in gaps.values()), gaps
    # The dead run still holds its months (its process, this one, is alive): they stay
    # claimed until the lease ends, and an overlapping run is refused, naming the run.
    claims = read_table(spark, tables.RUN_CLAIMS.uri(lake)).collect()
    dead_run = claims[0]["run_id"]
    with pytest.raises(MonthsClaimedError, match=rf"run {dead_run}.*2024-12, 2025-01"):
        pipeline.run_pipeline(
            spark, world, month_from=JAN, month_to=JAN, skip_ingest=True, log=QUIET
        )
    # A lease that ended frees the months.
    from delta.tables import DeltaTable

    DeltaTable.forPath(spark, tables.RUN_CLAIMS.uri(lake)).update(
        set={"expires_at": F.lit(dt.datetime(2000, 1, 1)).cast("timestamp")}
    )
    pipeline.run_pipeline(spark, world, month_from=DEC, month_to=JAN, skip_ingest=True, log=QUIET)
    _assert_same(spark, lake, before)
    assert published_months(spark, lake).excluded == []


def test_an_overlapping_run_is_refused_before_writing_and_a_disjoint_one_runs(
    world, spark, monkeypatch, capsys
):
    """...and the disjoint run, whose forecast fails, has its accounting published."""
    lake = world.lake
    other = RunClaims(
        spark, lake, "other-run", lease=dt.timedelta(hours=1), holder="elsewhere pid 1"
    )
    other.claim_months([JAN])
    versions = {t.name: table_version(spark, t.uri(lake)) for t in tables.catalog()}
    runs = read_table(spark, tables.RUN_LOG.uri(lake)).count()
    try:
        with pytest.raises(
            MonthsClaimedError, match=r"run other-run \(elsewhere pid 1\) holds month:2025-01"
        ):
            pipeline.run_pipeline(spark, world, month_from=DEC, month_to=JAN, log=QUIET)
        unchanged = {t.name: table_version(spark, t.uri(lake)) for t in tables.catalog()}
        assert unchanged == versions  # not even the run log or the claims
        assert read_table(spark, tables.RUN_LOG.uri(lake)).count() == runs
        # December is free: a run of it commits while the other run holds January, and a
        # failing forecast (a derived view) leaves its accounting committed and published.
        code = _run_command_with_a_failing_forecast(world, monkeypatch, DEC)
        assert code == 4
        err = capsys.readouterr().err
        assert (
            "error: forecast failed: singular matrix (injected) (the run's accounting is "
            "committed)" in err
        )
        last = read_table(spark, tables.RUN_LOG.uri(lake)).orderBy(F.col("started_at").desc())
        assert _statuses(spark, lake, last.first()["run_id"]) == ["started", "committed"]
        assert published_months(spark, lake).excluded == []
    finally:
        other.release()
    assert read_table(spark, tables.RUN_CLAIMS.uri(lake)).count() == 0


def _run_command_with_a_failing_forecast(world, monkeypatch, month):
    """`carbonlake run` of one month whose forecast raises; its exit code."""
    import carbon_core.insight.forecast as forecast
    from carbon_core.cli import main

    def broken(*args, **kwargs):
        raise ValueError("singular matrix (injected)")

    monkeypatch.setattr(forecast, "write_forecast", broken)
    config = Path(world.lake).parent / "protocol.yaml"
    config.write_text(f"lake: {world.lake}\nlanding: {world.landing}\n")
    try:
        months = ["--from", f"{month:%Y-%m}", "--to", f"{month:%Y-%m}"]
        return main(["run", "--config", str(config), *months, "--skip-ingest"])
    finally:
        monkeypatch.undo()


def test_a_claim_of_a_dead_process_on_this_host_is_taken_over(world, spark):
    lake = world.lake
    gone = RunClaims(
        spark,
        lake,
        "dead-run",
        lease=dt.timedelta(hours=1),
        holder=f"{socket.gethostname()} pid 999999999",
    )
    gone.claim_months([DEC])
    mine = RunClaims(spark, lake, "new-run", lease=dt.timedelta(hours=1))
    mine.claim_months([DEC])
    holders = {
        r["claim_key"]: r["run_id"]
        for r in read_table(spark, tables.RUN_CLAIMS.uri(lake)).collect()
    }
    assert holders == {month_key(DEC): "new-run"}
    mine.release()


def test_an_export_killed_between_payer_months_leaves_each_old_or_new(
    world, spark, monkeypatch, tmp_path
):
    lake = world.lake
    out = str(tmp_path / "exports")
    export_lake(spark, lake, out, month_from=DEC, month_to=JAN, log=QUIET)
    files = sorted(Path(out).glob("*/*/carbon_*.csv"))
    old = {f: f.read_bytes() for f in files}
    assert len(files) >= 4
    real = HadoopFiles.replace
    moved = []

    def die_after_two(self, source, target):
        if len(moved) == 2:
            raise KeyboardInterrupt
        real(self, source, target)
        moved.append(target)

    # A later refresh: every file differs (its last_refresh_timestamp).
    from carbon_core.export import carbon_exports

    monkeypatch.setattr(carbon_exports, "published_at", lambda *a: dt.datetime(2030, 1, 1))
    monkeypatch.setattr(HadoopFiles, "replace", die_after_two)
    with pytest.raises(KeyboardInterrupt):
        export_lake(spark, lake, out, month_from=DEC, month_to=JAN, log=QUIET)
    monkeypatch.undo()
    now = sorted(Path(out).glob("*/*/carbon_*.csv"))
    assert now == files  # every payer-month still has its file
    new = [f for f in now if f.read_bytes() != old[f]]
    assert len(new) == 2 and all(b"2030-01-01T00:00:00Z" in f.read_bytes() for f in new)
    # The manifest did not change: the next export finishes the job.
    export_lake(spark, lake, out, month_from=DEC, month_to=JAN, log=QUIET)
    assert sorted(Path(out).glob("*/*/carbon_*.csv")) == files
    # Only the killed export's staging folder is left (each export removes its own).
    assert len(list(Path(out).glob("_staging/*"))) == 1


def test_payer_months_without_rows_any_more_are_removed(world, spark, tmp_path):
    lake = world.lake
    out = str(tmp_path / "exports")
    emissions = read_published(spark, lake, tables.ACCOUNT_EMISSIONS)
    clusters = tables.read_lake_table(spark, lake, tables.bronze("clusters"))
    from carbon_core.export import export_carbon

    at = dt.datetime(2025, 2, 1)
    export_carbon(spark, emissions, clusters, out, months=[JAN], refreshed_at=at, log=QUIET)
    payers = sorted(p.name for p in Path(out).iterdir() if not p.name.startswith("_"))
    gone = payers[0]
    fewer = emissions.where(F.col("payer_account_id") != gone)
    report = export_carbon(spark, fewer, clusters, out, months=[JAN], refreshed_at=at, log=QUIET)
    assert report.removed == [(gone, "2025-01")]
    assert not (Path(out) / gone / "2025-01").exists()
    manifest = read_table(spark, f"{out}/_manifest").where(F.col("payer_account_id") == gone)
    # Its January is gone; its December (backfilled, not exported again) stays.
    assert [r["month"] for r in manifest.collect()] == [DEC]
    # The others were not new payers the second time: no second backfill.
    assert report.backfilled_payers == []
