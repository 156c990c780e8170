"""The main job: landing -> bronze -> silver -> gold, checked before anything commits.

Order of a run: ingest (bronze + quarantine), site-month quantities (silver),
allocation (gold), run-time invariants, then one commit per table. If anything
fails after the first commit, every table written by the run is restored to
its version from before the run, so a failed run leaves the lake as it was.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carbon_core import schemas
from carbon_core.allocation import (
    AllocationResult,
    allocate,
    check_invariants,
    rack_embodied_monthly,
)
from carbon_core.allocation.invariants import InvariantResult
from carbon_core.calendar import month_range
from carbon_core.config import Config
from carbon_core.errors import CarbonlakeError, InputError, InvariantError
from carbon_core.extras import FORECAST_PACKAGES, missing_packages
from carbon_core.hadoop import persisted_rdd_ids
from carbon_core.ingest import IngestReport, bronze_months, ingest_landing, read_bronze
from carbon_core.insight.benchmarks import build_region_benchmarks
from carbon_core.insight.rollups import build_bu_monthly, check_rollup_totals
from carbon_core.insight.targets import write_target_progress
from carbon_core.lake import (
    TableCheckpoint,
    replace_months,
    replace_where,
    restore_tables,
    table_version,
    tables,
    write_table,
)
from carbon_core.reference import ReferenceTables, load_reference_tables
from carbon_core.session import is_connect, label_jobs, release_persisted_since
from carbon_core.silver import SiteMonthlyResult, build_site_monthly

Log = Callable[[str], None]

INVOICE_QUARANTINE = tables.quarantine("utility_invoices")
SITE_ENERGY_STAGE = "site_energy"

# The bronze datasets each step reads, passed by name.
SITE_MONTHLY_INPUTS: tuple[str, ...] = (
    "sites",
    "racks",
    "rack_telemetry",
    "utility_invoices",
    "electricity_prices",
    "fuel_records",
    "energy_contracts",
    "site_water",
)
ALLOCATION_INPUTS: tuple[str, ...] = (
    "clusters",
    "sites",
    "racks",
    "rack_telemetry",
    "accounts",
    "service_catalog",
    "usage",
)
# The run-time check that gold/bu_monthly keeps every kg of gold/account_emissions.
BU_TOTALS_CHECK = "bu_monthly_totals"


@dataclass(frozen=True)
class InsightResult:
    """The insight layer's month-replaced gold tables for the run's months."""

    bu_monthly: DataFrame  # schemas.BU_MONTHLY
    region_benchmarks: DataFrame  # schemas.REGION_BENCHMARKS


@dataclass
class StageReport:
    """What one stage read, wrote and quarantined, and how long it took."""

    name: str
    rows_in: int
    rows_out: int
    rows_quarantined: int
    seconds: float

    def line(self) -> str:
        return (
            f"stage {self.name}: {self.rows_in} in, {self.rows_out} out, "
            f"{self.rows_quarantined} quarantined, {self.seconds:.1f} s"
        )


@dataclass
class RunReport:
    """The outcome of one run: its months, stages, invariants and table versions."""

    run_id: str
    months: list[dt.date]
    stages: list[StageReport] = field(default_factory=list)
    invariants: list[InvariantResult] = field(default_factory=list)
    ingest: IngestReport | None = None
    warnings: list[str] = field(default_factory=list)


def resolve_run_months(
    spark: SparkSession, lake: str, month_from: dt.date | None, month_to: dt.date | None
) -> list[dt.date]:
    """The run's months: the given range, else the months bronze usage spans (read from
    its month partitions, not its rows)."""
    if month_from is not None and month_to is not None:
        return month_range(month_from, month_to)
    bounds = bronze_months(spark, lake, "usage")
    if bounds is None:
        raise InputError("no usage rows: give the months to run with --from and --to")
    return month_range(month_from or bounds[0], month_to or bounds[1])


def _timed(log: Log, name: str) -> Callable[[int, int, int], StageReport]:
    started = time.monotonic()

    def finish(rows_in: int, rows_out: int, quarantined: int) -> StageReport:
        report = StageReport(name, rows_in, rows_out, quarantined, time.monotonic() - started)
        log(report.line())
        return report

    return finish


def _persist(df: DataFrame) -> DataFrame:
    return df.persist(StorageLevel.MEMORY_AND_DISK)


def run_pipeline(
    spark: SparkSession,
    config: Config,
    *,
    month_from: dt.date | None = None,
    month_to: dt.date | None = None,
    skip_ingest: bool = False,
    log: Log = print,
) -> RunReport:
    """Run landing -> bronze -> silver -> gold for the months; commit only if invariants hold."""
    started_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    run_id = uuid.uuid4().hex
    lake = str(config.lake)
    reference = load_reference_tables(spark, config.reference)
    checkpoints = _checkpoints(spark, lake)
    # Under Spark Connect the server frees a checkpoint once its DataFrame is collected
    # here; there is no SparkContext to ask for persisted RDDs.
    persisted_before = None if is_connect(spark) else persisted_rdd_ids(spark)
    try:
        report = _run(
            spark,
            config,
            reference,
            run_id=run_id,
            month_from=month_from,
            month_to=month_to,
            skip_ingest=skip_ingest,
            log=log,
        )
        label_jobs(spark, "run_log")
        _append_run_log(spark, lake, report, started_at, reference)
    except BaseException:
        restore_tables(spark, checkpoints)
        raise
    finally:
        # The run persisted and checkpointed its intermediate tables; a long-lived
        # session must get the memory back whether the run committed or not.
        spark.catalog.clearCache()
        if persisted_before is not None:
            release_persisted_since(spark, persisted_before)
    if config.catalog.register_after_run:
        # After the commit: the run stands whether or not the catalog takes the names.
        from carbon_core.lake.register import register_tables

        label_jobs(spark, "catalog")
        for line in register_tables(spark, lake, config.catalog.database).lines():
            log(line)
    return report


def _checkpoints(spark: SparkSession, lake: str) -> list[TableCheckpoint]:
    written = [t for t in tables.catalog() if t is not tables.RUN_LOG]
    return [TableCheckpoint(t.uri(lake), table_version(spark, t.uri(lake))) for t in written]


def _run(
    spark: SparkSession,
    config: Config,
    reference: ReferenceTables,
    *,
    run_id: str,
    month_from: dt.date | None,
    month_to: dt.date | None,
    skip_ingest: bool,
    log: Log,
) -> RunReport:
    lake = str(config.lake)
    ingest_report: IngestReport | None = None
    if not skip_ingest:
        ingest_report = ingest_landing(
            spark, config.landing, lake, reference=reference, log=log, run_id=run_id
        )
    label_jobs(spark, "run_months")
    months = resolve_run_months(spark, lake, month_from, month_to)
    # The hourly datasets are read for the run's months only (partition filters).
    bronze = {
        d.name: read_bronze(
            spark, lake, d.name, months=months if d.name in schemas.MONTH_PARTITIONED else None
        )
        for d in schemas.DATASETS
    }
    for month in months:
        if config.methodology.version_for(month) is None:
            raise CarbonlakeError(f"no methodology version configured for {month:%Y-%m}")
    log(f"run {run_id}: months {months[0]:%Y-%m} .. {months[-1]:%Y-%m} ({len(months)})")
    report = RunReport(run_id=run_id, months=months, ingest=ingest_report)

    label_jobs(spark, "site_monthly")
    finish = _timed(log, "site_monthly")
    silver = build_site_monthly(
        **_inputs(bronze, SITE_MONTHLY_INPUTS),
        reference=reference,
        months=months,
        methodology=config.methodology,
    )
    silver = _persist_silver(silver)
    invoices_quarantined = silver.invoice_quarantine.count()
    report.stages.append(
        finish(
            bronze["utility_invoices"].count(), silver.site_monthly.count(), invoices_quarantined
        )
    )
    log(_factor_coverage(silver.site_monthly))
    report.warnings.extend(_silver_warnings(silver))
    for warning in report.warnings:
        log(f"warning: {warning}")

    label_jobs(spark, "allocation")
    finish = _timed(log, "allocation")
    allocation = allocate(
        site_monthly=silver.site_monthly,
        **_inputs(bronze, ALLOCATION_INPUTS),
        months=months,
        methodology=config.methodology,
    )
    allocation = AllocationResult(
        account_emissions=_persist(allocation.account_emissions),
        unallocated=_persist(allocation.unallocated),
        rack_utilisation=_persist(allocation.rack_utilisation),
    )
    report.stages.append(
        finish(
            bronze["usage"].count(),
            allocation.account_emissions.count(),
            0,
        )
    )

    label_jobs(spark, "insight")
    finish = _timed(log, "insight")
    insight = _build_insight(bronze, silver, allocation)
    report.stages.append(
        finish(
            allocation.account_emissions.count(),
            insight.bu_monthly.count() + insight.region_benchmarks.count(),
            0,
        )
    )

    label_jobs(spark, "invariants")
    finish = _timed(log, "invariants")
    rack_embodied = rack_embodied_monthly(
        bronze["racks"], months, it_lifetime_months=config.methodology.it_lifetime_months
    )
    report.invariants = check_invariants(
        site_monthly=silver.site_monthly,
        rack_embodied=rack_embodied,
        account_emissions=allocation.account_emissions,
        unallocated=allocation.unallocated,
        accounts=bronze["accounts"],
        rel_tolerance=config.methodology.invariant_rel_tolerance,
    )
    report.invariants += check_rollup_totals(
        insight.bu_monthly,
        allocation.account_emissions,
        rel_tolerance=config.methodology.invariant_rel_tolerance,
        check=BU_TOTALS_CHECK,
    )
    failed = [r for r in report.invariants if not r.ok]
    report.stages.append(finish(len(report.invariants), len(report.invariants) - len(failed), 0))
    if failed:
        first = failed[0]
        raise InvariantError(
            f"invariant {first.check} broken for {first.month:%Y-%m}, {first.quantity}: "
            f"expected {first.expected!r}, got {first.actual!r} "
            f"(difference {first.actual - first.expected!r}); {len(failed)} check(s) failed, "
            "nothing committed"
        )

    label_jobs(spark, "commit")
    finish = _timed(log, "commit")
    _commit(spark, lake, months, silver, allocation, insight)
    _record_target_progress(spark, lake, config, log)
    report.stages.append(finish(0, len(tables.MONTHLY_TABLES), 0))

    # Last, from the whole committed history: a failure here still restores every table.
    missing = missing_packages(FORECAST_PACKAGES)
    if missing:
        report.warnings.append(
            f"forecast skipped: {', '.join(missing)} not installed "
            "(pip install 'carbonlake[forecast]')"
        )
        log(f"warning: {report.warnings[-1]}")
        return report
    # Imported here: pandas and statsmodels are an extra that a plain install lacks.
    from carbon_core.insight.forecast import summary_line, write_forecast

    label_jobs(spark, "forecast")
    finish = _timed(log, "forecast")
    forecast = write_forecast(
        spark, lake, settings=config.forecast, grid_factors=reference.grid_factors
    )
    log(summary_line(forecast))
    report.stages.append(finish(0, forecast["series"], 0))
    return report


def _inputs(bronze: dict[str, DataFrame], names: Sequence[str]) -> dict[str, Any]:
    """The named bronze frames, as keyword arguments of a step."""
    return {name: bronze[name] for name in names}


def _build_insight(
    bronze: dict[str, DataFrame], silver: SiteMonthlyResult, allocation: AllocationResult
) -> InsightResult:
    """gold/bu_monthly and gold/region_benchmarks of the run's months (persisted: the
    invariants and the commit read them)."""
    bu_monthly = build_bu_monthly(allocation.account_emissions, bronze["business_units"])
    region_benchmarks = build_region_benchmarks(
        site_monthly=silver.site_monthly,
        cluster_efficiency=silver.cluster_efficiency,
        rack_utilisation=allocation.rack_utilisation,
        usage=bronze["usage"],
        service_catalog=bronze["service_catalog"],
        clusters=bronze["clusters"],
    )
    return InsightResult(_persist(bu_monthly), _persist(region_benchmarks))


def _record_target_progress(spark: SparkSession, lake: str, config: Config, log: Log) -> None:
    """Rebuild gold/target_progress against config.targets over the whole of gold/bu_monthly."""
    write_target_progress(spark, lake, config.targets)
    if config.targets:
        log(f"targets: {len(config.targets)} target(s), progress in {tables.TARGET_PROGRESS.name}")


def _persist_silver(silver: SiteMonthlyResult) -> SiteMonthlyResult:
    return SiteMonthlyResult(
        **{
            name: _persist(value) if isinstance(value, DataFrame) else value
            for name, value in vars(silver).items()
        }
    )


def _factor_coverage(site_monthly: DataFrame) -> str:
    """How many site-months used each factor level, and how much energy was estimated."""
    levels = {
        r["factor_level"]: r["site_months"]
        for r in site_monthly.groupBy("factor_level")
        .agg(F.count(F.lit(1)).alias("site_months"))
        .collect()
    }
    totals = site_monthly.agg(
        F.sum("energy_kwh").alias("energy"),
        F.sum(F.col("energy_kwh") * F.col("estimated_energy_share")).alias("estimated"),
    ).first()
    energy = (totals["energy"] or 0.0) if totals else 0.0
    estimated = (totals["estimated"] or 0.0) if totals else 0.0
    order = ("egrid_subregion", "subdivision", "country", "global", None)
    per_level = ", ".join(
        f"{level or 'none'} {levels[level]}" for level in order if level in levels
    )
    share = estimated / energy if energy else 0.0
    return (
        f"site_monthly: site-months per factor level: {per_level}; estimated energy "
        f"{estimated:,.0f} of {energy:,.0f} kWh ({share:.1%})"
    )


def _silver_warnings(silver: SiteMonthlyResult) -> list[str]:
    warnings = []
    missing = getattr(silver, "sites_without_building_date", None)
    if isinstance(missing, DataFrame):
        ids = sorted(r[0] for r in missing.select("site_id").distinct().limit(20).collect())
        if ids:
            warnings.append(
                "no building_in_service_date, so no building Scope 3 for site(s): " + ", ".join(ids)
            )
    elif isinstance(missing, int) and missing:
        warnings.append(f"{missing} site(s) without building_in_service_date: no building Scope 3")
    return warnings


def _commit(
    spark: SparkSession,
    lake: str,
    months: Sequence[dt.date],
    silver: SiteMonthlyResult,
    allocation: AllocationResult,
    insight: InsightResult | None = None,
) -> None:
    """One atomic month-replacing commit per table (the caller restores on failure)."""
    writes: list[tuple[tables.LakeTable, DataFrame]] = [
        (tables.SITE_MONTHLY, silver.site_monthly),
        (tables.INSTRUMENT_SURPLUS, silver.instrument_surplus),
        (tables.CLUSTER_EFFICIENCY, silver.cluster_efficiency),
        (tables.RACK_UTILISATION, allocation.rack_utilisation),
        (tables.ACCOUNT_EMISSIONS, allocation.account_emissions),
        (tables.UNALLOCATED, allocation.unallocated),
    ]
    if insight is not None:
        writes += [
            (tables.BU_MONTHLY, insight.bu_monthly),
            (tables.REGION_BENCHMARKS, insight.region_benchmarks),
        ]
    for table, frame in writes:
        uri = tables.ensure_lake_table(spark, lake, table)
        replace_months(frame, uri, months=months)
    replace_where(
        silver.invoice_quarantine.select(*schemas.QUARANTINE.fieldNames()),
        tables.ensure_lake_table(spark, lake, INVOICE_QUARANTINE),
        predicate=f"stage = '{SITE_ENERGY_STAGE}'",
    )


def _input_versions(spark: SparkSession, lake: str) -> dict[str, int]:
    versions = {}
    for dataset in schemas.DATASETS:
        table = tables.bronze(dataset.name)
        version = table_version(spark, table.uri(lake))
        if version is not None:
            versions[table.name] = version
    return versions


def _append_run_log(
    spark: SparkSession,
    lake: str,
    report: RunReport,
    started_at: dt.datetime,
    reference: ReferenceTables,
) -> None:
    invariants = [
        {
            "month": r.month.isoformat(),
            "check": r.check,
            "quantity": r.quantity,
            "expected": r.expected,
            "actual": r.actual,
            "ok": r.ok,
        }
        for r in report.invariants
    ]
    message = json.dumps(
        {
            "stages": [vars(s) for s in report.stages],
            "reference_files": reference.files,
            "warnings": report.warnings,
        }
    )
    row = (
        report.run_id,
        started_at,
        dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
        "succeeded",
        report.months,
        _input_versions(spark, lake),
        json.dumps(invariants),
        message,
    )
    frame = spark.createDataFrame([row], schemas.RUN_LOG)
    write_table(frame, tables.ensure_lake_table(spark, lake, tables.RUN_LOG), mode="append")
