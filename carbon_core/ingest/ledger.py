"""The file ledger `bronze/_files`: one row per landing file ever seen, and what became of it.

An ingest lists each dataset's folder, compares the listing with the ledger and reads
only the files it has not taken before (docs/operations.md §4.5):

- a file at a new location, or at a known location with another size or modification
  time, is a candidate and is read;
- a candidate whose rows have the fingerprint of a file already ingested (or of an
  earlier candidate of the same run) is a duplicate: recorded with the file it repeats,
  never ingested;
- a known file read again with its old fingerprint (copied over with the same bytes,
  touched) only gets its new size and time;
- a known file whose fingerprint changed replaces exactly its own rows in bronze and
  quarantine;
- a file the ledger knows but the listing no longer has is marked gone; bronze keeps its
  rows, because bronze, not landing, is the system of record;
- a file that is not read (another suffix, no bytes, a blank or broken header) is
  recorded as skipped with its reason, and looked at again by every ingest; bronze keeps
  the rows it held if it had been ingested before.

The fingerprint is of a file's rows, not its bytes: the row count and two sums of 64-bit
row hashes over every landing column (the raw line of a malformed one included), computed
in the pass that counts the rows. So the same rows re-encoded (CSV gzipped, Parquet
rewritten) are the same file, and the order of the rows does not matter.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carbon_core.hadoop import FileStatus
from carbon_core.ingest.landing import SOURCE_FILE
from carbon_core.lake import merge_into, read_table, table_exists, tables

INGESTED = "ingested"
DUPLICATE = "duplicate"
GONE = "gone"
SKIPPED = "skipped"

# The fingerprint of a file without rows (a header alone): never a duplicate of another.
EMPTY_FINGERPRINT = "empty"
# What a file copied over with the same rows keeps of its entry.
KEPT_WHEN_TOUCHED = (
    "bronze_rows",
    "quarantined_rows",
    "months",
    "status",
    "duplicate_of",
    "ingest_run",
    "ingested_at",
)

# A fingerprint sums 64-bit hashes of up to billions of rows: as decimals, which cannot
# overflow (a long sum would, and fails under ANSI mode).
_SUM_TYPE = "decimal(38,0)"


@dataclass(frozen=True)
class LedgerEntry:
    """One landing file as the ledger records it."""

    dataset: str
    file: str  # as bronze's _source_file has it: a local file's plain path, else its URI
    size: int
    modified_ms: int
    fingerprint: str | None
    rows_read: int
    bronze_rows: int
    quarantined_rows: int
    months: tuple[dt.date, ...]
    status: str
    duplicate_of: str | None
    ingest_run: str
    ingested_at: dt.datetime
    seen_at: dt.datetime
    reason: str | None = None  # why a skipped file is not read

    @property
    def holds_rows(self) -> bool:
        """True when bronze or quarantine hold rows of this file (ingested, maybe gone)."""
        return self.fingerprint is not None and self.duplicate_of is None


def lineage(uri: str) -> str:
    """A listed file's URI in the form of bronze's `_source_file` (local files: the path)."""
    if uri.startswith("file://"):
        return uri[len("file://") :]
    if uri.startswith("file:"):
        return uri[len("file:") :]
    return uri


def read_ledger(
    spark: SparkSession, lake: str, dataset: str | None = None
) -> dict[str, dict[str, LedgerEntry]]:
    """The ledger's entries by dataset and file (of one dataset, when named); empty
    before the first ingest.

    One row per file ever landed: small next to the data (collected on purpose, once
    per ingest)."""
    uri = tables.LANDING_FILES.uri(lake)
    if not table_exists(spark, uri):
        return {}
    table = read_table(spark, uri)
    if dataset is not None:
        table = table.where(F.col("dataset") == dataset)
    entries: dict[str, dict[str, LedgerEntry]] = {}
    for row in table.collect():
        values = row.asDict()
        values["months"] = tuple(values["months"] or ())
        entries.setdefault(row["dataset"], {})[row["file"]] = LedgerEntry(**values)
    return entries


@dataclass(frozen=True)
class FilePlan:
    """What an ingest does with each file of a dataset's listing."""

    candidates: tuple[FileStatus, ...]  # new, or changed size or time: to be read
    unchanged: tuple[str, ...]  # as the ledger has them: not read
    gone: tuple[LedgerEntry, ...]  # in the ledger, no longer listed


