"""One scale's measurement, in its own process (a fresh JVM, so peaks are this scale's own).

Runs the full pipeline (landing -> gold, then the carbon export) on a generated
Parquet landing zone with the Spark UI on, reads Spark's REST API for per-stage
metrics, samples the driver's RSS (Python + JVM process tree) in a background
thread, then times the references on the same files: a bare Spark scan of the
usage and telemetry columns the pipeline needs, a plain Spark copy of those files
to Delta, and DuckDB's account-level totals.
Writes one JSON object (a `runs` entry of latest.json) to --out; each phase is kept as it
is done, so that --resume after a kill does only what is missing (PhaseRecord).

    python -m carbonlake_tools.bench.measure --landing L --lake K --exports E --out run.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

import carbon_core
from carbon_core.config import Config, load_config
from carbonlake_tools.bench.metrics import (
    UNGROUPED,
    GroupMetrics,
    group_metrics,
    peak_executor_mb,
    roll_up,
)

MIB = 1024 * 1024
RSS_SAMPLE_S = 0.2
# The columns the pipeline reads downstream of validation (allocation and site energy).
USAGE_COLUMNS = (
    "usage_start",
    "payer_account_id",
    "usage_account_id",
    "product_code",
    "region_code",
    "usage_unit",
    "usage_amount",
)
TELEMETRY_COLUMNS = ("rack_id", "hour", "it_energy_kwh", "used_capacity")
BENCH_CONF = {
    "spark.ui.enabled": "true",
    "spark.ui.port": "0",  # any free port: helpers and other sessions may hold 4040
    "spark.ui.retainedJobs": "100000",
    "spark.ui.retainedStages": "100000",
    "spark.sql.ui.retainedExecutions": "100",
    # Executor peak memory reaches the driver with heartbeats; make them frequent.
    "spark.executor.heartbeatInterval": "2s",
    "spark.executor.metrics.pollingInterval": "500ms",
}


class RssSampler:
    """Peak RSS of this process and its children (the driver JVM), per named phase."""

    def __init__(self, interval_s: float = RSS_SAMPLE_S) -> None:
        self._process = psutil.Process()
        self._interval = interval_s
        self._phase = "start"
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _tree_rss(self) -> int:
        # The driver is this Python process and its JVM. Python workers forked by the JVM
        # (pyspark.daemon) are executor-side and share pages, so summing them would count
        # the same memory several times.
        total = self._process.memory_info().rss
        for process in self._process.children(recursive=True):
            try:
                if process.name() == "java":
                    total += process.memory_info().rss
            except psutil.Error:  # a child ended between listing and reading
                continue
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval)

    def sample(self) -> None:
        """Read the tree's RSS now and raise the current phase's peak."""
        rss = self._tree_rss()
        phase = self._phase
        self.peaks[phase] = max(self.peaks.get(phase, 0), rss)

    def phase(self, name: str) -> None:
        """Attribute the following samples to `name`."""
        self.sample()
        self._phase = name
        self.sample()

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def peak_mb(self, *phases: str) -> float:
        """Largest peak over the phases, in MiB."""
        return round(max(self.peaks.get(p, 0) for p in phases) / MIB, 1)


def folder_mb(folder: Path) -> float:
    """Bytes of the files under a folder, in MiB (0 for a missing folder)."""
    if not folder.exists():
        return 0.0
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / MIB, 1)


def _rest(spark: SparkSession, endpoint: str) -> Any:
    sc = spark.sparkContext
    port = (sc.uiWebUrl or "").rsplit(":", 1)[-1]
    url = f"http://127.0.0.1:{port}/api/v1/applications/{sc.applicationId}/{endpoint}"
    with urllib.request.urlopen(url, timeout=120) as answer:
        return json.load(answer)


def bare_scan(spark: SparkSession, landing: Path) -> dict[str, int]:
    """Read every value of the needed usage and telemetry columns once: the engine's floor."""
    counts = {}
    for dataset, columns in (("usage", USAGE_COLUMNS), ("rack_telemetry", TELEMETRY_COLUMNS)):
        frame = spark.read.parquet(str(landing / dataset)).select(*columns)
        row = frame.agg(
            F.count(F.lit(1)).alias("rows"), F.bit_xor(F.xxhash64(*columns)).alias("digest")
        ).first()
        counts[dataset] = int(row["rows"]) if row else 0
    return counts


