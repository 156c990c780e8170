"""An object store end to end: generate, run, export and report with landing, lake and
exports all s3a:// URIs on a local S3-compatible server (the `s3_bucket` fixture), and the
results equal a local-disk run of the same world."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import SESSION_WORLD, assert_frames_equal
from pyspark.sql import SparkSession

from carbon_core.config import Config, load_config
from carbon_core.errors import ConfigError
from carbon_core.export import ExportReport, export_lake
from carbon_core.hadoop import HadoopFiles
from carbon_core.lake import tables
from carbon_core.pipeline import RunReport, run_pipeline
from carbon_core.report import ReportData, ReportRequest, write_report
from carbon_core.session import _extra_jars
from carbonlake_tools.generate import generate_world

QUIET = lambda _line: None  # noqa: E731


@dataclass
class World:
    config: Config
    counts: dict[str, int]
    run: RunReport
    export: ExportReport
    report: ReportData
    html: Path


def _exported_and_reported(
    spark: SparkSession, config: Config, counts: dict[str, int], run: RunReport, html: Path
) -> World:
    export = export_lake(spark, config.lake, config.exports, log=QUIET)
    report = write_report(spark, config.lake, html, ReportRequest())
    return World(config, counts, run, export, report, html)


@pytest.fixture(scope="module")
def worlds(spark, s3_bucket, generated_world, tmp_path_factory) -> tuple[World, World]:
    """The session's world generated and run again on the object store, and its local
    lake (a copy of the session's first run)."""
    local = tmp_path_factory.mktemp("local-world")
    root = f"s3a://{s3_bucket}/world"
    counts = generate_world(spark, f"{root}/landing", **SESSION_WORLD)
    config = Config().with_overrides(
        lake=f"{root}/lake", landing=f"{root}/landing", exports=f"{root}/exports"
    )
    run = run_pipeline(spark, config, log=QUIET)
    on_s3 = _exported_and_reported(spark, config, counts, run, local / "s3-report.html")
    disk = generated_world("object-store-local")
    on_disk = _exported_and_reported(
        spark, disk.config, disk.counts, disk.report, local / "local-report.html"
    )
    return on_s3, on_disk


def test_spark_and_delta_read_and_write_s3a(spark, s3_bucket):
    uri = f"s3a://{s3_bucket}/smoke/delta"
    frame = spark.range(200).selectExpr("id", "cast(id % 3 as string) as k", "id / 7.0 as x")
    frame.write.format("delta").partitionBy("k").mode("overwrite").save(uri)
    frame.where("id >= 100").write.format("delta").mode("append").save(uri)
    back = spark.read.format("delta").load(uri)
    assert back.count() == 300
    assert_frames_equal(back.where("id < 100"), frame.where("id < 100"))
    listed = HadoopFiles(spark, uri).list_files(f"{uri}/_delta_log", recursive=False)
    assert [f.name for f in listed if f.name.endswith(".json")] == [
        "00000000000000000000.json",
        "00000000000000000001.json",
    ]


def test_the_run_writes_to_the_object_store_and_succeeds(worlds, s3_bucket):
    on_s3, on_disk = worlds
    assert on_s3.config.lake.startswith(f"s3a://{s3_bucket}/")
    assert on_s3.counts == on_disk.counts
    assert on_s3.run.months == on_disk.run.months
    assert on_s3.run.invariants and all(r.ok for r in on_s3.run.invariants)
    # Nothing went to a local folder named after the URI (the old Path("s3a://...") bug).
    assert not Path("s3a:").exists()


def test_gold_equals_the_local_run(worlds, spark):
    on_s3, on_disk = worlds
    for table in (tables.ACCOUNT_EMISSIONS, tables.UNALLOCATED):
        from_s3 = tables.read_lake_table(spark, on_s3.config.lake, table)
        from_disk = tables.read_lake_table(spark, on_disk.config.lake, table)
        assert from_disk.count() > 0, table.name
        assert_frames_equal(from_s3, from_disk, rtol=1e-12, atol=1e-12)


def _export_files(spark: SparkSession, root: str) -> dict[str, list[dict[str, str]]]:
    """Every export file by its path under `root`, as CSV rows without the refresh time."""
    files = HadoopFiles(spark, root)
    prefix = files.uri(root).rstrip("/") + "/"
    found = {}
    for status in files.list_files(root, recursive=True):
        assert status.uri.startswith(prefix), status.uri
        if status.uri.removeprefix(prefix).startswith("_"):
            continue  # the export manifest (a Delta table), not a customer file
        rows = list(csv.DictReader(io.StringIO(files.read_text(status.uri))))
        for row in rows:
            row.pop("last_refresh_timestamp")
        found[status.uri.removeprefix(prefix)] = rows
    return found


def _same_value(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-12)
    except ValueError:
        return False


def test_exports_equal_the_local_run_but_for_the_refresh_time(worlds, spark):
    on_s3, on_disk = worlds
    assert on_s3.export.written == on_disk.export.written and on_s3.export.written
    from_s3 = _export_files(spark, on_s3.config.exports)
    from_disk = _export_files(spark, on_disk.config.exports)
    assert sorted(from_s3) == sorted(from_disk)
    for name, rows in from_disk.items():
        assert len(from_s3[name]) == len(rows), name
        for got, want in zip(from_s3[name], rows, strict=True):
            assert got.keys() == want.keys(), name
            different = [k for k in want if not _same_value(got[k], want[k])]
            assert not different, f"{name}: {different} in {got} vs {want}"


def test_the_report_reads_the_lake_on_the_object_store(worlds):
    on_s3, on_disk = worlds
    assert on_s3.html.stat().st_size > 10_000
    assert math.isclose(on_s3.report.total_lbm_kg, on_disk.report.total_lbm_kg, rel_tol=1e-12)
    assert on_s3.report.total_lbm_kg > 0


def test_extra_jars_expand_folders_and_pass_uris_on(tmp_path):
    folder = tmp_path / "jars"
    folder.mkdir()
    for name in ("b.jar", "a.jar", "notes.txt"):
        (folder / name).write_bytes(b"")
    single = tmp_path / "single.jar"
    single.write_bytes(b"")
    assert _extra_jars((str(folder), str(single), "s3a://bucket/x.jar")) == [
        str(folder / "a.jar"),
        str(folder / "b.jar"),
        str(single),
        "s3a://bucket/x.jar",
    ]
    for missing in (tmp_path / "none.jar", tmp_path / "empty"):
        (tmp_path / "empty").mkdir(exist_ok=True)
        with pytest.raises(ConfigError, match="no JAR file at"):
            _extra_jars((str(missing),))


def test_a_config_file_is_read_from_the_object_store(spark, s3_bucket):
    uri = f"s3a://{s3_bucket}/conf/cluster.yaml"
    HadoopFiles(spark, uri).write_text(
        uri, f"lake: s3a://{s3_bucket}/lake\nspark:\n  shuffle_partitions: 3\n"
    )
    config = load_config(uri)
    assert (config.lake, config.spark.shuffle_partitions) == (f"s3a://{s3_bucket}/lake", 3)
    with pytest.raises(ConfigError, match="configuration file not found: s3a://"):
        load_config(f"s3a://{s3_bucket}/conf/missing.yaml")
