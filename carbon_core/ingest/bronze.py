"""Landing -> bronze + quarantine, file by file through the ledger (ingest/ledger.py).

Datasets are processed parents first (INGEST_ORDER; independent small datasets side by
side, ingest_waves), and each child's foreign keys are checked against the bronze
tables its parents hold, so bronze is referentially consistent. An ingest takes only
the files the ledger has not taken: new files add their rows, a corrected file replaces
exactly its own rows (bronze and quarantine's `stage = 'ingest'` rows, one commit each),
so ingesting the same files again changes nothing, and rows that later stages
quarantined are never touched.
A lake without a ledger is rebuilt whole once (docs/operations.md §4.5).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from pyspark import StorageLevel, inheritable_thread_target
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from carbon_core import schemas
from carbon_core.config import IngestSettings
from carbon_core.errors import InputError, InvariantError
from carbon_core.hadoop import FileStatus
from carbon_core.ids import id_pattern
from carbon_core.ingest import ledger
from carbon_core.ingest.landing import (
    RAW,
    SOURCE_FILE,
    dataset_files,
    read_landing_files,
    screen_files,
)
from carbon_core.ingest.rules import (
    PARENTS,
    REASON,
    SELF_RULES,
    Plausibility,
    check_rows,
    rank_key_candidates,
    repeated_key_hashes,
    resolve_keys,
    typed_column,
)
from carbon_core.lake import (
    TableCheckpoint,
    read_table,
    replace_where,
    restore_tables,
    table_exists,
    table_version,
    tables,
    write_table,
)
from carbon_core.lake.delta_io import months_predicate, sql_text, table_partitioning
from carbon_core.reference import ReferenceTables
from carbon_core.schemas import Dataset
from carbon_core.session import is_connect, label_jobs, temporary_conf

INGEST_STAGE = "ingest"
INGEST_STAGE_PREDICATE = f"stage = '{INGEST_STAGE}'"
INGESTED_AT = "_ingested_at"

# Parents before children (schemas.DATASETS is in contract order, not dependency order).
INGEST_ORDER: tuple[str, ...] = (
    "clusters",
    "sites",
    "accounts",
    "service_catalog",
    "racks",
    "rack_telemetry",
    "usage",
    "business_units",
    "electricity_prices",
    "utility_invoices",
    "fuel_records",
    "energy_contracts",
    "site_water",
)


@dataclass(frozen=True)
class DatasetReport:
    """Row counts and wall time of one dataset's ingestion."""

    dataset: str
    rows_in: int
    bronze_rows: int
    quarantined_rows: int
    seconds: float
    files: int = 0  # files ingested (new or changed)
    duplicates: tuple[tuple[str, str], ...] = ()  # (file, the ingested file it repeats)
    changed: tuple[str, ...] = ()  # files changed in place, their rows replaced
    gone: int = 0  # files the ledger had that landing no longer holds
    skipped: tuple[tuple[str, str], ...] = ()  # (file, why it is not read)
    rerun_months: tuple[dt.date, ...] = field(default=())  # months a changed file touches
    ledger_entries: tuple[ledger.LedgerEntry, ...] = field(default=(), repr=False)

    def line(self) -> str:
        """One progress line, e.g. 'ingest usage: 2 files, 20000 in, 19950 bronze, 50
        quarantined, 3.1 s'; duplicates, changed and gone files when there are any."""
        extra = "".join(
            f", {n} {label}"
            for n, label in (
                (len(self.duplicates), "duplicate files skipped"),
                (len(self.changed), "changed files replaced"),
                (self.gone, "files gone from landing (bronze keeps their rows)"),
                (len(self.skipped), "files skipped (not read, see below)"),
            )
            if n
        )
        return (
            f"ingest {self.dataset}: {self.files} files, {self.rows_in} in, "
            f"{self.bronze_rows} bronze, {self.quarantined_rows} quarantined{extra}, "
            f"{self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class IngestReport:
    """What one ingest run did, per dataset in processing order."""

    ingested_at: dt.datetime
    datasets: tuple[DatasetReport, ...]

    def __getitem__(self, name: str) -> DatasetReport:
        for report in self.datasets:
            if report.dataset == name:
                return report
        raise KeyError(name)

    @property
    def rows_in(self) -> int:
        """Landing rows over all datasets."""
        return sum(r.rows_in for r in self.datasets)

    @property
    def bronze_rows(self) -> int:
        """Bronze rows over all datasets."""
        return sum(r.bronze_rows for r in self.datasets)

    @property
    def quarantined_rows(self) -> int:
        """Quarantined rows over all datasets."""
        return sum(r.quarantined_rows for r in self.datasets)

    @property
    def rerun_months(self) -> tuple[dt.date, ...]:
        """Months that files changed in place touch (their results need a re-run)."""
        return tuple(sorted({m for r in self.datasets for m in r.rerun_months}))

    @property
    def seconds(self) -> float:
        """Wall time over all datasets."""
        return sum(r.seconds for r in self.datasets)

    def summary_line(self) -> str:
        """One line for the CLI."""
        return (
            f"ingest: {len(self.datasets)} datasets, {self.rows_in} in, {self.bronze_rows} bronze, "
            f"{self.quarantined_rows} quarantined, {self.seconds:.1f} s"
        )


def read_bronze(
    spark: SparkSession,
    lake: tables.Lake,
    name: str,
    *,
    months: Sequence[dt.date] | None = None,
    version: int | None = None,
) -> DataFrame:
    """The bronze table of a dataset in its contract schema; InputError when it was never
    ingested. `months` limits an hourly dataset to those months' partitions; `version`
    reads the table as of that version (a run reads the versions it recorded).

    An optional dataset missing from a lake ingested before it existed reads as empty,
    as a missing landing folder would have made it."""
    path = tables.bronze(name).uri(lake)
    dataset = schemas.DATASETS_BY_NAME.get(name)
    if not table_exists(spark, path):
        if dataset is not None and not dataset.mandatory:
            return spark.createDataFrame([], schemas.bronze_schema(dataset))
        raise InputError(f"bronze table {name!r} not found: {path} (run ingest first)")
    table = read_table(spark, path, version=version)
    if name not in schemas.MONTH_PARTITIONED or dataset is None:
        return table
    if months is not None:
        table = table.where(_months_predicate(months) if months else F.lit(False))
    return table.select(*schemas.bronze_schema(dataset).fieldNames())


def bronze_months(
    spark: SparkSession, lake: tables.Lake, name: str
) -> tuple[dt.date, dt.date] | None:
    """The first and last month of an hourly dataset's bronze (its partition values)."""
    path = tables.bronze(name).uri(lake)
    if not table_exists(spark, path):
        return None
    bounds = (
        read_table(spark, path)
        .select(
            F.min(schemas.BRONZE_MONTH).alias("first"), F.max(schemas.BRONZE_MONTH).alias("last")
        )
        .first()
    )
    if bounds is None or bounds["first"] is None:
        return None
    return bounds["first"], bounds["last"]


def to_bronze(validated: DataFrame, dataset: Dataset, ingested_at: dt.datetime) -> DataFrame:
    """Valid rows in the bronze schema."""
    schema = tables.bronze(dataset.name).schema
    values = {SOURCE_FILE: F.col(SOURCE_FILE), INGESTED_AT: F.lit(ingested_at)}
    month_of = schemas.MONTH_PARTITIONED.get(dataset.name)
    if month_of is not None:
        values[schemas.BRONZE_MONTH] = F.trunc(F.to_date(month_of), "month")
    return validated.where(F.col(REASON).isNull()).select(
        *(values.get(f.name, F.col(f.name)).cast(f.dataType).alias(f.name) for f in schema.fields)
    )


def to_quarantine(validated: DataFrame, ingested_at: dt.datetime) -> DataFrame:
    """Rejected rows in the quarantine schema, stage 'ingest'."""
    return validated.where(F.col(REASON).isNotNull()).select(
        F.col(RAW).alias("raw"),
        F.col(REASON).alias("reason"),
        F.col(SOURCE_FILE).alias("_source_file"),
        F.lit(ingested_at).cast("timestamp").alias("_ingested_at"),
        F.lit(INGEST_STAGE).alias("stage"),
        F.lit(None).cast("date").alias("month"),
    )


def _ordered(datasets: Sequence[str] | None) -> list[str]:
    if datasets is None:
        return list(INGEST_ORDER)
    unknown = sorted(set(datasets) - set(INGEST_ORDER))
    if unknown:
        raise InputError(f"unknown dataset(s) to ingest: {', '.join(unknown)}")
    return [name for name in INGEST_ORDER if name in set(datasets)]


def _read_failure(error: Exception) -> str | None:
    """The one line of a Spark error about an unreadable landing file, else None."""
    for line in str(error).splitlines():
        if "FAILED_READ_FILE" in line or "CANNOT_READ_FILE" in line:
            return line.strip()
    return None


# Statistics (min, max, null count) are collected only for the time column of the two
# hourly tables, the one a reader of some months filters on: the other columns'
# statistics would cost a large share of the bronze write and skip no file.
STATS_COLUMNS_PROPERTY = "delta.dataSkippingStatsColumns"
# `_source_file` too: an ingest replacing a changed file's rows finds them by it.
BRONZE_STATS_COLUMNS: dict[str, tuple[str, ...]] = {
    "usage": ("usage_start", SOURCE_FILE),
    "rack_telemetry": ("hour", SOURCE_FILE),
}


def bronze_properties(dataset: Dataset) -> dict[str, str]:
    """Table properties of a bronze table (BRONZE_STATS_COLUMNS)."""
    columns = BRONZE_STATS_COLUMNS.get(dataset.name)
    return {STATS_COLUMNS_PROPERTY: ",".join(columns)} if columns else {}


# Above this many repeated key hashes the ranking runs over every row instead of a
# broadcast of the hashes (a landing holding the same files twice, say).
MAX_BROADCAST_REPEATED_KEYS = 2_000_000


# Keys each task of the repeated-key count holds, at most. Smaller hash maps count
# faster than a few AQE-sized ones, and the number of tasks must grow with the rows,
# or a billion keys in a handful of tasks would spill to disk.
KEYS_PER_COUNTING_TASK = 1_000_000


def _repeated_keys(rows: DataFrame, dataset: Dataset, rows_in: int) -> DataFrame | None:
    """The persisted hashes of repeated keys (rules.repeated_key_hashes), or None when the
    dataset has no key or too many keys repeat to broadcast them."""
    if not dataset.key:
        return None
    session_partitions = int(rows.sparkSession.conf.get("spark.sql.shuffle.partitions") or 1)
    partitions = max(session_partitions, math.ceil(rows_in / KEYS_PER_COUNTING_TASK))
    repeated = repeated_key_hashes(rows, dataset, partitions)
    repeated = repeated.persist(StorageLevel.MEMORY_AND_DISK)
    # Fewer rows than the limit cannot repeat more keys: no job to count them.
    if rows_in > MAX_BROADCAST_REPEATED_KEYS and repeated.count() > MAX_BROADCAST_REPEATED_KEYS:
        repeated.unpersist()
        return None
    return repeated


# Spark parses only the CSV columns a query needs, and then flags a line as malformed
# only if those columns fail: a line with an extra field passes a query that does not
# read every column. The bronze pass does not need `raw`, so without this setting the
# same landing gave the two passes different malformed lines.
CSV_COLUMN_PRUNING = "spark.sql.csv.parser.columnPruning.enabled"


def _whole_csv_lines(spark: SparkSession) -> AbstractContextManager[None]:
    """CSV column pruning off for the block, the session's own setting restored after."""
    return temporary_conf(spark, CSV_COLUMN_PRUNING, "false")


def _observe_reasons(validated: DataFrame, observation: Observation) -> DataFrame:
    """validated, counting its valid and rejected rows into observation as a write reads it."""
    return validated.observe(observation, *_reason_counts())


def _reason_counts() -> list[Column]:
    """Valid and rejected rows, as an observation or an aggregate counts them."""
    return [
        F.count_if(F.col(REASON).isNull()).alias("valid"),
        F.count_if(F.col(REASON).isNotNull()).alias("rejected"),
    ]


def _observed(observation: Observation, validated: DataFrame) -> tuple[int, int]:
    """(valid, rejected) as the write counted them; counted again when the write never
    evaluated the rows: every row rejected for a reason known from the plan alone (a
    required column missing from every file) lets the optimizer replace the bronze
    write's input, observation included, with an empty relation."""
    try:
        counts = observation.get
    except Exception:  # Py4JJavaError (an assertion): the metrics were never collected
        counted = validated.agg(*_reason_counts()).first()
        counts = counted.asDict() if counted is not None else {"valid": 0, "rejected": 0}
    return int(counts["valid"]), int(counts["rejected"])


def _write_both_passes(
    validated: DataFrame,
    dataset: Dataset,
    lake: str,
    *,
    rows_in: int,
    ingested_at: dt.datetime,
    replacing: tuple[Sequence[str], Sequence[dt.date]] | None,
) -> tuple[int, int]:
    """Bronze, then quarantine, each written from its own evaluation of `validated`;
    (bronze rows, quarantined rows), or InvariantError when the counts do not add up.

    `replacing` (files, months) replaces exactly those files' rows (in those months'
    partitions, for an hourly dataset); None rebuilds both tables whole."""
    in_bronze = Observation(f"ingest {dataset.name} bronze")
    table = tables.bronze(dataset.name)
    bronze = to_bronze(_observe_reasons(validated, in_bronze), dataset, ingested_at)
    quarantine_predicate = INGEST_STAGE_PREDICATE
    if replacing is None:
        write_table(
            bronze,
            table.uri(lake),
            mode="overwrite",
            partition_by=table.partition_by,
            properties=bronze_properties(dataset),
        )
    else:
        files, months = replacing
        predicate = _files_predicate(files)
        if table.partition_by:
            predicate = f"{_months_predicate(months)} AND {predicate}" if months else predicate
        replace_where(bronze, table.uri(lake), predicate=predicate)
        quarantine_predicate = f"{INGEST_STAGE_PREDICATE} AND {_files_predicate(files)}"
    bronze_rows, quarantined_rows = _observed(in_bronze, validated)
    if rows_in != bronze_rows + quarantined_rows:
        raise InvariantError(
            f"ingest {dataset.name}: {rows_in} landing rows but {bronze_rows} bronze + "
            f"{quarantined_rows} quarantined"
        )
    in_quarantine = Observation(f"ingest {dataset.name} quarantine")
    replace_where(
        to_quarantine(_observe_reasons(validated, in_quarantine), ingested_at),
        tables.quarantine(dataset.name).uri(lake),
        predicate=quarantine_predicate,
        # A quarantine table of a lake from before the `month` column gets it here.
        merge_schema=True,
    )
    valid, rejected = _observed(in_quarantine, validated)
    if (valid, rejected) != (bronze_rows, quarantined_rows):
        raise InvariantError(
            f"ingest {dataset.name}: the bronze pass found {bronze_rows} valid + "
            f"{quarantined_rows} rejected rows, the quarantine pass {valid} + {rejected}"
        )
    return bronze_rows, quarantined_rows


def _month_of(rows: DataFrame, dataset: Dataset) -> Column | None:
    """The month of a landing row of an hourly dataset, parsed as the rules parse it (null
    where it does not parse), else None."""
    column = schemas.MONTH_PARTITIONED.get(dataset.name)
    if column is None:
        return None
    return F.trunc(F.to_date(typed_column(rows, dataset, column)), "month")


def _files_predicate(files: Sequence[str]) -> str:
    return f"{SOURCE_FILE} IN ({', '.join(sql_text(f) for f in sorted(files))})"


def _months_predicate(months: Sequence[dt.date]) -> str:
    return months_predicate(months, schemas.BRONZE_MONTH)


def _kept_before(
    spark: SparkSession,
    lake: str,
    dataset: Dataset,
    replaced: Sequence[str],
    months: Sequence[dt.date],
) -> DataFrame | None:
    """Bronze's rows of files other than those this ingest replaces (of the batch's
    months, for an hourly dataset), typed columns only; None when there are none to check."""
    uri = tables.bronze(dataset.name).uri(lake)
    if not (dataset.key or dataset.name in SELF_RULES) or not table_exists(spark, uri):
        return None
    kept = read_table(spark, uri)
    if dataset.name in schemas.MONTH_PARTITIONED:
        if not months:
            return None
        kept = kept.where(_months_predicate(months))
    if replaced:
        kept = kept.where(~F.col(SOURCE_FILE).isin(list(replaced)))
    return kept.select(*dataset.columns)


@dataclass(frozen=True)
class FileCounts:
    """Per file: rows written to bronze and to quarantine, and bronze's months."""

    bronze: dict[str, int]
    quarantined: dict[str, int]
    months: dict[str, tuple[dt.date, ...]]


def _written_counts(
    spark: SparkSession, lake: str, dataset: Dataset, files: Sequence[str]
) -> FileCounts:
    """Count what the two commits hold per file, in one small aggregate over both tables."""
    partitioned = dataset.name in schemas.MONTH_PARTITIONED
    month = F.col(schemas.BRONZE_MONTH) if partitioned else F.lit(None).cast("date")
    taken = F.col(SOURCE_FILE).isin(list(files))
    bronze = (
        read_table(spark, tables.bronze(dataset.name).uri(lake))
        .where(taken)
        .select(SOURCE_FILE, F.lit(True).alias("valid"), month.alias("month"))
    )
    quarantine = (
        read_table(spark, tables.quarantine(dataset.name).uri(lake))
        .where(taken & (F.col("stage") == INGEST_STAGE))
        .select(SOURCE_FILE, F.lit(False).alias("valid"), F.lit(None).cast("date").alias("month"))
    )
    counted = (
        bronze.unionByName(quarantine)
        .groupBy(SOURCE_FILE)
        .agg(
            F.count_if("valid").alias("bronze"),
            F.count_if(~F.col("valid")).alias("quarantined"),
            F.collect_set("month").alias("months"),
        )
    )
    bronze_rows, quarantined, months = {}, {}, {}
    for row in counted.collect():
        file = row[SOURCE_FILE]
        if row["bronze"]:
            bronze_rows[file] = int(row["bronze"])
            months[file] = tuple(sorted(row["months"])) if partitioned else ()
        if row["quarantined"]:
            quarantined[file] = int(row["quarantined"])
    return FileCounts(bronze_rows, quarantined, months)


def ingest_dataset(
    spark: SparkSession,
    landing: str,
    lake: str,
    dataset: Dataset,
    *,
    reference: ReferenceTables,
    ingested_at: dt.datetime,
    run_id: str = "",
    known: dict[str, ledger.LedgerEntry] | None = None,
    record_ledger: bool = True,
    gates: IngestSettings | None = None,
) -> DatasetReport:
    """Ingest the files of a landing dataset that the ledger has not taken before.

    New files add their rows; a file changed in place replaces exactly its own rows
    (bronze and ingest quarantine, one commit each, matched on `_source_file`);
    duplicates of ingested files and unchanged files are not read again (ledger.py).
    The batch's rows are validated twice, once as bronze is written and once as
    quarantine is, rather than persisted between the two writes: building and reading
    the cached copy costs more than validating again, and at a billion rows the copy
    would spill tens of GB to disk. Both passes count valid and rejected rows, and the
    commits are counted again per file; if any count disagrees, both tables are put
    back and the dataset fails. So does any other failure after the bronze commit.
    A failure before the ledger's commit leaves the files untaken: the next ingest
    takes them again, replacing (not adding to) whatever the failed one wrote. With
    `record_ledger` False the entries are only returned in the report (ingest_landing
    records every dataset's in one commit).
    """
    started = time.monotonic()
    gates = gates or IngestSettings()
    label_jobs(spark, f"ingest/{dataset.name}", f"carbonlake ingest {dataset.name}")
    # Parents first: a child whose parents were never ingested cannot be checked at all.
    parents = {name: read_bronze(spark, lake, name) for name in PARENTS[dataset.name]}
    if known is None:
        known = ledger.read_ledger(spark, lake, dataset.name).get(dataset.name, {})
    bronze_uri = tables.bronze(dataset.name).uri(lake)
    # Landing may be pruned once bronze holds a dataset: bronze is the system of record.
    listing = dataset_files(spark, landing, dataset, required=dataset.mandatory and not known)
    listed = list(listing.data)
    # A lake whose bronze predates the ledger (or its month partitions) is rebuilt whole.
    rebuild = not known or not _has_layout(spark, bronze_uri, dataset)
    if rebuild and known:
        _refuse_lossy_rebuild(dataset, known, listed)
    plan = ledger.plan_files(listed, {} if rebuild else known)
    candidates, unreadable = screen_files(spark, landing, dataset, plan.candidates)
    skipped = [*listing.skipped, *unreadable]
    skipped_files = {ledger.lineage(s.file.uri) for s in skipped}
    gone = [e for e in plan.gone if e.file not in skipped_files]
    entries: list[ledger.LedgerEntry] = [
        *ledger.mark_gone(gone, ingested_at),
        *(
            ledger.skipped_entry(
                dataset.name,
                s.file,
                s.reason,
                known=known.get(ledger.lineage(s.file.uri)),
                run_id=run_id,
                at=ingested_at,
            )
            for s in skipped
        ),
    ]
    skipped_report = tuple((ledger.lineage(s.file.uri), s.reason) for s in skipped)
    plan = dataclasses.replace(plan, candidates=tuple(candidates))
    if not plan.candidates:
        if not table_exists(spark, bronze_uri):
            # A dataset without files still has (empty) tables, as readers expect.
            tables.ensure_lake_table(spark, lake, tables.bronze(dataset.name))
            tables.ensure_lake_table(spark, lake, tables.quarantine(dataset.name))
        if record_ledger:
            ledger.record(spark, lake, entries)
        return DatasetReport(
            dataset.name,
            0,
            0,
            0,
            time.monotonic() - started,
            gone=len(gone),
            skipped=skipped_report,
            ledger_entries=tuple(entries),
        )
    by_lineage = {ledger.lineage(f.uri): f for f in plan.candidates}
    rows = read_landing_files(spark, landing, dataset, [f.uri for f in plan.candidates])
    written = (bronze_uri, tables.quarantine(dataset.name).uri(lake))
    checkpoints = [TableCheckpoint(uri, table_version(spark, uri)) for uri in written]
    repeated: DataFrame | None = None
    ranked: DataFrame | None = None
    try:
        with _whole_csv_lines(spark):
            found = ledger.file_fingerprints(rows, _month_of(rows, dataset))
            for file in by_lineage:  # a file without a row (a header alone) is a file too
                found.setdefault(file, ledger.FileRows(0, ledger.EMPTY_FINGERPRINT, ()))
            triage = ledger.triage(found, {} if rebuild else known)
            batch = list(triage.ingest)
            rows_in = sum(found[f].rows for f in batch)
            bronze_rows = quarantined_rows = 0
            counts = FileCounts({}, {}, {})
            # Files whose rows this ingest replaces: the batch, and known files that now
            # repeat another file (their old rows go, none come in their place).
            replaced = [*batch, *triage.retracted]
            if replaced:
                if len(batch) < len(found):  # duplicates or touched files are not taken
                    rows = rows.where(F.col(SOURCE_FILE).isin(batch))
                old_months = {
                    m for f in (*triage.changed, *triage.retracted) for m in known[f].months
                }
                months = sorted(old_months | {m for f in batch for m in found[f].months})
                kept_before = (
                    None if rebuild else _kept_before(spark, lake, dataset, replaced, months)
                )
                repeated = _repeated_keys(rows, dataset, rows_in)
                checked = check_rows(
                    rows,
                    dataset,
                    parents,
                    reference.fuel_factors,
                    repeated,
                    plausibility=_plausibility(gates, ingested_at),
                )
                if dataset.key:
                    # The few rows with a repeated key, ranked once for both passes.
                    ranked = rank_key_candidates(checked, dataset).persist(
                        StorageLevel.MEMORY_AND_DISK
                    )
                bronze_rows, quarantined_rows = _write_both_passes(
                    resolve_keys(checked, dataset, ranked, kept_before),
                    dataset,
                    lake,
                    rows_in=rows_in,
                    ingested_at=ingested_at,
                    replacing=None if rebuild else (replaced, months),
                )
                _gate_quarantined_share(
                    spark, lake, dataset, batch, rows_in, quarantined_rows, gates
                )
                counts = _written_counts(spark, lake, dataset, replaced)
                for file in replaced:
                    expected = found[file].rows if file in batch else 0
                    accounted = counts.bronze.get(file, 0) + counts.quarantined.get(file, 0)
                    if accounted != expected:
                        raise InvariantError(
                            f"ingest {dataset.name}: {file} has {expected} rows but "
                            f"{counts.bronze.get(file, 0)} bronze + "
                            f"{counts.quarantined.get(file, 0)} quarantined"
                        )
    except BaseException as error:
        restore_tables(spark, checkpoints)
        failure = _read_failure(error) if isinstance(error, Exception) else None
        if failure is None:
            raise
        raise InputError(f"ingest {dataset.name}: cannot read a landing file: {failure}") from None
    finally:
        for persisted in (repeated, ranked):
            if persisted is not None:
                persisted.unpersist()

    def entry(file: str, **values: object) -> ledger.LedgerEntry:
        return ledger.file_entry(
            dataset.name,
            by_lineage[file],
            found[file],
            unchanged=known.get(file) if file in triage.touched else None,
            run_id=run_id,
            at=ingested_at,
            **values,  # type: ignore[arg-type]
        )

    for file in batch:
        entries.append(
            entry(
                file,
                bronze_rows=counts.bronze.get(file, 0),
                quarantined_rows=counts.quarantined.get(file, 0),
                months=counts.months.get(file, ()),
            )
        )
    for file, original in triage.duplicates.items():
        entries.append(entry(file, status=ledger.DUPLICATE, duplicate_of=original))
    entries.extend(entry(file) for file in triage.touched)
    if record_ledger:
        ledger.record(spark, lake, entries)
    return DatasetReport(
        dataset.name,
        rows_in,
        bronze_rows,
        quarantined_rows,
        time.monotonic() - started,
        files=len(batch),
        duplicates=tuple(sorted(triage.duplicates.items())),
        changed=tuple(sorted((*triage.changed, *triage.retracted))),
        gone=len(gone),
        skipped=skipped_report,
        rerun_months=tuple(
            sorted(
                {m for f in triage.changed for m in (*known[f].months, *found[f].months)}
                | {m for f in triage.retracted for m in known[f].months}
            )
        ),
        ledger_entries=tuple(entries),
    )


def _plausibility(gates: IngestSettings, ingested_at: dt.datetime) -> Plausibility:
    return Plausibility(
        latest=ingested_at + dt.timedelta(days=gates.future_horizon_days),
        usage_amount_ceilings=gates.usage_amount_ceilings,
        rack_energy_ceiling_kwh=gates.rack_energy_ceiling_kwh,
        id_pattern=id_pattern(gates.id_pattern),
    )


# How many of the most frequent reasons the quarantine gate's message names.
GATE_REASONS_SHOWN = 3


def _gate_quarantined_share(
    spark: SparkSession,
    lake: str,
    dataset: Dataset,
    batch: Sequence[str],
    rows_in: int,
    quarantined_rows: int,
    gates: IngestSettings,
) -> None:
    """InputError naming the dataset and its most frequent reasons when the batch's
    quarantined share is above the gate (the caller puts both tables back, and the files
    stay untaken until they are fixed)."""
    if rows_in < gates.gate_min_rows or quarantined_rows <= gates.max_quarantined_share * rows_in:
        return
    top = (
        read_table(spark, tables.quarantine(dataset.name).uri(lake))
        .where(f"{INGEST_STAGE_PREDICATE} AND {_files_predicate(batch)}")
        .groupBy(REASON)
        .count()
        .orderBy(F.desc("count"), REASON)
        .limit(GATE_REASONS_SHOWN)
        .collect()
    )
    reasons = ", ".join(f"{r[REASON]!r} ({r['count']})" for r in top)
    raise InputError(
        f"ingest {dataset.name}: {quarantined_rows / rows_in:.0%} of {rows_in} rows "
        f"quarantined, mostly {reasons}: check the delimiter and header of its files "
        f"(the gate is ingest.max_quarantined_share = {gates.max_quarantined_share:.0%}; "
        "nothing of this dataset was ingested)"
    )


def _refuse_lossy_rebuild(
    dataset: Dataset, known: dict[str, ledger.LedgerEntry], listed: Sequence[FileStatus]
) -> None:
    """InputError when rebuilding bronze from landing would lose rows of ingested files
    that landing no longer holds (bronze, not landing, is the system of record)."""
    present = {ledger.lineage(f.uri) for f in listed}
    lost = sorted(
        f
        for f, e in known.items()
        if e.holds_rows and e.bronze_rows + e.quarantined_rows > 0 and f not in present
    )
    if lost:
        raise InputError(
            f"ingest {dataset.name}: bronze must be rebuilt from landing (its table is "
            f"missing or not laid out as the catalog says), but {len(lost)} ingested "
            f"file(s) are no longer in landing, e.g. {lost[0]}: land them again or restore "
            "the bronze table (Delta RESTORE) to a version that holds them"
        )


def _has_layout(spark: SparkSession, uri: str, dataset: Dataset) -> bool:
    """True when the bronze table exists with the catalog's partitioning."""
    if not table_exists(spark, uri):
        return False
    wanted = list(tables.bronze(dataset.name).partition_by)
    return table_partitioning(spark, uri) == wanted


ADAPTIVE_EXECUTION = "spark.sql.adaptive.enabled"


def _planning_for(spark: SparkSession, dataset: str) -> AbstractContextManager[None]:
    """Adaptive execution off for a small (not hourly) dataset: it runs each shuffle's map
    side as a job of its own, which on a few thousand rows costs more than it could save."""
    if dataset in schemas.MONTH_PARTITIONED:
        return contextlib.nullcontext()
    return temporary_conf(spark, ADAPTIVE_EXECUTION, "false")


def ingest_landing(
    spark: SparkSession,
    landing: str,
    lake: str,
    *,
    reference: ReferenceTables,
    datasets: Sequence[str] | None = None,
    log: Callable[[str], None] | None = print,
    run_id: str = "",
    gates: IngestSettings | None = None,
) -> IngestReport:
    """Ingest landing datasets (all, or the named ones) into bronze and quarantine, parents first.

    A dataset whose parents are not in the run is checked against the parents'
    existing bronze tables (InputError when there are none). Datasets whose parents are
    done are ingested side by side, up to `gates.parallel_datasets` at a time
    (ingest_waves).
    """
    ingested_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    run_id = run_id or f"ingest-{ingested_at:%Y%m%dT%H%M%SZ}"
    reports: list[DatasetReport] = []
    known = ledger.read_ledger(spark, str(lake))
    workers = (gates or IngestSettings()).parallel_datasets

    def record_ledger() -> None:  # one ledger commit for the whole ingest
        ledger.record(spark, str(lake), [e for r in reports for e in r.ledger_entries])

    def ingest(name: str) -> DatasetReport:
        with _planning_for(spark, name):
            return ingest_dataset(
                spark,
                str(landing),
                str(lake),
                schemas.DATASETS_BY_NAME[name],
                reference=reference,
                ingested_at=ingested_at,
                run_id=run_id,
                known=known.get(name, {}),
                record_ledger=False,
                gates=gates,
            )

    try:
        for wave in ingest_waves(_ordered(datasets)):
            outcomes = _ingest_wave(spark, wave, ingest, workers=workers)
            for outcome in outcomes:
                if isinstance(outcome, DatasetReport):
                    if log is not None:
                        _log_dataset(outcome, log)
                    reports.append(outcome)
            for outcome in outcomes:  # the first failure in the wave's order
                if isinstance(outcome, BaseException):
                    raise outcome
    except BaseException:
        # The datasets committed before the failing one (which put its own tables back)
        # are still recorded; if even that fails, the next ingest takes their files again
        # and replaces their rows, and the original error is the one reported.
        with contextlib.suppress(Exception):
            record_ledger()
        raise
    record_ledger()
    order = {name: i for i, name in enumerate(INGEST_ORDER)}
    reports.sort(key=lambda r: order[r.dataset])
    result = IngestReport(ingested_at=ingested_at, datasets=tuple(reports))
    if log is not None and result.rerun_months:
        months = ", ".join(f"{m:%Y-%m}" for m in result.rerun_months)
        log(f"ingest: changed files touch months {months}: run them again")
    return result


def _log_dataset(report: DatasetReport, log: Callable[[str], None]) -> None:
    log(report.line())
    for file, original in report.duplicates:
        log(f"  duplicate file not ingested: {file} repeats {original}")
    for file in report.changed:
        log(f"  changed file, its rows replaced: {file}")
    for file, reason in report.skipped:
        log(f"  skipped file, not read: {file}: {reason}")


def ingest_waves(names: Sequence[str]) -> list[list[str]]:
    """The datasets in waves, each after the waves holding its parents: the small
    datasets whose parents are done go together; an hourly dataset goes alone, after
    them, so that at most one large scan runs at a time. A parent outside `names` is
    done already (its bronze is read)."""
    selected = set(names)
    done: set[str] = set()
    remaining = list(names)
    waves: list[list[str]] = []
    while remaining:
        ready = [n for n in remaining if all(p in done or p not in selected for p in PARENTS[n])]
        small = [n for n in ready if n not in schemas.MONTH_PARTITIONED]
        wave = small or ready[:1]
        waves.append(wave)
        done.update(wave)
        remaining = [n for n in remaining if n not in done]
    return waves


def _ingest_wave(
    spark: SparkSession,
    wave: Sequence[str],
    ingest: Callable[[str], DatasetReport],
    *,
    workers: int,
) -> list[DatasetReport | BaseException]:
    """Each dataset's report or failure, in the wave's order. The datasets run side by
    side in up to `workers` threads of the one session (a small dataset's ingest is
    mostly per-job latency, not work), each to its end. One at a time, the datasets
    after a failure are not started."""
    if workers <= 1 or len(wave) == 1:
        outcomes: list[DatasetReport | BaseException] = []
        for name in wave:
            try:
                outcomes.append(ingest(name))
            except BaseException as error:  # raised by the caller, after the reports
                outcomes.append(error)
                break
        return outcomes
    # The session-wide settings the ingest toggles, held for the whole wave: a thread
    # putting them back must not change them under another thread's query. A wave of
    # more than one holds small datasets only (ingest_waves), which share both settings.
    with _whole_csv_lines(spark), _planning_for(spark, wave[0]):
        pool = ThreadPoolExecutor(max_workers=min(workers, len(wave)))
        try:
            futures = [pool.submit(_in_thread(spark, ingest), name) for name in wave]
            return [_outcome(f) for f in futures]
        finally:
            # An interrupt here starts no further dataset; the running ones end first.
            pool.shutdown(wait=True, cancel_futures=True)


def _in_thread(
    spark: SparkSession, ingest: Callable[[str], DatasetReport]
) -> Callable[[str], DatasetReport]:
    """ingest, run in a pool thread with the calling thread's Spark local properties; a
    Spark Connect session's tags are thread-local and label_jobs sets the thread's own."""
    if is_connect(spark):
        return ingest
    wrap: Callable[[Callable[[str], DatasetReport]], Callable[[str], DatasetReport]]
    wrap = inheritable_thread_target(spark)
    return wrap(ingest)


def _outcome(future: Future[DatasetReport]) -> DatasetReport | BaseException:
    """The dataset's report or its failure; an interrupt of the waiting thread is raised."""
    error = future.exception()
    return future.result() if error is None else error
