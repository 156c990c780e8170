"""The file ledger: each landing file is ingested once; duplicates, files changed in place
and files gone from landing are recorded, and bronze stays the system of record."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import assert_frames_equal
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carbon_core.config import Config, MaintenanceSettings, config_from_mapping
from carbon_core.errors import ConfigError
from carbon_core.hadoop import FileStatus
from carbon_core.ingest import ingest_landing, ledger, read_bronze
from carbon_core.lake import read_table, table_version, tables
from carbon_core.lake.maintain import maintain_lake
from carbon_core.pipeline import run_pipeline
from carbon_core.reference import load_reference_tables
from carbonlake_tools.generate import generate_world

QUIET = lambda _line: None  # noqa: E731
NOVEMBER = dt.date(2024, 11, 1)


def _entry(file: str, **values: object) -> ledger.LedgerEntry:
    base: dict[str, object] = dict(
        dataset="usage",
        file=file,
        size=10,
        modified_ms=1000,
        fingerprint="f-" + file,
        rows_read=1,
        bronze_rows=1,
        quarantined_rows=0,
        months=(NOVEMBER,),
        status=ledger.INGESTED,
        duplicate_of=None,
        ingest_run="r1",
        ingested_at=dt.datetime(2025, 1, 1),
        seen_at=dt.datetime(2025, 1, 1),
    )
    base.update(values)
    return ledger.LedgerEntry(**base)  # type: ignore[arg-type]


def test_a_listing_is_split_into_candidates_unchanged_and_gone() -> None:
    known = {
        "/l/a.csv": _entry("/l/a.csv"),
        "/l/b.csv": _entry("/l/b.csv"),
        "/l/gone.csv": _entry("/l/gone.csv"),
        "/l/old.csv": _entry("/l/old.csv", status=ledger.GONE),
    }
    listed = [
        FileStatus("file:/l/a.csv", 10, 1000),  # as recorded
        FileStatus("file:/l/b.csv", 10, 2000),  # touched or rewritten
        FileStatus("file:/l/new.csv", 5, 1000),
    ]
    plan = ledger.plan_files(listed, known)
    assert [f.uri for f in plan.candidates] == ["file:/l/b.csv", "file:/l/new.csv"]
    assert plan.unchanged == ("/l/a.csv",)
    assert [e.file for e in plan.gone] == ["/l/gone.csv"]


def test_triage_finds_duplicates_changed_and_touched_files() -> None:
    known = {"/l/a.csv": _entry("/l/a.csv", fingerprint="A"), "/l/b.csv": _entry("/l/b.csv")}
    found = {
        "/l/b.csv": ledger.FileRows(3, "B2", ()),  # changed in place
        "/l/c.csv": ledger.FileRows(1, "A", ()),  # the rows of a.csv again
        "/l/d.csv": ledger.FileRows(2, "D", ()),
        "/l/e.csv": ledger.FileRows(2, "D", ()),  # the rows of d.csv, new in the same run
        "/l/f.csv": ledger.FileRows(0, ledger.EMPTY_FINGERPRINT, ()),
        "/l/g.csv": ledger.FileRows(0, ledger.EMPTY_FINGERPRINT, ()),  # empty is no duplicate
    }
    known["/l/h.csv"] = _entry("/l/h.csv", fingerprint="H")
    found["/l/h.csv"] = ledger.FileRows(1, "H", ())  # copied over with the same rows
    triage = ledger.triage(found, known)
    assert triage.ingest == ("/l/b.csv", "/l/d.csv", "/l/f.csv", "/l/g.csv")
    assert triage.changed == ("/l/b.csv",)
    assert triage.duplicates == {"/l/c.csv": "/l/a.csv", "/l/e.csv": "/l/d.csv"}
    assert triage.touched == ("/l/h.csv",)


def test_a_known_file_rewritten_with_another_file_s_rows_retracts_its_own() -> None:
    known = {
        "/l/a.csv": _entry("/l/a.csv", fingerprint="A"),
        "/l/b.csv": _entry("/l/b.csv", fingerprint="B"),
        "/l/x.csv": _entry("/l/x.csv", fingerprint="X"),
        "/l/y.csv": _entry("/l/y.csv", fingerprint="Y"),
    }
    found = {
        "/l/a.csv": ledger.FileRows(1, "B", ()),  # a copy of b.csv written over a.csv
        "/l/x.csv": ledger.FileRows(1, "Y", ()),  # x and y swapped contents
        "/l/y.csv": ledger.FileRows(1, "X", ()),
    }
    triage = ledger.triage(found, known)
    assert triage.duplicates == {"/l/a.csv": "/l/b.csv"}
    assert triage.retracted == ("/l/a.csv",)  # its old rows must leave bronze
    assert triage.ingest == ("/l/x.csv", "/l/y.csv") == triage.changed


def test_a_file_back_in_landing_with_its_rows_is_no_longer_gone() -> None:
    at = dt.datetime(2025, 2, 1)
    listed = FileStatus("file:/l/a.csv", 10, 3000)
    for before, status in (
        (_entry("/l/a.csv", fingerprint="A", status=ledger.GONE), ledger.INGESTED),
        (
            _entry("/l/a.csv", fingerprint="A", status=ledger.GONE, duplicate_of="/l/b.csv"),
            ledger.DUPLICATE,
        ),
    ):
        entry = ledger.file_entry(
            "usage", listed, ledger.FileRows(1, "A", ()), unchanged=before, run_id="r2", at=at
        )
        assert (entry.status, entry.duplicate_of, entry.modified_ms) == (
            status,
            before.duplicate_of,
            3000,
        )
        assert (entry.bronze_rows, entry.ingest_run) == (before.bronze_rows, before.ingest_run)


def test_source_file_names_a_file_as_its_listing_does(spark: SparkSession) -> None:
    from carbon_core.ingest.landing import _file_path

    uris = [
        ("file:/l/a%20b+c.csv", "/l/a b+c.csv"),
        ("file:///l/plain.csv", "/l/plain.csv"),
        ("s3a://bucket/l/a%20b+c%C3%A9.csv", "s3a://bucket/l/a b+cé.csv"),
        ("s3a://bucket/l/plain.csv", "s3a://bucket/l/plain.csv"),
    ]
    frame = spark.createDataFrame([(u,) for u, _ in uris], "uri string")
    got = [r[0] for r in frame.select(_file_path(F.col("uri"))).collect()]
    assert got == [expected for _, expected in uris]


@dataclass
class World:
    landing: Path
    lake: Path
    config: Config


@pytest.fixture(scope="module")
def world(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("ledger")
    landing = root / "landing"
    generate_world(spark, str(landing), scale=2_000, seed=5, start_month="2024-11", months=2)
    config = Config().with_overrides(
        lake=str(root / "lake"), landing=str(landing), exports=str(root / "exports")
    )
    return World(landing, root / "lake", config)


def _ingest(spark: SparkSession, world: World, logs: list[str] | None = None):
    reference = load_reference_tables(spark, None)
    return ingest_landing(
        spark,
        str(world.landing),
        str(world.lake),
        reference=reference,
        log=None if logs is None else logs.append,
    )


def _ledger(spark: SparkSession, world: World, dataset: str) -> dict[str, ledger.LedgerEntry]:
    return ledger.read_ledger(spark, str(world.lake), dataset).get(dataset, {})


def _usage_file(world: World) -> Path:
    return sorted((world.landing / "usage").glob("u000-*.csv"))[0]


def _bronze_by_file(spark: SparkSession, world: World, dataset: str) -> dict[str, int]:
    rows = read_bronze(spark, str(world.lake), dataset).groupBy("_source_file").count()
    return {r["_source_file"]: r["count"] for r in rows.collect()}


def _gold(spark: SparkSession, world: World, month: dt.date) -> DataFrame:
    table = tables.read_lake_table(spark, str(world.lake), tables.ACCOUNT_EMISSIONS)
    return table.where(F.col("month") == month)


def test_the_ledger_through_a_lake_s_life(spark, world) -> None:
    first = _ingest(spark, world)
    usage = _ledger(spark, world, "usage")
    assert {e.status for e in usage.values()} == {ledger.INGESTED}
    for name in ("usage", "rack_telemetry", "accounts"):
        for entry in _ledger(spark, world, name).values():
            # Rows in = bronze + quarantine, file by file (a Delta CHECK holds it too).
            assert entry.rows_read == entry.bronze_rows + entry.quarantined_rows > 0, entry
    assert sorted(usage[str(_usage_file(world))].months) == [NOVEMBER, dt.date(2024, 12, 1)]
    bronze_before = _bronze_by_file(spark, world, "usage")
    assert sum(bronze_before.values()) == first["usage"].bronze_rows

    # Nothing new: nothing read, no commit.
    versions = {
        n: table_version(spark, tables.bronze(n).uri(str(world.lake))) for n in ("usage", "racks")
    }
    again = _ingest(spark, world)
    assert again.rows_in == 0 and all(r.files == 0 for r in again.datasets)
    assert versions == {
        n: table_version(spark, tables.bronze(n).uri(str(world.lake))) for n in ("usage", "racks")
    }

    # A new file is ingested once; a copy of an ingested file is a duplicate.
    original = _usage_file(world)
    lines = original.read_text().splitlines(keepends=True)
    extra = world.landing / "usage" / "extra.csv"
    extra.write_text("".join(lines[:11]))  # the header and ten rows
    copy = world.landing / "usage" / "zz-copy.csv"
    shutil.copy(original, copy)
    logs: list[str] = []
    third = _ingest(spark, world, logs)
    assert third["usage"].files == 1 and third["usage"].rows_in == 10
    assert third["usage"].duplicates == ((str(copy), str(original)),)
    assert any(f"duplicate file not ingested: {copy} repeats {original}" in line for line in logs)
    bronze_now = _bronze_by_file(spark, world, "usage")
    assert str(copy) not in bronze_now
    assert bronze_now[str(extra)] + _quarantined(spark, world, "usage", extra) == 10
    assert {k: v for k, v in bronze_now.items() if k != str(extra)} == bronze_before
    entries = _ledger(spark, world, "usage")
    assert entries[str(copy)].status == ledger.DUPLICATE
    assert entries[str(copy)].duplicate_of == str(original)

    # Changed in place: exactly its own rows are replaced, the months reported.
    extra.write_text("".join(lines[:6]))
    usage_tables = [
        t.uri(str(world.lake)) for t in (tables.bronze("usage"), tables.quarantine("usage"))
    ]
    before_change = [table_version(spark, uri) for uri in usage_tables]
    fourth = _ingest(spark, world)
    # One commit per table at most (Delta may skip a commit that would change nothing).
    after_change = [table_version(spark, uri) for uri in usage_tables]
    assert after_change[0] == before_change[0] + 1  # type: ignore[operator]
    assert before_change[1] <= after_change[1] <= before_change[1] + 1  # type: ignore[operator]
    assert fourth["usage"].changed == (str(extra),)
    assert fourth["usage"].rerun_months
    bronze_changed = _bronze_by_file(spark, world, "usage")
    assert bronze_changed.get(str(extra), 0) + _quarantined(spark, world, "usage", extra) == 5
    assert {k: v for k, v in bronze_changed.items() if k != str(extra)} == bronze_before

    # Overwritten with another file's rows: a duplicate, and its own old rows leave bronze
    # (none stay behind to be counted twice).
    shutil.copy(original, extra)
    fifth = _ingest(spark, world)
    assert fifth["usage"].duplicates == ((str(extra), str(original)),)
    assert fifth["usage"].changed == (str(extra),) and fifth["usage"].rerun_months
    assert _bronze_by_file(spark, world, "usage") == bronze_before
    assert _quarantined(spark, world, "usage", extra) == 0
    retracted = _ledger(spark, world, "usage")[str(extra)]
    assert (retracted.status, retracted.duplicate_of) == (ledger.DUPLICATE, str(original))
    assert (retracted.bronze_rows, retracted.quarantined_rows) == (0, 0)
    assert _ingest(spark, world)["usage"].files == 0  # and it stays settled


def _quarantined(spark: SparkSession, world: World, dataset: str, file: Path) -> int:
    quarantine = read_table(spark, tables.quarantine(dataset).uri(str(world.lake)))
    return quarantine.where(
        (F.col("_source_file") == str(file)) & (F.col("stage") == "ingest")
    ).count()


def test_pruned_landing_loses_nothing_and_an_old_month_reruns_identically(spark, world) -> None:
    run = run_pipeline(spark, world.config, month_from=NOVEMBER, month_to=NOVEMBER, log=QUIET)
    assert all(r.ok for r in run.invariants)
    before = _gold(spark, world, NOVEMBER).collect()
    assert before
    # Landing pruned: once ingested, even a mandatory dataset may have no files left.
    for folder in ("usage", "rack_telemetry"):
        shutil.rmtree(world.landing / folder)
    (world.landing / "usage").mkdir()
    rerun = run_pipeline(spark, world.config, month_from=NOVEMBER, month_to=NOVEMBER, log=QUIET)
    assert all(r.ok for r in rerun.invariants)
    assert_frames_equal(
        _gold(spark, world, NOVEMBER),
        spark.createDataFrame(before, _gold(spark, world, NOVEMBER).schema),
        rtol=1e-12,
        atol=1e-12,
    )
    gone = [e for e in _ledger(spark, world, "usage").values() if e.status == ledger.GONE]
    assert gone and all(e.bronze_rows >= 0 for e in gone)


def test_a_run_reads_only_its_months_partitions(spark, world, capsys) -> None:
    read_bronze(spark, str(world.lake), "usage", months=[NOVEMBER]).explain(mode="formatted")
    plan = capsys.readouterr().out
    filters = [line for line in plan.splitlines() if "PartitionFilters" in line]
    assert filters and all("_month" in line and "2024-11-01" in line for line in filters), plan


def test_maintain_compacts_the_hourly_bronze_and_vacuums_every_table(spark, world) -> None:
    lines: list[str] = []
    done = maintain_lake(spark, str(world.lake), MaintenanceSettings(), log=lines.append)
    names = {d.table for d in done}
    assert {"bronze/usage", "bronze/rack_telemetry", "bronze/_files", "gold/run_log"} <= names
    assert {d.table for d in done if d.files_compacted} <= {"bronze/usage", "bronze/rack_telemetry"}
    assert lines[-1].startswith(f"maintain: {len(done)} tables vacuumed (retention 168 h)")
    # The rows are the same after compaction and vacuum.
    assert read_bronze(spark, str(world.lake), "usage").count() > 0
    with pytest.raises(ConfigError, match=r"maintenance\.vacuum_retention_hours"):
        config_from_mapping({"maintenance": {"vacuum_retention_hours": 24}})


def test_a_rebuild_that_would_lose_pruned_files_rows_is_refused(spark, tmp_path) -> None:
    from carbon_core.errors import InputError

    landing, lake = tmp_path / "landing", tmp_path / "lake"
    generate_world(spark, str(landing), scale=200, seed=3, start_month="2024-11", months=1)
    reference = load_reference_tables(spark, None)
    small = ["clusters", "sites"]
    ingest_landing(spark, str(landing), str(lake), reference=reference, datasets=small, log=None)
    sites_file = next((landing / "sites").iterdir())
    pruned = tmp_path / sites_file.name
    sites_file.rename(pruned)  # landing pruned: bronze holds its rows
    shutil.rmtree(lake / "bronze" / "sites")  # and bronze lost (or laid out otherwise)
    with pytest.raises(InputError, match=f"sites: bronze must be rebuilt.*{pruned.name}"):
        ingest_landing(
            spark, str(landing), str(lake), reference=reference, datasets=["sites"], log=None
        )
    pruned.rename(sites_file)  # landed again: the rebuild goes ahead
    again = ingest_landing(
        spark, str(landing), str(lake), reference=reference, datasets=["sites"], log=None
    )
    assert again["sites"].files == 1 and again["sites"].bronze_rows > 0