def plan_files(listed: Sequence[FileStatus], ledger: Mapping[str, LedgerEntry]) -> FilePlan:
    """Split a listing against the ledger (no data is read)."""
    candidates, unchanged = [], []
    for file in listed:
        known = ledger.get(lineage(file.uri))
        if (
            known is not None
            and known.status not in (GONE, SKIPPED)
            and known.size == file.size
            and known.modified_ms == file.modified_ms
        ):
            unchanged.append(known.file)
        else:
            candidates.append(file)
    present = {lineage(f.uri) for f in listed}
    gone = [e for f, e in sorted(ledger.items()) if f not in present and e.status != GONE]
    return FilePlan(tuple(candidates), tuple(unchanged), tuple(gone))


@dataclass(frozen=True)
class FileRows:
    """A candidate's rows as the counting pass found them."""

    rows: int
    fingerprint: str
    months: tuple[dt.date, ...]


def file_fingerprints(rows: DataFrame, month: F.Column | None) -> dict[str, FileRows]:
    """Rows, fingerprint and months (of `month`, when the dataset has one) per file.

    One small aggregate: a row per file."""
    values = [F.col(c) for c in rows.columns if c != SOURCE_FILE]
    aggregates = [
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.xxhash64(*values).cast(_SUM_TYPE)).alias("sum_a"),
        # A second hash of the same values, salted, for 128 bits in all.
        F.sum(F.xxhash64(F.lit("carbonlake"), *values).cast(_SUM_TYPE)).alias("sum_b"),
    ]
    if month is not None:
        aggregates.append(F.collect_set(month).alias("months"))
    found = {}
    for row in rows.groupBy(SOURCE_FILE).agg(*aggregates).collect():
        digest = hashlib.sha256(f"{row['rows']}:{row['sum_a']}:{row['sum_b']}".encode())
        listed = row["months"] if month is not None else None
        months = tuple(sorted(m for m in (listed or ()) if m is not None))
        found[row[SOURCE_FILE]] = FileRows(int(row["rows"]), digest.hexdigest()[:32], months)
    return found


@dataclass(frozen=True)
class Triage:
    """The candidates sorted by what the ingest does with them."""

    ingest: tuple[str, ...]  # new files and files changed in place
    changed: tuple[str, ...]  # the subset of `ingest` that replaces earlier rows
    duplicates: dict[str, str]  # file -> the file whose rows it repeats
    touched: tuple[str, ...]  # known files whose rows did not change
    # Known files holding rows that now repeat another file's: their old rows are removed
    # (they are also in `duplicates`).
    retracted: tuple[str, ...] = ()


def triage(found: Mapping[str, FileRows], ledger: Mapping[str, LedgerEntry]) -> Triage:
    """Decide per candidate file (sorted, so the earlier name is the original)."""
    # A candidate whose rows changed no longer holds its old rows: they are nobody's
    # original (two files that swapped contents are both changed, not duplicates).
    rewritten = {
        f for f, rows in found.items() if f in ledger and ledger[f].fingerprint != rows.fingerprint
    }
    by_fingerprint = {
        e.fingerprint: f
        for f, e in sorted(ledger.items())
        if e.holds_rows and e.fingerprint and f not in rewritten
    }
    ingest, changed, touched, retracted = [], [], [], []
    duplicates: dict[str, str] = {}
    for file in sorted(found):
        rows = found[file]
        known = ledger.get(file)
        if known is not None and known.fingerprint == rows.fingerprint:
            touched.append(file)
            continue
        original = (
            None if rows.fingerprint == EMPTY_FINGERPRINT else by_fingerprint.get(rows.fingerprint)
        )
        if original is not None and original != file:
            duplicates[file] = original
            if known is not None and known.holds_rows:
                retracted.append(file)
            continue
        ingest.append(file)
        if known is not None and known.holds_rows:
            changed.append(file)
        by_fingerprint.setdefault(rows.fingerprint, file)
    return Triage(tuple(ingest), tuple(changed), duplicates, tuple(touched), tuple(retracted))