def delta_copy(spark: SparkSession, landing: Path, scratch: Path) -> None:
    """Copy the usage and telemetry landing files, every column, to Delta tables as they are:
    the least any pipeline that keeps a bronze copy must do on this engine."""
    for dataset in ("usage", "rack_telemetry"):
        frame = spark.read.parquet(str(landing / dataset))
        frame.write.format("delta").mode("overwrite").save(str(scratch / dataset))


DUCKDB_ACCOUNT_TOTALS = """
with usage as (
    select strftime(usage_start, '%Y-%m') as month, region_code, payer_account_id,
           usage_account_id, sum(usage_amount) as amount
    from read_parquet('{usage}')
    where usage_amount > 0
    group by all
),
rack_month as (
    select substr(hour, 1, 7) as month, rack_id, sum(try_cast(it_energy_kwh as double)) as kwh
    from read_parquet('{telemetry}')
    group by all
),
cluster_month as (
    select t.month, s.cluster_id as region_code, sum(t.kwh) as kwh
    from rack_month t
    join read_csv('{racks}', all_varchar = true) r using (rack_id)
    join read_csv('{sites}', all_varchar = true) s using (site_id)
    group by all
),
usage_share as (
    select *, amount / sum(amount) over (partition by month, region_code) as share
    from usage
)
select u.month, u.payer_account_id, u.usage_account_id, sum(u.share * c.kwh) as kwh
from usage_share u join cluster_month c using (month, region_code)
group by all
"""


def duckdb_totals(landing: Path, threads: int) -> int:
    """Per month and account, usage-weighted IT energy, by DuckDB on the same files; rows out."""
    import duckdb

    sql = DUCKDB_ACCOUNT_TOTALS.format(
        usage=landing / "usage" / "*.parquet",
        telemetry=landing / "rack_telemetry" / "*.parquet",
        racks=landing / "racks" / "*.csv",
        sites=landing / "sites" / "*.csv",
    )
    with duckdb.connect(config={"threads": threads}) as connection:
        return len(connection.sql(sql).fetchall())


def _stage_entry(
    seconds: float | None, rows_in: int | None, metrics: GroupMetrics, cores: int
) -> dict[str, Any]:
    s = metrics.job_s if seconds is None else seconds
    per_core = rows_in / s / cores if rows_in and s else None
    return {
        "s": round(s, 2),
        "rows_in": rows_in,
        "rows_per_s_per_core": round(per_core) if per_core else None,
        **{k: (round(v, 2) if isinstance(v, float) else v) for k, v in metrics.as_dict().items()},
    }


def stage_table(
    report: Any, export_s: float, export_rows: int, groups: dict[str, GroupMetrics], cores: int
) -> dict[str, dict[str, Any]]:
    """Per pipeline stage: wall seconds and rows from the run's report, Spark's metrics beside."""
    stages: dict[str, dict[str, Any]] = {}
    ingest = report.ingest
    if ingest is not None:
        stages["ingest"] = _stage_entry(
            ingest.seconds, ingest.rows_in, roll_up(groups, "ingest"), cores
        )
        for dataset in ingest.datasets:
            name = f"ingest/{dataset.dataset}"
            stages[name] = _stage_entry(
                dataset.seconds, dataset.rows_in, groups.get(name, GroupMetrics()), cores
            )
    stages["run_months"] = _stage_entry(None, None, groups.get("run_months", GroupMetrics()), cores)
    for stage in report.stages:
        stages[stage.name] = _stage_entry(
            stage.seconds, stage.rows_in, groups.get(stage.name, GroupMetrics()), cores
        )
    stages["run_log"] = _stage_entry(None, None, groups.get("run_log", GroupMetrics()), cores)
    stages["export"] = _stage_entry(
        export_s, export_rows, groups.get("export", GroupMetrics()), cores
    )
    if UNGROUPED in groups:
        stages[UNGROUPED] = _stage_entry(None, None, groups[UNGROUPED], cores)
    return stages


def _bench_config(args: argparse.Namespace) -> Config:
    config = load_config(args.config).with_overrides(
        lake=args.lake, landing=args.landing, exports=args.exports
    )
    spark_conf = {**config.spark.conf, **BENCH_CONF}
    changes: dict[str, Any] = {"conf": spark_conf}
    if args.driver_memory:
        changes["driver_memory"] = args.driver_memory
    if args.master:
        changes["master"] = args.master
    if args.shuffle_partitions:
        changes["shuffle_partitions"] = args.shuffle_partitions
    return config.model_copy(update={"spark": config.spark.model_copy(update=changes)})


