"""Landing -> bronze + quarantine: one overwrite commit per bronze table, ingest rows of quarantine.

Datasets are processed parents first (INGEST_ORDER), and each child's foreign
keys are checked against the bronze tables its parents just wrote, so bronze
is referentially consistent. Re-ingesting the same files replaces, never
appends: bronze is overwritten and quarantine's `stage = 'ingest'` rows are
replaced, leaving rows that later stages quarantined untouched.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from carbon_core import schemas
from carbon_core.errors import InputError, InvariantError
from carbon_core.ingest.landing import RAW, SOURCE_FILE, read_landing
from carbon_core.ingest.rules import (
    PARENTS,
    REASON,
    check_rows,
    rank_key_candidates,
    repeated_key_hashes,
    resolve_keys,
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
from carbon_core.reference import ReferenceTables
from carbon_core.schemas import Dataset
from carbon_core.session import label_jobs

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

    def line(self) -> str:
        """One progress line, e.g. 'ingest usage: 20000 in, 19950 bronze, 50 quarantined, 3.1 s'."""
        return (
            f"ingest {self.dataset}: {self.rows_in} in, {self.bronze_rows} bronze, "
            f"{self.quarantined_rows} quarantined, {self.seconds:.1f} s"
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
    def seconds(self) -> float:
        """Wall time over all datasets."""
        return sum(r.seconds for r in self.datasets)

    def summary_line(self) -> str:
        """One line for the CLI."""
        return (
            f"ingest: {len(self.datasets)} datasets, {self.rows_in} in, {self.bronze_rows} bronze, "
            f"{self.quarantined_rows} quarantined, {self.seconds:.1f} s"
        )


def read_bronze(spark: SparkSession, lake: tables.Lake, name: str) -> DataFrame:
    """The bronze table of a dataset; InputError when it was never ingested.

    An optional dataset missing from a lake ingested before it existed reads as empty,
    as a missing landing folder would have made it."""
    path = tables.bronze(name).uri(lake)
    if not table_exists(spark, path):
        dataset = schemas.DATASETS_BY_NAME.get(name)
        if dataset is not None and not dataset.mandatory:
            return spark.createDataFrame([], schemas.bronze_schema(dataset))
        raise InputError(f"bronze table {name!r} not found: {path} (run ingest first)")
    return read_table(spark, path)


def to_bronze(validated: DataFrame, dataset: Dataset, ingested_at: dt.datetime) -> DataFrame:
    """Valid rows in the bronze schema."""
    schema = schemas.bronze_schema(dataset)
    values = {SOURCE_FILE: F.col(SOURCE_FILE), INGESTED_AT: F.lit(ingested_at)}
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
BRONZE_STATS_COLUMNS: dict[str, tuple[str, ...]] = {
    "usage": ("usage_start",),
    "rack_telemetry": ("hour",),
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
    if repeated.count() > MAX_BROADCAST_REPEATED_KEYS:
        repeated.unpersist()
        return None
    return repeated


# Spark parses only the CSV columns a query needs, and then flags a line as malformed
# only if those columns fail: a line with an extra field passes a query that does not
# read every column. The bronze pass does not need `raw`, so without this setting the
# same landing gave the two passes different malformed lines.
CSV_COLUMN_PRUNING = "spark.sql.csv.parser.columnPruning.enabled"


@contextmanager
def _whole_csv_lines(spark: SparkSession) -> Iterator[None]:
    """CSV column pruning off for the block, the session's own setting restored after."""
    before = spark.conf.get(CSV_COLUMN_PRUNING, None)
    spark.conf.set(CSV_COLUMN_PRUNING, "false")
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(CSV_COLUMN_PRUNING)
        else:
            spark.conf.set(CSV_COLUMN_PRUNING, before)


def _observe_reasons(validated: DataFrame, observation: Observation) -> DataFrame:
    """validated, counting its valid and rejected rows into observation as a write reads it."""
    return validated.observe(
        observation,
        F.count_if(F.col(REASON).isNull()).alias("valid"),
        F.count_if(F.col(REASON).isNotNull()).alias("rejected"),
    )


def _observed(observation: Observation) -> tuple[int, int]:
    counts = observation.get
    return int(counts["valid"]), int(counts["rejected"])