def file_entry(
    dataset: str,
    listed: FileStatus,
    rows: FileRows,
    *,
    unchanged: LedgerEntry | None,
    run_id: str,
    at: dt.datetime,
    bronze_rows: int = 0,
    quarantined_rows: int = 0,
    months: tuple[dt.date, ...] = (),
    status: str = INGESTED,
    duplicate_of: str | None = None,
) -> LedgerEntry:
    """The entry of a file this ingest read. A known file whose rows did not change
    (`unchanged`, its entry) keeps what the ledger says became of it."""
    entry = LedgerEntry(
        dataset=dataset,
        file=lineage(listed.uri),
        size=listed.size,
        modified_ms=listed.modified_ms,
        fingerprint=rows.fingerprint,
        rows_read=rows.rows,
        bronze_rows=bronze_rows,
        quarantined_rows=quarantined_rows,
        months=months,
        status=status,
        duplicate_of=duplicate_of,
        ingest_run=run_id,
        ingested_at=at,
        seen_at=at,
    )
    if unchanged is not None:
        entry = replace(entry, **{k: getattr(unchanged, k) for k in KEPT_WHEN_TOUCHED})
        if unchanged.status in (GONE, SKIPPED):  # back in landing with the rows it had
            entry = replace(entry, status=DUPLICATE if unchanged.duplicate_of else INGESTED)
    return entry


def ledger_frame(spark: SparkSession, entries: Sequence[LedgerEntry]) -> DataFrame:
    """Entries as a frame in the ledger's schema."""
    schema = tables.LANDING_FILES.schema
    rows = [tuple(getattr(e, f.name) for f in schema.fields) for e in entries]
    return spark.createDataFrame([(*r[:8], list(r[8]), *r[9:]) for r in rows], schema)


def record(spark: SparkSession, lake: str, entries: Sequence[LedgerEntry]) -> None:
    """Upsert entries into the ledger on (dataset, file), in one MERGE commit (one per
    ingest, for all its datasets)."""
    if not entries:
        return
    uri = tables.ensure_lake_table(spark, lake, tables.LANDING_FILES)
    # A ledger from before the `reason` column gets it here.
    merge_into(ledger_frame(spark, entries), uri, keys=("dataset", "file"), evolve_schema=True)


def mark_gone(entries: Sequence[LedgerEntry], seen_at: dt.datetime) -> list[LedgerEntry]:
    """The entries with status gone (rows stay in bronze)."""
    return [replace(e, status=GONE, seen_at=seen_at) for e in entries]


def skipped_entry(
    dataset: str,
    listed: FileStatus,
    reason: str,
    *,
    known: LedgerEntry | None,
    run_id: str,
    at: dt.datetime,
) -> LedgerEntry:
    """The entry of a file not read. A file ingested before keeps its fingerprint and
    counts (bronze keeps its rows, as for a file gone), so that the same rows back again
    are not taken twice."""
    if known is not None:
        return replace(
            known,
            size=listed.size,
            modified_ms=listed.modified_ms,
            status=SKIPPED,
            reason=reason,
            seen_at=at,
        )
    return LedgerEntry(
        dataset=dataset,
        file=lineage(listed.uri),
        size=listed.size,
        modified_ms=listed.modified_ms,
        fingerprint=None,
        rows_read=0,
        bronze_rows=0,
        quarantined_rows=0,
        months=(),
        status=SKIPPED,
        duplicate_of=None,
        ingest_run=run_id,
        ingested_at=at,
        seen_at=at,
        reason=reason,
    )