def code_version() -> str:
    """A digest of carbon_core's source: a measurement kept for resuming must be of this code."""
    digest = hashlib.sha256()
    package = Path(carbon_core.__file__).resolve().parent
    for file in sorted(package.rglob("*.py")):
        digest.update(str(file.relative_to(package)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def measure_pipeline(
    spark: SparkSession, config: Config, args: argparse.Namespace, sampler: RssSampler
) -> dict[str, Any]:
    """Run the pipeline and the export and measure them; the run's entry without references."""
    from carbon_core.export import export_lake
    from carbon_core.pipeline import label_jobs, run_pipeline

    cores = spark.sparkContext.defaultParallelism
    log = print if args.verbose else (lambda line: None)
    sampler.phase("pipeline")
    started = time.monotonic()
    report = run_pipeline(spark, config, log=log)
    run_s = time.monotonic() - started
    label_jobs(spark, "export")
    started = time.monotonic()
    exported = export_lake(
        spark,
        config.lake,
        config.exports,
        month_from=report.months[0],
        month_to=report.months[-1],
        fmt=config.export.format,
        history_months=config.export.history_months,
        log=log,
    )
    export_s = time.monotonic() - started
    sampler.phase("after_pipeline")
    time.sleep(3)  # let a last heartbeat carry the executor's peak memory
    executor_mb = peak_executor_mb(_rest(spark, "executors"))
    groups = group_metrics(_rest(spark, "jobs"), _rest(spark, "stages"))
    allocation_rows = next((s.rows_in for s in report.stages if s.name == "allocation"), 0)
    # The lake is the bench's own scratch: measured, then removed before the references,
    # so that the Delta copy does not need room beside it (about 20 GB each at 1e9).
    lake_mb = folder_mb(args.lake)
    lake_commits = sum(1 for _ in args.lake.glob("**/_delta_log/*.json"))
    shutil.rmtree(args.lake, ignore_errors=True)
    return {
        "usage_rows": args.usage_rows,
        "status": "ok",
        "months": [m.isoformat() for m in report.months],
        "usage_rows_valid": allocation_rows,
        "pipeline_s": round(run_s + export_s, 2),
        "run_s": round(run_s, 2),
        "export_s": round(export_s, 2),
        "export_file_sets": len(exported.written),
        "peak_driver_rss_mb": sampler.peak_mb("pipeline"),
        "peak_executor_mb": executor_mb,
        "spark_cores": cores,
        "driver_memory": config.spark.driver_memory,
        "shuffle_partitions": config.spark.shuffle_partitions,
        "lake_mb": lake_mb,
        "lake_commits": lake_commits,
        "stages": stage_table(report, export_s, allocation_rows, groups, cores),
    }


class PhaseRecord:
    """The phases of one scale's measurement done so far, kept beside --out.

    Each phase (the pipeline, the incremental month, each reference) is written down as
    soon as it is done: with --resume, a measurement cut short (at 1e9 the whole takes
    longer than some machines stay up) does only the phases it lacks, if landing, scale
    and code are the same. A phase that failed is not kept, so a resume tries it again.
    """

    def __init__(self, path: Path, key: Mapping[str, Any], resume: bool) -> None:
        self.path = path
        self.key = dict(key)
        saved = json.loads(path.read_text()) if resume and path.is_file() else {}
        self.phases: dict[str, dict[str, Any]] = (
            saved.get("phases", {}) if saved.get("key") == self.key else {}
        )
        self.resumed = sorted(self.phases)

    def get(self, phase: str) -> dict[str, Any] | None:
        """A kept phase's values, or None when it still has to run."""
        return self.phases.get(phase)

    def keep(self, phase: str, values: Mapping[str, Any]) -> None:
        """Write the phase down (atomically: a kill mid-write keeps the previous file)."""
        self.phases[phase] = dict(values)
        partial = self.path.with_suffix(".tmp")
        partial.write_text(json.dumps({"key": self.key, "phases": self.phases}))
        partial.replace(self.path)

    def discard(self) -> None:
        """The measurement is complete: nothing to resume."""
        self.path.unlink(missing_ok=True)


def _first_line(error: Exception) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0][:300]


def _timed(action: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    value = action()
    return value, round(time.monotonic() - started, 2)


def measure_references(
    spark: SparkSession, landing: Path, lake: Path, sampler: RssSampler, record: PhaseRecord
) -> dict[str, Any]:
    """Time the bare scan, the Delta copy and DuckDB on the (local) landing, each a phase of
    `record`; stops the session. The bench's folders are its own local scratch."""
    from carbon_core.pipeline import label_jobs

    cores = spark.sparkContext.defaultParallelism
    sampler.phase("references")
    # A failing reference must not lose the other measurements: it is reported instead.
    errors: dict[str, str] = {}

    def bare() -> dict[str, Any]:
        label_jobs(spark, "bench/bare_scan")
        scanned, seconds = _timed(lambda: bare_scan(spark, landing))
        return {
            "usage_rows_landed": scanned.get("usage"),
            "telemetry_rows_landed": scanned.get("rack_telemetry"),
            "bare_scan_s": seconds,
        }

    def copy() -> dict[str, Any]:
        label_jobs(spark, "bench/delta_copy")
        scratch = lake.parent / "delta_copy"
        try:
            return {"delta_copy_s": _timed(lambda: delta_copy(spark, landing, scratch))[1]}
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def duckdb() -> dict[str, Any]:
        rows, seconds = _timed(lambda: duckdb_totals(landing, cores))
        return {"duckdb_s": seconds, "duckdb_result_rows": rows}

    values: dict[str, Any] = {
        "usage_rows_landed": None,
        "telemetry_rows_landed": None,
        "bare_scan_s": None,
        "delta_copy_s": None,
        "duckdb_s": None,
        "duckdb_result_rows": None,
    }
    for phase, action in (("bare_scan", bare), ("delta_copy", copy), ("duckdb", duckdb)):
        if phase == "duckdb":
            spark.stop()  # DuckDB gets the machine's memory to itself
        kept = record.get(phase)
        if kept is None:
            try:
                kept = action()
            except Exception as error:
                errors[phase] = _first_line(error)
                continue
            record.keep(phase, kept)
        values.update(kept)
    return {**values, "landing_mb": folder_mb(landing), "reference_errors": errors}


def _incremental(
    spark: SparkSession,
    config: Config,
    args: argparse.Namespace,
    pipeline: dict[str, Any],
    sampler: RssSampler,
) -> dict[str, Any]:
    """The incremental month and the no-op run (bench/incremental.py); a failure is
    reported in the entry instead of losing the pipeline's measurement."""
    import datetime as dt

    from carbonlake_tools.bench.incremental import measure_incremental

    months = [dt.date.fromisoformat(m) for m in pipeline.get("months", [])]
    if len(months) < 2:
        return {"incremental_error": "the world needs at least two months"}
    sampler.phase("incremental")
    log = print if args.verbose else (lambda line: None)
    try:
        return measure_incremental(
            spark, config, args.landing, args.lake.parent / "incremental", months, log
        )
    except Exception as error:
        return {"incremental_error": _first_line(error)}


def _record_file(out: Path) -> Path:
    return out.with_name(out.stem + ".phases.json")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run and measure one scale, phase by phase (PhaseRecord); the `runs` entry."""
    from carbon_core.session import build_spark_session

    sampler = RssSampler().start()
    config = _bench_config(args)
    spark = build_spark_session(config.spark)
    version = code_version()
    key = {"landing": str(args.landing), "usage_rows": args.usage_rows, "code": version}
    record = PhaseRecord(_record_file(args.out), key, args.resume)
    pipeline = record.get("pipeline")
    if pipeline is None:
        pipeline = measure_pipeline(spark, config, args, sampler)
        record.keep("pipeline", pipeline)
    else:
        shutil.rmtree(args.lake, ignore_errors=True)
    incremental = record.get("incremental")
    if incremental is None:
        incremental = _incremental(spark, config, args, pipeline, sampler)
        if "incremental_error" not in incremental:
            record.keep("incremental", incremental)
    references = measure_references(spark, args.landing, args.lake, sampler, record)
    sampler.stop()
    record.discard()
    return {
        **pipeline,
        **incremental,
        **references,
        "code_version": version,
        "resumed_phases": record.resumed,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m carbonlake_tools.bench.measure")
    parser.add_argument("--landing", type=Path, required=True)
    parser.add_argument("--lake", type=Path, required=True)
    parser.add_argument("--exports", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the run's entry")
    parser.add_argument("--usage-rows", type=int, required=True, help="the generated scale")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--driver-memory")
    parser.add_argument("--master")
    parser.add_argument("--shuffle-partitions", type=int)
    parser.add_argument("--verbose", action="store_true", help="print the pipeline's log")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the phases a measurement cut short had done (PhaseRecord)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = measure(args)
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
