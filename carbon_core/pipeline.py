"""The main job: landing -> bronze -> silver -> gold, checked before anything is published.

Order of a run: claim its months, ingest (bronze + quarantine), site-month quantities
(silver), allocation (gold), run-time invariants, one commit per table, and then the
publication: a `committed` row in gold/run_log with the version of every table written.
Readers read each month at the versions of the last committed run covering it, so a run
that fails or dies before publishing changes nothing they see, and nothing is restored
(docs/operations.md §9). The derived views follow, and their failure is only reported.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
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
from carbon_core.errors import CarbonlakeError, InputError, InvariantError, MonthsClaimedError
from carbon_core.extras import FORECAST_PACKAGES, missing_packages
from carbon_core.hadoop import persisted_rdd_ids
from carbon_core.ingest import IngestReport, bronze_months, ingest_landing, read_bronze
from carbon_core.insight.benchmarks import build_region_benchmarks
from carbon_core.insight.rollups import build_bu_monthly, check_rollup_totals
from carbon_core.insight.targets import write_target_progress
from carbon_core.lake import (
    replace_months,
    replace_where,
    table_version,
    tables,
)
from carbon_core.lake.claims import DERIVED_KEY, INGEST_KEY, RunClaims
from carbon_core.lake.delta_io import (
    COMMIT_METADATA_CONF,
    months_predicate,
    retry_on_conflict,
    tagged_version,
)
from carbon_core.lake.runs import (
    COMMITTED,
    FAILED,
    STARTED,
    RunRecord,
    append_run_record,
    commit_tag,
    failure_message,
    utc_now,
)
from carbon_core.reference import ReferenceTables, load_reference_tables
from carbon_core.session import is_connect, label_jobs, release_persisted_since, temporary_conf
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
    input_versions: dict[str, int] = field(default_factory=dict)  # bronze versions read
    table_versions: dict[str, int] = field(default_factory=dict)  # what the run committed
    derived_failures: list[str] = field(default_factory=list)  # after the publication


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
    """Run landing -> bronze -> silver -> gold for the months; publish only if the
    invariants hold (docs/operations.md §9).

    The months are claimed first: MonthsClaimedError, before anything is written, when
    another live run holds one. gold/run_log gets `started`, then `committed` with the
    version of every table written (what readers read), or `failed`; nothing is ever
    restored, so a failure cannot undo another run's commits. The derived views
    (forecast, target progress) follow the publication: their failure is reported in
    `RunReport.derived_failures` and leaves the accounting published."""
    started_at = utc_now()
    run_id = uuid.uuid4().hex
    lake = str(config.lake)
    claims = RunClaims(
        spark, lake, run_id, lease=dt.timedelta(minutes=config.run.claim_lease_minutes)
    )
    wait = dt.timedelta(minutes=config.run.wait_minutes)
    requested = (
        month_range(month_from, month_to)
        if month_from is not None and month_to is not None
        else None
    )
    reference = load_reference_tables(spark, config.reference)
    # Under Spark Connect the server frees a checkpoint once its DataFrame is collected
    # here; there is no SparkContext to ask for persisted RDDs.
    persisted_before = None if is_connect(spark) else persisted_rdd_ids(spark)
    # Every Delta commit of the run carries its tag as userMetadata.
    tag = commit_tag(run_id)
    try:
        with temporary_conf(spark, COMMIT_METADATA_CONF, tag), claims.heartbeat():
            if requested is not None:
                label_jobs(spark, "claim")
                claims.claim_months(requested)  # refuses before anything is written
            record = RunRecord(run_id, STARTED, started_at, months=requested or ())

            def announce(months: list[dt.date]) -> None:
                """Log the months before writing any of them (their writes stay unpublished
                until the run commits)."""
                nonlocal record
                if list(record.months) != months:
                    record = dataclasses.replace(record, months=months)
                    append_run_record(spark, lake, record)

            try:
                append_run_record(spark, lake, record)
                report = _run(
                    spark,
                    config,
                    reference,
                    announce=announce,
                    claims=claims,
                    wait=wait,
                    run_id=run_id,
                    month_from=month_from,
                    month_to=month_to,
                    skip_ingest=skip_ingest,
                    log=log,
                )
                label_jobs(spark, "run_log")
                claims.renew()  # a run whose claim was taken over must not publish
                append_run_record(spark, lake, _committed_record(record, report, reference))
                log(f"run {run_id}: committed")
            except BaseException as error:
                _record_failure(spark, lake, record, error, log)
                raise
            finally:
                claims.release_quietly(log)
            # After the publication, under their own claim: views rebuilt whole.
            report.derived_failures = _derived_views(spark, config, reference, claims, wait, log)
        if config.catalog.register_after_run:
            # After the commit: the run stands whether or not the catalog takes the names.
            from carbon_core.lake.register import register_tables

            label_jobs(spark, "catalog")
            for line in register_tables(spark, lake, config.catalog.database).lines():
                log(line)
    finally:
        # The run, its derived views and Delta's snapshot states persisted and
        # checkpointed frames; a long-lived session must get the memory back whether the
        # run committed or not.
        spark.catalog.clearCache()
        if persisted_before is not None:
            release_persisted_since(spark, persisted_before)
    return report


def _record_failure(
    spark: SparkSession, lake: str, record: RunRecord, error: BaseException, log: Log
) -> None:
    """gold/run_log `failed` with the reason; never hides the original error."""
    failed = dataclasses.replace(record, status=FAILED, message=failure_message(error))
    try:
        append_run_record(spark, lake, failed)
    except Exception as logging_error:  # the run's own error is the one to report
        log(f"warning: run {record.run_id} failed and could not be logged: {logging_error}")


def _committed_record(
    record: RunRecord, report: RunReport, reference: ReferenceTables
) -> RunRecord:
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
    return dataclasses.replace(
        record,
        status=COMMITTED,
        months=report.months,
        input_versions=report.input_versions,
        invariants=json.dumps(invariants),
        message=message,
        table_versions=report.table_versions,
    )


def _derived_views(
    spark: SparkSession,
    config: Config,
    reference: ReferenceTables,
    claims: RunClaims,
    wait: dt.timedelta,
    log: Log,
) -> list[str]:
    """Target progress and the forecast, rebuilt from the published accounting; the
    failures, one line each (the accounting stays published whatever happens here)."""
    lake = str(config.lake)
    failures: list[str] = []
    try:
        claims.acquire([DERIVED_KEY], wait=wait)
    except MonthsClaimedError as error:
        return [f"derived views not rebuilt: {error}"]
    try:
        for name, build in (
            ("target_progress", lambda: _record_target_progress(spark, lake, config, log)),
            ("forecast", lambda: _write_forecast(spark, config, reference, log)),
        ):
            label_jobs(spark, name)
            try:
                build()
            except Exception as error:  # reported, never unpublishes the accounting
                first = (str(error).strip().splitlines() or [type(error).__name__])[0]
                failures.append(f"{name} failed: {first}")
                log(f"error: {failures[-1]} (the run's accounting is committed)")
    finally:
        claims.release_quietly(log)
    return failures


def _write_forecast(
    spark: SparkSession, config: Config, reference: ReferenceTables, log: Log
) -> None:
    missing = missing_packages(FORECAST_PACKAGES)
    if missing:
        log(
            f"warning: forecast skipped: {', '.join(missing)} not installed "
            "(pip install 'carbonlake[forecast]')"
        )
        return
    # Imported here: pandas and statsmodels are an extra that a plain install lacks.
    from carbon_core.insight.forecast import summary_line, write_forecast

    started = time.monotonic()
    forecast = write_forecast(
        spark, str(config.lake), settings=config.forecast, grid_factors=reference.grid_factors
    )
    log(summary_line(forecast))
    log(f"stage forecast: {forecast['series']} series, {time.monotonic() - started:.1f} s")


def _run(
    spark: SparkSession,
    config: Config,
    reference: ReferenceTables,
    *,
    announce: Callable[[list[dt.date]], None],
    claims: RunClaims,
    wait: dt.timedelta,
    run_id: str,
    month_from: dt.date | None,
    month_to: dt.date | None,
    skip_ingest: bool,
    log: Log,
) -> RunReport:
    lake = str(config.lake)
    ingest_report: IngestReport | None = None
    if not skip_ingest:
        # Bronze and its ledger have one writer at a time: a concurrent run waits here.
        claims.acquire([INGEST_KEY], wait=wait)
        ingest_report = ingest_landing(
            spark,
            config.landing,
            lake,
            reference=reference,
            log=log,
            run_id=run_id,
            gates=config.ingest,
        )
        claims.release([INGEST_KEY])
    label_jobs(spark, "run_months")
    months = resolve_run_months(spark, lake, month_from, month_to)
    claims.claim_months(months)
    announce(months)
    for month in months:
        if config.methodology.version_for(month) is None:
            raise CarbonlakeError(f"no methodology version configured for {month:%Y-%m}")
    # Bronze as of the versions recorded now: another run's ingest may commit meanwhile.
    input_versions = _input_versions(spark, lake)
    bronze = {
        d.name: read_bronze(
            spark,
            lake,
            d.name,
            months=months if d.name in schemas.MONTH_PARTITIONED else None,
            version=input_versions.get(tables.bronze(d.name).name),
        )
        for d in schemas.DATASETS
    }
    log(f"run {run_id}: months {months[0]:%Y-%m} .. {months[-1]:%Y-%m} ({len(months)})")
    report = RunReport(
        run_id=run_id, months=months, ingest=ingest_report, input_versions=input_versions
    )
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
    claims.renew()  # a run whose claim was taken over must not commit
    report.table_versions = _commit(
        spark, lake, run_id, months, silver, allocation, insight, log=log
    )
    report.stages.append(finish(0, len(report.table_versions), 0))
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
    run_id: str,
    months: Sequence[dt.date],
    silver: SiteMonthlyResult,
    allocation: AllocationResult,
    insight: InsightResult | None = None,
    *,
    log: Log = print,
) -> dict[str, int]:
    """One month-replacing commit per table, touching the run's months only; the version
    of each commit (found by the run's tag in the table's history)."""
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
    tag = commit_tag(run_id)
    versions: dict[str, int] = {}
    for table, frame in writes:
        uri = tables.ensure_lake_table(spark, lake, table)
        log(f"commit {table.name}: writing")
        # Idempotent: the same run writing the table again (a retry) changes nothing.
        retry_on_conflict(
            functools.partial(replace_months, frame, uri, months=months, transaction=(run_id, 0))
        )
        versions[table.name] = _tagged(spark, uri, tag)
        log(f"commit {table.name}: version {versions[table.name]}")
    quarantine_uri = tables.ensure_lake_table(spark, lake, INVOICE_QUARANTINE)
    log(f"commit {INVOICE_QUARANTINE.name}: writing")
    # Not partitioned: a concurrent run's rejects of other months conflict with this
    # replacement, which then simply runs again.
    retry_on_conflict(
        lambda: replace_where(
            silver.invoice_quarantine.select(*schemas.QUARANTINE.fieldNames()),
            quarantine_uri,
            predicate=(
                f"stage = '{SITE_ENERGY_STAGE}' AND "
                # Rejects logged before they carried a month are replaced by the next run.
                f"(month IS NULL OR {months_predicate(months, 'month')})"
            ),
            merge_schema=True,
        )
    )
    versions[INVOICE_QUARANTINE.name] = _tagged(spark, quarantine_uri, tag)
    log(f"commit {INVOICE_QUARANTINE.name}: version {versions[INVOICE_QUARANTINE.name]}")
    return versions


def _tagged(spark: SparkSession, uri: str, tag: str) -> int:
    """The version of the run's commit. A write that changed nothing (no rows to remove
    or add for the months) records no commit (Delta skips empty commits): the current
    version then holds the months as the run left them, since the run holds their claim."""
    version = tagged_version(spark, uri, tag)
    if version is None:
        version = table_version(spark, uri)
    if version is None:
        raise CarbonlakeError(f"{uri}: no table after writing it")
    return version


def _input_versions(spark: SparkSession, lake: str) -> dict[str, int]:
    versions = {}
    for dataset in schemas.DATASETS:
        table = tables.bronze(dataset.name)
        version = table_version(spark, table.uri(lake))
        if version is not None:
            versions[table.name] = version
    return versions