def _write_both_passes(
    validated: DataFrame,
    dataset: Dataset,
    lake: str,
    *,
    rows_in: int,
    ingested_at: dt.datetime,
) -> tuple[int, int]:
    """Bronze, then quarantine, each written from its own evaluation of `validated`;
    (bronze rows, quarantined rows), or InvariantError when the counts do not add up."""
    in_bronze = Observation(f"ingest {dataset.name} bronze")
    write_table(
        to_bronze(_observe_reasons(validated, in_bronze), dataset, ingested_at),
        tables.bronze(dataset.name).uri(lake),
        mode="overwrite",
        properties=bronze_properties(dataset),
    )
    bronze_rows, quarantined_rows = _observed(in_bronze)
    if rows_in != bronze_rows + quarantined_rows:
        raise InvariantError(
            f"ingest {dataset.name}: {rows_in} landing rows but {bronze_rows} bronze + "
            f"{quarantined_rows} quarantined"
        )
    in_quarantine = Observation(f"ingest {dataset.name} quarantine")
    replace_where(
        to_quarantine(_observe_reasons(validated, in_quarantine), ingested_at),
        tables.quarantine(dataset.name).uri(lake),
        predicate=INGEST_STAGE_PREDICATE,
    )
    valid, rejected = _observed(in_quarantine)
    if (valid, rejected) != (bronze_rows, quarantined_rows):
        raise InvariantError(
            f"ingest {dataset.name}: the bronze pass found {bronze_rows} valid + "
            f"{quarantined_rows} rejected rows, the quarantine pass {valid} + {rejected}"
        )
    return bronze_rows, quarantined_rows


def ingest_dataset(
    spark: SparkSession,
    landing: str,
    lake: str,
    dataset: Dataset,
    *,
    reference: ReferenceTables,
    ingested_at: dt.datetime,
) -> DatasetReport:
    """Validate one landing dataset and write its bronze table and ingest quarantine rows.

    The landing rows are validated twice, once as bronze is written and once as
    quarantine is, rather than persisted between the two writes: building and
    reading the cached copy costs more than validating again, and at a billion rows
    the copy would spill tens of GB to disk.
    Both passes count valid and rejected rows as they go; if the counts disagree
    with each other or with the landing rows, both tables are put back and the
    dataset fails. So does any other failure after the bronze commit.
    """
    started = time.monotonic()
    label_jobs(spark, f"ingest/{dataset.name}", f"carbonlake ingest {dataset.name}")
    parents = {name: read_bronze(spark, lake, name) for name in PARENTS[dataset.name]}
    rows = read_landing(spark, landing, dataset)
    written = (tables.bronze(dataset.name).uri(lake), tables.quarantine(dataset.name).uri(lake))
    checkpoints = [TableCheckpoint(uri, table_version(spark, uri)) for uri in written]
    repeated: DataFrame | None = None
    ranked: DataFrame | None = None
    try:
        with _whole_csv_lines(spark):
            rows_in = rows.count()
            repeated = _repeated_keys(rows, dataset, rows_in)
            checked = check_rows(rows, dataset, parents, reference.fuel_factors, repeated)
            if dataset.key:
                # The few rows with a repeated key, ranked once for both passes.
                ranked = rank_key_candidates(checked, dataset).persist(StorageLevel.MEMORY_AND_DISK)
            bronze_rows, quarantined_rows = _write_both_passes(
                resolve_keys(checked, dataset, ranked),
                dataset,
                lake,
                rows_in=rows_in,
                ingested_at=ingested_at,
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
    return DatasetReport(
        dataset.name, rows_in, bronze_rows, quarantined_rows, time.monotonic() - started
    )


def ingest_landing(
    spark: SparkSession,
    landing: str,
    lake: str,
    *,
    reference: ReferenceTables,
    datasets: Sequence[str] | None = None,
    log: Callable[[str], None] | None = print,
) -> IngestReport:
    """Ingest landing datasets (all, or the named ones) into bronze and quarantine, parents first.

    A dataset whose parents are not in the run is checked against the parents'
    existing bronze tables (InputError when there are none).
    """
    ingested_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    reports = []
    for name in _ordered(datasets):
        report = ingest_dataset(
            spark,
            str(landing),
            str(lake),
            schemas.DATASETS_BY_NAME[name],
            reference=reference,
            ingested_at=ingested_at,
        )
        if log is not None:
            log(report.line())
        reports.append(report)
    return IngestReport(ingested_at=ingested_at, datasets=tuple(reports))
